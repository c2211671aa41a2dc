"""``krum``: the update closest to its neighbours (Blanchard et al. 2017, "Machine learning with
adversaries: Byzantine tolerant gradient descent"); with ``multi`` > 1, Multi-Krum."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fedlpp.aggregators import AGGREGATORS, Buffered, check_option
from fedlpp.aggregators.robust import (
    flatten,
    krum_scores,
    pairwise_sq_distances,
    stack,
    trimmed_mean,
)
from fedlpp.errors import FedlppError


@dataclass
class KrumConfig:
    """``byzantine``: the number f of Byzantine updates tolerated (>= 0; a round needs more than
    2f+2 updates); ``multi``: how many best-scored updates are averaged (>= 1; 1 = Krum)."""

    byzantine: int = 1
    multi: int = 1

    def __post_init__(self) -> None:
        check_option(self.byzantine >= 0, rule="krum", option="byzantine", value=self.byzantine,
                     allowed=">= 0")
        check_option(self.multi >= 1, rule="krum", option="multi", value=self.multi,
                     allowed=">= 1 (1 = Krum)")


@AGGREGATORS.register("krum")
class Krum(Buffered):
    """Krum: the update closest to its n-f-2 nearest others; Multi-Krum: the mean of the best m.

    Each update's score is its summed squared distance to its n-f-2 nearest other updates; the
    best-scored one is the result (Krum), or the unweighted mean of the ``multi`` best
    (Multi-Krum). Example counts are ignored; keeps every update of the round.

    Needs n > 2f+2 accepted updates, and n >= ``multi`` (:meth:`needs`). :meth:`check_run`
    refuses, at load, a run whose clients per round cannot meet that; a round in which
    rejected uploads leave fewer is not aggregated: the master stays as it is for that round,
    the round's ``refused`` says why (rule, accepted count, what it needed) and the run goes on.
    """

    Config = KrumConfig

    def __init__(self, config: KrumConfig | None = None) -> None:
        super().__init__(config)
        self.selected: list[int] = []

    def check_run(self, *, clients_per_round: int) -> None:
        f, m = self.config.byzantine, self.config.multi
        if clients_per_round <= 2 * f + 2:
            most = f"byzantine <= {(clients_per_round - 3) // 2}" if clients_per_round >= 3 else \
                "none, Krum needs at least 3 clients per round"
            raise FedlppError(f"Invalid aggregator.byzantine: {f} for aggregation rule 'krum' "
                              f"with {clients_per_round} clients per round (Krum needs more than "
                              f"2*byzantine+2 = {2 * f + 2} updates a round; allowed: {most})")
        if m > clients_per_round:
            raise FedlppError(f"Invalid aggregator.multi: {m} for aggregation rule 'krum' with "
                              f"{clients_per_round} clients per round (allowed: "
                              f"1..{clients_per_round})")

    def needs(self) -> tuple[int, str]:
        f, m = self.config.byzantine, self.config.multi
        if m > 2 * f + 3:
            return m, f"multi={m} averages the {m} best-scored updates"
        return 2 * f + 3, f"byzantine={f}: n > 2*byzantine+2 = {2 * f + 2}"

    def result(self) -> dict[str, torch.Tensor]:
        n, f, m = self.count, self.config.byzantine, self.config.multi
        if n <= 2 * f + 2:
            raise ValueError(f"krum needs n > 2f+2 accepted updates: got n={n} with f={f} "
                             f"(byzantine), so n must be at least {2 * f + 3}")
        if m > n:
            raise ValueError(f"multi-krum with multi={m} needs at least {m} accepted updates, "
                             f"got n={n}")
        names = list(self.updates[0])
        vectors = torch.stack([flatten(u, names=names) for u in self.updates])
        scores = krum_scores(pairwise_sq_distances(vectors), byzantine=f)
        best = torch.argsort(scores, stable=True)[:m].tolist()  # ties: the earlier update
        self.selected = sorted(self.clients[i] for i in best)
        chosen = [self.updates[i] for i in best]
        # trim=0: the plain (unweighted) mean, in float64
        return {n: trimmed_mean(stack(chosen, name=n), trim=0) for n in names}

    def report(self) -> dict[str, Any]:
        return {"selected": self.selected, "updates": self.count}
