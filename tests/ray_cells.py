"""Stand-in cell runners for the Ray executor tests (imported by Ray workers by name)."""

import os

from benchmarks.cell import cell_path
from fedlpp.io import atomic_write_json


def flaky(cell, *, out, keep_runs, share):
    """Seed 1 raises, seed 2 kills its worker process, the others succeed."""
    if cell.config.seed == 1:
        raise RuntimeError("this cell raises")
    if cell.config.seed == 2:
        os._exit(3)
    record = {"id": cell.id, "labels": cell.labels, "status": "ok", "value": 10 * cell.config.seed,
              "pid": os.getpid(), "out": str(out)}
    atomic_write_json(cell_path(out, cell.id), record)
    return record
