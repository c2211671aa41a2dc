"""Several malicious clients pool their data and their views, then run one recovery strategy.

The colluders are the ``clients`` consecutive clients starting at ``client`` (default: clients
0 and 1). A count rather than a list keeps the option a plain integer on the command line
(``--set clients=3``) and the attacker set reproducible from the config; any set can be had by
choosing ``client`` and ``clients``, up to renumbering, since client ids carry no meaning of
their own. The pooled view (threat model ``colluding``) holds every payload any colluder was
sent, all their updates and all their records; the strategies take an ``Observation`` and use
whichever clients it holds, so they run on it unchanged. A fine-tuning strategy's no-payload
``control`` (its same budget on the pooled records from the public start) is passed through;
``trajectory`` has none (compare it with ``final-box`` instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attacks.base import ATTACKS, AttackResult
from attacks.context import Observation
from attacks.recovery.base import RecoveryAttack, RecoveryConfig
from attacks.recovery.box_pgd import BoxPGD
from attacks.recovery.local_finetune import LocalFinetune, check_option
from attacks.recovery.trajectory import Trajectory
from fedlpp.errors import FedlppError
from fedlpp.typed import options

STRATEGIES = {cls.registered_name: cls for cls in (LocalFinetune, BoxPGD, Trajectory)}


@dataclass
class CollusionConfig(RecoveryConfig):
    """``client``: the first colluder; ``clients``: how many (>= 2); ``strategy``: the recovery
    run on the pooled view; ``options``: that strategy's own options (not ``client``), e.g.
    ``--set 'options={movement="none"}'``."""

    clients: int = 2
    strategy: str = "trajectory"  # the lowest param_rel_error on pooled views (see the report)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_option(self.clients >= 2,
                     attack="collusion", option="clients", value=self.clients,
                     allowed="an integer >= 2")
        check_option(self.strategy in STRATEGIES, attack="collusion", option="strategy",
                     value=self.strategy, allowed=", ".join(STRATEGIES))
        check_option("client" not in self.options,
                     attack="collusion", option="options", value=self.options,
                     allowed=f"a table of options of '{self.strategy}' other than client")
        try:  # the strategy's own checks, now rather than at run time
            self.base_config()
        except FedlppError as exc:
            raise FedlppError(f"Invalid options for attack 'collusion': {exc}") from None

    def base_config(self) -> RecoveryConfig:
        """The strategy's config built from ``options`` (its ``client`` is unused: the pooled
        view decides whose updates and data it sees)."""
        cls = STRATEGIES[self.strategy]
        return options(cls.Config, dict(self.options),
                           where=f"strategy '{self.strategy}'")


@ATTACKS.register("collusion")
class Collusion(RecoveryAttack):
    """Clients ``client .. client + clients - 1`` pool their views and run ``strategy``."""

    Config = CollusionConfig
    summary = "recovery: k colluding clients pool data and views, then run a base strategy"

    @property
    def threat_model(self) -> str:
        return "colluding"

    def attackers(self) -> tuple[int, ...]:
        return tuple(range(self.config.client, self.config.client + self.config.clients))

    def run(self, obs: Observation) -> AttackResult:
        config = self.config
        result = STRATEGIES[config.strategy](config.base_config()).run(obs)
        result.extra = {**result.extra, "strategy": config.strategy, "colluders": list(obs.clients)}
        return result
