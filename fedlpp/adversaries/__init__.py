"""Adversarial client behaviours, one file each, for testing the engine and evaluating defenses.

Chosen in the config as a list of tables, e.g.::

    [[adversaries]]
    behaviour = "huge"
    clients = [1]        # which clients behave so
    rounds = []          # which rounds (empty = every round)
    value = 3e38         # the behaviour's own options

Built-in: ``nan``, ``inf``, ``huge``, ``sign-flip``, ``scaled``, ``garbage-bytes``,
``truncated``, ``wrong-shape``, ``inflated-count``; third-party ones register through the
entry-point group ``fedlpp.adversaries``.
"""

from __future__ import annotations

from typing import Any

from fedlpp.adversaries.base import ADVERSARIES, Adversary, Targeting
from fedlpp.errors import FedlppError


def build_adversaries(tables: list[Any], *, num_clients: int) -> list[Adversary]:
    """The configured behaviours; a client outside ``0..num_clients-1`` is an error."""
    out = []
    for i, table in enumerate(tables):
        adversary = ADVERSARIES.build_table(table, where=f"adversaries[{i}]", key="behaviour")
        bad = [c for c in adversary.config.clients if c >= num_clients]
        if bad:
            raise FedlppError(f"Invalid adversaries[{i}].clients: {bad} (allowed: 0.."
                              f"{num_clients - 1}, the run has fed.num_clients={num_clients})")
        out.append(adversary)
    return out


__all__ = ["ADVERSARIES", "Adversary", "Targeting", "build_adversaries"]
