"""Privacy vs utility: does a more useful central model let a client recover more of its gain?

Central utility (x) against the primary recovery attack's recovered gain (y), one point per
setting and broadcast variant (utility: mean over seeds; gain: the report's ratio of means over
the seeds where it is defined). The gain axis is clipped to ``GAIN_LIMITS``; a point beyond it is
drawn at the edge with its value, and settings whose gain is undefined are listed below.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.attack_plan import primary_result
from benchmarks.figures.common import (
    GAIN_LIMITS,
    Figure,
    describe,
    frame,
    gain_over_seeds,
    grouped,
    interval,
    key,
    listing,
    order,
    panels,
    pin,
    setting,
    task,
    utility_key,
    variant,
)


def _primary_recovery(cell: dict[str, Any]) -> dict[str, Any] | None:
    return primary_result(cell)


def figures(cells: list[dict[str, Any]]) -> list[Figure]:
    by_task = grouped([c for c in cells if _primary_recovery(c)], task)
    if not by_task:
        return []
    fig, axes = panels(len(by_task), cols=2, size=(6.0, 4.6))
    undefined: list[str] = []
    pinned = 0
    for ax, (data, group) in zip(axes, by_task.items(), strict=True):
        metric = utility_key(group[0])
        names = sorted({_primary_recovery(c)["attack"] for c in group})
        for i, (choices, members) in enumerate(grouped(group, setting).items()):
            color = f"C{i % 10}"
            key(ax, describe(choices), color)
            for name, runs in sorted(grouped(members, variant).items(),
                                     key=lambda kv: order(kv[0])):
                gain = gain_over_seeds([_primary_recovery(c)["metrics"] for c in runs],
                                       "recovered_gain")
                if gain["value"] is None:
                    undefined.append(f"{data}, {describe(choices)} · {name}: "
                                     + ("; ".join(gain["reasons"]) or "undefined"))
                    continue
                x = float(np.mean([c["train"]["final"]["central"][metric] for c in runs]))
                pinned += pin(ax, x, gain["value"], ylim=GAIN_LIMITS, color=color, name=name)
                if GAIN_LIMITS[0] <= gain["value"] <= GAIN_LIMITS[1]:
                    interval(ax, x, gain, color=color)
        for level in (0.0, 1.0):
            ax.axhline(level, color="grey", linewidth=0.8, linestyle=":" if level else "-")
        ax.set_ylim(*GAIN_LIMITS)
        ax.margins(x=0.15)  # room for the names of the outermost points
        ax.set(xlabel=f"central utility ({metric}, selected round, mean over seeds)",
               ylabel=f"recovered gain of {'/'.join(names)}", title=data)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    lo, hi = GAIN_LIMITS
    caption = (f"Recovered gain = (U(R) − U(base)) / (U(central) − U(base)) of the primary "
               f"recovery attack: 0 = nothing recovered, 1 = the central model's whole gain. "
               f"Axis clipped to [{lo}, {hi}]: {pinned} point(s) beyond it are drawn at the edge "
               "as arrowheads labelled with their value. Bars: 95 % CI where the aggregation "
               "gives one.")
    if undefined:
        caption += (f"\nNot shown, recovered gain undefined ({len(undefined)}):\n"
                    + listing(undefined))
    frame(fig, title="Does a more useful central model let a client recover more of its gain? "
                     f"(recovered gain, axis clipped to [{lo}, {hi}])", caption=caption)
    return [("privacy_utility.png", fig)]
