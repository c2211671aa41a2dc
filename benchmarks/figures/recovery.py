"""How much does each recovery attack recover, per broadcast bit width?

One figure per task: a row per setting, the recovered gain (left) and the gain over the
attack's no-payload control (right: what the payloads add) per variant, a marker per attack,
each the report's ratio of means over seeds with its CI where the aggregation gives one. The
axes are clipped to ``GAIN_LIMITS`` (points beyond drawn at the edge with their value);
undefined gains are listed under the figure.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchmarks.figures.common import (
    GAIN_LIMITS,
    Figure,
    attacks,
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
    slug,
    task,
    variant,
)

COLUMNS = {"recovered_gain": "recovered gain", "gain_over_control": "gain over no-payload control"}
NO_CONTROL = "no no-payload control"


def _column(ax, metric: str, runs_by_variant: dict[str, list[dict[str, Any]]],
            names: list[str], where: str, notes: dict[str, list]) -> int:
    """One panel: every attack's ``metric`` per variant; returns how many points were pinned."""
    variants = sorted(runs_by_variant, key=order)
    width = 0.8 / max(len(names), 1)
    pinned = 0
    for j, attack in enumerate(names):
        color = f"C{j % 10}"
        key(ax, attack, color)
        for i, name in enumerate(variants):
            per_seed = [a["metrics"] for c in runs_by_variant[name]
                        for a in attacks(c, "recovery") if a["attack"] == attack]
            if not per_seed:
                continue
            gain = gain_over_seeds(per_seed, metric)
            if gain["value"] is None:
                reasons = "; ".join(gain["reasons"]) or "undefined"
                if metric == "gain_over_control" and ("no-payload control" in reasons
                                                      or reasons == "not measured"):
                    notes[NO_CONTROL].append(attack)
                else:
                    notes[f"{COLUMNS[metric]} undefined"].append(
                        (f"{where} · {name}", reasons, attack))
                continue
            x = i + (j - (len(names) - 1) / 2) * width
            pinned += pin(ax, x, gain["value"], ylim=GAIN_LIMITS, color=color, size=28,
                          vertical=True)
            if GAIN_LIMITS[0] <= gain["value"] <= GAIN_LIMITS[1]:
                interval(ax, x, gain, color=color)
            if 0 < gain["k"] < gain["n"]:
                y = min(max(gain["value"], GAIN_LIMITS[0]), GAIN_LIMITS[1])
                ax.annotate(f"{gain['k']}/{gain['n']}", (x, y),
                            textcoords="offset points", xytext=(2, 4), fontsize=6)
    for level in (0.0, 1.0):
        ax.axhline(level, color="grey", linewidth=0.8, linestyle=":" if level else "-")
    ax.set_xticks(range(len(variants)), variants)
    ax.set(ylim=GAIN_LIMITS, xlim=(-0.6, len(variants) - 0.4), xlabel="broadcast",
           ylabel=COLUMNS[metric], title=f"{where}: {COLUMNS[metric]}")
    ax.grid(alpha=0.3, axis="y")
    return pinned


def figures(cells: list[dict[str, Any]]) -> list[Figure]:
    out = []
    for data, group in grouped([c for c in cells if attacks(c, "recovery")], task).items():
        names = list(dict.fromkeys(a["attack"] for c in group for a in attacks(c, "recovery")))
        settings = grouped(group, setting)
        # cells from before no-payload controls were measured have recovered gains only
        columns = [m for m in COLUMNS if any(m in a["metrics"] for c in group
                                             for a in attacks(c, "recovery"))]
        fig, axes = panels(len(columns) * len(settings), cols=2, size=(6.2, 3.6))
        notes: dict[str, list] = defaultdict(list)
        pinned = 0
        spots = iter(axes)
        for choices, members in settings.items():
            by_variant = grouped(members, variant)
            for metric in columns:
                pinned += _column(next(spots), metric, by_variant, names, describe(choices),
                                  notes)
        axes[0].legend(fontsize=7, title="attack", title_fontsize=7)
        lo, hi = GAIN_LIMITS
        caption = (f"Recovered gain = (U(R) − U(base)) / (U(central) − U(base)): 0 = nothing, "
                   "1 = the central model's whole gain over the untrained model. Gain over "
                   "control: the same for R minus the attack's no-payload control (its budget "
                   "from the public start). Ratio of means over the seeds where defined (k/n "
                   "beside a point when some seed is undefined); bars: 95 % CI where given. "
                   f"Axes clipped to [{lo}, {hi}]: {pinned} point(s) beyond are drawn at the "
                   "edge as arrowheads labelled with their value.")
        no_control = sorted(set(notes.pop(NO_CONTROL, [])))
        if no_control:
            caption += f"\nNo no-payload control (gain over control): {', '.join(no_control)}."
        for title, found in notes.items():
            lines = [f"{where}: {', '.join(f[2] for f in same)} ({reasons})"
                     for (where, reasons), same in grouped(found, lambda f: f[:2]).items()]
            caption += f"\n{title.capitalize()} ({len(found)} point(s)):\n" + listing(lines)
        frame(fig, title=f"How much of the central model's gain does each attack recover? "
                         f"({data})", caption=caption)
        out.append((f"recovery_{slug(data)}.png", fig))
    return out
