"""A round's local training: the clients batched (one computation) vs one after another.

    python benchmarks/bench_batched.py [--model smollm2-135m] [--clients 4] [--batch 8]
                                       [--seq 32] [--steps 2] [--reps 3] [--threads 1]
                                       [--device cpu|cuda]

Both paths train every client of one round from the same start (the round's broadcast) on the
same records, each client with its own seeded batch order, as the simulator does: (a)
``fedlpp.federation.client.local_train`` per client, one after another; (b)
``fedlpp.federation.batched.train_batched`` for all of them at once. Repetitions alternate
(a, b, a, b, ...) so machine noise hits both alike; the first pair is a warm-up. Printed: median
wall and CPU seconds of a round for each, their ratios (sequential / batched: > 1 means batched
is faster), the process's peak resident memory while each path runs (sampled every 5 ms; the
model and data are part of both) and their ratio, and the agreement of the two paths' results (largest loss difference;
largest difference of a client's trained tensors relative to its update), which must be at
float-rounding level for the comparison to be fair.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fedlpp.config import load_config  # noqa: E402
from fedlpp.data.encode import pad_id  # noqa: E402
from fedlpp.federation.batched import ClientJob, train_batched, unbatchable_reason  # noqa: E402
from fedlpp.federation.client import local_train  # noqa: E402
from fedlpp.models import load_state, trainable_state  # noqa: E402
from fedlpp.run.context import prepare_run  # noqa: E402


class PeakRSS:
    """The highest resident set size of this process seen while the block runs (``peak``)."""

    def __enter__(self) -> PeakRSS:
        self.proc = psutil.Process()
        self.peak, self._stop = self.proc.memory_info().rss, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", default="kjv-lm")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    records = args.clients * args.batch * 3
    cfg = load_config(None, [f"model.name={args.model}", f"data.name={args.data}",
                             f"data.max_records={records * 2}", f"data.seq_len={args.seq}",
                             f"fed.num_clients={args.clients}", f"fed.batch_size={args.batch}",
                             f"fed.local_steps={args.steps}", f"system.device={args.device}"])
    ctx = prepare_run(cfg)
    model, fed = ctx.bundle.model, ctx.cfg.fed
    print(f"{args.model} {args.data}: {args.clients} clients x batch {args.batch} x {args.seq} "
          f"tokens, {args.steps} steps, {args.threads} thread(s), {args.device}; batched path: "
          f"{unbatchable_reason(model) or 'applies'}")
    if unbatchable_reason(model):
        return  # e.g. MiniLM (dropout in training): the batched path would not be the same run
    start = trainable_state(model)
    seeds = [1000 + c for c in range(args.clients)]

    def sequential() -> list[tuple[dict, list[float]]]:
        out = []
        for c in range(args.clients):
            load_state(model, start)
            losses = local_train(model=model, data=ctx.client_data[c], steps=args.steps,
                                 batch_size=fed.batch_size, lr=fed.lr, seed=seeds[c])
            out.append((trainable_state(model), losses))
        return out

    def batched() -> list[tuple[dict, list[float]]]:
        load_state(model, start)
        jobs = [ClientJob(data=ctx.client_data[c], steps=args.steps, seed=seeds[c])
                for c in range(args.clients)]
        return train_batched(model=model, jobs=jobs, start=start, batch_size=fed.batch_size,
                             lr=fed.lr, weight_decay=0.0, task=ctx.task,
                             pad_id=pad_id(ctx.bundle.tokenizer))

    times: dict[str, list[tuple[float, float]]] = {"sequential": [], "batched": []}
    memory: dict[str, int] = {"sequential": 0, "batched": 0}
    results = {}
    for rep in range(args.reps + 1):
        for name, fn in (("sequential", sequential), ("batched", batched)):
            w0, c0 = time.perf_counter(), time.process_time()
            with PeakRSS() as rss:
                results[name] = fn()
            if rep:  # the first pair warms up allocators and kernels
                times[name].append((time.perf_counter() - w0, time.process_time() - c0))
                memory[name] = max(memory[name], rss.peak)
    report(times, memory, results, start=start)


def report(times: dict[str, list[tuple[float, float]]], memory: dict[str, int],
           results: dict[str, list[tuple[dict, list[float]]]], *, start: dict) -> None:
    """Print the medians, the ratios and the two paths' agreement."""
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    for k in times:
        print(f"  {k:10s} wall {wall[k]:8.3f} s   cpu {cpu[k]:8.3f} s   peak RSS {memory[k] / 2**20:7.1f} MiB")
    print(f"  ratio sequential/batched: wall {wall['sequential'] / wall['batched']:.3f}, "
          f"cpu {cpu['sequential'] / cpu['batched']:.3f}; peak memory batched/sequential "
          f"{memory['batched'] / max(memory['sequential'], 1):.3f}")
    loss_diff = max(abs(a - b) for (_, la), (_, lb) in zip(results["sequential"], results["batched"], strict=True)
                    for a, b in zip(la, lb, strict=True))
    rel = max(float((s[n] - b[n]).norm() / (s[n] - start[n]).norm().clamp_min(1e-30))
              for (s, _), (b, _) in zip(results["sequential"], results["batched"], strict=True) for n in s)
    print(f"  agreement: largest loss difference {loss_diff:.2e}; largest tensor difference "
          f"relative to the client's update {rel:.2e}")


if __name__ == "__main__":
    main()
