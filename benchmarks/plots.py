"""PNG plots for a suite report: utility and leakage vs bits, ROC curves, privacy-utility."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.sweeps import sweep_keys  # noqa: E402

TARGETS = ("central", "proxy", "update")


def _order(label: str) -> float:
    """x position of a variant: its bits, 32 for fp32, 64 for anything else (centralized)."""
    match = re.fullmatch(r".*-(\d+)", label)
    return float(match.group(1)) if match else 32.0 if label == "fp32" else 64.0


def _series(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows of one dataset split into lines: same grid choices except ``quant``."""
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        name = ", ".join(f"{v}" for k, v in r["group"].items() if k != "quant") or "all"
        lines[name].append(r)
    return {k: sorted(v, key=lambda r: _order(r["bits"])) for k, v in lines.items()}


def _save(fig, path: Path) -> Path:
    """Lay out, write and close a figure."""
    for ax in fig.axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _errorbar(ax, rs, col: str, **kw) -> None:
    xs = [_order(r["bits"]) for r in rs]
    ys = [r[col][0] for r in rs]
    es = [r[col][1] or 0.0 for r in rs]
    ax.errorbar(xs, ys, yerr=es, capsize=3, marker="o", **kw)


def _leak_points(rs: list[dict[str, Any]], target: str, metric: str) -> tuple[list, list, list]:
    """x, y and (asymmetric) error bars of a primary membership metric; rows without it skipped."""
    xs, ys, errs = [], [], []
    for r in rs:
        found = (r[f"leak_{target}"] or {}).get(metric)
        if found and found["value"] is not None:
            lo, hi = found["ci"] or (found["value"], found["value"])
            xs.append(_order(r["bits"]))
            ys.append(found["value"])
            errs.append((found["value"] - lo, hi - found["value"]))
    return xs, ys, [list(e) for e in zip(*errs, strict=True)] if errs else []


def _bits_panels(ax_u, ax_l, rs: list[dict[str, Any]], *, title: str) -> None:
    """Utility (central, proxy, primary recovery) and the primary membership attack's AUC minus
    its control (AUC alone where no control was measured) per target against bits."""
    has_control = any(_leak_points(rs, t, "auc_minus_control")[0] for t in TARGETS)
    metric = "auc_minus_control" if has_control else "auc"
    for i, (name, line) in enumerate(_series(rs).items()):
        color = f"C{i}"
        _errorbar(ax_u, line, "central", color=color, label=f"central ({name})")
        _errorbar(ax_u, line, "proxy", color=color, linestyle="--", label=f"proxy ({name})")
        attacks = sorted({r["recovery_attack"] for r in line if r["recovery_attack"] != "–"})
        if attacks:
            _errorbar(ax_u, line, "recovered", color=color, linestyle=":",
                      label=f"{'/'.join(attacks)} ({name})")
        for j, t in enumerate(TARGETS):
            xs, ys, errs = _leak_points(line, t, metric)
            if xs:
                attack = "/".join(sorted({r[f"mia_{t}"] for r in line} - {"–"}))
                ax_l.errorbar(xs, ys, yerr=errs, capsize=3, marker="o", color=color,
                              linestyle=["-", "--", ":"][j], label=f"{t}: {attack} ({name})")
    ax_u.set(xscale="log", xlabel="broadcast bits", ylabel=rs[0]["metric"],
             title=f"{title}: utility")
    if rs[0]["metric"] == "perplexity":
        ax_u.set_yscale("log")
    ax_l.axhline(0.0 if has_control else 0.5, color="grey", linewidth=0.8)
    ax_l.set(xscale="log", xlabel="broadcast bits",
             ylabel="primary MIA: AUC − control AUC" if has_control else "primary MIA: AUC",
             title=f"{title}: membership leakage")
    for ax in (ax_u, ax_l):
        ax.set_xticks([1, 2, 3, 4, 8, 32, 64], ["1", "2", "3", "4", "8", "fp32", "central"])
        ax.grid(alpha=0.3)


def utility_vs_bits(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """One figure per dataset, a row of panels (utility, leakage) per broadcast scope; sweep rows
    have a table of their own and are left out."""
    paths = []
    swept = sweep_keys(rows)
    by_data: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if not any(k in r["group"] for k in swept):
            by_data[r["data"]].append(r)
    for data, rs in by_data.items():
        scopes = list(dict.fromkeys(r["scope"] for r in rs))
        fig, axes = plt.subplots(len(scopes), 2, figsize=(12, 4.5 * len(scopes)), squeeze=False)
        for (ax_u, ax_l), scope in zip(axes, scopes, strict=True):
            _bits_panels(ax_u, ax_l, [r for r in rs if r["scope"] == scope],
                         title=f"{data}, scope {scope}")
        paths.append(_save(fig, out / f"utility_vs_bits_{data}.png"))
    return paths


def roc_curves(cells: list[dict[str, Any]], out: Path) -> list[Path]:
    """Per membership attack: ROC on log axes, one panel per target, a line per bit width, in
    the setting of the suite's first cell (its other grid choices) and the first seed of each.
    A dashed vertical line marks 1 / non-members, the lowest FPR the sample can resolve."""
    curves: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    setting = {k: v for k, v in cells[0]["labels"].items() if k not in ("quant", "seed")} \
        if cells else {}
    for cell in cells:
        if {k: v for k, v in cell["labels"].items() if k not in ("quant", "seed")} != setting:
            continue
        q = cell["config"]["quant"]
        label = cell["labels"].get("quant") or (
            "fp32" if q["name"] == "none" else f"{q['name']}-{q['bits']}")
        for a in cell["attacks"]:
            if a["kind"] != "membership" or a["status"] != "ok":
                continue
            key = f"{label} {a['config']['target']}"
            curves[a["attack"]].setdefault(key, a["metrics"])
    where = ", ".join(f"{v}" for v in setting.values())
    paths = []
    for attack, by in curves.items():
        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        for ax, target in zip(axes, TARGETS, strict=True):
            floor = 1e-3
            for key, metrics in sorted(by.items(), key=lambda kv: _order(kv[0].split()[0])):
                if key.endswith(target):
                    ax.plot(metrics["roc"]["fpr"], metrics["roc"]["tpr"], label=key.split()[0])
                    floor = min(floor, 0.5 / metrics["num_nonmembers"])
            # below 1/non-members the curve has no points: an FPR the sample cannot resolve
            lows = {1.0 / m["num_nonmembers"] for k, m in by.items() if k.endswith(target)}
            for low in sorted(lows)[:1]:
                ax.axvline(low, color="black", linestyle="--", linewidth=0.8,
                           label=f"1/non-members = {low:.2g}")
            ax.plot([1e-6, 1], [1e-6, 1], color="grey", linewidth=0.8)
            ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1), xlabel="FPR",
                   ylabel="TPR", title=f"{attack} on {target}" + (f" ({where})" if where else ""))
        paths.append(_save(fig, out / f"roc_{attack}.png"))
    return paths


def _gain(r: dict[str, Any]) -> float | None:
    return (r["gain"] or {}).get("recovered_gain", {}).get("value")


def privacy_utility(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Central utility vs the primary recovery attack's recovered gain (rows where it is
    defined), one panel per dataset, a colour per setting."""
    pts = [r for r in rows if _gain(r) is not None]
    if not pts:
        return []
    by_data: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in pts:
        by_data[r["data"]].append(r)
    fig, axes = plt.subplots(1, len(by_data), figsize=(6 * len(by_data), 4.5), squeeze=False)
    for ax, (data, rs) in zip(axes[0], by_data.items(), strict=True):
        for i, (name, line) in enumerate(_series(rs).items()):
            ax.scatter([r["central"][0] for r in line], [_gain(r) for r in line],
                       s=40, color=f"C{i}", label=name)
            for r in line:
                ax.annotate(r["bits"], (r["central"][0], _gain(r)), fontsize=7)
        attacks = "/".join(sorted({r["recovery_attack"] for r in rs}))
        ax.set(xlabel=f"central utility ({rs[0]['metric']})",
               ylabel=f"recovered_gain of {attacks} (model leakage)",
               title=f"{data}: privacy vs utility")
        ax.grid(alpha=0.3)
    return [_save(fig, out / "privacy_utility.png")]


def write_plots(rows: list[dict[str, Any]], cells: list[dict[str, Any]], out: Path) -> list[Path]:
    """Every plot of the report; returns their paths."""
    return [*utility_vs_bits(rows, out), *roc_curves(cells, out), *privacy_utility(rows, out)]
