"""Cost of a DP-SGD step (the ``dp-sgd`` defense's trainer) vs a plain LoRA step.

    python benchmarks/bench_dp.py [--model smollm2-135m] [--batch 8] [--seq-len 32]
                                  [--blocks 4] [--steps 3] [--threads 1]

One LoRA model, one batch shape B x T of full-length KJV verses. The two trainers run in
alternating blocks (plain, DP, plain, DP, ...) of ``--steps`` steps each, from the same weights:

  plain: ``fedlpp.federation.client.local_train`` (HF token-mean loss, AdamW);
  DP:    ``fedlpp.defenses.dp_train.dp_local_train`` with opacus' per-sample hooks on the LoRA
         tensors, per-sequence losses, per-sample clipping, Gaussian noise (fixed-size batches,
         so both see B records a step).

A step's time runs from one ``on_step`` call to the next, so the first step of every block (which
also pays for attaching opacus' hooks, once per client round in a real run) is not counted and is
printed apart. Process CPU time is the headline (one thread: time spent descheduled on a busy
machine does not count); medians over all counted steps; the ratio DP / plain (target <= 1.5).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_step import full_length_rows  # noqa: E402
from fedlpp.config import LoraConfig, ModelConfig  # noqa: E402
from fedlpp.defenses.dp_train import dp_local_train  # noqa: E402
from fedlpp.federation.client import local_train  # noqa: E402
from fedlpp.models import load_model, load_state, trainable_state  # noqa: E402

TARGET = 1.5
LR = 1e-3


def timed_block(train, **kw) -> tuple[list[float], list[float], float]:
    """Run ``train`` for its steps; returns (CPU s, wall s) of each step after the first, and the
    first step's CPU seconds (set-up included)."""
    marks = [(time.process_time(), time.perf_counter())]
    train(on_step=lambda _s: marks.append((time.process_time(), time.perf_counter())), **kw)
    cpu = [b[0] - a[0] for a, b in zip(marks, marks[1:], strict=False)]
    wall = [b[1] - a[1] for a, b in zip(marks, marks[1:], strict=False)]
    return cpu[1:], wall[1:], cpu[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m; tiny-llama for a quick check")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=4, help="alternating blocks per trainer")
    ap.add_argument("--steps", type=int, default=3, help="steps per block (the first is not counted)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--noise", type=float, default=1.0, help="DP noise multiplier")
    ap.add_argument("--clip", type=float, default=1.0, help="DP per-sample clipping norm")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = load_model(ModelConfig(name=args.model), LoraConfig(r=8), task="lm", seed=0)
    model = bundle.model
    data = full_length_rows(args.model, bundle.tokenizer, seq_len=args.seq_len,
                            min_rows=args.batch * args.steps)
    start = {n: t.clone() for n, t in trainable_state(model).items()}
    common = {"model": model, "data": data, "steps": args.steps, "batch_size": args.batch,
              "lr": LR, "seed": 0}
    times: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": [], "first": []}
                                                for k in ("plain", "dp")}
    for _ in range(args.blocks):
        for name, train, extra in (
                ("plain", local_train, {}),
                ("dp", dp_local_train, {"noise_multiplier": args.noise,
                                        "max_grad_norm": args.clip, "poisson": False})):
            load_state(model, {n: t.clone() for n, t in start.items()})
            cpu, wall, first = timed_block(train, **common, **extra)
            times[name]["cpu"] += cpu
            times[name]["wall"] += wall
            times[name]["first"].append(first)
    med = {k: {m: statistics.median(v[m]) for m in v} for k, v in times.items()}
    ratio_cpu = med["dp"]["cpu"] / med["plain"]["cpu"]
    ratio_wall = med["dp"]["wall"] / med["plain"]["wall"]
    counted = len(times["dp"]["cpu"])
    print(f"model: {args.model} (LoRA r=8), batch {args.batch} x {args.seq_len} tokens; torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s); {args.blocks} alternating "
          f"blocks x {args.steps} steps, {counted} counted steps per trainer; DP: opacus hooks, "
          f"noise {args.noise}, clip {args.clip}")
    print(f"{'':>6} {'CPU s/step':>11} {'wall s/step':>12} {'first step CPU s':>17}")
    for k in ("plain", "dp"):
        print(f"{k:>6} {med[k]['cpu']:>11.3f} {med[k]['wall']:>12.3f} {med[k]['first']:>17.3f}")
    print(f"ratio DP / plain: CPU {ratio_cpu:.3f}, wall {ratio_wall:.3f} (target <= {TARGET}: "
          f"{'PASS' if ratio_cpu <= TARGET else 'FAIL'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
