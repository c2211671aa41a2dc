"""Run attacks on a finished run and write one JSON per attack into ``RUN_DIR/attacks/``.

A result's file name holds every option that changes it (:func:`result_name`): ``loss@central``
for the default options, ``loss@proxy+client=1`` for another client's view.

A plugin that raises fails its own result (error recorded), never the whole command. An attack
the run's training method does not support (its ``attackable`` pairs) is recorded with status
``not_applicable`` and the reason, and not run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from attacks.audit import DEFAULT_DELTA
from attacks.base import ATTACKS, Attack, AttackResult, NotApplicable
from attacks.context import AttackContext, Observation
from attacks.leakage import membership_metrics
from attacks.model_metrics import gain_metrics, param_rel_error
from fedlpp.config import RunConfig, merge, parse_set
from fedlpp.defenses import build_defenses
from fedlpp.errors import FedlppError
from fedlpp.io import atomic_write_json
from fedlpp.meta import provenance
from fedlpp.methods import build_method
from fedlpp.typed import options as make_options


def build_attacks(names: list[str], sets: list[str]) -> list[Attack]:
    """Attacks by name (``all`` = every registered one) with ``key=value`` / ``name.key=value``
    options; an option no selected attack has is an error."""
    chosen = ATTACKS.names() if "all" in names else list(dict.fromkeys(names))
    classes = {n: ATTACKS.get(n) for n in chosen}
    options: dict[str, dict[str, Any]] = {n: {} for n in chosen}
    for item in sets:
        path, value = parse_set(item)
        if len(path) == 2 and path[0] in classes:
            targets, key = [path[0]], path[1]
        elif len(path) == 1:
            key = path[0]
            targets = [n for n, c in classes.items()
                       if key in {f.name for f in dataclasses.fields(c.Config)}]
        else:
            raise FedlppError(f"Invalid attack option {item!r} (expected key=value or "
                              f"<attack>.key=value with <attack> in: {', '.join(chosen)})")
        if not targets:
            raise FedlppError(f"No selected attack has option '{key}' "
                              f"(attacks: {', '.join(chosen)})")
        for n in targets:
            merge(options[n], [key], value)
    return [cls(make_options(cls.Config, options[n], where=f"attack '{n}'"))
            for n, cls in classes.items()]


_SAFE = re.compile(r"[A-Za-z0-9_.,=+-]+")  # a file name as is
_TOKEN = re.compile(r"[A-Za-z0-9_.+-]+")  # an option value in a file name (no ',' or '=')


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _token(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def result_name(attack: Attack) -> str:
    """The name of an attack's result file: ``NAME[@target]`` for its default options, else
    with the options that differ from them, ``NAME[@target]+key=value,...`` (sorted; a short
    hash of them, ``NAME[@target]+1a2b3c4d``, when that is long or not a safe file name), so
    that two results of different options never share a file (``loss@proxy+client=1``)."""
    config = attack.config
    target = getattr(config, "target", None)
    name = attack.registered_name
    name = name if _SAFE.fullmatch(name) and not name.startswith(".") else \
        "_" + hashlib.sha256(name.encode()).hexdigest()[:8]  # a plugin's odd name stays in attacks/
    name = f"{name}@{target}" if target else name
    changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
               if f.name != "target" and getattr(config, f.name) != _default(f)}
    if not changed:
        return name
    tokens = {k: _token(v) for k, v in changed.items()}
    text = ",".join(f"{k}={v}" for k, v in sorted(tokens.items()))
    if len(text) <= 60 and all(_TOKEN.fullmatch(v) for v in tokens.values()):
        return f"{name}+{text}"
    digest = hashlib.sha256(json.dumps(changed, sort_keys=True, default=str).encode())
    return f"{name}+{digest.hexdigest()[:8]}"


def audit_delta(*, defenses: Sequence[Mapping[str, Any]]) -> tuple[float, str]:
    """The delta to audit epsilon at, and where it comes from: that of the first of the run's
    defense tables whose defense has a ``delta`` option (a DP accountant's, its default when
    the table leaves it out), else :data:`attacks.audit.DEFAULT_DELTA`."""
    for i, defense in enumerate(build_defenses(list(defenses))):
        delta = getattr(defense.config, "delta", None)
        if delta is not None:
            return float(delta), f"defenses[{i}] ({defense.name})"
    return DEFAULT_DELTA, "default (no defense has a delta)"


def score_membership(res: AttackResult, *, resamples: int, seed: int,
                     defenses: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The attack's data-leakage metrics beside the same metrics on its control (the untrained
    model's scores on the same records) and the paired difference ``auc - control_auc``;
    ``epsilon_lb`` at the delta of the run's ``defenses`` (:func:`audit_delta`)."""
    reason = ("the attack gave no control scores (the untrained model's scores on the same "
              "records)") if res.control_scores is None else ""
    delta, source = audit_delta(defenses=defenses)
    out = membership_metrics(scores=res.scores, labels=res.labels,
                             control_scores=res.control_scores, control_reason=reason,
                             resamples=resamples, seed=seed, delta=delta)
    out["epsilon_lb"]["delta_source"] = source
    return out


def _once_per_run(ctx: AttackContext, role: str, make: Callable[[], Any]) -> Any:
    """``make()`` once per run for every recovery attack (base and central per-record utility)."""
    key = ("record-utility", role)
    if key not in ctx.cache:
        ctx.cache[key] = make()
    return ctx.cache[key]


def _errors(res: AttackResult, ctx: AttackContext, master: dict[str, Any]) -> dict[str, Any]:
    """``param_rel_error`` on the LoRA deltas and heads; ``param_rel_error_base`` on the private
    base weights (scope ``full``), each ``{"value", "reason"}``."""
    lora = ctx.trace.config.lora
    base = set(ctx.private_base)

    def error(names: set[str], what: str) -> dict[str, Any]:
        if not names:
            return {"value": None, "reason": f"no private {what} (scope "
                                              f"{ctx.trace.config.quant.scope!r})"}
        value = param_rel_error(recovered={n: res.recovered[n] for n in names},
                                master={n: master[n] for n in names}, lora_scale=lora.alpha / lora.r)
        return {"value": value, "reason": None if value is not None else
                f"the master's {what} are all zero (no scale to be relative to)"}

    if set(res.recovered) != set(master):
        odd = sorted(set(master) ^ set(res.recovered))
        raise ValueError(f"recovered and master tensors differ ({len(odd)} names), e.g. '{odd[0]}'")
    return {"param_rel_error": error(set(master) - base, "LoRA deltas and heads"),
            "param_rel_error_base": error(base, "base weights")}


def score_recovery(res: AttackResult, ctx: AttackContext, *, resamples: int = 1000,
                   seed: int = 0) -> dict[str, Any]:
    """Model leakage of a recovered model: its utility, its share of the central gain (and its
    no-payload control's, and the difference), parameter errors against the master."""
    final = ctx.trace.result["final"]
    key = "loss" if ctx.task == "lm" else "accuracy"
    master = {**ctx.private_base, **ctx.trace.master(res.round)}
    central = ctx.trace.master(ctx.trace.num_rounds + 1)
    records = {"base": _once_per_run(ctx, "base", lambda: ctx.record_utility(ctx.initial)),
               "central": _once_per_run(ctx, "central", lambda: ctx.record_utility(central)),
               "recovered": ctx.record_utility(res.recovered),
               "control": None if res.control is None else ctx.record_utility(res.control)}
    gains = gain_metrics(**records, key=key, higher_is_better=key == "accuracy",
                         resamples=resamples, seed=seed,
                         control_reason="the attack has no no-payload control")
    return {
        "utility": ctx.utility(res.recovered),
        "control_utility": None if res.control is None else ctx.utility(res.control),
        "gain_metric": key, **gains, **_errors(res, ctx, master),
        "round": res.round, "num_records": len(records["base"]["count"]),
        "resamples": resamples,
        "central": final["central"], "proxy": final["proxy"], "base": final["base"],
    }


def not_applicable(attack: Attack, config: RunConfig) -> str | None:
    """Why ``attack`` does not apply to a run of ``config``, or None.

    A training method may declare ``attackable``: the (kind, target) pairs its trace supports,
    a recovery attack's target being ``payloads``; a method that declares none supports all.
    """
    method = config.fed.method
    allowed = getattr(build_method(method), "attackable", None)
    target = getattr(attack.config, "target", None) if attack.kind == "membership" else "payloads"
    if allowed is None or (attack.kind, target) in allowed:
        return None
    supported = ", ".join(f"{kind} on {what}" for kind, what in sorted(allowed))
    return f"not applicable to fed.method={method} (it supports: {supported})"


def json_safe(value: Any) -> Any:
    """``value`` as JSON can hold it: numpy and torch numbers and arrays as numbers and lists,
    tuples and sets as lists (a set sorted), keys as strings, a non-finite float as None and
    anything else as its ``str``; what a result file keeps of ``AttackResult.extra``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return [json_safe(v) for v in sorted(value, key=str)]
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return json_safe(value.tolist())
    return str(value)


def load_context(run_dir: str | Path) -> AttackContext:
    """A finished run loaded for attacks (its training method's model installed)."""
    return AttackContext(run_dir)


def run_attacks(run_dir: str | Path, *, names: list[str], sets: list[str] = (),
                resamples: int = 1000, quiet: bool = False,
                ctx: AttackContext | None = None) -> list[dict[str, Any]]:
    """Run the named attacks on ``run_dir``; returns (and writes) one result dict per attack.

    ``ctx`` reuses an already loaded run (model, data, signal cache).
    """
    chosen = build_attacks(list(names), list(sets))  # config errors before any loading
    ctx = ctx or load_context(run_dir)
    out_dir = Path(run_dir) / "attacks"
    results = []
    for attack in tqdm(chosen, disable=quiet, desc="attacks", unit="attack"):
        t0 = time.perf_counter()
        record: dict[str, Any] = {
            "attack": attack.registered_name, "kind": attack.kind,
            "threat_model": attack.threat_model, "attackers": list(attack.attackers()),
            "config": dataclasses.asdict(attack.config),
        }
        reason = not_applicable(attack, ctx.trace.config)
        if reason is not None:
            record.update(status="not_applicable", error=reason)
        else:
            try:
                obs = Observation(attack.threat_model, ctx, attack.attackers())
                res = attack.run(obs)
                if attack.kind == "membership":
                    metrics = score_membership(res, resamples=resamples, seed=0,
                                               defenses=ctx.trace.config.defenses)
                else:
                    metrics = score_recovery(res, ctx, resamples=resamples, seed=0)
                record.update(status="ok", metrics=metrics, extra=json_safe(res.extra))
            except NotApplicable as exc:  # this run cannot give the attack what it needs
                record.update(status="not_applicable", error=" ".join(str(exc).split()))
            except Exception as exc:  # noqa: BLE001 - a failing plugin fails only its own result
                record.update(status="failed",
                              error=" ".join(f"{type(exc).__name__}: {exc}".split()),
                              traceback=traceback.format_exc())  # in full: the plugin's frames
        record["meta"] = {**provenance(), "seconds": time.perf_counter() - t0}
        atomic_write_json(out_dir / f"{result_name(attack)}.json", record)
        results.append(record)
    return results

