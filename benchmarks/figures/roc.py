"""ROC curves: how well does each membership attack separate members, down to low FPR?

Per membership attack: a panel per target, a line per broadcast variant, in the setting of the
suite's first cell and the lowest seed of each variant, on log-log axes. The region left of
1 / non-members is shaded: the sample cannot resolve a smaller FPR. The attack's control (the
same attack on a model that never saw the data) is dashed beside it where the cell stores its
curve, and its AUC is in the legend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.figures.common import (
    TARGETS,
    Figure,
    attacks,
    describe,
    frame,
    order,
    panels,
    seed,
    setting,
    slug,
    value,
    variant,
)


def control_curve(metrics: dict[str, Any]) -> dict[str, list[float]] | None:
    """The control's ROC, where the cell stores one."""
    found = (metrics.get("control") or {}).get("roc") or metrics.get("control_roc")
    return found if isinstance(found, dict) and found.get("fpr") else None


def _chosen(cells: list[dict[str, Any]]) -> tuple[tuple, dict[str, dict[str, Any]]]:
    """The first cell's setting and, per variant, its lowest-seed cell."""
    first = setting(cells[0])
    picked: dict[str, dict[str, Any]] = {}
    for cell in cells:
        if setting(cell) == first:
            name = variant(cell)
            if name not in picked or seed(cell) < seed(picked[name]):
                picked[name] = cell
    return first, dict(sorted(picked.items(), key=lambda kv: order(kv[0])))


def _draw(ax, curve: dict[str, list[float]], floor: float, **kw) -> None:
    fpr = np.clip(np.asarray(curve["fpr"], dtype=float), floor, 1.0)
    tpr = np.clip(np.asarray(curve["tpr"], dtype=float), floor, 1.0)
    ax.plot(fpr, tpr, **kw)


def _panel(ax, attack: str, target: str, picked: dict[str, dict[str, Any]]) -> bool:
    """One target's curves; returns whether some control curve was missing."""
    runs = {name: a["metrics"] for name, cell in picked.items()
            for a in attacks(cell, "membership")
            if a["attack"] == attack and a["config"].get("target") == target}
    if not runs:
        ax.set_visible(False)
        return False
    lows = [1.0 / m["num_nonmembers"] for m in runs.values() if m.get("num_nonmembers")]
    resolved = max(lows) if lows else 1e-2
    floor = resolved / 10
    controls = {name: control_curve(m) for name, m in runs.items()}
    shared = len({repr(c) for c in controls.values()}) == 1 and None not in controls.values()
    for i, (name, metrics) in enumerate(runs.items()):
        auc, control = value(metrics.get("auc")), value(metrics.get("control_auc"))
        label = name + (f" AUC {auc:.2f}" if auc is not None else "") + (
            f" (control {control:.2f})" if control is not None else "")
        _draw(ax, metrics["roc"], floor, color=f"C{i % 10}", label=label)
        if controls[name] and not shared:
            _draw(ax, controls[name], floor, color=f"C{i % 10}", linestyle="--", alpha=0.7)
    if shared:
        _draw(ax, next(iter(controls.values())), floor, color="black", linestyle="--",
              alpha=0.7, label="control (same attack, untrained model)")
    ax.axvspan(floor, resolved, color="0.85", zorder=0)
    ax.text((floor * resolved) ** 0.5, 0.5, "not resolved by the sample", rotation=90,
            transform=ax.get_xaxis_transform(), ha="center", va="center", fontsize=7,
            color="0.4")
    n = round(1 / resolved)
    ax.axvline(resolved, color="black", linestyle="-.", linewidth=0.9,
               label=f"1/{n} non-members: lowest FPR resolved")
    ax.plot([floor, 1], [floor, 1], color="grey", linewidth=0.8)
    ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1), xlabel="FPR",
           ylabel="TPR", title=f"{attack} on {target}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
    return any(c is None for c in controls.values())


def figures(cells: list[dict[str, Any]]) -> list[Figure]:
    if not cells:
        return []
    choices, picked = _chosen(cells)
    names = list(dict.fromkeys(a["attack"] for c in picked.values()
                               for a in attacks(c, "membership")))
    out = []
    for attack in names:
        fig, axes = panels(len(TARGETS), size=(4.6, 4.2))
        missing = [_panel(ax, attack, t, picked) for ax, t in zip(axes, TARGETS, strict=True)]
        seeds = sorted({str(seed(c)) for c in picked.values()})
        caption = ("Log-log ROC of the attack's scores, one line per broadcast variant "
                   f"(setting: {describe(choices)}; seed {', '.join(seeds)}). Shaded: FPRs "
                   "below 1 / non-members, which the sample cannot resolve (the curve there is "
                   "its value at FPR 0). Dashed: the control, the same attack on a model that "
                   "never saw the data; grey diagonal: chance.")
        if any(missing):
            caption += (" These cells store no control curve: the control's AUC is in the "
                        "legend only.")
        frame(fig, title=f"How well does {attack} tell members from non-members at low FPR? "
                         f"({describe(choices)})", caption=caption)
        out.append((f"roc_{slug(attack)}.png", fig))
    return out
