"""The typed records of a run: what a client produces and sends, what the server made of each
upload, one round, the whole run. ``to_dict()`` gives the ``result.json`` schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Step:
    """One local optimizer step: which rows of the client's data were in its batch (positions;
    the client step turns them into dataset record ids), its loss and its seconds."""

    batch: list[int]
    loss: float
    seconds: float


@dataclass
class LocalUpdate:
    """A client's trained private tensors before encoding (what an adversarial client edits)."""

    tensors: dict[str, torch.Tensor]
    num_examples: int
    train_loss: float


@dataclass
class Upload:
    """What reached the server from one client: its message, or why there is none."""

    client: int
    data: bytes | None
    error: str | None = None  # the client failed before sending (its exception, one line)

    @property
    def nbytes(self) -> int:
        return len(self.data) if self.data is not None else 0


@dataclass
class Verdict:
    """What the server made of one upload. ``tensors`` (the decoded update) is kept only while
    observers look at it; the server drops it after adding it to the aggregate."""

    client: int
    accepted: bool
    reason: str | None = None
    num_examples: int | None = None
    train_loss: float | None = None
    nbytes: int = 0
    tensors: dict[str, torch.Tensor] | None = field(default=None, repr=False)


@dataclass
class RoundRecord:
    """One round as recorded in ``result.json`` (``central``/``proxy`` only when evaluated)."""

    round: int
    clients: list[int]
    rejected: list[dict[str, Any]]
    refused: dict[str, Any] | None  # the round's update was not applied: reason and clients
    bytes_down: int
    bytes_down_per_client: int
    bytes_up: int
    train_loss: float | None
    central: dict[str, float] | None = None  # on the learning curve's test records
    proxy: dict[str, float] | None = None
    validation: dict[str, Any] | None = None  # {"central": utility on the validation records}
    aggregation: dict[str, Any] | None = None  # what the aggregation rule did (if it says)

    @classmethod
    def of(cls, rnd: int, *, clients: list[int], sent: Any, verdicts: list[Verdict],
           refused: dict[str, Any] | None,
           aggregation: dict[str, Any] | None = None) -> RoundRecord:
        """The record of round ``rnd`` from its broadcast and the server's verdicts."""
        accepted = [v for v in verdicts if v.accepted]
        loss = (float(np.average([v.train_loss for v in accepted],
                                 weights=[v.num_examples for v in accepted]))
                if accepted else None)
        return cls(round=rnd, clients=clients, refused=refused,
                   rejected=[{"client": v.client, "reason": v.reason}
                             for v in verdicts if not v.accepted],
                   bytes_down=sent.nbytes * len(clients), bytes_down_per_client=sent.nbytes,
                   bytes_up=sum(v.nbytes for v in verdicts), train_loss=loss,
                   aggregation=aggregation or None)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()
               if k not in ("central", "proxy", "validation", "aggregation")}
        if self.central is not None:
            out.update(central=self.central, proxy=self.proxy)
        if self.validation is not None:
            out.update(validation=self.validation)
        if self.aggregation:
            out.update(aggregation=self.aggregation)
        return out


@dataclass
class RunResult:
    """A whole run: ``status`` ok or failed (then ``error`` says why and ``rounds`` holds the
    rounds that finished)."""

    status: str
    config: dict[str, Any]
    rounds: list[RoundRecord]
    meta: dict[str, Any]
    final: dict[str, Any] | None = None  # test utility of the reported round and of the base
    defenses: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    start: dict[str, Any] | None = None  # the untrained model on the curve / validation records
    selection: dict[str, Any] | None = None  # which round is reported, and why
    convergence: dict[str, Any] | None = None
    final_records: dict[str, Any] | None = None  # per test record, for paired comparisons
    failed_in: dict[str, Any] | None = None  # a failed run: round, hook and plugin (or None)
    traceback: str | None = None  # a failed run: the full traceback of its error
    selected: Any = field(default=None, repr=False)  # the reported round's state (not saved)

    @property
    def comm(self) -> dict[str, int]:
        return {"bytes_down_total": sum(r.bytes_down for r in self.rounds),
                "bytes_up_total": sum(r.bytes_up for r in self.rounds)}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "config": self.config,
                               "rounds": [r.to_dict() for r in self.rounds], "comm": self.comm,
                               "defenses": self.defenses, "meta": self.meta}
        for key in ("final", "start", "selection", "convergence", "final_records"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.error is not None:
            out["error"] = self.error
        for key in ("failed_in", "traceback"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out
