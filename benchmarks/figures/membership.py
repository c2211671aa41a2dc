"""How much membership leaks per target, per broadcast bit width?

One figure per task, a panel per setting: the suite's primary membership attack's AUC minus its
control AUC (the same attack on a model that never saw the data: the leakage attributable to
training) for each target (central, proxy, update) per variant, mean over seeds with its 95 % CI
(as the report aggregates it). Undefined values are listed under the figure.
"""

from __future__ import annotations

from typing import Any

from benchmarks.attack_plan import primary_result
from benchmarks.figures.common import (
    TARGETS,
    Figure,
    describe,
    frame,
    grouped,
    listing,
    order,
    panels,
    setting,
    slug,
    task,
    variant,
)
from benchmarks.stats import combine


def _primary(cell: dict[str, Any], target: str) -> dict[str, Any] | None:
    return primary_result(cell, target)


def _has_control(cell: dict[str, Any]) -> bool:
    """Whether a primary attack was measured against its control (older cells were not)."""
    found = [_primary(cell, t) for t in TARGETS]
    return any("auc_minus_control" in a["metrics"] for a in found if a)


def _panel(ax, where: str, by_variant: dict[str, list[dict[str, Any]]],
           undefined: list[str]) -> None:
    variants = sorted(by_variant, key=order)
    width = 0.8 / len(TARGETS)
    for j, target in enumerate(TARGETS):
        color, labelled = f"C{j}", False
        for i, name in enumerate(variants):
            found = [_primary(c, target) for c in by_variant[name]]
            found = [a for a in found if a]
            if not found:
                continue
            leak = combine([a["metrics"].get("auc_minus_control") for a in found])
            if leak["value"] is None:
                undefined.append(f"{where} · {name} · {target}: "
                                 + ("; ".join(leak["reasons"]) or "undefined"))
                continue
            x = i + (j - 1) * width
            ax.errorbar([x], [leak["value"]], yerr=None if not leak["ci"] else [
                [leak["value"] - leak["ci"][0]], [leak["ci"][1] - leak["value"]]],
                fmt="o", color=color, capsize=3, markersize=5,
                label=None if labelled else f"{target}: {found[0]['attack']}")
            labelled = True
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(variants)), variants)
    ax.set(xlim=(-0.6, len(variants) - 0.4), xlabel="broadcast", ylabel="AUC − control AUC",
           title=where)
    ax.grid(alpha=0.3, axis="y")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def figures(cells: list[dict[str, Any]]) -> list[Figure]:
    out = []
    for data, group in grouped(filter(_has_control, cells), task).items():
        settings = grouped(group, setting)
        fig, axes = panels(len(settings), cols=2, size=(6.0, 3.8))
        undefined: list[str] = []
        for ax, (choices, members) in zip(axes, settings.items(), strict=True):
            _panel(ax, describe(choices), grouped(members, variant), undefined)
        caption = ("The primary membership attack per target (named in the suite before any "
                   "run): its AUC minus the AUC of the same attack on a model that never saw "
                   "the data (same records), i.e. the leakage attributable to training; 0 = "
                   "none. Mean over seeds; bars: 95 % CI from the bootstrap over records (seeds "
                   "held fixed).")
        if undefined:
            caption += f"\nUndefined ({len(undefined)}):\n" + listing(undefined)
        frame(fig, title=f"How much does membership leak from each target? ({data})",
              caption=caption)
        out.append((f"membership_{slug(data)}.png", fig))
    return out
