"""Ray executor vs the process executor on the same suite, side by side in one run.

    python benchmarks/bench_executor.py [--suite quick] [--jobs 2] [--repeats 1]

Runs every cell of the suite once per executor and repeat, alternating (process, ray, process,
ray, ...), each into a fresh directory, and prints the wall time of each, the median ratio
ray / process, and whether the two executors wrote the same numbers (training results and every
attack's metrics, cell by cell). Ray's own start-up (about 7 s on a 2-core machine) is part of
its time, as it is for a user.
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

from benchmarks.matrix import load_suite  # noqa: E402
from benchmarks.runner import run_suite  # noqa: E402
from benchmarks.suite_file import find_suite  # noqa: E402


def numbers(out: Path) -> dict:
    """Each cell's training results and attack metrics (what must not depend on the executor)."""
    cells = {}
    for f in sorted((out / "cells").glob("*.json")):
        c = json.loads(f.read_text())
        cells[c["id"]] = {"status": c["status"], "train": c.get("train"),
                          "attacks": [(a["attack"], a["config"], a["metrics"])
                                      for a in c.get("attacks", [])]}
    return cells


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="quick", help="a shipped suite name or a suite TOML file")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes / local Ray CPUs")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    suite = load_suite(find_suite(args.suite))
    times: dict[str, list[float]] = {"process": [], "ray": []}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="fedlpp-bench-executor-") as tmp:
        for rep in range(args.repeats):
            for executor in ("process", "ray"):
                out = Path(tmp) / f"{executor}-{rep}"
                t0 = time.perf_counter()
                run_suite(suite, out=out, jobs=args.jobs, quiet=True, executor=executor)
                times[executor].append(time.perf_counter() - t0)
                results[executor] = numbers(out)
    same = results["process"] == results["ray"]
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"suite {suite.name}: {len(suite.cells)} cells, --jobs {args.jobs}, {args.repeats} "
          f"repeat(s) per executor, alternating")
    for k in ("process", "ray"):
        print(f"  {k:<8} wall s: {', '.join(f'{t:.1f}' for t in times[k])} (median {med[k]:.1f})")
    print(f"ratio ray / process (median wall): {med['ray'] / med['process']:.3f}; same numbers: "
          f"{'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
