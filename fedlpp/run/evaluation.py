"""A run's utility measurements: the learning curve, the validation loss that picks the reported
round, and the final evaluation of that round on the whole test split.

Every evaluated round measures central and proxy on the curve's test records and central on the
validation records; the state of the best round so far (its master and the broadcast made from
it) is kept in memory, so the final evaluation needs no second pass over the rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fedlpp.protocol.records import RoundRecord
from fedlpp.run.context import RunContext
from fedlpp.run.selection import convergence, select_round


@dataclass
class Selected:
    """The reported round's state: its master and the broadcast made from it (what every client
    receives next: the proxy). The trace keeps them as the run's final master and payload."""

    round: int
    master: dict[str, torch.Tensor]  # trainable tensors only (static ones never change)
    broadcast: Any


class Evaluation:
    """Measures each evaluated round of one run and decides which round it reports."""

    def __init__(self, ctx: RunContext, *, master: dict[str, torch.Tensor]) -> None:
        """Measure the untrained model (round 0) with ``master`` the server's initial master."""
        self.ctx = ctx
        self.static = {n: master[n] for n in ctx.static}
        self.initial = {n: t.detach().clone() for n, t in master.items() if n not in self.static}
        self.base = ctx.utility(master)
        self.val_loss: dict[int, float] = {}
        self.evaluated: list[int] = []  # the trained rounds measured so far
        self.start = {"central": ctx.utility(master, on="curve"), **self._validation(0, master)}
        self.best: Selected | None = None  # the best round so far: the one reported

    def _validation(self, rnd: int, master: dict[str, torch.Tensor]) -> dict[str, Any]:
        if self.ctx.val_data is None:
            return {}
        central = self.ctx.utility(master, on="validation")
        self.val_loss[rnd] = central["loss"]
        return {"validation": {"central": central}}

    def measure(self, record: RoundRecord, *, master: dict[str, torch.Tensor],
                upcoming: Any) -> None:
        """Fill ``record`` (central and proxy on the curve's records, central on validation)
        and keep this round's state while it is the best candidate."""
        rnd = record.round
        record.central = self.ctx.utility(master, on="curve")
        record.proxy = self.ctx.utility(upcoming.proxy, on="curve")
        record.validation = self._validation(rnd, master).get("validation")
        self.evaluated.append(rnd)
        best = self._selection()["round"]
        if best == rnd:
            trainable = {n: t.detach().clone() for n, t in master.items() if n not in self.static}
            self.best = Selected(rnd, trainable, upcoming)

    def _selection(self) -> dict[str, Any]:
        if self.ctx.cfg.eval.select == "validation" and self.val_loss:
            return select_round(self.val_loss, by="validation")
        return select_round(dict.fromkeys(self.evaluated, 0.0), by="last")

    def outcome(self) -> dict[str, Any]:
        """``final`` (test utility of the reported round and of the untrained model),
        ``final_records`` (their per-record results), ``start``, ``selection``,
        ``convergence`` and the ``selected`` state."""
        selection, selected = self._selection(), self.best
        assert selected is not None and selected.round == selection["round"]
        central = {**self.static, **selected.master}
        proxy = selected.broadcast.proxy
        ev = self.ctx.cfg.eval
        conv = (convergence(self.val_loss, last_rounds=ev.converge_rounds, share=ev.converge_share)
                if self.val_loss else
                {"converged": None, "reason": "no validation split (data.val_fraction = 0)"})
        return {"final": {"central": self.ctx.utility(central), "proxy": self.ctx.utility(proxy),
                          "base": self.base},
                "final_records": self._records(central=central, proxy=proxy),
                "start": self.start, "selection": selection, "convergence": conv,
                "selected": selected}

    def _records(self, **models: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Per test record, for paired comparisons: summed loss, tokens, correct (cls)."""
        ctx = self.ctx
        labels = ctx.test_data["labels"]
        out: dict[str, Any] = {"ids": ctx.splits.test[: len(labels)]}
        for name, tensors in {**models, "base": {**self.static, **self.initial}}.items():
            losses, counts, preds = ctx.record_losses(tensors)
            entry = {"loss": losses.double().tolist(), "count": counts.tolist()}
            if preds is not None:
                entry["correct"] = (preds == labels).int().tolist()
            out[name] = entry
        return out
