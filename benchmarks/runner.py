"""Run a suite's cells: resume finished ones, isolate failures, parallel worker processes.

Each cell runs single-threaded, so its numbers do not depend on ``--jobs``; parallelism comes
from running cells side by side. Cell files are written atomically: a run killed at any moment
and started again finishes the remaining cells, and no half-written file is read as a result.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from benchmarks.cell import cell_path, run_cell, store_dir
from benchmarks.matrix import Cell, Suite
from fedlpp.errors import FedlppError
from fedlpp.io import atomic_write_json


def finished(out: Path, cell_id: str) -> bool:
    """A cell whose result file exists and says ok (failed cells are run again)."""
    try:
        return json.loads(cell_path(out, cell_id).read_text()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def _init_worker() -> None:
    import logging
    import warnings

    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()  # per-cell "Loading weights" bars
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # harmless missing-kernel line
    warnings.filterwarnings("ignore", category=FutureWarning)


def _work(cell: Cell, out: str, keep_runs: bool, share: bool) -> dict[str, Any]:
    return run_cell(cell, out=Path(out), keep_runs=keep_runs, share=share)


def run_suite(suite: Suite, *, out: Path, jobs: int = 1, quiet: bool = False,
              keep_runs: bool = False, command: str | None = None,
              share: bool = True) -> list[dict[str, Any]]:
    """Run every cell of ``suite`` that has no ok result in ``out`` yet; returns all results.

    ``command`` (the command line that runs it) is kept for the report's "Regenerate" line.
    ``share``: cells reuse evaluations and signals other cells computed (off only to measure it).
    """
    if jobs < 1:
        raise FedlppError(f"Invalid --jobs: {jobs} (allowed: >= 1)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "suite.json", {
        "name": suite.name, "description": suite.description, "file": suite.path.name,
        "grid_keys": suite.grid_keys, "command": command,
        "cells": [{"id": c.id, "labels": c.labels} for c in suite.cells]})
    pending = [c for c in suite.cells if not finished(out, c.id)]
    bar = tqdm(total=len(suite.cells), initial=len(suite.cells) - len(pending), disable=quiet,
               desc=f"suite {suite.name}", unit="cell")
    failed = []

    def done(record: dict[str, Any]) -> None:
        bar.update(1)
        if record["status"] != "ok":
            failed.append(record["id"])
            bar.write(f"cell {record['id']} failed: {record['error']}")

    if jobs == 1:
        _init_worker()
        for cell in pending:
            done(run_cell(cell, out=out, keep_runs=keep_runs, share=share))
    else:
        ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker) as pool:
            futures = {pool.submit(_work, c, str(out), keep_runs, share)
                       for c in pending}
            while futures:
                finished_now, futures = wait(futures, return_when=FIRST_COMPLETED)
                for f in finished_now:
                    done(f.result())
    bar.close()
    runs = out / "runs"
    if runs.is_dir() and not any(runs.iterdir()):
        runs.rmdir()  # traces are deleted after each cell unless --keep-runs
    shutil.rmtree(store_dir(out), ignore_errors=True)  # every cell has its numbers
    return [json.loads(cell_path(out, c.id).read_text()) for c in suite.cells
            if cell_path(out, c.id).exists()]
