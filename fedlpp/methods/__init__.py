"""Training methods: what the server keeps and broadcasts, and what a client does with it.

A method is one file: a :class:`Method` subclass registered with ``@METHODS.register("name")``
and chosen by ``fed.method``. It builds the two parts every driver (the in-process simulator,
a Flower app) runs: a server object with ``broadcast(rnd)`` / ``aggregate(rnd, uploads)`` /
``master``, and a client object with ``round(client=, rnd=, payload=, on_step=) -> Upload``.
The two parts' interfaces are the protocols :class:`ServerPart` and :class:`ClientPart`; a
method's parts are put together for a run by :mod:`fedlpp.methods.assemble`, which every driver
calls. Built-in: ``fedlpp`` and ``fedsp`` (the paper's baseline). Third-party methods register
through the entry-point group ``fedlpp.methods``. Optional hooks: ``install(run)`` (set up the run's
model as the method evaluates it, also when attacks reload a run) and ``attackable`` (the
(attack kind, target) pairs its trace supports; others are recorded as not applicable).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch

from fedlpp.defenses import Defense
from fedlpp.errors import FedlppError
from fedlpp.federation.broadcast import Broadcast
from fedlpp.protocol.records import Upload, Verdict
from fedlpp.protocol.trainer import StepCallback
from fedlpp.registry import Plugin, Registry

if TYPE_CHECKING:
    from fedlpp.adversaries import Adversary
    from fedlpp.run.context import RunContext


class ServerPart(Protocol):
    """What a driver calls on a method's server object each round."""

    @property
    def master(self) -> dict[str, torch.Tensor]:
        """The private tensors the server keeps (what the central model is made of)."""

    @property
    def aggregation_report(self) -> dict[str, Any]:
        """What the aggregation rule did in the last round."""

    def broadcast(self, rnd: int) -> Broadcast:
        """Round ``rnd``'s payload (made once, from the master as it is then)."""

    def aggregate(self, rnd: int, uploads: Iterable[Upload], *,
                  observe: Callable[[Verdict], None] | None = None
                  ) -> tuple[list[Verdict], dict[str, Any] | None]:
        """Decode, check and aggregate round ``rnd``'s uploads into the master; returns the
        verdicts and ``None``, or why the aggregate was refused."""


class ClientPart(Protocol):
    """What a driver calls on a method's client object: one client's round."""

    def round(self, *, client: int, rnd: int, payload: bytes,
              on_step: StepCallback | None = None) -> Upload:
        """Client ``client``'s step of round ``rnd`` from the broadcast bytes it received."""

METHODS = Registry("training method", group="fedlpp.methods", builtins=["fedlpp.methods.*"])


class Method(Plugin, ABC):
    """A federated training method: a factory of its server and client parts."""

    @abstractmethod
    def server(self, ctx: RunContext, *, defenses: Sequence[Defense]) -> ServerPart:
        """The server part for the prepared run ``ctx``."""

    @abstractmethod
    def client(self, ctx: RunContext, *, defenses: Sequence[Defense],
               adversaries: Sequence[Adversary]) -> ClientPart:
        """The client part (one object serves every simulated client of a process)."""


def build_method(name: str) -> Method:
    """The training method ``fed.method`` names."""
    try:
        return METHODS.get(name)()
    except FedlppError as exc:
        raise FedlppError(f"Invalid fed.method: {exc}") from None


__all__ = ["METHODS", "ClientPart", "Method", "ServerPart", "build_method"]
