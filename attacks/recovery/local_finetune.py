"""Keep fine-tuning the last proxy on the attacker's own data: the cheapest active recovery.

Its gain mixes what the payload leaks with what the attacker's own records buy (at full
precision, where nothing is hidden, it can score a recovered gain above 1: that excess is the
extra fine-tuning's own effect).
So every fine-tuning attack also returns ``control``: the same training (steps, lr, batch size,
seed, records) from the public starting point instead of the payload
(:func:`attacks.recovery.base.public_start`): in scope ``adapter`` the public base model with
the seeded LoRA init; in scope ``full``, where the base weights are private, that LoRA init on
the base weights of the first payload received (a client cannot run the model without some
payload, and every payload carries the same quantized base under a deterministic quantizer).
The payload's leakage is the recovered model's gain over the control's.

Also home of the fine-tuning budget options that ``box-pgd`` shares (:class:`LocalFinetuneConfig`)
and of :func:`train_from` / :func:`train_control`, which every fine-tuning attack calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from attacks.base import ATTACKS, AttackResult
from attacks.context import Observation
from attacks.recovery.base import RecoveryAttack, RecoveryConfig, finetune, public_start
from fedlpp.errors import FedlppError
from fedlpp.federation.client import num_local_steps

STEPS_MULTIPLE = 4  # default budget: this many times an honest client's steps per round


def check_option(ok: bool, *, attack: str, option: str, value: Any, allowed: str) -> None:
    """One-line FedlppError naming the attack, the option, the bad value and what is allowed."""
    if not ok:
        raise FedlppError(f"Invalid {option}: {value!r} for attack '{attack}' (allowed: {allowed})")


def is_positive(value: Any, kind: type | tuple[type, ...]) -> bool:
    """``value`` is a ``kind`` (never a bool) and > 0."""
    return isinstance(value, kind) and not isinstance(value, bool) and value > 0


@dataclass
class LocalFinetuneConfig(RecoveryConfig):
    """Fine-tuning budget; None = derived from the run's own ``fed`` settings."""

    attack: ClassVar[str] = "local-finetune"  # named in error messages
    steps: int | None = None  # None: STEPS_MULTIPLE x the run's local steps per round
    lr: float | None = None  # None: the run's fed.lr
    batch_size: int | None = None  # None: the run's fed.batch_size
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        name = self.attack
        for option, allowed in (("steps", "an integer >= 1, or unset"),
                                ("lr", "a number > 0, or unset"),
                                ("batch_size", "an integer >= 1, or unset")):
            value = getattr(self, option)
            check_option(value is None or value > 0, attack=name, option=option,
                         value=value, allowed=allowed)


def train_from(obs: Observation, *, start: dict[str, torch.Tensor], config: LocalFinetuneConfig,
               project: Callable[[], None] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Fine-tune ``start`` on the view's own (pooled) data with ``config``'s budget.

    Returns:
        All private tensors after training, and the resolved budget (for ``AttackResult.extra``).
    """
    fed = obs.ctx.trace.config.fed
    data = obs.own_data()
    n = int(data["input_ids"].shape[0])
    budget = {
        "steps": config.steps or STEPS_MULTIPLE * num_local_steps(fed, num_examples=n),
        "lr": float(config.lr or fed.lr),
        "batch_size": config.batch_size or fed.batch_size,
    }
    out = finetune(obs, start=start, data=data, seed=config.seed, project=project, **budget)
    return out, budget


def train_control(obs: Observation, *, config: LocalFinetuneConfig) -> tuple[dict[str, torch.Tensor], str]:
    """The no-payload control: :func:`train_from` with the same budget, seed and data, started
    from :func:`public_start` and never projected. Returns its tensors and where it started."""
    start, described = public_start(obs)
    control, _ = train_from(obs, start=start, config=config)
    return control, described


@ATTACKS.register("local-finetune")
class LocalFinetune(RecoveryAttack):
    """Start from the last proxy received and keep training it on the attacker's own records."""

    Config = LocalFinetuneConfig
    summary = "recovery: keep fine-tuning the last proxy on the attacker's own data"

    def run(self, obs: Observation) -> AttackResult:
        rnd = obs.payload_rounds()[-1]
        recovered, budget = train_from(obs, start=obs.proxy(rnd), config=self.config)
        control, start = train_control(obs, config=self.config)
        return AttackResult(recovered=recovered, round=rnd, control=control,
                            extra={**budget, "control_start": start})
