"""Run a suite's cells: resume finished ones, isolate failures, parallel worker processes or
Ray tasks.

Each cell runs single-threaded, so its numbers do not depend on ``--jobs`` or the executor;
parallelism comes from running cells side by side. Cell files are written atomically: a run
killed at any moment and started again finishes the remaining cells, and no half-written file
is read as a result.

With ``executor="ray"`` every cell is a Ray task of one CPU (no retries). On a local Ray instance
(no ``address``) tasks write into ``out`` as worker processes do and share its store. On a
cluster (``address``) no disk is assumed shared: each task runs its cell in a directory of its
own node, with a store per task, and returns the cell's record, which the driver writes into
``out/cells`` (traces kept with ``keep_runs`` stay on that node). A task that raises or whose
worker dies is recorded as that cell's failure; the others go on.

The executors are the table :data:`EXECUTORS` (name -> :class:`Executor`); ``--executor`` accepts
its keys, so another executor is one function and one entry.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from benchmarks.cell import cell_path, run_cell, store_dir
from benchmarks.matrix import Cell, Suite
from fedlpp.errors import FedlppError
from fedlpp.io import atomic_write_json, read_json
from fedlpp.outdir import MARKER, check_folder, is_marked, locked, mark

Work = Callable[..., dict[str, Any]]  # run_cell's signature
Done = Callable[[dict[str, Any]], None]  # called with each cell's record as it is written


class Executor(Protocol):
    """Runs ``cells`` (the pending ones) into ``out``, calling ``done`` with each record."""

    def __call__(self, cells: list[Cell], *, out: Path, jobs: int, address: str | None,
                 keep_runs: bool, share: bool, work: Work, done: Done) -> None: ...


def finished(out: Path, cell_id: str) -> bool:
    """A cell whose result file exists and says ok (failed cells are run again, and so is a
    file that cannot be read, is not a JSON object or holds another cell's id)."""
    try:
        record = read_json(cell_path(out, cell_id), what="a cell's result (JSON)")
    except FedlppError:
        return False
    return (isinstance(record, dict) and record.get("status") == "ok"
            and record.get("id") == cell_id)


def init_worker() -> None:
    """Set up a worker process for cells: one thread, quiet logs (also the serial path)."""
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


def _die_with(parent: int) -> None:
    """End this worker process when ``parent`` (the command) dies, even by SIGKILL: a
    parent-death signal on Linux (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), and everywhere a
    watchdog thread that polls the parent pid (a dead parent's children are re-parented)."""
    import signal
    import threading
    import time

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # the watchdog below still ends it
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def init_pool_worker(parent: int) -> None:
    """A worker of :func:`run_in_processes`: dies with ``parent``, then :func:`init_worker`."""
    _die_with(parent)
    init_worker()


def _work(work: Work, cell: Cell, out: str, keep_runs: bool, share: bool) -> dict[str, Any]:
    return work(cell, out=Path(out), keep_runs=keep_runs, share=share)


def _ray_cell(work: Work, cell: Cell, out: str | None, keep_runs: bool,
              share: bool) -> dict[str, Any]:
    """One cell as a Ray task: into ``out``, or (``None``: a cluster node) a directory of its own."""
    init_worker()
    own = out is None
    where = Path(tempfile.mkdtemp(prefix=f"fedlpp-cell-{cell.id}-")) if own else Path(out)
    try:
        return work(cell, out=where, keep_runs=keep_runs, share=share)
    finally:
        if own and not keep_runs:
            shutil.rmtree(where, ignore_errors=True)


def failure(cell: Cell, error: str) -> dict[str, Any]:
    """The record of a cell whose worker never returned one (it died, or its task failed)."""
    from fedlpp.meta import provenance

    return {"id": cell.id, "labels": cell.labels, "config": cell.config.to_dict(),
            "status": "failed", "error": error, "meta": {**provenance(), "seconds": None}}


def run_on_ray(cells: list[Cell], *, out: Path, jobs: int, address: str | None,
               keep_runs: bool, share: bool, work: Work,
               done: Done) -> None:
    """Each cell a Ray task of one CPU; the driver writes every record into ``out/cells``."""
    import ray

    local = address is None
    ray.init(**({"num_cpus": jobs} if local else {"address": address}),
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
        pending = {task.remote(work, c, str(out) if local else None, keep_runs, share and local): c
                   for c in cells}
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready)
            try:
                record = ray.get(ready)
            except ray.exceptions.RayError as exc:  # the worker died or the task itself failed
                cause = getattr(exc, "cause", None) or exc  # a task's own exception, unwrapped
                text = " ".join(str(cause).split())[:300]
                record = failure(cell, f"{type(cause).__name__}: {text}")
            atomic_write_json(cell_path(out, cell.id), record)
            done(record)
    finally:
        ray.shutdown()


def run_in_processes(cells: list[Cell], *, out: Path, jobs: int, address: str | None,
                     keep_runs: bool, share: bool, work: Work, done: Done) -> None:
    """``jobs`` spawned worker processes, or (one job) this process; ``address`` is unused
    (:func:`run_suite` refuses one for this executor)."""
    if jobs == 1:
        init_worker()
        for cell in cells:
            done(work(cell, out=out, keep_runs=keep_runs, share=share))
        return
    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    # a worker dies with this process (a SIGKILL of the command leaves no worker running; the
    # resource tracker exits once the last of them has gone)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=init_pool_worker,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_work, work, c, str(out), keep_runs, share) for c in cells}
        while futures:
            finished_now, futures = wait(futures, return_when=FIRST_COMPLETED)
            for f in finished_now:
                done(f.result())


EXECUTORS: dict[str, Executor] = {"process": run_in_processes, "ray": run_on_ray}


def check_options(suite: Suite, *, jobs: int, executor: str, address: str | None) -> None:
    """One-line errors for options that cannot run, before anything is written."""
    if jobs < 1:
        raise FedlppError(f"Invalid --jobs: {jobs} (allowed: >= 1)")
    if executor not in EXECUTORS:
        raise FedlppError(f"Invalid --executor: {executor!r} (allowed: {', '.join(EXECUTORS)})")
    if address is not None and executor != "ray":
        raise FedlppError(f"--address {address!r} needs --executor ray")
    if address is not None and any(c.config.system.device == "auto" for c in suite.cells):
        # a cell's id records its device, resolved here; a cluster's nodes may differ
        raise FedlppError(f"--address {address!r}: system.device 'auto' would be resolved on "
                          "this machine, not on the cluster's nodes; set it (allowed here: cpu, "
                          "cuda, cuda:N), e.g. --set system.device=cpu")


def _record_suite(suite: Suite, *, out: Path, command: str | None) -> None:
    """``out/suite.json``: the suite's name, grid keys, cells and command, for the report."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "suite.json", {
        "name": suite.name, "description": suite.description, "file": suite.path.name,
        "grid_keys": suite.grid_keys, "command": command,
        "cells": [{"id": c.id, "labels": c.labels} for c in suite.cells]})


def _pending(suite: Suite, out: Path) -> list[Cell]:
    """The cells of ``suite`` that have no ok result in ``out`` yet, in the suite's order."""
    return [c for c in suite.cells if not finished(out, c.id)]


def _progress(suite: Suite, pending: list[Cell], *, quiet: bool) -> tuple[tqdm, Done]:
    """A bar over all of ``suite``'s cells (the finished ones counted in already) and the
    ``done`` callback that advances it and prints each failed cell's error."""
    bar = tqdm(total=len(suite.cells), initial=len(suite.cells) - len(pending), disable=quiet,
               desc=f"suite {suite.name}", unit="cell")

    def done(record: dict[str, Any]) -> None:
        bar.update(1)
        if record["status"] != "ok":
            bar.write(f"cell {record['id']} failed: {record['error']}")

    return bar, done


def _own_store(out: Path, suite: Suite) -> bool:
    """Whether the cells may share ``out/cache``: made here (marked), or marked by an earlier
    run of a suite. A ``cache/`` the tool did not make is left alone, with a warning line, and
    the cells run without a shared store (the same numbers, measured again)."""
    store = store_dir(out)
    if not store.exists():
        mark(store, "store", suite=suite.name)
        return True
    if is_marked(store, "store"):
        return True
    print(f"warning: {str(store)!r} was not made by fedlpp bench run (no {MARKER} marker): it "
          "is left alone and the cells run without a shared store", file=sys.stderr)
    return False


def _tidy(out: Path) -> None:
    """Remove what only running needed: an empty ``runs/`` and the shared store (only where the
    tool's marker says it made it)."""
    runs = out / "runs"
    if runs.is_dir() and not any(runs.iterdir()):
        runs.rmdir()  # traces are deleted after each cell unless --keep-runs
    if is_marked(store_dir(out), "store"):
        shutil.rmtree(store_dir(out), ignore_errors=True)  # every cell has its numbers


def _collect(suite: Suite, out: Path) -> list[dict[str, Any]]:
    """The result of every cell of ``suite`` that has a file in ``out``, in the suite's order."""
    return [read_json(cell_path(out, c.id), what=f"the result of cell {c.id!r} (JSON)")
            for c in suite.cells if cell_path(out, c.id).exists()]


def run_suite(suite: Suite, *, out: Path, jobs: int = 1, quiet: bool = False,
              keep_runs: bool = False, command: str | None = None,
              share: bool = True, executor: str = "process", address: str | None = None,
              work: Work = run_cell) -> list[dict[str, Any]]:
    """Run every cell of ``suite`` that has no ok result in ``out`` yet; returns all results.

    ``command`` (the command line that runs it) is kept for the report's "Regenerate" line.
    ``share``: cells reuse evaluations and signals other cells computed (off only to measure it).
    ``executor`` (a key of :data:`EXECUTORS`): ``process`` (``jobs`` local worker processes) or
    ``ray`` (Ray tasks on a local instance of ``jobs`` CPUs, or on the cluster at ``address``).
    ``work`` runs one cell (:func:`benchmarks.cell.run_cell`; tests pass a stand-in).
    """
    check_options(suite, jobs=jobs, executor=executor, address=address)
    check_folder(out, "bench")  # new, empty or a suite's (refused before anything is written)
    with locked(out):  # one command at a time on ``out`` (see fedlpp.outdir)
        check_folder(out, "bench")
        mark(out, "bench", suite=suite.name)
        _record_suite(suite, out=out, command=command)
        share = share and _own_store(out, suite)
        pending = _pending(suite, out)
        bar, done = _progress(suite, pending, quiet=quiet)
        EXECUTORS[executor](pending, out=out, jobs=jobs, address=address, keep_runs=keep_runs,
                            share=share, work=work, done=done)
        bar.close()
        _tidy(out)
        return _collect(suite, out)
