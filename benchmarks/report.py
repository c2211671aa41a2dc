"""Cell JSONs -> ``report.md``, ``summary.csv`` and PNG plots. Nothing but the cell files is read.

Numbers are mean ± 95 % CI half-width over seeds (Student t; "n=1" when a group has one seed).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.claims import check_claims
from benchmarks.stats import fmt, mean_ci
from benchmarks.sweeps import sweep_tables
from fedlpp.errors import FedlppError

TARGETS = ("central", "proxy", "update")


def load_cells(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The suite description and its cells' results, in suite order (missing cells skipped)."""
    suite_file = out / "suite.json"
    if not suite_file.is_file():
        raise FedlppError(f"No suite results in {str(out)!r} (suite.json missing): run "
                          "`fedlpp bench run SUITE --out DIR` first")
    suite = json.loads(suite_file.read_text())
    cells = []
    for c in suite["cells"]:
        path = out / "cells" / f"{c['id']}.json"
        if path.is_file():
            cells.append(json.loads(path.read_text()))
    return suite, cells


def bits_label(config: dict[str, Any]) -> str:
    q = config["quant"]
    return "fp32" if q["name"] == "none" and q["bits"] == 32 else f"{q['name']}-{q['bits']}"


def primary(cell: dict[str, Any]) -> str:
    return "perplexity" if "perplexity" in cell["train"]["final"]["central"] else "accuracy"


def cell_row(cell: dict[str, Any]) -> dict[str, Any]:
    """The flat numbers of one cell (one seed)."""
    final, comm = cell["train"]["final"], cell["train"]["comm"]
    key = primary(cell)
    row: dict[str, Any] = {
        "central": final["central"][key], "proxy": final["proxy"][key], "base": final["base"][key],
        "bytes_down": comm["bytes_down_per_round"], "bytes_up": comm["bytes_up_per_round"],
        "fidelity": cell.get("fidelity"),
    }
    recov = [a for a in cell["attacks"] if a["kind"] == "recovery" and a["status"] == "ok"]
    if recov:
        best = max(recov, key=lambda a: np.nan_to_num(a["metrics"]["recovered_gain"], nan=-1e9))
        row.update(best_attack=best["attack"], recovered_gain=best["metrics"]["recovered_gain"],
                   recovered=best["metrics"]["utility"][key],
                   param_rel_error=best["metrics"]["param_rel_error"])
        row.update({f"gain:{a['attack']}": a["metrics"]["recovered_gain"] for a in recov})
    for target in TARGETS:
        mia = [a for a in cell["attacks"] if a["kind"] == "membership" and a["status"] == "ok"
               and a["config"].get("target") == target]
        if mia:
            best = max(mia, key=lambda a: a["metrics"]["auc"]["value"])
            row[f"auc_{target}"] = best["metrics"]["auc"]["value"]
            row[f"tpr_{target}"] = best["metrics"]["tpr@1%fpr"]["value"]
            row[f"mia_{target}"] = best["attack"]
    return row


def group_cells(suite: dict[str, Any], cells: list[dict[str, Any]]) -> dict[tuple, list[dict]]:
    """Cells grouped by every grid choice except the seed."""
    keys = [k for k in suite["grid_keys"] if k != "seed"]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in cells:
        if cell["status"] == "ok":
            groups[tuple((k, cell["labels"][k]) for k in keys if k in cell["labels"])].append(cell)
    return groups


NUMERIC = ["central", "proxy", "recovered", "recovered_gain", "param_rel_error",
           *[f"{m}_{t}" for t in TARGETS for m in ("auc", "tpr")], "bytes_down", "bytes_up",
           "fidelity"]


def summarize(groups: dict[tuple, list[dict]]) -> list[dict[str, Any]]:
    """One summary row per group: mean ± CI of every numeric column, plus names."""
    rows = []
    for key, members in groups.items():
        per_seed = [cell_row(c) for c in members]
        first = members[0]
        cfg = first["config"]
        row: dict[str, Any] = {
            "group": dict(key), "bits": str(dict(key).get("quant", bits_label(cfg))),
            "metric": primary(first),
            "model": cfg["model"]["name"], "data": cfg["data"]["name"],
            "scope": cfg["quant"]["scope"], "partition": cfg["data"]["partition"],
            "clients": cfg["fed"]["num_clients"], "rounds": cfg["fed"]["rounds"],
            "local_steps": cfg["fed"]["local_steps"], "seeds": len(members),
            "base": float(np.mean([r["base"] for r in per_seed])),
            # per seed, for paired comparisons between rows (same seed = same data and init)
            "per_seed": {c["config"]["seed"]: r for c, r in zip(members, per_seed, strict=True)},
            "config": cfg,
        }
        for col in NUMERIC:
            row[col] = mean_ci([r.get(col) for r in per_seed])
        for name in ("best_attack", *[f"mia_{t}" for t in TARGETS]):
            names = sorted({r[name] for r in per_seed if name in r})
            row[name] = "/".join(names) if names else "–"
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    fields = ["model", "data", "scope", "partition", "bits", "group", "seeds", "metric", "base"]
    cols = fields + [f"{c}{s}" for c in NUMERIC for s in ("", "_ci")] + \
        ["best_attack", *[f"mia_{t}" for t in TARGETS]]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            out = {k: r[k] for k in fields}
            out["group"] = json.dumps(r["group"], sort_keys=True)
            for c in NUMERIC:
                out[c], out[f"{c}_ci"] = r[c]
            for name in ("best_attack", *[f"mia_{t}" for t in TARGETS]):
                out[name] = r[name]
            w.writerow(out)


def markdown_tables(rows: list[dict[str, Any]]) -> list[str]:
    """One table per (model, data, scope, partition): a row per remaining grid choice."""
    lines: list[str] = []
    by_setting: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_setting[(r["model"], r["data"], r["scope"], r["partition"])].append(r)
    for (model, data, scope, partition), rs in by_setting.items():
        r0 = rs[0]
        # a row is named by the grid choices that differ within its table; a plain config key
        # (a sweep such as data.max_records) shows as key=value, a labelled choice by its label
        varying = [k for k in dict.fromkeys(k for r in rs for k in r["group"])
                   if len({str(r["group"].get(k)) for r in rs}) > 1]
        names = [", ".join(f"{k}={r['group'][k]}" if "." in k else str(r["group"][k])
                           for k in varying if k in r["group"]) or r["bits"] for r in rs]
        budgets: dict[str, list[str]] = defaultdict(list)  # rows that train differently
        for r, name in zip(rs, names, strict=True):
            budgets[f"{r['clients']} client{'s' if r['clients'] > 1 else ''}, {r['rounds']} "
                    f"rounds x {r['local_steps']} local steps"].append(name)
        budget, *others = budgets
        budget += "".join(f" ({', '.join(budgets[b])}: {b})" for b in others)
        lines += [f"### {data} on {model}: scope `{scope}`, partition `{partition}`", "",
                  f"{budget}; utility = {r0['metric']} (base model: {r0['base']:.4g}); "
                  f"seeds per row: {sorted({r['seeds'] for r in rs})}", "",
                  "| variant | central | proxy | best recovery (gain) | param rel err | "
                  "MIA AUC central / proxy / update | TPR@1%FPR central / proxy / update | "
                  "bytes down / up per round | grad. fidelity |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r, variant in zip(rs, names, strict=True):
            recov = (f"{fmt(*r['recovered'])} ({r['best_attack']}: {fmt(*r['recovered_gain'], 2)})"
                     if r["best_attack"] != "–" else "–")
            auc = " / ".join(fmt(*r[f"auc_{t}"], 2) for t in TARGETS)
            tpr = " / ".join(fmt(*r[f"tpr_{t}"], 2) for t in TARGETS)
            lines.append(f"| {variant} | {fmt(*r['central'])} | {fmt(*r['proxy'])} | {recov} | "
                         f"{fmt(*r['param_rel_error'], 2)} | {auc} | {tpr} | "
                         f"{r['bytes_down'][0]:,.0f} / {r['bytes_up'][0]:,.0f} | "
                         f"{fmt(*r['fidelity'])} |")
        lines.append("")
    return lines


def build_report(out: Path, *, command: str | None = None) -> Path:
    """Write ``report.md``, ``summary.csv`` and plots into ``out``; returns the report path."""
    from benchmarks.plots import write_plots

    suite, cells = load_cells(out)
    ok = [c for c in cells if c["status"] == "ok"]
    failed = [c for c in cells if c["status"] != "ok"]
    rows = summarize(group_cells(suite, ok))
    write_csv(rows, out / "summary.csv")
    plots = write_plots(rows, ok, out)
    shas = sorted({c["meta"]["git_sha"] or "unknown" for c in cells})
    dirty = any(c["meta"]["git_dirty"] for c in cells)
    lines = [f"# {suite['name']} suite", "", suite["description"], "",
             f"Regenerate: `{command or suite.get('command') or 'fedlpp bench run ' + suite['file']}`"
             " (it also writes "
             "this report; `fedlpp bench report DIR` rebuilds it from the cell files).", "",
             f"{len(ok)} of {len(suite['cells'])} cells ok, {len(failed)} failed, "
             f"{len(suite['cells']) - len(cells)} not run. "
             f"Code: {', '.join(s[:10] for s in shas)}{' (uncommitted changes)' if dirty else ''}. "
             "Each cell's resolved config and provenance are in `cells/<id>.json`.", "",
             "Columns: central = the server's full-precision master; proxy = the final broadcast "
             "clients hold; best recovery = the recovery attack with the highest "
             "`recovered_gain` (1.0 = the whole central gain recovered); MIA = the best "
             "membership attack (max AUC) per target; fidelity = cosine of LoRA gradients "
             "on the proxy vs the central model. Mean ± 95 % CI over seeds.", ""]
    lines += check_claims(rows)
    lines += ["## Results", ""] + markdown_tables(rows) + sweep_tables(rows)
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    if failed:
        lines += ["## Failed cells", ""] + [f"- `{c['id']}` {c['labels']}: {c['error']}"
                                           for c in failed] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
