"""``dp-sgd``: record-level differential privacy in each client's local training (Abadi et al.
2016) with opacus: per-sample clipping of the trainable tensors (LoRA, heads), Gaussian noise,
Poisson sampling, and one accountant per client across every round it trained in.

The guarantee is per client, for that client's records: the reported epsilon of client ``c`` is
what opacus' accountant gives for the noise, sampling rate ``batch_size / n_c`` and the number of
noisy steps ``c`` took in the whole run. The server, the other clients and anyone who sees a
model trained from the aggregate are covered by post-processing.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from fedlpp.defenses import DEFENSES, Defense
from fedlpp.defenses.accounting import check_dp_options, epsilon, new_accountant, spend
from fedlpp.defenses.dp_train import dp_local_train, sample_rate
from fedlpp.protocol.trainer import Trainer


@dataclass
class DPSGDConfig:
    noise_multiplier: float = 1.0  # Gaussian noise std / max_grad_norm
    max_grad_norm: float = 1.0  # per-record clipping norm of the trainable tensors' gradient
    delta: float = 1e-5  # the delta epsilon is reported at
    poisson: bool = True  # Poisson sampling (what the accountant assumes); false = shuffled batches
    accountant: str = "rdp"  # opacus accountant: "rdp" or "prv"

    def __post_init__(self) -> None:
        check_dp_options(defense="dp-sgd", noise_multiplier=self.noise_multiplier,
                         clip=self.max_grad_norm, clip_name="max_grad_norm", delta=self.delta,
                         accountant=self.accountant)


@DEFENSES.register("dp-sgd")
class DPSGD(Defense):
    """Replaces each client's local trainer with DP-SGD and accounts per client."""

    Config = DPSGDConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.accountants: dict[int, Any] = {}
        self.rates: dict[int, float] = {}
        self.steps: dict[int, int] = {}
        self.rounds: dict[int, int] = {}
        self.norms: list[float] = []  # every record's gradient norm before clipping

    def around_training(self, train: Trainer, *, client: int, rnd: int) -> Trainer:
        cfg = self.config

        def private(*, data: Any, steps: int, batch_size: int, **kw: Any) -> list[float]:
            n = int(data["input_ids"].shape[0])
            losses = dp_local_train(data=data, steps=steps, batch_size=batch_size,
                                    noise_multiplier=cfg.noise_multiplier,
                                    max_grad_norm=cfg.max_grad_norm, poisson=cfg.poisson,
                                    on_norms=self._count_clipped, **kw)
            self._account(client, rate=sample_rate(n, batch_size=batch_size), steps=steps)
            return losses

        return private

    def _count_clipped(self, norms: Any) -> None:
        self.norms += norms.tolist()

    def _account(self, client: int, *, rate: float, steps: int) -> None:
        acc = self.accountants.setdefault(client, new_accountant(self.config.accountant))
        spend(acc, noise_multiplier=self.config.noise_multiplier, sample_rate=rate, steps=steps)
        self.rates[client] = rate
        self.steps[client] = self.steps.get(client, 0) + steps
        self.rounds[client] = self.rounds.get(client, 0) + 1

    def report(self) -> dict[str, Any]:
        cfg = self.config
        per_client = {str(c): {"epsilon": epsilon(acc, delta=cfg.delta), "sample_rate": self.rates[c],
                               "steps": self.steps[c], "rounds": self.rounds[c]}
                      for c, acc in sorted(self.accountants.items())}
        # the run's epsilon is its worst client's; undefined if any client's is
        eps = [p["epsilon"] for p in per_client.values()]
        undefined = [e for e in eps if e["value"] is None]
        worst = (undefined[0] if undefined else max(eps, key=lambda e: e["value"]) if eps else
                 {"value": None, "reason": "no client trained"})
        return {"guarantee": "record-level, per client", "delta": cfg.delta,
                "noise_multiplier": cfg.noise_multiplier, "max_grad_norm": cfg.max_grad_norm,
                "noise_std": cfg.noise_multiplier * cfg.max_grad_norm,
                "sampling": "poisson" if cfg.poisson else "shuffled batches (accounted as poisson)",
                "accountant": cfg.accountant, "epsilon": worst,
                "clipped_share": (sum(x > cfg.max_grad_norm for x in self.norms) / len(self.norms)
                                  if self.norms else None),
                "median_gradient_norm": (statistics.median(self.norms) if self.norms else None),
                "clients": per_client}
