"""Attacks on a FedLPP trace: model recovery, membership inference, and their metrics."""
