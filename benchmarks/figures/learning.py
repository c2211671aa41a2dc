"""Learning curves: does the proxy lag central as bits fall, and did training converge?

One figure per setting (task, partition, scope...), a panel per broadcast variant: central and
proxy utility on a fixed test subset per round (mean over seeds, each seed faint), the fp32 run's
central curve, the untrained model at round 0, and the round selected for the report. Cells from
before learning curves were stored (no ``train.start``) are left out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np
from matplotlib.ticker import FuncFormatter, MaxNLocator

from benchmarks.figures.common import (
    Figure,
    describe,
    frame,
    grouped,
    number,
    order,
    panels,
    setting,
    slug,
    utility_key,
    variant,
)

STYLE = {"central": ("-", "C0"), "proxy": ("--", "C1")}


def has_curves(cell: dict[str, Any]) -> bool:
    train = cell.get("train") or {}
    return isinstance(train.get("start"), dict) and any(
        isinstance(r.get("central"), dict) for r in train.get("rounds", []))


def _points(cell: dict[str, Any], part: str, key: str) -> tuple[list[int], list[float]]:
    """(round, utility) of one run; central starts at round 0 with the untrained model."""
    train = cell["train"]
    xs, ys = [], []
    start = (train["start"].get("central") or {}).get(key) if part == "central" else None
    if start is not None:
        xs, ys = [0], [start]
    for r in train["rounds"]:
        found = r.get(part)
        if isinstance(found, dict) and found.get(key) is not None:
            xs.append(r["round"])
            ys.append(found[key])
    return xs, ys


def _mean(runs: list[dict[str, Any]], part: str, key: str) -> tuple[list[int], list[float]]:
    by_round: dict[int, list[float]] = defaultdict(list)
    for cell in runs:
        for x, y in zip(*_points(cell, part, key), strict=True):
            by_round[x].append(y)
    rounds = sorted(by_round)
    return rounds, [float(np.mean(by_round[r])) for r in rounds]


def _status(runs: list[dict[str, Any]]) -> tuple[str, bool]:
    """Selected round(s) and convergence of a variant's seeds, and whether any did not
    converge."""
    n = len(runs)
    picks = Counter((s.get("round"), s.get("by"), s.get("metric"))
                    for s in (c["train"].get("selection") or {} for c in runs) if s)
    chosen = "; ".join(f"round {r} by {' '.join(filter(None, (by, metric)))} ({k}/{n})"
                       for (r, by, metric), k in sorted(picks.items(), key=str))
    verdicts = [c["train"].get("convergence") or {} for c in runs]
    yes = sum(v.get("converged") is True for v in verdicts)
    text = f"converged {yes}/{n}"
    failed = [v for v in verdicts if v.get("converged") is False]
    unjudged = [v for v in verdicts if v.get("converged") is None]
    if failed:
        share = failed[0].get("improvement_share")
        limit = failed[0].get("share")
        text += (f"; not: last rounds +{share:.1%} of gain (> {limit:.0%})"
                 if share is not None and limit is not None else "; not converged")
    elif unjudged:
        text += f"; not judged: {unjudged[0].get('reason') or 'no verdict'}"[:70]
    return (f"selected {chosen}\n" if chosen else "") + text, bool(failed)


def _panel(ax, name: str, runs: list[dict[str, Any]], fp32: list[dict[str, Any]],
           key: str) -> None:
    core: list[float] = []
    proxy_top = -np.inf
    for part, (style, color) in STYLE.items():
        for cell in runs:
            xs, ys = _points(cell, part, key)
            ax.plot(xs, ys, style, color=color, alpha=0.25, linewidth=0.8)
            core += ys if part == "central" else []
            proxy_top = max(proxy_top, *ys) if part == "proxy" and ys else proxy_top
        xs, ys = _mean(runs, part, key)
        ax.plot(xs, ys, style, color=color, linewidth=2, marker="o", markersize=3,
                label=f"{part} (mean over seeds)")
    if fp32 and name != "fp32":
        xs, ys = _mean(fp32, "central", key)
        ax.plot(xs, ys, ":", color="0.35", linewidth=1.5, label="fp32 run's central")
        core += ys
    starts = [(c["train"]["start"].get("central") or {}).get(key) for c in runs]
    starts = [s for s in starts if s is not None]
    if starts:
        ax.scatter([0], [np.mean(starts)], marker="*", s=90, color="black", zorder=4,
                   label="untrained model (round 0)")
    for r in {(c["train"].get("selection") or {}).get("round") for c in runs} - {None}:
        ax.axvline(r, color="C2", linewidth=1.2, alpha=0.7)
    ax.plot([], [], color="C2", label="selected round")
    text, failed = _status(runs)
    ax.set(xlabel="round", ylabel=key)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if key == "perplexity" and core:
        ax.set_yscale("log")
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(FuncFormatter(lambda v, _: f"{v:g}"))
        top = min(max(max(core), proxy_top) * 1.15, max(core) * 4)
        ax.set_ylim(min(core) / 1.2, top)
        if proxy_top > top:  # a useless proxy would flatten every other curve
            text += f"\nproxy above the axis (up to {number(proxy_top)})"
    ax.set_title(f"{name}\n{text}", fontsize=8, color="C3" if failed else "black")


def figures(cells: list[dict[str, Any]]) -> list[Figure]:
    out = []
    for choices, group in grouped(filter(has_curves, cells), setting).items():
        by_variant = grouped(group, variant)
        names = sorted(by_variant, key=order)
        key = utility_key(group[0])
        fig, axes = panels(len(names), size=(4.6, 3.6))
        for ax, name in zip(axes, names, strict=True):
            _panel(ax, name, by_variant[name], by_variant.get("fp32", []), key)
        axes[0].legend(fontsize=7)
        where = describe(choices)
        frame(fig, title=f"Does the proxy lag central as bits fall, and did training converge? "
                         f"({where})",
              caption="Utility per round on a fixed subset of the test split. Solid: central "
                      "(the server's full-precision model); dashed: proxy (the quantized copy "
                      "clients hold); dotted grey: the fp32 run's central; star: the untrained "
                      "model at round 0; thick: mean over seeds, thin: each seed; green line: "
                      "the round selected for the report (lowest validation loss, or the last). "
                      "Panel titles give the selection and the convergence verdict per seed "
                      "(red: some seed did not converge).")
        out.append((f"learning_curves{'_' + slug(where) if choices else ''}.png", fig))
    return out
