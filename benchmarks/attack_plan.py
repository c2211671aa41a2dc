"""A suite's ``[attacks]`` section: the attacks every cell runs, and which of them are primary.

``primary`` and ``primary_recovery`` name, before anything runs, the attacks the report's headline
tables and claims use (no best-of after the fact; every attack is in the detail tables). Without
them: ``loss`` for every target and ``as-is``, and the report says they were defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fedlpp.errors import FedlppError

DEFAULT_PRIMARY = "loss"  # membership attack per target when a suite names none
DEFAULT_PRIMARY_RECOVERY = "as-is"
DEFAULT_RESAMPLES = 1000


@dataclass
class AttackPlan:
    """The attacks run on every cell; membership attacks run once per target in ``targets``.

    ``primary`` (target -> membership attack) and ``primary_recovery`` are the attacks the
    headline tables use; empty means the defaults (:func:`primary_attacks`).
    """

    names: list[str] = field(default_factory=list)
    set: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=lambda: ["central", "proxy", "update"])
    resamples: int = DEFAULT_RESAMPLES
    primary: dict[str, str] = field(default_factory=dict)
    primary_recovery: str = ""


def primary_attacks(plan: dict[str, Any]) -> tuple[dict[str, str], str, list[str]]:
    """(target -> primary membership attack, primary recovery attack, notes on defaults) of an
    attack plan as a cell JSON records it."""
    named, recovery = plan.get("primary") or {}, plan.get("primary_recovery") or ""
    targets = plan.get("targets", [])
    notes = [] if named else [f"no primary membership attack named: `{DEFAULT_PRIMARY}` for "
                              f"{', '.join(targets)}"]
    if not recovery:
        notes.append(f"no primary recovery attack named: `{DEFAULT_PRIMARY_RECOVERY}`")
    primary = {t: named.get(t, DEFAULT_PRIMARY) if named else DEFAULT_PRIMARY for t in targets}
    return primary, recovery or DEFAULT_PRIMARY_RECOVERY, notes


def primary_result(cell: dict[str, Any], target: str | None = None) -> dict[str, Any] | None:
    """The ok result of a cell's primary membership attack on ``target``, or (no target) of its
    primary recovery attack; None when it did not run or failed."""
    membership, recovery, _ = primary_attacks(cell.get("attack_plan", {}))
    name = recovery if target is None else membership.get(target)
    for a in cell.get("attacks", []):
        if (a["status"] == "ok" and a["attack"] == name
                and a["kind"] == ("recovery" if target is None else "membership")
                and (target is None or a["config"].get("target") == target)):
            return a
    return None


def _check_plan(plan: AttackPlan, where: str) -> None:
    """Targets, resamples and primary attacks of an [attacks] section; one-line errors."""
    bad = [t for t in plan.targets if t not in ("central", "proxy", "update")]
    if bad:
        raise FedlppError(f"Invalid [attacks] targets {bad} in {where} "
                          "(allowed: central, proxy, update)")
    if not isinstance(plan.resamples, int) or plan.resamples < 1:
        raise FedlppError(f"Invalid [attacks] resamples {plan.resamples!r} in {where} "
                          "(allowed: an integer >= 1)")
    if not (isinstance(plan.primary, dict) and isinstance(plan.primary_recovery, str)
            and all(isinstance(v, str) for v in plan.primary.values())):
        raise FedlppError(f"Invalid [attacks] primary in {where}: expected a table such as "
                          '{central = "loss"} and a string primary_recovery')
    for target in plan.primary:
        if target not in plan.targets:
            raise FedlppError(f"Invalid [attacks] primary target {target!r} in {where} (the "
                              f"suite runs targets: {', '.join(plan.targets)})")
    if not (plan.primary or plan.primary_recovery):
        return
    from attacks.base import ATTACKS
    names = ATTACKS.names() if "all" in plan.names else plan.names
    kinds = {n: ATTACKS.get(n).kind for n in names}
    for target, name in plan.primary.items():
        if kinds.get(name) != "membership":
            raise FedlppError(f"Invalid [attacks] primary {target} = {name!r} in {where} "
                              "(allowed: a membership attack of the suite's names: "
                              f"{', '.join(n for n in names if kinds[n] == 'membership')})")
    if plan.primary_recovery and kinds.get(plan.primary_recovery) != "recovery":
        raise FedlppError(f"Invalid [attacks] primary_recovery {plan.primary_recovery!r} in "
                          f"{where} (allowed: a recovery attack of the suite's names: "
                          f"{', '.join(n for n in names if kinds[n] == 'recovery')})")


def grid_plan(plan: AttackPlan, value: Any, where: str) -> AttackPlan:
    """A ``[[grid]]``'s ``attacks = [{names = [...], ...}]``: the suite's attack plan with the
    given keys replaced for that grid's cells (e.g. LiRA only where shadows are affordable)."""
    if not isinstance(value, dict):
        raise FedlppError(f"Invalid grid attacks {value!r} in {where} (expected a one-element "
                          'list of tables of [attacks] keys, e.g. attacks = [{names = ["loss"]}])')
    changes = {k: v for k, v in value.items() if k != "label"}
    try:
        cell_plan = dataclasses.replace(plan, **changes)
    except TypeError as exc:
        raise FedlppError(f"Invalid grid attacks in {where}: {exc}") from None
    return _checked(cell_plan, where)


def attack_plan(raw: dict[str, Any], *, where: str) -> AttackPlan:
    """The ``[attacks]`` section, its attacks and options checked before any cell is built."""
    try:
        plan = AttackPlan(**raw.get("attacks", {}))
    except TypeError as exc:
        raise FedlppError(f"Invalid [attacks] section in {where}: {exc}") from None
    return _checked(plan, where)


def _checked(plan: AttackPlan, where: str) -> AttackPlan:
    """``plan`` once its attacks and options build and :func:`_check_plan` passes: an unknown
    attack or option fails before any cell."""
    if plan.names:
        from attacks.runner import build_attacks

        build_attacks(plan.names, plan.set)
    _check_plan(plan, where)
    return plan
