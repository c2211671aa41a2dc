"""Privacy accounting shared by the DP defenses: opacus' accountants, kept one per protected
unit (a client's records for DP-SGD, the whole federation's clients for DP-FedAvg)."""

from __future__ import annotations

import math
from typing import Any, Literal

from opacus.accountants import create_accountant
from opacus.accountants.accountant import IAccountant

from fedlpp.errors import FedlppError

Mechanism = Literal["rdp", "prv"]
MECHANISMS = ("rdp", "prv")


def check_dp_options(*, defense: str, noise_multiplier: float, clip: float, clip_name: str,
                     delta: float, accountant: str) -> None:
    """One-line errors for the options every DP defense has."""
    def bad(option: str, value: Any, allowed: str) -> FedlppError:
        return FedlppError(f"Invalid {option}: {value!r} for defense '{defense}' (allowed: {allowed})")

    if not (isinstance(noise_multiplier, int | float) and noise_multiplier >= 0):
        raise bad("noise_multiplier", noise_multiplier, ">= 0 (0 = no noise, no guarantee)")
    if not (isinstance(clip, int | float) and clip > 0 and math.isfinite(clip)):
        raise bad(clip_name, clip, "a finite number > 0")
    if not (isinstance(delta, int | float) and 0 < delta < 1):
        raise bad("delta", delta, "0 < delta < 1, usually below 1 / the number of records")
    if accountant not in MECHANISMS:
        raise bad("accountant", accountant, " or ".join(repr(m) for m in MECHANISMS))


def new_accountant(mechanism: str) -> IAccountant:
    """A fresh opacus accountant of ``mechanism`` (``rdp`` or ``prv``)."""
    return create_accountant(mechanism)


def spend(accountant: IAccountant, *, noise_multiplier: float, sample_rate: float,
          steps: int) -> None:
    """Record ``steps`` noisy steps at ``sample_rate`` (opacus keeps them as one history entry)."""
    for _ in range(steps):
        accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)


def epsilon(accountant: IAccountant, *, delta: float) -> dict[str, Any]:
    """``{"value", "reason"}``: the accountant's epsilon at ``delta``, or null with why."""
    if not accountant.history:
        return {"value": None, "reason": "no noisy step was taken"}
    if any(z == 0 for z, _, _ in accountant.history):
        return {"value": None, "reason": "noise_multiplier = 0: no differential-privacy guarantee"}
    value = float(accountant.get_epsilon(delta=delta))
    if not math.isfinite(value):
        return {"value": None, "reason": f"the accountant's epsilon is {value}"}
    return {"value": value, "reason": None}
