"""Aggregation rules: how the server combines the accepted updates of a round.

A rule is one file: an :class:`Aggregator` subclass with a ``Config`` dataclass, registered with
``@AGGREGATORS.register("name")`` and chosen by the config table ``aggregator = {name = ...}``.
The server builds a fresh one each round, adds every accepted update as it arrives
(:meth:`Aggregator.add`) and asks for the :meth:`Aggregator.result`. A rule that can stream (the
weighted mean) holds one accumulator; one that cannot (a median) keeps what it needs. Third-party
rules register through the entry-point group ``fedlpp.aggregators``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch

from fedlpp.registry import Plugin, Registry

AGGREGATORS = Registry("aggregation rule", group="fedlpp.aggregators")

_BUILTINS = ("mean",)


class Aggregator(Plugin, ABC):
    """One round's aggregate of the accepted updates."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.count = 0  # updates added

    @abstractmethod
    def add(self, tensors: Mapping[str, torch.Tensor], *, weight: float, client: int) -> None:
        """Take one accepted update (``weight``: the client's example count, > 0)."""

    @abstractmethod
    def result(self) -> dict[str, torch.Tensor]:
        """The aggregate of everything added (at least one update)."""


def build_aggregator(table: Any) -> Aggregator:
    """A fresh aggregator from the config table ``aggregator = {name = ..., options}``."""
    for module in _BUILTINS:
        importlib.import_module(f"fedlpp.aggregators.{module}")
    return AGGREGATORS.build_table(table, where="aggregator")


__all__ = ["AGGREGATORS", "Aggregator", "build_aggregator"]
