"""PNG figures of a suite report: see :mod:`benchmarks.figures` (one module per question)."""

from benchmarks.figures import write_plots

__all__ = ["write_plots"]
