"""Aggregation rules: how the server combines the accepted updates of a round.

A rule is one file: an :class:`Aggregator` subclass with a ``Config`` dataclass, registered with
``@AGGREGATORS.register("name")`` and chosen by the config table ``aggregator = {name = ...}``.
The server builds a fresh one each round, tells it the broadcast the clients started from
(:meth:`Aggregator.begin`), adds every accepted update as it arrives (:meth:`Aggregator.add`) and
asks for the :meth:`Aggregator.result`. A rule that can stream (the weighted mean, norm-bound)
holds one accumulator; one that cannot (median, trimmed mean, Krum) keeps every update
(:class:`Buffered`). :meth:`Aggregator.check_run` refuses, at config load, a run the rule cannot
serve; :meth:`Aggregator.needs` says how many accepted updates a round must have (when
rejections leave fewer, the server leaves the master as it is for that round and records why in
the round's ``refused``); :meth:`Aggregator.report` says what the rule did in its round.
Built-in: ``mean``, ``median``, ``trimmed-mean``, ``norm-bound``, ``krum``; third-party rules
register through the entry-point group ``fedlpp.aggregators``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch

from fedlpp.errors import FedlppError
from fedlpp.registry import Plugin, Registry

AGGREGATORS = Registry("aggregation rule", group="fedlpp.aggregators",
                       builtins=["fedlpp.aggregators.*"])


class Aggregator(Plugin, ABC):
    """One round's aggregate of the accepted updates."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.count = 0  # updates added
        self.broadcast: dict[str, torch.Tensor] | None = None

    def begin(self, *, broadcast: Mapping[str, torch.Tensor]) -> None:
        """Take the tensors the round's clients started from (the dequantized broadcast)."""
        self.broadcast = dict(broadcast)

    @abstractmethod
    def add(self, tensors: Mapping[str, torch.Tensor], *, weight: float, client: int) -> None:
        """Take one accepted update (``weight``: the client's example count, > 0)."""

    @abstractmethod
    def result(self) -> dict[str, torch.Tensor]:
        """The aggregate of everything added (at least one update)."""

    def check_run(self, *, clients_per_round: int) -> None:
        """Raise a FedlppError if a run with this many clients per round cannot use the rule."""

    def needs(self) -> tuple[int, str]:
        """The fewest accepted updates the rule can aggregate in one round, and that
        requirement in words (for the round's record when rejections leave fewer).

        The server asks before :meth:`result`: a round with fewer accepted updates does not
        update the master (its ``refused`` names the rule, the accepted count and this
        requirement) and the run goes on.
        """
        return 1, "at least one update"

    def report(self) -> dict[str, Any]:
        """What the rule did in its round (e.g. how many updates it clipped)."""
        return {}


class Buffered(Aggregator):
    """Base of the rules that need every update at once.

    :meth:`add` keeps each update in ``updates`` (as float32; a float32 tensor is kept, not
    copied) and its client id in ``clients``; subclasses compute :meth:`result` from them.
    """

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.updates: list[dict[str, torch.Tensor]] = []
        self.clients: list[int] = []

    def add(self, tensors: Mapping[str, torch.Tensor], *, weight: float, client: int = -1) -> None:
        check_weight(weight)
        self.updates.append({n: t.detach().float() for n, t in tensors.items()})
        self.clients.append(client)
        self.count += 1

    def require_updates(self) -> None:
        """Raise a ValueError when nothing was added."""
        if not self.updates:
            raise ValueError(f"the {self.name} of no updates is undefined")


def check_weight(weight: float) -> None:
    """Raise a ValueError unless an update's weight is > 0."""
    if not weight > 0:
        raise ValueError(f"update weight must be > 0, got {weight}")


def check_option(ok: bool, *, rule: str, option: str, value: Any, allowed: str) -> None:
    """A one-line FedlppError for a bad option of aggregation rule ``rule``."""
    if not ok:
        raise FedlppError(f"Invalid aggregator.{option}: {value!r} for aggregation rule "
                          f"'{rule}' (allowed: {allowed})")


def build_aggregator(table: Any) -> Aggregator:
    """A fresh aggregator from the config table ``aggregator = {name = ..., options}``."""
    return AGGREGATORS.build_table(table, where="aggregator")


__all__ = ["AGGREGATORS", "Aggregator", "Buffered", "build_aggregator", "check_option",
           "check_weight"]
