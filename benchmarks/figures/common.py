"""What every figure shares: how cells are named and grouped, gain ratios over seeds, off-scale
points pinned to the axis edge, and the title/caption frame of a figure."""

from __future__ import annotations

import math
import re
import textwrap
import weakref
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.stats import estimate, ratio_of_means  # noqa: E402

TARGETS = ("central", "proxy", "update")
GAIN_LIMITS = (-0.5, 1.5)  # recovered gain axes: symmetric around the [0, 1] that matters
NOT_SETTING = ("quant", "seed")  # the labels a setting does not include

Figure = tuple[str, Any]  # (file name, matplotlib figure)


def variant(cell: dict[str, Any]) -> str:
    """What a cell broadcasts, by its grid label (nf-2, fp32, centralized...)."""
    label = cell["labels"].get("quant")
    if label is not None:
        return str(label)
    q = cell["config"]["quant"]
    return "fp32" if q["name"] == "none" else f"{q['name']}-{q['bits']}"


def order(name: str) -> tuple[float, str]:
    """Sort key of a variant: its bits, fp32 as 32, anything else (centralized) after."""
    match = re.fullmatch(r".*?-(\d+)", name)
    bits = float(match.group(1)) if match else 32.0 if name == "fp32" else 64.0
    return bits, name


def setting(cell: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The grid choices of a cell other than its broadcast variant and seed."""
    return tuple((k, v) for k, v in cell["labels"].items() if k not in NOT_SETTING)


def describe(choices: Iterable[tuple[str, Any]]) -> str:
    """A setting in words: ``lm, iid, scope=adapter``."""
    first = sorted(choices, key=lambda kv: {"task": 0, "partition": 1}.get(kv[0], 2))
    words = [str(v) if k in ("task", "partition") else f"{k.rsplit('.', 1)[-1]}={v}"
             for k, v in first]
    return ", ".join(words) or "all cells"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "all"


def task(cell: dict[str, Any]) -> str:
    return cell["config"]["data"]["name"]


def seed(cell: dict[str, Any]) -> Any:
    return cell["config"].get("seed", cell["labels"].get("seed"))


def utility_key(cell: dict[str, Any]) -> str:
    """perplexity (LM) or accuracy (classification)."""
    train = cell.get("train") or {}
    for part in ((train.get("final") or {}).get("central"),
                 ((train.get("start") or {}).get("central"))):
        if isinstance(part, dict):
            return "perplexity" if "perplexity" in part else "accuracy"
    return "accuracy"


def grouped(items: Iterable[Any], key: Callable[[Any], Hashable]) -> dict[Hashable, list[Any]]:
    """Items by key, keys in order of first appearance."""
    out: dict[Hashable, list[Any]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return dict(out)


def attacks(cell: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [a for a in cell.get("attacks", []) if a["kind"] == kind and a["status"] == "ok"]


def _central_gain(metrics: dict[str, Any]) -> Any:
    """A recovery result's central gain; cells from before it was stored: from its utilities."""
    if "central_gain" in metrics:
        return metrics["central_gain"]
    key = metrics.get("gain_metric", "loss")
    try:
        diff = metrics["central"][key] - metrics["base"][key]
    except (KeyError, TypeError):
        return None
    return -diff if key == "loss" else diff


def gain_over_seeds(per_seed: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """A recovery gain ratio over seeds, as the report aggregates it (a ratio of means over the
    seeds where it is defined): ``value``, ``ci`` (when the aggregation gives one), ``k``/``n``,
    ``reasons``."""
    return ratio_of_means([m.get(name) for m in per_seed], [_central_gain(m) for m in per_seed])


def value(metric: Any) -> float | None:
    found = estimate(metric)["value"]
    return found if found is not None and math.isfinite(found) else None


_PINNED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # axes -> labels per spot


def number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def pin(ax, x: float, y: float, *, ylim: tuple[float, float],
        xlim: tuple[float, float] | None = None, color: str, marker: str = "o",
        filled: bool = True, size: float = 36, name: str = "", vertical: bool = False) -> bool:
    """Draw a point named ``name``; a coordinate outside its limits goes to the edge as an
    arrowhead, its name followed by the true value (``vertical``: written upright, for points
    side by side). Returns whether it was pinned."""
    px, py, mark, true = x, y, marker, []
    if y > ylim[1] or y < ylim[0]:
        py, mark = (ylim[1], "^") if y > ylim[1] else (ylim[0], "v")
        true.append(number(y))
    if xlim is not None and (x > xlim[1] or x < xlim[0]):
        high = x > xlim[1]
        px = xlim[1] if high else xlim[0]
        mark = ">" if high != ax.xaxis_inverted() else "<"
        true.append(f"x={number(x)}")
    ax.scatter([px], [py], marker=mark, s=size, facecolors=color if filled else "none",
               edgecolors=color, clip_on=False, zorder=3)
    text = ": ".join(filter(None, [name, ", ".join(true)]))
    if not text:
        return False
    top = bool(true) and py == ylim[1]
    # labels pinned to the same spot are stacked away from the edge
    stack = _PINNED.setdefault(ax, {})
    # nearby: within 4 % of the x range, or of x itself when the range is not known yet
    near = round(px / ((xlim[1] - xlim[0]) / 25)) if xlim else (
        round(math.log(abs(px)) / 0.04) if px else 0)
    spot = (near, round(py, 6))
    shift = 8 * stack.get(spot, 0) if true else 0
    stack[spot] = stack.get(spot, 0) + 1
    if vertical and true:
        ax.annotate(text, (px, py), textcoords="offset points", xytext=(0, -6 if top else 6),
                    rotation=90, ha="center", va="top" if top else "bottom", fontsize=6,
                    color=color, annotation_clip=False)
        return True
    right = x != px and (px == xlim[1]) != ax.xaxis_inverted()  # pinned at the right edge
    ax.annotate(text, (px, py), textcoords="offset points",
                xytext=(-5 if right else 4, (-11 - shift) if top else 3 + shift),
                ha="right" if right else "left", fontsize=7 if true else 6,
                color=color if true else "black", annotation_clip=False)
    return bool(true)


def key(ax, label: str, color: str, *, marker: str = "o", filled: bool = True) -> None:
    """A legend entry (points themselves carry no label: pinned ones change shape)."""
    ax.scatter([], [], marker=marker, color=color, facecolors=color if filled else "none",
               edgecolors=color, label=label)


def interval(ax, x: float, found: dict[str, Any], *, color: str) -> None:
    """A CI bar when the estimate has one (ends beyond the axis are cut by it)."""
    ci = found.get("ci")
    if ci and None not in ci:
        ax.plot([x, x], ci, color=color, linewidth=1.2, alpha=0.8)


def frame(fig, *, title: str, caption: str = "") -> None:
    """Lay a figure out under a title (the question it answers) with a caption below."""
    width, height = fig.get_size_inches()
    title_lines = textwrap.wrap(title, int(width * 10))
    caption_lines = [line for para in caption.split("\n") if para
                     for line in textwrap.wrap(para, int(width * 15))]
    top = 1 - (0.22 * len(title_lines) + 0.1) / height
    bottom = (0.15 * len(caption_lines) + 0.08) / height if caption_lines else 0.0
    fig.tight_layout(rect=(0, min(bottom, 0.45), 1, max(top, 0.55)))
    fig.suptitle("\n".join(title_lines), fontsize=11, y=1 - 0.05 / height, va="top")
    if caption_lines:
        fig.text(0.01, 0.02 / height, "\n".join(caption_lines), fontsize=8, va="bottom",
                 ha="left", color="0.2")


def save(name: str, fig, out: Path) -> Path:
    path = out / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def panels(count: int, *, cols: int = 3, size: tuple[float, float] = (5.0, 3.8), **kw):
    """A figure with ``count`` panels in rows of ``cols`` (spare panels hidden), and the list of
    used axes."""
    cols = max(1, min(cols, count))
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows + 1.2),
                             squeeze=False, **kw)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def listing(lines: list[str], *, limit: int = 8) -> str:
    """At most ``limit`` footnote lines, then how many more."""
    shown = lines[:limit] + ([f"… and {len(lines) - limit} more"] if len(lines) > limit else [])
    return "\n".join(shown)
