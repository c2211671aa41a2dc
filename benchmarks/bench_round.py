"""Round-loop costs of the simulator, as ratios measured side by side in one run.

    python benchmarks/bench_round.py [--model smollm2-135m] [--clients 100]

Prints:
  * per-round overhead: (round wall time - time in client training steps - evaluation) / round
    wall time, for scopes `adapter` and `full` (target <= 5 %);
  * peak RSS of a 100-client round vs a process holding the base model + 100 adapters
    (target <= 1.1x), each measured in its own fresh process (the reference touches every
    weight: safetensors are memory-mapped, and pages never read would not count);
  * start-up to the first round, excluding the model load and the base evaluation (target <= 1 s),
    with the import time of the stack shown beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line (ru_maxrss included)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "PYTHONPATH": str(HERE.parent)}
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True, text=True,
                             env=env, check=False)
    if out.returncode != 0:
        sys.exit(f"benchmark child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


RUN = """
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from fedlpp.config import load_config
from fedlpp.run.simulator import run_federation
import_s = time.perf_counter() - t0
cfg = load_config(None, {sets!r})
res = run_federation(cfg, out=Path(sys.argv[1]), quiet=True)
t = res["meta"]["timing"]
print(json.dumps({{"import_s": import_s, "timing": t,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""

REFERENCE = """
import json, resource
from fedlpp.config import load_config
from fedlpp.data import load_dataset
from fedlpp.models import load_model, trainable_state
cfg = load_config(None, {sets!r})
ds = load_dataset(cfg.data, seed=cfg.seed)
bundle = load_model(cfg.model, cfg.lora, task=ds.task, num_labels=None, seed=0)
# weights load memory-mapped: touch every page so the base model is really held in memory
checksum = sum(float(p.detach().double().sum()) for p in bundle.model.parameters())
adapters = [trainable_state(bundle.model) for _ in range({clients})]
print(json.dumps({{"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def overhead(model: str, scope: str, rounds: int) -> tuple[float, dict]:
    sets = [f"model.name={model}", f"quant.scope={scope}", f"fed.rounds={rounds}",
            "fed.num_clients=4", "fed.local_steps=4", "fed.batch_size=8", "data.seq_len=64",
            "data.max_records=400", "eval.max_records=32", "trace.masters=all"]
    r = _child(RUN.format(sets=sets))
    fracs = [(x["round_s"] - x["train_s"] - x["eval_s"]) / x["round_s"] for x in r["timing"]["rounds"]]
    return statistics.median(fracs), r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=["overhead", "rss"], help="run one part")
    args = ap.parse_args()

    rows = []
    startup = None
    for scope in ("adapter", "full") if args.only != "rss" else ():
        frac, r = overhead(args.model, scope, args.rounds)
        rows.append((f"per-round overhead, scope {scope}", frac * 100, "%", "<= 5 %", frac <= 0.05))
        if startup is None:
            t = r["timing"]
            startup = (t["setup_s"] - t["model_load_s"] - t["base_eval_s"], r["import_s"])

    if args.only == "overhead":
        _print(rows, startup, args.model, "")
        return
    sets = [f"model.name={args.model}", f"fed.num_clients={args.clients}", "fed.rounds=1",
            "fed.local_steps=1", "fed.batch_size=2", "data.seq_len=32",
            f"data.max_records={args.clients * 4}", "data.test_fraction=0.05",
            "eval.max_records=16", "trace.payloads=false", "trace.updates=false",
            "trace.masters=none"]
    fed_rss = _child(RUN.format(sets=sets))["maxrss_kb"]
    ref_rss = _child(REFERENCE.format(sets=sets, clients=args.clients))["maxrss_kb"]
    ratio = fed_rss / ref_rss
    rows.append((f"peak RSS {args.clients} clients / (base + {args.clients} adapters)", ratio, "x",
                 "<= 1.1x", ratio <= 1.1))
    _print(rows, startup, args.model,
           f"RSS {fed_rss / 1024:.0f} MiB vs {ref_rss / 1024:.0f} MiB; ")


def _print(rows: list, startup: tuple[float, float] | None, model: str, extra: str) -> None:
    if startup is not None:
        rows.append(("start-up to round 1 (no model load, no base eval)", startup[0], "s",
                     "<= 1 s", startup[0] <= 1.0))
        extra += f"importing the stack took {startup[1]:.1f} s (not counted)"
    print(f"model: {model}; {extra}")
    print(f"{'measure':<58} {'value':>9}  {'target':<8} result")
    for name, value, unit, target, ok in rows:
        print(f"{name:<58} {value:>8.3g}{unit:<1}  {target:<8} {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
