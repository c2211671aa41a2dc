"""The report's defense table: for each row that runs a defense, a robust aggregation rule or
adversarial clients, what it cost (central utility) and what it bought (leakage), with the DP
accountant's epsilon beside the auditor's empirical lower bound.

Over seeds: the accountant's epsilon is the largest of the seeds' (it does not depend on the
data); the auditor's bound is the smallest of the seeds' (each is a lower bound at its level, so
the smallest one still is; a mean of lower bounds would not be).
"""

from __future__ import annotations

from typing import Any

from benchmarks.attack_plan import primary_result
from benchmarks.stats import fmt, fmt_combined

DP_KEYS = ("epsilon", "delta", "noise_multiplier", "clipped_share")


def is_defended(config: dict[str, Any]) -> bool:
    """Whether a cell's config runs a defense, a non-default aggregation rule or adversaries."""
    return bool(config.get("defenses") or config.get("adversaries")
                or (config.get("aggregator") or {}).get("name", "mean") != "mean")


def describe_defense(config: dict[str, Any]) -> str:
    """``dp-sgd(noise_multiplier=1.0) + median`` style summary of what a row changes."""
    parts = [d["name"] + ("(" + ", ".join(f"{k}={v}" for k, v in d.items() if k != "name") + ")"
                          if len(d) > 1 else "") for d in config.get("defenses") or []]
    agg = config.get("aggregator") or {"name": "mean"}
    if agg.get("name", "mean") != "mean":
        opts = ", ".join(f"{k}={v}" for k, v in agg.items() if k != "name")
        parts.append(f"aggregator {agg['name']}" + (f"({opts})" if opts else ""))
    for a in config.get("adversaries") or []:
        opts = ", ".join(f"{k}={v}" for k, v in a.items() if k != "behaviour")
        parts.append(f"adversary {a.get('behaviour')}({opts})")
    return " + ".join(parts) or "none"


def dp_reports(cell: dict[str, Any]) -> list[dict[str, Any]]:
    """The reports of the cell's defenses that account for privacy (those with an epsilon)."""
    return [d for d in (cell["train"].get("defenses") or []) if "epsilon" in d]


def audit(cell: dict[str, Any]) -> tuple[dict | None, dict | None]:
    """The auditor's bound from the primary membership attack on ``central`` and its control's."""
    found = primary_result(cell, "central")
    if found is None:
        return None, None
    m = found["metrics"]
    return m.get("epsilon_lb"), (m.get("control") or {}).get("epsilon_lb")


def _least(values: list[dict | None]) -> tuple[float | None, str | None]:
    have = [v["value"] for v in values if v and v.get("value") is not None]
    if len(have) == len(values) and have:
        return min(have), None
    why = next((v.get("reason") for v in values if v and v.get("value") is None), None)
    return None, why or "no primary membership attack on central"


def privacy_columns(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Accountant epsilon (largest over seeds), its delta, the auditor's bound and its control's
    (smallest over seeds), the share of clipped gradients or updates (mean over seeds)."""
    reports = [dp_reports(c) for c in cells]
    eps, delta, clipped, why = None, None, [], None
    if any(reports):
        firsts = [r[0] for r in reports if r]
        values = [f["epsilon"]["value"] for f in firsts]
        if None in values:
            why = next(f["epsilon"]["reason"] for f in firsts if f["epsilon"]["value"] is None)
        else:
            eps = max(values)
        delta = firsts[0]["delta"]
        clipped = [f["clipped_share"] for f in firsts if f.get("clipped_share") is not None]
    if not clipped:  # a clipping aggregation rule (norm-bound) says per round what it clipped
        done = [r.get("aggregation") or {} for c in cells for r in c["train"].get("rounds", [])]
        updates = sum(a.get("updates", 0) for a in done if "clipped" in a)
        if updates:
            clipped = [sum(a["clipped"] for a in done if "clipped" in a) / updates]
    bounds = [audit(c) for c in cells]
    lb, lb_why = _least([b[0] for b in bounds])
    control, _ = _least([b[1] for b in bounds])
    return {"epsilon": eps, "epsilon_reason": why, "delta": delta,
            "epsilon_lb": lb, "epsilon_lb_reason": lb_why, "control_epsilon_lb": control,
            "clipped_share": sum(clipped) / len(clipped) if clipped else None}


def defense_tables(rows: list[dict[str, Any]], cells: list[dict[str, Any]]) -> list[str]:
    """A markdown table of the defended rows and the undefended rows of the same setting."""
    if not any(is_defended(r["config"]) for r in rows):
        return []
    by_group = {}
    for c in cells:
        by_group.setdefault(tuple(sorted((k, str(v)) for k, v in c["labels"].items()
                                         if k != "seed")), []).append(c)
    lines = ["## Defenses", "",
             "What each defense costs (central utility) and buys (leakage of the primary attacks), "
             "with the DP accountant's epsilon at its delta (the largest over seeds; record-level "
             "per client for `dp-sgd`, user-level for `dp-fedavg`) beside the auditor's empirical "
             "lower bound from the primary membership attack on central (one-sided "
             "Clopper-Pearson at 95 %, threshold chosen on held-out records; the smallest over "
             "seeds) and the same bound on the untrained model (control). A bound is per record: "
             "it can never exceed a valid epsilon, and at this sample size it cannot be large. clipped: the "
             "share of per-record gradients (`dp-sgd`) or of client updates (`dp-fedavg`, "
             "`norm-bound`) that were clipped.", "",
             "| row | defense | central | proxy | gain over control | AUC − control central "
             "| ε (accountant, δ) | ε lower bound (control) | clipped | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes: set[str] = set()
    for r in rows:
        group = tuple(sorted((k, str(v)) for k, v in r["group"].items()))
        mine = by_group.get(group, [])
        p = privacy_columns(mine)
        gain = (r["gain"] or {}).get("gain_over_control")
        leak = (r.get("leak_central") or {}).get("auc_minus_control")
        eps = (f"{p['epsilon']:.2f} (δ={p['delta']:g})" if p["epsilon"] is not None else
               "–" if p["delta"] is None else f"– (δ={p['delta']:g})")
        if p["epsilon_reason"]:
            notes.add(f"ε –: {p['epsilon_reason']}")
        lb = fmt(p["epsilon_lb"], digits=2) + f" ({fmt(p['control_epsilon_lb'], digits=2)})"
        if p["epsilon_lb_reason"]:
            notes.add(f"ε lower bound –: {p['epsilon_lb_reason']}")
        label = ", ".join(str(v) for k, v in r["group"].items() if k not in ("task", "partition"))
        lines.append(
            f"| {label or r['bits']} | {describe_defense(r['config'])} | "
            f"{fmt(r['central'][0], r['utility']['central']['ci'])} | "
            f"{fmt(r['proxy'][0], r['utility']['proxy']['ci'])} | "
            f"{fmt_combined(gain, sign=True) if gain else '–'} | "
            f"{fmt_combined(leak, sign=True) if leak else '–'} | {eps} | {lb} | "
            f"{fmt(p['clipped_share'], digits=2)} | {r['seeds']} |")
    lines += [""] + [f"- {n}" for n in sorted(notes)] + [""]
    return lines
