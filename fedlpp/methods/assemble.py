"""A method's two parts, assembled for a prepared run: the server object and the client object,
with the run's defenses bound to its seed and federation and its adversarial clients built.

Every driver calls these: the in-process simulator (:mod:`fedlpp.run.simulator`) and the Flower
apps (:mod:`fedlpp.flower`), so a method is put together one way everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedlpp.adversaries import build_adversaries
from fedlpp.config import RunConfig
from fedlpp.defenses import Defense, build_defenses
from fedlpp.methods import ClientPart, ServerPart, build_method

if TYPE_CHECKING:
    from fedlpp.run.context import RunContext


def bound_defenses(cfg: RunConfig) -> list[Defense]:
    """The run's defenses, bound to its seed and federation."""
    defenses = build_defenses(cfg.defenses)
    for d in defenses:
        d.bind(seed=cfg.seed, fed=cfg.fed)
    return defenses


def build_server(ctx: RunContext) -> tuple[ServerPart, list[Defense]]:
    """The configured method's server object and the run's defenses, bound to the run."""
    defenses = bound_defenses(ctx.cfg)
    return build_method(ctx.cfg.fed.method).server(ctx, defenses=defenses), defenses


def build_client(ctx: RunContext, *, defenses: list[Defense]) -> ClientPart:
    """The configured method's client object (with the run's adversaries)."""
    cfg = ctx.cfg
    adversaries = build_adversaries(cfg.adversaries, num_clients=cfg.fed.num_clients)
    return build_method(cfg.fed.method).client(ctx, defenses=defenses, adversaries=adversaries)


def build_parts(ctx: RunContext) -> tuple[ServerPart, ClientPart, list[Defense]]:
    """The configured method's server and client objects, and the defenses they share."""
    server, defenses = build_server(ctx)
    return server, build_client(ctx, defenses=defenses), defenses
