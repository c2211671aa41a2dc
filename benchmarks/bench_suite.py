"""What sharing results across cells saves: one suite run with the store and one without.

    python benchmarks/bench_suite.py [--suite paper] [--task lm] [--bits 2,4,32] [--seed 0]
                                     [--jobs 1] [--repeats 1]

Takes the cells of one task, partition ``iid``, scope ``adapter`` and one seed from a shipped
suite (default: the paper suite's SmolLM2 cells at nf-2, nf-4 and fp32), runs them once with the
store and once without, each into a fresh directory (after an untimed warm-up that loads the
stack, the model and the data once), and prints per-run wall time, the ratio, how many results
came from the store, and whether every cell's numbers are identical. Cells of one seed share the
base model's evaluation (round 0) and its signals on the ``central`` and ``proxy`` targets'
records (the ``reference`` attack); within a cell, ``as-is`` reads the run's own evaluation of
the final broadcast. The saving grows with the bit widths per seed. Run on an otherwise idle
machine; with ``--repeats`` the two runs alternate order.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pick(suite, *, task: str, bits: list[int], seed: int):
    from dataclasses import replace

    cells = [c for c in suite.cells
             if c.labels.get("task", task) == task and c.labels.get("seed") == seed
             and c.config.data.partition == "iid" and c.config.quant.scope == "adapter"
             and c.config.fed.num_clients > 1 and (c.config.quant.bits or 32) in bits
             and "data.max_records" not in c.labels]
    if not cells:
        raise SystemExit(f"No cells of task {task!r}, seed {seed}, bits {bits} in {suite.name}")
    return replace(suite, cells=cells)


def numbers(out: Path) -> dict[str, object]:
    cells = {}
    for f in sorted((out / "cells").glob("*.json")):
        c = json.loads(f.read_text())
        cells[c["id"]] = (c["status"], c.get("train"), c.get("fidelity"),
                          [(a["attack"], a["config"], a["metrics"]) for a in c.get("attacks", [])])
    return cells


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", default="paper")
    p.add_argument("--task", default="lm")
    p.add_argument("--bits", default="2,4,32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()

    from benchmarks.matrix import load_suite
    from benchmarks.runner import run_suite
    from benchmarks.suite_file import find_suite

    suite = pick(load_suite(find_suite(args.suite)), task=args.task,
                 bits=[int(b) for b in args.bits.split(",")], seed=args.seed)
    print(f"{len(suite.cells)} cells: {[c.labels for c in suite.cells]}")
    from benchmarks.runner import init_worker
    from fedlpp.run.context import prepare_run

    init_worker()
    prepare_run(suite.cells[0].config)  # warm-up, untimed: imports, model and data files
    times: dict[bool, list[float]] = {True: [], False: []}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for share in ((True, False) if rep % 2 == 0 else (False, True)):
                out = Path(tmp) / f"{'shared' if share else 'alone'}-{rep}"
                t0 = time.perf_counter()
                cells = run_suite(suite, out=out, jobs=args.jobs, quiet=True, share=share)
                times[share].append(time.perf_counter() - t0)
                hits = sum(c["meta"]["from_store"] for c in cells)
                print(f"repeat {rep}: {'with' if share else 'without'} store "
                      f"{times[share][-1]:.1f} s, results from the store: {hits}")
                results[share] = numbers(out)
    shared, alone = statistics.median(times[True]), statistics.median(times[False])
    print(f"median wall: with store {shared:.1f} s, without {alone:.1f} s -> "
          f"{alone / shared:.2f}x faster with the store")
    same = results[True] == results[False]
    print(f"numbers identical with and without the store: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
