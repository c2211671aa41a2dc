"""Cost of all membership attacks on one target, relative to one scoring pass of that target.

    python benchmarks/bench_attacks.py [--model smollm2-135m] [--records N] [--run DIR]
                                       [--targets central,proxy,update] [--repeats R] [--threads T]

On a finished run (a small one trained here in a temp dir with ``--model``, ``--records`` records
drawn, 2 clients, ``--rounds`` rounds; or ``--run DIR``), loaded once, in one process, per target:

  (a) one scoring pass: ``target_signals`` over the target's candidates (all members and
      non-members) from an empty signal cache: reading / dequantizing the target's tensors,
      loading them into the model, the forward pass;
  (b) every registered membership attack's ``run`` on that target, one after the other, from an
      empty signal cache except the shared work below: candidates, target signals, scores.

Shared work, done before the timed repeats and not counted in (a) or (b): the reference model's
signals on the candidates (the base model; for ``update`` the broadcast the client started from),
LiRA's shadows (training, shown on its own line, and their signals on the candidates), and the
tokenized candidates. Target (b) / (a) <= 1.2x on the medians over ``--repeats``; the repeats
alternate (a) and (b) so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = 1.2


def train_run(out: Path, *, model: str, records: int, rounds: int) -> None:
    from fedlpp.config import load_config
    from fedlpp.run.simulator import run_federation

    sets = [f"model.name={model}", f"data.max_records={records}", "data.seq_len=32",
            "fed.num_clients=2", f"fed.rounds={rounds}", "fed.local_steps=2", "fed.batch_size=4",
            "eval.max_records=16"]
    run_federation(load_config(None, sets), out=out, quiet=True)


def bench_target(ctx, target: str, *, repeats: int) -> dict:
    """Median seconds of (a) and (b) on ``target``, and the shared work's seconds."""
    from attacks.base import ATTACKS
    from attacks.context import Observation
    from attacks.runner import build_attacks

    names = [n for n in ATTACKS.names() if ATTACKS.get(n).kind == "membership"]
    attacks = build_attacks(names, [f"target={target}"])
    first = attacks[0]
    obs = Observation(first.threat_model, ctx, first.attackers())
    members, nonmembers = first.candidates(obs)
    indices = members + nonmembers
    # the signal caches (ctx._signals is private) are emptied, then only the shared work is put back
    ctx._signals.clear()
    ctx.cache = {k: v for k, v in ctx.cache.items() if not str(k[0]).startswith("membership-")}
    t0 = time.perf_counter()
    first.reference_signals(obs, indices)
    shared = {"reference_s": time.perf_counter() - t0}
    for a in attacks:
        if a.registered_name == "lira":
            reused, t0 = a.shadow_key(obs) in ctx.cache, time.perf_counter()
            shadows = a.shadow_models(obs)
            t1 = time.perf_counter()
            for m in shadows:
                ctx.signals(m, indices)
            shared |= {"shadow_train_s": t1 - t0, "shadow_signals_s": time.perf_counter() - t1,
                       "shadows": len(shadows), "shadow_steps": a.shadow_key(obs)[2],
                       "shadows_reused": reused}
    warm, warm_cache = dict(ctx._signals), dict(ctx.cache)
    one_pass, all_attacks = [], []
    for _ in range(repeats):
        ctx._signals, ctx.cache = dict(warm), dict(warm_cache)
        t0 = time.perf_counter()
        first.target_signals(obs, indices)
        one_pass.append(time.perf_counter() - t0)
        ctx._signals, ctx.cache = dict(warm), dict(warm_cache)
        t0 = time.perf_counter()
        for a in attacks:
            a.run(obs)
        all_attacks.append(time.perf_counter() - t0)
    return {"names": names, "candidates": len(indices), "a": statistics.median(one_pass),
            "b": statistics.median(all_attacks), **shared}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--records", type=int, default=120, help="records drawn for the run made here")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--run", help="a finished run directory to use instead of training one")
    ap.add_argument("--targets", default="central,proxy,update")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (0 = torch's default); with 2+ on a busy machine, spinning "
                         "threads make single passes 10x slower at random")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from attacks.context import AttackContext
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run) if args.run else Path(tmp) / "run"
        if not args.run:
            t0 = time.perf_counter()
            train_run(run_dir, model=args.model, records=args.records, rounds=args.rounds)
            print(f"trained {args.model}: {args.records} records, 2 clients, {args.rounds} "
                  f"round(s) in {time.perf_counter() - t0:.1f} s")
        ctx = AttackContext(run_dir)
        rows = [(t, bench_target(ctx, t, repeats=args.repeats)) for t in args.targets.split(",")]

    import torch

    print(f"model: {ctx.trace.config.model.name}; membership attacks: {', '.join(rows[0][1]['names'])}; "
          f"medians of {args.repeats} repeats; {torch.get_num_threads()} torch thread(s)")
    print(f"{'target':<8} {'records':>7} {'(a) one pass':>13} {'(b) all attacks':>16} "
          f"{'(b)/(a)':>8}  {'target':<7} result   | not counted: reference signals, LiRA shadows")
    for target, r in rows:
        ratio = r["b"] / r["a"]
        train = ("reused" if r.get("shadows_reused") else
                 f"train {r.get('shadow_train_s', 0):.2f} s ({r.get('shadows')} x {r.get('shadow_steps')} steps)")
        lira = f"LiRA {train}, signals {r['shadow_signals_s']:.2f} s" if "shadows" in r else ""
        print(f"{target:<8} {r['candidates']:>7} {r['a']:>11.3f} s {r['b']:>14.3f} s {ratio:>7.2f}x"
              f"  <= {TARGET}x {'PASS' if ratio <= TARGET else 'FAIL'}     | {r['reference_s']:.2f} s; "
              f"{lira}")


if __name__ == "__main__":
    main()
