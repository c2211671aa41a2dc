"""``dp-fedavg``: user-level differential privacy (McMahan et al. 2018, "Learning differentially
private recurrent language models"): each client's update is clipped to L2 norm ``clip`` around
the broadcast it started from, and Gaussian noise is added to the aggregate; one accountant
covers the whole run, with clients sampled at rate ``clients_per_round / num_clients``.

Compared with Flower's server-side fixed-clipping wrapper
(``DifferentialPrivacyServerSideFixedClipping``, read in Flower 1.42): the same clipping of each
reply's joint difference from what was sent, then the inner rule's aggregate, then Gaussian noise
on the aggregate. It differs in:

* the noise std is ``noise_multiplier * clip * max(w) / sum(w)`` over the accepted updates'
  aggregation weights ``w`` (their example counts). With equal weights this is Flower's
  ``noise_multiplier * clip / m``. Flower adds ``clip / m`` whatever the weights when it does not
  account, which understates what one client can move an example-weighted mean; with its
  accountant on, it refuses unequal weights instead;
* ``m`` is the number of updates accepted this round; Flower uses its configured
  ``num_sampled_clients`` (and with its accountant on refuses a round with another count);
* the clipping centre is the dequantized broadcast (what the client trained from and what the
  straight-through update subtracts), not a full-precision global model;
* the accountant is opacus' (RDP or PRV) at the client sampling rate of the configuration;
  Flower's own accountant is optional and has a budget cap that stops the run.

The aggregate's denominator depends on who took part, so (as in Flower) the add/remove-one-client
sensitivity is the stated one only up to that denominator.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fedlpp.defenses import DEFENSES, Defense, Tensors
from fedlpp.defenses.accounting import check_dp_options, epsilon, new_accountant, spend
from fedlpp.seeding import derive_seed, torch_generator

NOISE_STREAM = 101  # seeds this defense's noise apart from every other draw of the run


@dataclass
class DPFedAvgConfig:
    clip: float = 1.0  # L2 bound of each client's update (difference from the broadcast)
    noise_multiplier: float = 1.0  # noise std / (clip * max weight / total weight)
    delta: float = 1e-5  # the delta epsilon is reported at
    accountant: str = "rdp"  # opacus accountant: "rdp" or "prv"

    def __post_init__(self) -> None:
        check_dp_options(defense="dp-fedavg", noise_multiplier=self.noise_multiplier,
                         clip=self.clip, clip_name="clip", delta=self.delta,
                         accountant=self.accountant)


def clip_update(tensors: Tensors, *, broadcast: Tensors, bound: float) -> tuple[dict, float]:
    """``tensors`` moved towards ``broadcast`` so their joint difference has norm <= ``bound``;
    returns the clipped tensors and the difference's norm before clipping."""
    diff = {n: t.float() - broadcast[n].float() for n, t in tensors.items()}
    norm = math.sqrt(sum(float(d.pow(2).sum()) for d in diff.values()))
    factor = min(1.0, bound / norm) if norm > 0 else 1.0
    return {n: broadcast[n].float() + factor * d for n, d in diff.items()}, norm


@DEFENSES.register("dp-fedavg")
class DPFedAvg(Defense):
    """Clips every update on arrival and noises the aggregate; accounts at the user level."""

    Config = DPFedAvgConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.accountant = new_accountant(self.config.accountant)
        self.norms: list[float] = []
        self.stds: list[float] = []

    def on_update(self, rnd: int, client: int, tensors: Tensors, *, broadcast: Tensors) -> Tensors:
        clipped, norm = clip_update(tensors, broadcast=broadcast, bound=self.config.clip)
        self.norms.append(norm)
        return clipped

    def after_aggregate(self, rnd: int, mean: Tensors, *, broadcast: Tensors,
                        weights: Mapping[int, float]) -> Tensors:
        cfg = self.config
        std = cfg.noise_multiplier * cfg.clip * max(weights.values()) / sum(weights.values())
        gen = torch_generator(derive_seed(self.seed, rnd, NOISE_STREAM))
        noisy = {n: m.float() + std * torch.randn(m.shape, generator=gen) for n, m in mean.items()}
        fed = self.fed
        rate = 1.0 if fed is None or not fed.clients_per_round else fed.clients_per_round / fed.num_clients
        spend(self.accountant, noise_multiplier=cfg.noise_multiplier, sample_rate=rate, steps=1)
        self.stds.append(std)
        return noisy

    def report(self) -> dict[str, Any]:
        cfg = self.config
        clipped = sum(n > cfg.clip for n in self.norms)
        return {"guarantee": "user-level (each client's whole data)", "delta": cfg.delta,
                "clip": cfg.clip, "noise_multiplier": cfg.noise_multiplier,
                "accountant": cfg.accountant, "epsilon": epsilon(self.accountant, delta=cfg.delta),
                "noisy_rounds": len(self.stds),
                "noise_std": sum(self.stds) / len(self.stds) if self.stds else None,
                "clipped_share": clipped / len(self.norms) if self.norms else None,
                "median_update_norm": statistics.median(self.norms) if self.norms else None}
