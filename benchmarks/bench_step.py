"""Cost of one local training step: the trainer (``local_train``) vs a bare peft + torch loop.

    python benchmarks/bench_step.py [--model smollm2-135m] [--shapes 8x32,8x64,16x32]
                                    [--steps 4] [--threads 1] [--bare plain]

For each batch shape B x T, two copies of the same LoRA model train side by side in one process:

  (a) the trainer: ``fedlpp.federation.client.local_train`` itself, on a model from
      ``fedlpp.models.load_model`` (batch slicing, ``trim``, forward, backward, AdamW step,
      ``zero_grad``, the ``on_step`` callback); a step's time runs from the end of one
      ``on_step`` call to the start of the next, so it is everything the loop does per step;
  (b) a bare loop: ``peft.get_peft_model`` on the same base weights with the same LoRA config and
      init seed, a plain ``torch.optim.AdamW`` and ``model(**batch).loss.backward()`` on the same
      rows, sliced before its timer starts.

(b) runs inside (a)'s ``on_step`` callback, so the repetitions alternate A, B, A, B and machine
noise hits both alike; the first ``--warmup`` pairs are not counted; medians are printed, with the
ratio bare / trainer (target >= 0.95: the trainer costs at most ~5 % more than the bare loop).
Both start from the same weights and see the same batches, so their losses must agree; the largest
loss difference over all steps is printed as the check that the comparison is fair.

Batches are KJV verses (``kjv-lm``) encoded by the project's pipeline, keeping only verses of at
least T tokens, so every batch is exactly B x T tokens (``trim`` still runs, and finds nothing to
cut). ``--bare`` runs the bare loop in a variant (another attention kernel, AdamW implementation,
``torch.compile``, two threads, a malloc that keeps freed memory) to measure what it would save;
a ratio below 1 then means the variant is faster, and the loss difference shows whether it
changes results. Both CPU and wall time are shown: with one thread, process CPU time leaves out
the time the process waits for a core on a busy machine, so its ratio is the steadier one.

What the variants showed for SmolLM2-135M at 8 x 32 on a 2-core AVX2 machine shared with other
jobs (1 thread, 6-10 alternating pairs, CPU-time ratios; run-to-run noise is about +-3 %):
forward and backward are 99.5 % of a trainer step (AdamW 0.4 %; slicing, ``trim``, the loss read
and the callback under 0.05 %); ``eager`` attention is ~7 % slower than the default ``sdpa`` and
moves the loss by ~1e-6; ``foreach`` / ``fused`` AdamW are within noise (``fused`` also moves the
loss by ~1e-6); ``compile`` saves ~8 % a step, moves the loss by ~5e-7 and costs ~280 s to compile
(break-even after ~1,400 steps); ``threads2`` is ~4.5x slower, because a second thread that is
descheduled stalls every kernel; ``keep-heap`` removes ~50k page faults a step (the ~50 MB
logits-sized buffers) but its saving stays within noise.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fedlpp.config import DataConfig, LoraConfig, ModelConfig  # noqa: E402
from fedlpp.data import load_dataset  # noqa: E402
from fedlpp.data.encode import encode  # noqa: E402
from fedlpp.federation.client import local_train  # noqa: E402
from fedlpp.models import MODELS, load_model  # noqa: E402
from fedlpp.protocol.records import Step  # noqa: E402
from fedlpp.seeding import seed_torch  # noqa: E402

TARGET = 0.95
LR = 1e-3
SEED = 0
RECORDS = 4000  # verses drawn; those with >= T tokens make the batches
BARE_VARIANTS = ("plain", "foreach", "fused", "eager", "compile", "threads2", "keep-heap")


@contextlib.contextmanager
def variant_settings(bare: str) -> Iterator[None]:
    """Process settings the bare loop's variant runs under, restored for the trainer's steps.

    ``threads2``: two torch threads instead of the benchmark's count. ``keep-heap``: glibc malloc
    neither maps large blocks (logits, ~50 MB at 8 x 32 with a 49k vocabulary) with a fresh
    ``mmap`` nor gives freed memory back, so they are not page-faulted in anew at every step
    (what ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`` would do for a whole process).
    """
    if bare == "threads2":
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            yield
        finally:
            torch.set_num_threads(before)
    elif bare == "keep-heap":
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        libc.mallopt(m_mmap_max, 0)
        libc.mallopt(m_trim_threshold, 2**31 - 1)
        try:
            yield
        finally:
            libc.mallopt(m_mmap_max, 65536)  # glibc's defaults
            libc.mallopt(m_trim_threshold, 128 * 1024)
    else:
        yield


@dataclass
class StepTimes:
    """Per-step seconds and losses of both paths for one batch shape."""

    batch: int
    seq_len: int
    trainer_s: list[float] = field(default_factory=list)
    bare_s: list[float] = field(default_factory=list)
    trainer_cpu: list[float] = field(default_factory=list)  # process CPU seconds
    bare_cpu: list[float] = field(default_factory=list)
    trainer_loss: list[float] = field(default_factory=list)
    bare_loss: list[float] = field(default_factory=list)
    warmup: int = 1
    bare_first_s: float = 0.0  # the bare loop's first step (includes compilation for ``compile``)

    @property
    def trainer(self) -> float:
        return statistics.median(self.trainer_s[self.warmup:])

    @property
    def bare(self) -> float:
        return statistics.median(self.bare_s[self.warmup:])

    def cpu(self, which: str) -> float:
        """Median CPU seconds per step of ``"trainer"`` or ``"bare"``."""
        return statistics.median(getattr(self, f"{which}_cpu")[self.warmup:])

    @property
    def max_loss_diff(self) -> float:
        return max(abs(a - b) for a, b in zip(self.trainer_loss, self.bare_loss, strict=True))


def full_length_rows(model_name: str, tokenizer, *, seq_len: int, min_rows: int) -> dict[str, torch.Tensor]:
    """KJV verses encoded by the project's pipeline, only those filling all ``seq_len`` tokens."""
    ds = load_dataset(DataConfig(name="kjv-lm", seq_len=seq_len, max_records=RECORDS), seed=SEED)
    data = encode(ds.records, tokenizer=tokenizer, task="lm", seq_len=seq_len)
    full = data["attention_mask"].sum(dim=1) == seq_len
    if int(full.sum()) < min_rows or data["input_ids"].shape[1] != seq_len:
        raise SystemExit(f"only {int(full.sum())} of {RECORDS} verses have {seq_len} tokens "
                         f"with {model_name}'s tokenizer; need {min_rows}: use a shorter --seq-len")
    return {k: v[full].contiguous() for k, v in data.items()}


def build_models(model_name: str, *, bare: str = "plain") -> tuple:
    """The trainer's LoRA model (``load_model``) and the bare loop's peft model on the same base.

    Returns ``(trainer_model, bare_model, tokenizer)``; both carry identical weights.
    """
    import peft

    cfg, lora = ModelConfig(name=model_name), LoraConfig(r=8)
    bundle = load_model(cfg, lora, task="lm", seed=SEED)
    kwargs = {"attn_implementation": "eager"} if bare == "eager" else {}
    base, _, targets = MODELS.get(model_name)(cfg, task="lm", num_labels=None)
    if kwargs:
        base.set_attn_implementation(kwargs["attn_implementation"])
    seed_torch(SEED)  # the same LoRA init as load_model's
    bare_model = peft.get_peft_model(base, peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=list(lora.targets) or targets, task_type=peft.TaskType.CAUSAL_LM))
    ours, theirs = bundle.model.state_dict(), bare_model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), \
        "the bare model does not start from the trainer model's weights"
    return bundle.model, bare_model, bundle.tokenizer


def compare_steps(*, trainer_model: torch.nn.Module, bare_model: torch.nn.Module,
                  data: dict[str, torch.Tensor], batch: int, steps: int, warmup: int = 1,
                  bare: str = "plain") -> StepTimes:
    """Train both models ``warmup + steps`` steps on the same batches, alternating A / B.

    Args:
        trainer_model: trained by ``local_train`` (timed per step between ``on_step`` calls).
        bare_model: trained by the bare loop inside ``on_step``, on the rows ``local_train`` used.
        data: encoded rows (all of one length, so every batch has the same shape).
        batch: rows per step.
        steps: timed steps per path; ``warmup`` more come first and are not counted.
        bare: the bare loop's variant (``plain`` = what the comparison is about).

    Returns:
        The per-step seconds and losses of both paths.
    """
    seq_len = int(data["input_ids"].shape[1])
    res = StepTimes(batch=batch, seq_len=seq_len, warmup=warmup)
    bare_model.train()
    params = [p for p in bare_model.parameters() if p.requires_grad]
    opt_kwargs = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(bare, {})
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, **opt_kwargs)  # as local_train
    forward = torch.compile(bare_model) if bare == "compile" else bare_model
    last = [time.perf_counter(), time.process_time()]

    def on_step(step: Step) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        res.trainer_s.append(now - last[0])
        res.trainer_cpu.append(cpu - last[1])
        res.trainer_loss.append(step.loss)
        rows = torch.tensor(step.batch)
        inputs = {k: v[rows] for k, v in data.items()}  # the same rows, sliced off the clock
        with variant_settings(bare):
            t0, c0 = time.perf_counter(), time.process_time()
            loss = forward(**inputs).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            res.bare_s.append(time.perf_counter() - t0)
            res.bare_cpu.append(time.process_time() - c0)
        res.bare_loss.append(float(loss.detach()))
        last[0], last[1] = time.perf_counter(), time.process_time()

    local_train(model=trainer_model, data=data, steps=warmup + steps, batch_size=batch, lr=LR,
                seed=SEED, on_step=on_step)
    res.bare_first_s = res.bare_s[0]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m; tiny-llama for a quick check")
    ap.add_argument("--shapes", default="8x32,8x64,16x32",
                    help="comma-separated BxT batch shapes; the first is the headline comparison")
    ap.add_argument("--batch", type=int, help="B of a single shape (with --seq-len; overrides --shapes)")
    ap.add_argument("--seq-len", type=int, help="T of a single shape (with --batch)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per path and shape")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per path first")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (0 = torch's default); on a shared machine a second "
                         "thread that gets descheduled stalls every kernel")
    ap.add_argument("--bare", choices=BARE_VARIANTS, default="plain",
                    help="run the bare loop in a variant to measure what it would change")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch or args.seq_len:
        shapes = [(args.batch or 8, args.seq_len or 32)]
    else:
        shapes = [tuple(int(x) for x in s.lower().split("x")) for s in args.shapes.split(",")]

    t0 = time.perf_counter()
    trainer_model, bare_model, tokenizer = build_models(args.model, bare=args.bare)
    load_s = time.perf_counter() - t0
    rows = []
    for b, t in shapes:
        data = full_length_rows(args.model, tokenizer, seq_len=t, min_rows=b)
        rows.append(compare_steps(trainer_model=trainer_model, bare_model=bare_model, data=data,
                                  batch=b, steps=args.steps, warmup=args.warmup, bare=args.bare))

    print(f"model: {args.model} (LoRA r=8, default targets); torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {torch.backends.cpu.get_cpu_capability()}; "
          f"bare loop: {args.bare}; medians of {args.steps} alternating steps per path after "
          f"{args.warmup} warm-up; two models loaded in {load_s:.1f} s")
    print(f"{'':>8} {'wall s/step':^27} {'CPU s/step':^27}")
    print(f"{'B':>3} {'T':>4} {'trainer':>8} {'bare':>8} {'ratio':>7}   {'trainer':>8} {'bare':>8} "
          f"{'ratio':>7} {'tokens/s':>9} {'max|dloss|':>10}  bare/trainer (CPU) >= {TARGET}")
    for r in rows:
        wall, cpu = r.bare / r.trainer, r.cpu("bare") / r.cpu("trainer")
        print(f"{r.batch:>3} {r.seq_len:>4} {r.trainer:>8.3f} {r.bare:>8.3f} {wall:>7.3f}   "
              f"{r.cpu('trainer'):>8.3f} {r.cpu('bare'):>8.3f} {cpu:>7.3f} "
              f"{r.batch * r.seq_len / r.cpu('trainer'):>9.0f} {r.max_loss_diff:>10.1e}  "
              f"{'PASS' if cpu >= TARGET else 'FAIL'}")
    print("ratio = bare / trainer; CPU = process CPU seconds (robust to a busy machine: time spent "
          "descheduled does not count); tokens/s = B*T per trainer CPU second")
    if args.bare == "compile":
        print(f"compile: first bare step {rows[0].bare_first_s:.1f} s (compilation included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
