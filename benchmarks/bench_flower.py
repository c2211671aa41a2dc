"""A Flower simulation vs the in-process simulator on the same run, side by side in one run.

    python benchmarks/bench_flower.py [--model smollm2-135m] [--rounds 1 4] [--repeats 2]

Runs the same config with each engine at two round counts, alternating (simulator, flower,
simulator, flower, ...), each into a fresh directory. Per-round time of an engine = (wall at the
larger round count - wall at the smaller) / (difference in rounds): Flower's fixed start-up (Ray,
the SuperLink in memory, each ClientApp preparing the run once) cancels out, as does model
loading. Prints each wall time, the medians, the per-round overhead of Flower over the simulator
(target <= 10 %), and whether both engines wrote the same numbers.

The simulator trains the round's clients one after the other with torch's threads. By default
(``--cpus-per-client 1``, as ``fedlpp train --engine flower`` runs) Flower's workers train them in
parallel, one thread each: the same cores used differently. With ``--cpus-per-client`` equal to
the machine's cores, Flower trains them one at a time with every thread, like the simulator, so
the difference is Flower's own per-round cost. Measured on 2 cores, SmolLM2-135M, rounds 1 vs 3:
1.015 (parallel, 2 repeats) and 1.223 (one at a time, 3 repeats); in the latter the clients'
training took the same time as in the simulator and the server's evaluation about 50 % longer.
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

from fedlpp.config import load_config  # noqa: E402
from fedlpp.flower.simulation import run_flower_simulation  # noqa: E402
from fedlpp.run.simulator import run_federation  # noqa: E402

SETS = ["data.name=kjv-lm", "data.max_records=160", "data.seq_len=32", "fed.num_clients=2",
        "fed.local_steps=4", "fed.batch_size=8", "fed.lr=3e-3", "eval.max_records=16",
        "quant.bits=2"]
NUMBERS = ("status", "final", "final_records", "selection", "rounds", "comm")


def run(engine: str, sets: list[str], out: Path, *, cpus: float) -> tuple[float, dict]:
    cfg = load_config(None, sets)
    t0 = time.perf_counter()
    if engine == "flower":
        result = run_flower_simulation(cfg, out=out, num_cpus_per_client=cpus)
    else:
        result = run_federation(cfg, out=out, quiet=True, echo=False)
    return time.perf_counter() - t0, {k: result.get(k) for k in NUMBERS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="model.name (tiny-llama: no download)")
    ap.add_argument("--rounds", type=int, nargs=2, default=[1, 4], metavar=("FEW", "MANY"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cpus-per-client", type=int, default=1,
                    help="Ray CPUs per Flower client (1: clients in parallel, as the engine "
                         "runs; all cores: one client at a time, like the simulator)")
    args = ap.parse_args(argv)
    few, many = args.rounds
    if not 0 < few < many:
        raise SystemExit(f"--rounds {few} {many}: need 0 < FEW < MANY")
    walls: dict[tuple[str, int], list[float]] = {}
    numbers: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="fedlpp-bench-flower-") as tmp:
        for rep in range(args.repeats):
            for rounds in (few, many):
                for engine in ("simulator", "flower"):
                    sets = [f"model.name={args.model}", *SETS, f"fed.rounds={rounds}"]
                    wall, got = run(engine, sets, Path(tmp) / f"{engine}-{rounds}-{rep}",
                                    cpus=args.cpus_per_client)
                    walls.setdefault((engine, rounds), []).append(wall)
                    if rounds == many:
                        numbers[engine] = got
                    print(f"  {engine:<9} {rounds} round(s), repeat {rep}: {wall:.1f} s",
                          flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    per_round = {e: (med[(e, many)] - med[(e, few)]) / (many - few) for e in ("simulator", "flower")}
    same = numbers["simulator"] == numbers["flower"]
    print(f"model {args.model}, 2 clients, rounds {few} vs {many}, {args.repeats} repeat(s), "
          f"alternating, {args.cpus_per_client} CPU(s) per Flower client; medians:")
    for e in ("simulator", "flower"):
        print(f"  {e:<9} {few} round(s) {med[(e, few)]:.1f} s, {many} rounds {med[(e, many)]:.1f} s,"
              f" per round {per_round[e]:.2f} s")
    print(f"flower fixed start-up over the simulator: "
          f"{med[('flower', few)] - med[('simulator', few)] - (per_round['flower'] - per_round['simulator']) * few:.1f} s")
    print(f"per-round ratio flower / simulator: {per_round['flower'] / per_round['simulator']:.3f} "
          f"(target <= 1.10); same numbers: {'yes' if same else 'NO'}")
    print(json.dumps({"per_round_s": per_round, "same_numbers": same}))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
