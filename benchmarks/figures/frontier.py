"""Privacy-utility frontier of defenses: what does each defense cost, and what does it buy?

One point per defense setting (mean over its seeds): central utility (x) against the primary
membership attack's AUC − control on central (left) and the primary recovery attack's gain over
its no-payload control (right). DP points carry the accountant's epsilon and the auditor's lower
bound (``ε ≤ ... / ≥ ...``). Drawn only for suites that run defenses, robust aggregation rules or
adversarial clients.
"""

from __future__ import annotations

import textwrap
from typing import Any

import matplotlib
import numpy as np

from benchmarks.attack_plan import primary_result
from benchmarks.defense_tables import describe_defense, is_defended, privacy_columns
from benchmarks.figures.common import Figure, frame, grouped, panels, utility_key, value


def _label(cell: dict[str, Any]) -> str:
    return ", ".join(str(v) for k, v in cell["labels"].items() if k not in ("seed", "task"))


def _leak(cell: dict[str, Any]) -> float | None:
    found = primary_result(cell, "central")
    return value(found["metrics"].get("auc_minus_control")) if found else None


def _gain(cell: dict[str, Any]) -> float | None:
    found = primary_result(cell)
    return value(found["metrics"].get("gain_over_control")) if found else None


def _mean(values: list[float | None]) -> float | None:
    have = [v for v in values if v is not None]
    return float(np.mean(have)) if have and len(have) == len(values) else None


def figures(cells: list[dict[str, Any]]) -> list[Figure]:
    if not any(is_defended(c["config"]) for c in cells):
        return []
    groups = grouped(cells, _label)
    metric = utility_key(cells[0])
    fig, (left, right, names) = panels(3, cols=3, size=(5.4, 4.8))
    missing: list[str] = []
    for i, (label, runs) in enumerate(groups.items()):
        x = float(np.mean([c["train"]["final"]["central"][metric] for c in runs]))
        p = privacy_columns(runs)
        note = ""
        if p["epsilon"] is not None:
            note = f"\nε ≤ {p['epsilon']:.2g}, ≥ {p['epsilon_lb'] or 0:.2g}"
        color = matplotlib.colormaps["tab20"](i % 20)  # up to 20 settings in distinct colours
        marker = "o" if not is_defended(runs[0]["config"]) else "s" if note else "^"
        for ax, y in ((left, _mean([_leak(c) for c in runs])),
                      (right, _mean([_gain(c) for c in runs]))):
            if y is None:
                missing.append(f"{label} ({'membership' if ax is left else 'recovery'})")
                continue
            ax.scatter([x], [y], color=color, marker=marker, s=40,
                       label=f"{label}: {describe_defense(runs[0]['config'])}" if ax is left else None)
            if note:  # DP points carry their epsilons; the legend names every point
                ax.annotate(label + note, (x, y), fontsize=6.5, xytext=(4, 3),
                            textcoords="offset points", color=color)
    left.set(xlabel=f"central {metric} (selected round)", ylabel="AUC − control, central")
    right.set(xlabel=f"central {metric} (selected round)", ylabel="recovery gain over control")
    for ax in (left, right):
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.margins(x=0.2, y=0.2)
        if metric == "perplexity":
            ax.set_xscale("log")
    handles, labels = left.get_legend_handles_labels()
    names.axis("off")  # a panel of its own for the names, so no point hides behind them
    names.legend(handles, [textwrap.fill(t, 60) for t in labels], fontsize=6.5,
                 loc="center left", frameon=False)
    caption = ("One point per defense setting, mean over its seeds (circle: no defense; square: "
               "DP, with the accountant's ε and the auditor's lower bound; triangle: other "
               f"defenses, robust rules, adversaries). Lower {metric} is better"
               if metric == "perplexity" else "Higher accuracy is better")
    caption += "; lower leakage is better (0 = what the untrained model shows)."
    if missing:
        caption += "\nNo value: " + "; ".join(missing)
    frame(fig, title="What does each defense cost in central utility, and what does it buy in "
                     "leakage?", caption=caption)
    return [("defense_frontier.png", fig)]
