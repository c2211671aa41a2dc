"""Shared shape of membership-inference attacks: pick the target, score its candidates.

Targets: ``central`` (the final central model, threat model ``outsider``), ``proxy`` (the final
broadcast a client holds, ``client``), ``update`` (one client's last update, i.e. its adapter on
top of the broadcast it started from, ``server``). Members and non-members come from the run's
recorded splits and batches: members are records the target was trained on, non-members come
from the same distribution and were never trained on. Every result carries the same attack's
scores on the untrained model (its control).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from attacks.base import Attack, AttackResult, NotApplicable
from attacks.context import Observation
from attacks.signals import SampleSignals
from fedlpp.errors import FedlppError

TARGET_THREAT = {"central": "outsider", "proxy": "client", "update": "server"}


@dataclass
class MembershipConfig:
    """Options every membership attack has."""

    target: Literal["central", "proxy", "update"] = "central"
    client: int = 0  # proxy: the attacking client; update: the client whose update is attacked
    max_records: int = 0  # at most this many members and as many non-members (0 = all), seeded
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGET_THREAT:
            raise FedlppError(f"Invalid target: {self.target!r} (allowed: central, proxy, update)")
        if self.client < 0:
            raise FedlppError(f"Invalid client: {self.client} (allowed: >= 0)")
        if self.max_records < 0:
            raise FedlppError(f"Invalid max_records: {self.max_records} (allowed: >= 0, 0 = all)")


class MembershipAttack(Attack):
    """Scores records; subclasses implement :meth:`score` from shared signals."""

    kind = "membership"
    Config = MembershipConfig

    @property
    def threat_model(self) -> str:
        return TARGET_THREAT[self.config.target]

    def attackers(self) -> tuple[int, ...]:
        return (self.config.client,) if self.config.target == "proxy" else ()

    # --- which records, which model -----------------------------------------------------------
    def candidates(self, obs: Observation) -> tuple[list[int], list[int], dict[str, Any]]:
        """(members, non-members, coverage) of the target.

        Labels are facts from the trace: a member is a record that was in a local training batch
        of an update that reached the target (``central`` / ``proxy``: an accepted update of any
        round; ``update``: the attacked update itself); a non-member is a record of the recorded
        non-member splits, never trained on. Member-pool records that no batch held are neither.
        ``coverage`` says how much of the member pool was trained on, and how many times.
        """
        trace, c = obs.ctx.trace, self.config.client
        splits = trace.splits
        if self.config.target == "update":
            clients = [c]
            counts = trace.trained(clients=clients, rounds=[self.update_round(obs)],
                                   accepted_only=False)  # what the client sent, judged or not
        else:
            clients = [k for k in range(len(splits.members))
                       if self.config.target == "central" or k != c]
            counts = trace.trained(clients=clients)
        pool = [i for k in clients for i in splits.members[k]]
        members = [i for i in pool if i in counts]
        nonmembers = [i for k in clients for i in splits.nonmembers[k]]
        coverage = {"pool": len(pool), "trained": len(members),
                    "share": len(members) / len(pool) if pool else None,
                    "mean_times": (sum(counts[i] for i in members) / len(members)
                                   if members else None)}
        if self.config.max_records:
            rng = np.random.default_rng(self.config.seed)
            cap = self.config.max_records
            members = sorted(rng.permutation(members)[:cap].tolist())
            nonmembers = sorted(rng.permutation(nonmembers)[:cap].tolist())
        if not members or not nonmembers:
            raise NotApplicable(f"Target {self.config.target!r} has {len(members)} trained "
                                f"members and {len(nonmembers)} non-members; both must be > 0")
        return members, nonmembers, coverage

    def target_tensors(self, obs: Observation) -> dict[str, torch.Tensor]:
        """The private tensors of the attacked model (``central`` is black-box: scores only)."""
        if self.config.target == "central":
            raise FedlppError("Target 'central' is black-box (threat model outsider): use "
                              "target_signals, not its weights")
        if self.config.target == "proxy":
            return obs.proxy(obs.num_rounds + 1)
        rnd = self.update_round(obs)
        return {**obs.proxy(rnd), **obs.update(rnd, self.config.client)}

    def update_round(self, obs: Observation) -> int:
        """The last round the attacked client took part in."""
        rounds = [r for r in range(1, obs.num_rounds + 1)
                  if self.config.client in obs.ctx.trace.participants(r)]
        if not rounds:
            raise FedlppError(f"Client {self.config.client} never took part in a round")
        return rounds[-1]

    def shared(self, obs: Observation, what: str, indices: list[int], make):
        """``make()``, once per run for this target, client and records: every attack on a
        target reuses its models' signals without re-reading, dequantizing or hashing them."""
        key = (f"membership-{what}", self.config.target, self.config.client, tuple(indices))
        if key not in obs.ctx.cache:
            obs.ctx.cache[key] = make()
        return obs.ctx.cache[key]

    def target_signals(self, obs: Observation, indices: list[int]) -> SampleSignals:
        if self.config.target == "central":
            return self.shared(obs, "target", indices, lambda: obs.central_signals(indices))
        return self.shared(obs, "target", indices,
                           lambda: obs.ctx.signals(self.target_tensors(obs), indices))

    def reference_signals(self, obs: Observation, indices: list[int]) -> SampleSignals:
        """The natural reference model, as the target's attacker can hold it: the public base
        (with the run's LoRA init) for ``central``, and for ``proxy`` in scope ``adapter``; for
        ``proxy`` in scope ``full`` the round-1 payload (the client never holds the private base
        weights, only their broadcast, and round 1's is the only one no client trained into);
        for ``update``, the broadcast the client started from."""
        if self.config.target == "update":
            return self.shared(obs, "reference", indices, lambda: obs.ctx.signals(
                obs.proxy(self.update_round(obs)), indices))
        if self.config.target == "proxy" and obs.ctx.trace.config.quant.scope == "full":
            return self.shared(obs, "reference", indices,
                               lambda: obs.ctx.signals(obs.proxy(1), indices))
        return obs.ctx.signals(obs.ctx.initial, indices)

    def control_signals(self, obs: Observation, indices: list[int]) -> SampleSignals:
        """The untrained model's signals: what the target was before training on the members
        (the base model for ``central`` / ``proxy``; for ``update``, the broadcast the client
        started from). An evaluator's control, not something the attacker needs to hold."""
        if self.config.target == "update":
            rnd = self.update_round(obs)
            return self.shared(obs, "control", indices, lambda: obs.ctx.signals(
                obs.ctx.dequantize(obs.ctx.trace.payload(rnd)), indices))
        return obs.ctx.signals(obs.ctx.initial, indices)

    # --- the attack -----------------------------------------------------------------------------
    def run(self, obs: Observation) -> AttackResult:
        members, nonmembers, coverage = self.candidates(obs)
        indices = members + nonmembers
        labels = np.array([1] * len(members) + [0] * len(nonmembers))
        scores = self.score(self.target_signals(obs, indices), obs=obs, indices=indices)
        # the same attack on the same candidates, scored on the untrained model
        control = self.score(self.control_signals(obs, indices), obs=obs, indices=indices)
        return AttackResult(scores=np.asarray(scores, dtype=np.float64), labels=labels,
                            indices=np.array(indices),
                            control_scores=np.asarray(control, dtype=np.float64),
                            extra={"coverage": coverage})

    @abstractmethod
    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        """Membership scores (higher = member) of the records ``indices``."""
