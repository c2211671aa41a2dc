"""Observers of the round driver: the console (progress bar, one line per round) and the timer.

The driver calls the same named hooks on every observer, in this order: ``on_start`` once,
``on_evaluate(0)`` (the base model), then per round ``on_round_start``, ``on_broadcast``,
``on_step`` (each local training step, with its batch's record ids), ``on_verdict`` (each upload
the server judged), ``on_evaluate`` and ``on_round``;
``on_end`` once, also when the run fails. The trace writer (:mod:`fedlpp.run.trace`)
is one too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from fedlpp.federation.broadcast import Broadcast
from fedlpp.methods import ServerPart
from fedlpp.protocol.records import RoundRecord, RunResult, Step, Verdict
from fedlpp.run.context import RunContext


class Observer:
    """Base class: every hook does nothing."""

    def on_start(self, ctx: RunContext, server: ServerPart) -> None: ...

    def on_round_start(self, rnd: int, clients: Sequence[int]) -> None: ...

    def on_broadcast(self, rnd: int, sent: Broadcast) -> None: ...

    def on_step(self, rnd: int, client: int, step: Step) -> None: ...

    def on_verdict(self, rnd: int, verdict: Verdict) -> None: ...

    def on_evaluate(self, rnd: int) -> None: ...

    def on_round(self, record: RoundRecord) -> None: ...

    def on_end(self, result: RunResult, server: ServerPart) -> None: ...


class Observers(Observer):
    """Calls each hook on every observer, in order."""

    def __init__(self, *observers: Observer) -> None:
        self.all = list(observers)

    def on_start(self, ctx: RunContext, server: ServerPart) -> None:
        for o in self.all:
            o.on_start(ctx, server)

    def on_round_start(self, rnd: int, clients: Sequence[int]) -> None:
        for o in self.all:
            o.on_round_start(rnd, clients)

    def on_broadcast(self, rnd: int, sent: Broadcast) -> None:
        for o in self.all:
            o.on_broadcast(rnd, sent)

    def on_step(self, rnd: int, client: int, step: Step) -> None:
        for o in self.all:
            o.on_step(rnd, client, step)

    def on_verdict(self, rnd: int, verdict: Verdict) -> None:
        for o in self.all:
            o.on_verdict(rnd, verdict)

    def on_evaluate(self, rnd: int) -> None:
        for o in self.all:
            o.on_evaluate(rnd)

    def on_round(self, record: RoundRecord) -> None:
        for o in self.all:
            o.on_round(record)

    def on_end(self, result: RunResult, server: ServerPart) -> None:
        for o in self.all:
            o.on_end(result, server)


class Timer(Observer):
    """Wall time of set-up, the base evaluation and each round (training steps and evaluation
    apart), for the per-round overhead benchmark. Put it first, so the others' work (writing
    the trace) counts as the engine's overhead."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.marks: dict[str, float] = {}
        self.rounds: list[dict[str, float]] = []
        self._train_s = 0.0

    def on_round_start(self, rnd: int, clients: Sequence[int]) -> None:
        self.marks.setdefault("ready", time.perf_counter())
        self.marks["round"], self._train_s = time.perf_counter(), 0.0

    def on_step(self, rnd: int, client: int, step: Step) -> None:
        self._train_s += step.seconds

    def on_evaluate(self, rnd: int) -> None:
        self.marks["eval" if rnd else "base_eval"] = time.perf_counter()

    def on_round(self, record: RoundRecord) -> None:
        now = time.perf_counter()
        self.rounds.append({"round_s": now - self.marks["round"], "train_s": self._train_s,
                            "eval_s": now - self.marks["eval"]})

    def summary(self, *, model_load_s: float) -> dict[str, Any]:
        ready = self.marks.get("ready", time.perf_counter())
        return {"setup_s": ready - self.t0, "model_load_s": model_load_s,
                "base_eval_s": ready - self.marks.get("base_eval", ready), "rounds": self.rounds}


class Console(Observer):
    """A progress bar over local training steps (unless ``quiet``) and, with ``echo``, one line
    per round."""

    def __init__(self, *, quiet: bool, echo: bool) -> None:
        self.quiet, self.echo = quiet, echo
        self.bar: Any = None

    def on_start(self, ctx: RunContext, server: ServerPart) -> None:
        from fedlpp.federation.client import num_local_steps

        self.ctx, self.steps = ctx, num_local_steps
        self.bar = tqdm(total=0, disable=self.quiet, desc=f"round 0/{ctx.cfg.fed.rounds}",
                        unit="step", leave=False)

    def on_round_start(self, rnd: int, clients: Sequence[int]) -> None:
        fed = self.ctx.cfg.fed
        self.bar.set_description(f"round {rnd}/{fed.rounds}")
        self.bar.total += sum(self.steps(fed, num_examples=len(self.ctx.splits.members[c]))
                              for c in clients)

    def on_step(self, rnd: int, client: int, step: Step) -> None:
        self.bar.update(1)

    def on_round(self, record: RoundRecord) -> None:
        if not self.echo:
            return
        metric = "perplexity" if self.ctx.task == "lm" else "accuracy"
        util = (f"central {metric} {record.central[metric]:.4g} | "
                f"proxy {metric} {record.proxy[metric]:.4g} | " if record.central else "")
        if record.validation:
            util += f"validation loss {record.validation['central']['loss']:.4f} | "
        rejected = [r["client"] for r in record.rejected]
        line = (f"round {record.round}: {util}down {record.bytes_down:,} B | "
                f"up {record.bytes_up:,} B" + (f" | rejected {rejected}" if rejected else "")
                + (f" | update refused ({record.refused['reason']})" if record.refused else ""))
        if self.quiet:  # stdout stays for what the command prints (`train --quiet`: JSON)
            print(line, file=sys.stderr)
        else:
            self.bar.write(line)

    def on_end(self, result: RunResult, server: ServerPart) -> None:
        if self.bar is not None:
            self.bar.close()
