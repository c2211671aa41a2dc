"""Training methods: what the server keeps and broadcasts, and what a client does with it.

A method is one file: a :class:`Method` subclass registered with ``@METHODS.register("name")``
and chosen by ``fed.method``. It builds the two parts every driver (the in-process simulator,
a Flower app) runs: a server object with ``broadcast(rnd)`` / ``aggregate(rnd, uploads)`` /
``master``, and a client object with ``round(client=, rnd=, payload=, on_step=) -> Upload``.
Built-in: ``fedlpp`` and ``fedsp`` (the paper's baseline). Third-party methods register through
the entry-point group ``fedlpp.methods``. Optional hooks: ``install(run)`` (set up the run's
model as the method evaluates it, also when attacks reload a run) and ``attackable`` (the
(attack kind, target) pairs its trace supports; others are recorded as not applicable).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fedlpp.defenses import Defense
from fedlpp.errors import FedlppError
from fedlpp.registry import Plugin, Registry

if TYPE_CHECKING:
    from fedlpp.adversaries import Adversary
    from fedlpp.federation.context import RunContext

METHODS = Registry("training method", group="fedlpp.methods", builtins=["fedlpp.methods.*"])


class Method(Plugin, ABC):
    """A federated training method: a factory of its server and client parts."""

    @abstractmethod
    def server(self, ctx: RunContext, *, defenses: Sequence[Defense]) -> Any:
        """The server part for the prepared run ``ctx``."""

    @abstractmethod
    def client(self, ctx: RunContext, *, defenses: Sequence[Defense],
               adversaries: Sequence[Adversary]) -> Any:
        """The client part (one object serves every simulated client of a process)."""


def build_method(name: str) -> Method:
    """The training method ``fed.method`` names."""
    try:
        return METHODS.get(name)()
    except FedlppError as exc:
        raise FedlppError(f"Invalid fed.method: {exc}") from None


__all__ = ["METHODS", "Method", "build_method"]
