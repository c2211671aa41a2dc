"""LiRA, offline (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022).

Shadows are fine-tuned from the untrained model (``ctx.initial``) on records no client holds: the
run's test split stands in for the attacker's population data, each shadow on a seeded random half
of it, with the run's lr / batch size / weight decay. So all shadows are OUT, and per record ``i``::

    score_i = (s_target_i - mu_i) / sigma_i      (mu_i, sigma_i over the shadows)

which the paper's offline one-sided Gaussian test is monotone in. ``s`` = ``-loss`` (lm), or the
label's logit-scaled confidence ``log(p / (1 - p))`` (cls; closer to Gaussian, as the paper argues).
``sigma_i``: std over shadows (ddof 1); with one shadow, or below 1% of the global sigma (degenerate
fit), the global sigma: root mean per-record variance, or with one shadow the std of its statistic
over records (a constant: ranks as ``s_target - mu``); 1.0 if that is 0. Shadows are trained once per
(shadows, steps, seed), kept in ``ctx.cache`` for every target of the run; ``extra["shadow_train_s"]``
= seconds this result spent training them (0.0, ``shadows_reused``, when an earlier one had).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from attacks.base import ATTACKS, AttackResult
from attacks.context import Observation
from attacks.membership.base import MembershipAttack, MembershipConfig
from attacks.signals import SampleSignals
from fedlpp.errors import FedlppError
from fedlpp.federation.client import local_train, num_local_steps
from fedlpp.models import trainable_state


@dataclass
class LiraConfig(MembershipConfig):
    """Options of ``lira``."""

    shadows: int = 4  # shadow models, all OUT
    shadow_steps: int = 0  # optimizer steps per shadow; 0 = the run's fed.local_steps * fed.rounds

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, low in (("shadows", 1), ("shadow_steps", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise FedlppError(f"Invalid {name}: {value!r} (allowed: an integer >= {low})")


def statistic(signals: SampleSignals, *, task: str) -> np.ndarray:
    """Per record: ``-loss`` (lm) or ``log(p / (1 - p))`` of the label (cls, p capped below 1)."""
    if task == "cls":
        lp = np.minimum([float(lp.sum()) for lp in signals.token_logprobs], -1e-12)
        return lp - np.log(-np.expm1(lp))
    return -signals.loss


def lira_scores(*, target: np.ndarray, shadows: np.ndarray) -> np.ndarray:
    """z-scores of ``target`` ([n]) against OUT ``shadows`` ([m, n]), sigma as in the module doc."""
    shadows = np.asarray(shadows, dtype=np.float64)
    mu = shadows.mean(axis=0)
    if len(shadows) >= 2:
        sd = shadows.std(axis=0, ddof=1)
        glob = float(np.sqrt(np.mean(sd**2)))
    else:
        sd, glob = np.zeros_like(mu), float(shadows.std())
    glob = glob if glob > 0 else 1.0
    return (np.asarray(target, dtype=np.float64) - mu) / np.where(sd < 0.01 * glob, glob, sd)


@ATTACKS.register("lira")
class LiraAttack(MembershipAttack):
    """Score = the target's statistic standardised by OUT shadow models' (offline LiRA)."""

    Config = LiraConfig
    summary = "membership: offline LiRA, z-score against OUT shadow fine-tunes (Carlini et al. 2022)"

    def shadow_key(self, obs: Observation) -> tuple:
        fed = obs.ctx.trace.config.fed
        half = len(obs.ctx.trace.splits.test) // 2
        steps = self.config.shadow_steps or num_local_steps(fed, num_examples=half) * fed.rounds
        return ("lira-shadows", self.config.shadows, steps, self.config.seed)

    def shadow_models(self, obs: Observation) -> list[dict[str, torch.Tensor]]:
        """The shadows' private tensors, trained on the first call for this key."""
        ctx, fed, key = obs.ctx, obs.ctx.trace.config.fed, self.shadow_key(obs)
        if key not in ctx.cache:
            test = list(ctx.trace.splits.test)
            if len(test) < 2:
                raise FedlppError(f"lira needs >= 2 test records to train shadows on, the run has "
                                  f"{len(test)} (raise data.test_fraction)")
            rng, models = np.random.default_rng(self.config.seed), []
            for _ in range(self.config.shadows):
                half = sorted(rng.permutation(test)[: len(test) // 2].tolist())
                with ctx.loaded(ctx.initial) as model:
                    local_train(model=model, data=ctx.encode(half), steps=key[2],
                                batch_size=fed.batch_size, lr=fed.lr,
                                weight_decay=fed.weight_decay, seed=int(rng.integers(2**31)))
                    models.append(trainable_state(model))
            ctx.cache[key] = models
        return ctx.cache[key]

    def run(self, obs: Observation) -> AttackResult:
        reused, t0 = self.shadow_key(obs) in obs.ctx.cache, time.perf_counter()
        self.shadow_models(obs)  # first, so the result can say what training cost
        train_s = time.perf_counter() - t0
        res = super().run(obs)
        res.extra.update(shadow_train_s=train_s, shadows_reused=reused)
        return res

    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        shadows = np.stack([statistic(obs.ctx.signals(m, indices), task=obs.ctx.task)
                            for m in self.shadow_models(obs)])
        return lira_scores(target=statistic(target, task=obs.ctx.task), shadows=shadows)
