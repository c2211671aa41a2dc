"""Run attacks on a finished run and write one JSON per attack into ``RUN_DIR/attacks/``.

A plugin that raises fails its own result (error recorded), never the whole command.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from attacks.base import ATTACKS, Attack, AttackResult
from attacks.context import AttackContext, Observation
from attacks.metrics import calibration_check, membership_metrics, param_rel_error, recovered_gain
from fedlpp.config import merge, parse_set
from fedlpp.errors import FedlppError
from fedlpp.io import atomic_write_json
from fedlpp.meta import provenance
from fedlpp.registry import make_config


def load_builtin() -> None:
    """Import every built-in attack module (each registers itself)."""
    for sub in ("membership", "recovery"):
        pkg = importlib.import_module(f"attacks.{sub}")
        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name != "base":
                importlib.import_module(f"attacks.{sub}.{mod.name}")


def build_attacks(names: list[str], sets: list[str]) -> list[Attack]:
    """Attacks by name (``all`` = every registered one) with ``key=value`` / ``name.key=value``
    options; an option no selected attack has is an error."""
    load_builtin()
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
    return [cls(make_config(cls.Config, options[n], where=f"attack '{n}'"))
            for n, cls in classes.items()]


def result_name(attack: Attack) -> str:
    target = getattr(attack.config, "target", None)
    return f"{attack.registered_name}@{target}" if target else attack.registered_name


def score_membership(res: AttackResult, *, resamples: int, seed: int) -> dict[str, Any]:
    metrics = membership_metrics(scores=res.scores, labels=res.labels, resamples=resamples, seed=seed)
    non = res.scores[res.labels == 0]
    half = np.random.default_rng(seed).permutation(len(non))
    a, b = non[half[: len(non) // 2]], non[half[len(non) // 2 :]]
    if len(a) and len(b):
        metrics["calibration"] = calibration_check(nonmember_scores_a=a, nonmember_scores_b=b,
                                                   resamples=resamples, seed=seed)
    return metrics


def score_recovery(res: AttackResult, ctx: AttackContext) -> dict[str, Any]:
    final = ctx.trace.result["final"]
    util = ctx.utility(res.recovered)
    key = "loss" if ctx.task == "lm" else "accuracy"
    master = {**ctx.private_base, **ctx.trace.master(res.round)}
    return {
        "utility": util,
        "recovered_gain": recovered_gain(recovered=util[key], base=final["base"][key],
                                         central=final["central"][key],
                                         higher_is_better=key == "accuracy"),
        "gain_metric": key,
        "param_rel_error": param_rel_error(recovered=res.recovered, master=master),
        "round": res.round,
        "central": final["central"], "proxy": final["proxy"], "base": final["base"],
    }


def run_attacks(run_dir: str | Path, *, names: list[str], sets: list[str] = (),
                resamples: int = 1000, quiet: bool = False,
                ctx: AttackContext | None = None) -> list[dict[str, Any]]:
    """Run the named attacks on ``run_dir``; returns (and writes) one result dict per attack.

    ``ctx`` reuses an already loaded run (model, data, signal cache).
    """
    chosen = build_attacks(list(names), list(sets))  # config errors before any loading
    ctx = ctx or AttackContext(run_dir)
    out_dir = Path(run_dir) / "attacks"
    results = []
    for attack in tqdm(chosen, disable=quiet, desc="attacks", unit="attack"):
        t0 = time.perf_counter()
        record: dict[str, Any] = {
            "attack": attack.registered_name, "kind": attack.kind,
            "threat_model": attack.threat_model, "attackers": list(attack.attackers()),
            "config": dataclasses.asdict(attack.config),
        }
        try:
            obs = Observation(attack.threat_model, ctx, attack.attackers())
            res = attack.run(obs)
            if attack.kind == "membership":
                metrics = score_membership(res, resamples=resamples, seed=0)
            else:
                metrics = score_recovery(res, ctx)
            record.update(status="ok", metrics=metrics, extra=res.extra)
        except Exception as exc:  # noqa: BLE001 - a failing plugin fails only its own result
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc(limit=8))
        record["meta"] = {**provenance(), "seconds": time.perf_counter() - t0}
        atomic_write_json(out_dir / f"{result_name(attack)}.json", record)
        results.append(record)
    return results

