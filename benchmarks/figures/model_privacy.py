"""Where does model privacy appear? Central gain lost against proxy gain kept.

For every cell: gain(model) = log(ppl_base) − log(ppl_model) (LM) or accuracy − base accuracy
(classification); proxy gain kept = gain(proxy) / gain(central) (same cell); central gain lost =
1 − gain(central) / gain(central of the fp32 cell of the same setting and seed). One point per
setting (mean over seeds), labelled by what varies among the points (bits, quantization block
size, LoRA rank / alpha, scope, other grid choices). The x axis is reversed so that the lower
right is where FedLPP keeps the central model's gain while the proxy keeps none.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks.figures.common import (
    Figure,
    frame,
    grouped,
    key,
    listing,
    panels,
    pin,
    seed,
    task,
    utility_key,
    variant,
)

KEPT_LIMITS = (-0.5, 1.5)
LOST_LIMITS = (-0.5, 1.0)
MATCH = ("task", "partition", "quant.scope")  # what an fp32 partner shares besides the seed


def gain(cell: dict[str, Any], model: str) -> float | None:
    """Utility gain of ``model`` (central / proxy) over the untrained base, in the same cell."""
    final = cell["train"]["final"]
    key = utility_key(cell)
    try:
        now, base = final[model][key], final["base"][key]
    except (KeyError, TypeError):
        return None
    if now is None or base is None:
        return None
    if key == "perplexity":
        return math.log(base) - math.log(now) if now > 0 and base > 0 else None
    return now - base


def traits(cell: dict[str, Any]) -> dict[str, Any]:
    """What may vary between points: broadcast, quantization and LoRA choices, other labels."""
    cfg = cell["config"]
    quant, lora = cfg["quant"], cfg.get("lora", {})
    found = {"quant": variant(cell), "bits": quant.get("bits"), "block": quant.get("block_size"),
             "r": lora.get("r"), "alpha": lora.get("alpha"), "scope": quant.get("scope")}
    return found | {k.rsplit(".", 1)[-1]: v for k, v in cell["labels"].items()
                    if k not in ("quant", "seed", "quant.scope")}


def _fp32_partner(cell: dict[str, Any], fp32: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fp32 cell with every other label and the seed equal; else the one that shares task,
    partition, scope and seed (the main matrix's, for a cell of a sweep)."""
    labels = {k: v for k, v in cell["labels"].items() if k != "quant"}
    for other in fp32:
        if {k: v for k, v in other["labels"].items() if k != "quant"} == labels:
            return other
    key = {k: cell["labels"].get(k) for k in MATCH}
    for other in fp32:
        if seed(other) == seed(cell) and {k: other["labels"].get(k) for k in MATCH} == key \
                and set(other["labels"]) <= {*MATCH, "quant", "seed"}:
            return other
    return None


def _points(group: list[dict[str, Any]]) -> tuple[list[tuple[dict, float, float]], list[str]]:
    """(traits, lost, kept) per setting (mean over seeds) and why cells were skipped."""
    fp32 = [c for c in group if variant(c) == "fp32"]
    kept: dict[str, list[tuple[float, float]]] = {}
    who: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for cell in group:
        if variant(cell) == "fp32":
            continue
        central, proxy = gain(cell, "central"), gain(cell, "proxy")
        partner = _fp32_partner(cell, fp32)
        reference = gain(partner, "central") if partner else None
        if central is None or central <= 0:
            skipped.append("central gain not > 0")
        elif partner is None:
            skipped.append("no fp32 cell of the same setting and seed")
        elif reference is None or reference <= 0:
            skipped.append("the fp32 cell's central gain not > 0")
        elif proxy is None:
            skipped.append("no proxy utility")
        else:
            name = repr(sorted(traits(cell).items(), key=str))
            who[name] = traits(cell)
            kept.setdefault(name, []).append((1 - central / reference, proxy / central))
    points = [(who[k], float(np.mean([v[0] for v in vs])), float(np.mean([v[1] for v in vs])))
              for k, vs in kept.items()]
    return points, skipped


def _label(found: dict[str, Any], varying: list[str]) -> str:
    """A point's name: the traits that vary (task and partition are its colour)."""
    keys = [k for k in varying if k not in ("task", "partition") and found.get(k) is not None
            and not (k == "bits" and "quant" in varying)]
    return ", ".join(str(found[k]) if k == "quant" else f"{k}={found[k]}" for k in keys) \
        or str(found["quant"])


def _panel(ax, data: str, points: list[tuple[dict, float, float]]) -> None:
    varying = [k for k in dict.fromkeys(k for p in points for k in p[0])
               if len({repr(p[0].get(k)) for p in points}) > 1]
    ax.invert_xaxis()  # before pinning: arrowheads point the way the axis runs
    colors = grouped(points, lambda p: (p[0].get("task"), p[0].get("partition")))
    for i, (where, pts) in enumerate(colors.items()):
        key(ax, ", ".join(str(w) for w in where if w is not None) or data, f"C{i % 10}")
        for found, lost, kept in pts:
            pin(ax, lost, kept, xlim=LOST_LIMITS, ylim=KEPT_LIMITS, color=f"C{i % 10}",
                name=_label(found, varying))
    ax.scatter([0.0], [1.0], marker="*", s=160, facecolors="none", edgecolors="black",
               zorder=2, label="fp32 (by definition)")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set(xlim=(LOST_LIMITS[1], LOST_LIMITS[0]), ylim=KEPT_LIMITS,
           xlabel="central gain lost = 1 − gain(central) / gain(fp32 central)  (axis reversed)",
           ylabel="proxy gain kept = gain(proxy) / gain(central)", title=data)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def figures(cells: list[dict[str, Any]]) -> list[Figure]:
    by_task = grouped(cells, task)
    if not by_task:
        return []
    fig, axes = panels(len(by_task), cols=2, size=(6.4, 5.2))
    notes, total = [], 0
    for ax, (data, group) in zip(axes, by_task.items(), strict=True):
        points, skipped = _points(group)
        total += len(points)
        for reason in dict.fromkeys(skipped):
            notes.append(f"{data}: {skipped.count(reason)} cell(s) skipped: {reason}")
        _panel(ax, data, points)
    caption = ("Gain over the untrained model: log(ppl_base) − log(ppl_model) for language "
               "modelling, accuracy − base accuracy for classification; final (selected) "
               "models. One point per setting, mean over seeds; fp32 is (0, 1) by definition. "
               f"Axes clipped (lost to [{LOST_LIMITS[0]}, {LOST_LIMITS[1]}], kept to "
               f"[{KEPT_LIMITS[0]}, {KEPT_LIMITS[1]}]): points beyond are drawn at the edge "
               f"with their value. {total} point(s) shown.")
    if notes:
        caption += "\n" + listing(notes)
    frame(fig, title="Where does model privacy appear? Central gain lost vs proxy gain kept "
                     "(lower right: central keeps its gain, the proxy is useless)",
          caption=caption)
    return [("model_privacy.png", fig)]
