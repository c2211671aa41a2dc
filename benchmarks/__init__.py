"""The benchmark harness: suites (a matrix of FedLPP configs x attacks), resumable runs, reports."""
