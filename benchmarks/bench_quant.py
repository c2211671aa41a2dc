"""Quantize + pack throughput of ``nf`` / ``uniform`` vs bitsandbytes nf4, side by side.

    python benchmarks/bench_quant.py [--numel N [N ...]] [--repeats R]

For each tensor size, the same float32 tensor is quantized by bnb's ``quantize_4bit`` (nf4,
block 64) and by ``nf`` / ``uniform`` at 2, 3, 4 and 8 bits (block 64), interleaved round-robin
in every repeat so that machine noise hits all of them alike. Each time is ``quantize()``
end to end: absmax, rounding and bit packing (bnb's time includes its 4-bit packing too).
Prints median times, throughput and the ratio ours / bnb with PASS when it is >= 1.0x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fedlpp.quant import build_quantizer  # noqa: E402

TARGET = 1.0
BLOCK = 64


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(*, numel: int, repeats: int) -> list[tuple[str, float, float]]:
    """Median seconds per call for bnb nf4 and each of ours; rows are (label, seconds, ratio)."""
    import bitsandbytes.functional as bnbf

    x = torch.randn(numel, generator=torch.Generator().manual_seed(0))
    cases: dict[str, Callable[[], object]] = {
        "bnb nf4 (4 bit)": lambda: bnbf.quantize_4bit(x, blocksize=BLOCK, quant_type="nf4")}
    for name in ("nf", "uniform"):
        for bits in (2, 3, 4, 8):
            q = build_quantizer(name, bits=bits, block_size=BLOCK)
            cases[f"{name} {bits} bit"] = lambda q=q: q.quantize(x)
    times: dict[str, list[float]] = {label: [] for label in cases}
    for fn in cases.values():  # warm-up: first-touch allocations, lazy imports, tables
        fn()
    for _ in range(repeats):
        for label, fn in cases.items():
            times[label].append(_time(fn))
    medians = {label: statistics.median(ts) for label, ts in times.items()}
    base = medians["bnb nf4 (4 bit)"]
    return [(label, sec, base / sec) for label, sec in medians.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, nargs="+", default=[4 << 20, 16 << 20],
                        help="tensor sizes (default 4M and 16M elements)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per case (median)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, block {BLOCK}, "
          f"median of {args.repeats}; target ours/bnb >= {TARGET:.1f}x")
    failed = 0
    for numel in args.numel:
        rows = bench(numel=numel, repeats=args.repeats)
        print(f"\nnumel = {numel:,}")
        print(f"{'quantizer':<18}{'median ms':>10}{'Melem/s':>10}{'vs bnb':>9}  result")
        for label, sec, ratio in rows:
            verdict = "" if label.startswith("bnb") else ("PASS" if ratio >= TARGET else "FAIL")
            failed += verdict == "FAIL"
            print(f"{label:<18}{sec * 1e3:>10.1f}{numel / sec / 1e6:>10.1f}{ratio:>8.2f}x  {verdict}")
    print(f"\n{'all PASS' if not failed else f'{failed} FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
