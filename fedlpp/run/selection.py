"""Which round a run reports, and whether it converged: pure functions of the central model's
validation losses per evaluated round (round 0 = the untrained model).

A practitioner stops training where the held-out loss is lowest; the test split is never
looked at to choose. Convergence is a property of the curve: the best validation loss improved
by at most a stated share of its total gain (untrained -> best) during the last evaluated rounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def select_round(val_loss: Mapping[int, float], *, by: str) -> dict[str, Any]:
    """The reported round among the trained ones (round >= 1).

    ``by="validation"``: the round with the lowest central validation loss (the earliest of
    ties; a non-finite loss never wins); ``by="last"``: the last evaluated round.
    """
    trained = sorted(r for r in val_loss if r >= 1)
    if not trained:
        raise ValueError("no trained round was evaluated")
    if by == "last":
        return {"round": trained[-1], "by": "last", "metric": None}
    finite = [r for r in trained if math.isfinite(val_loss[r])]
    if not finite:
        return {"round": trained[-1], "by": "last", "metric": "loss",
                "note": "every validation loss was non-finite: the last round is reported"}
    best = min(finite, key=lambda r: (val_loss[r], r))
    return {"round": best, "by": "validation", "metric": "loss", "loss": val_loss[best]}


def convergence(val_loss: Mapping[int, float], *, last_rounds: int, share: float) -> dict[str, Any]:
    """Did the central model converge? ``converged`` is None (with a reason) when the curve
    cannot say: too few evaluated rounds, or no gain over the untrained model at all.

    ``improvement_share`` = (best loss before the last ``last_rounds`` evaluated rounds - best
    loss overall) / (untrained loss - best loss overall); converged when it is <= ``share``.
    """
    out: dict[str, Any] = {"last_rounds": last_rounds, "share": share,
                           "improvement_share": None, "metric": "validation loss of central"}
    rounds = sorted(r for r, v in val_loss.items() if math.isfinite(v))
    if 0 not in rounds:
        return {**out, "converged": None, "reason": "the untrained model was not evaluated"}
    trained = [r for r in rounds if r >= 1]
    if len(trained) <= last_rounds:
        return {**out, "converged": None,
                "reason": f"{len(trained)} evaluated rounds: at least {last_rounds + 1} needed "
                          f"to judge the last {last_rounds}"}
    best = min(val_loss[r] for r in rounds)
    gain = val_loss[0] - best
    if gain <= 0:
        return {**out, "converged": None,
                "reason": "training never improved the validation loss over the untrained model"}
    before = min(val_loss[r] for r in rounds[: len(rounds) - last_rounds])
    improvement = (before - best) / gain
    converged = improvement <= share
    reason = (f"the last {last_rounds} evaluated rounds improved the best validation loss by "
              f"{improvement:.1%} of its total gain ({'<=' if converged else '>'} {share:.0%})")
    return {**out, "converged": converged, "reason": reason, "improvement_share": improvement}
