"""Cell JSONs -> ``report.md``, ``summary.csv`` and PNG plots. Nothing but the cell files is read.

Headline numbers are the suite's *primary* attacks (named in its ``[attacks]`` table before
anything ran); every attack is in the detail tables. Utility is the mean over seeds with a
percentile interval from a paired bootstrap over seeds and test records
(:mod:`benchmarks.bootstrap`); other numbers are aggregated as :mod:`benchmarks.stats` says.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.attack_plan import DEFAULT_RESAMPLES, primary_attacks
from benchmarks.bootstrap import utility_intervals
from benchmarks.cell_files import load_cells
from benchmarks.claims import check_claims
from benchmarks.convergence import converged_cell, selected_round
from benchmarks.defense_tables import defense_tables
from benchmarks.report_header import header_lines, method_lines
from benchmarks.stats import combine, estimate, ratio_of_means, seed_values
from benchmarks.sweeps import sweep_tables
from benchmarks.tables import detail_tables, markdown_tables
from benchmarks.tidy import write_tidy

TARGETS = ("central", "proxy", "update")
LEAKAGE = ("auc", "control_auc", "auc_minus_control", "tpr@1%fpr", "tpr@0.1%fpr", "advantage")
GAINS = ("central_gain", "recovered_gain", "control_gain", "gain_over_control")
ERRORS = ("param_rel_error", "param_rel_error_base")

def bits_label(config: dict[str, Any]) -> str:
    q = config["quant"]
    return "fp32" if q["name"] == "none" and q["bits"] == 32 else f"{q['name']}-{q['bits']}"


def primary(cell: dict[str, Any]) -> str:
    """The utility a cell's tables show: perplexity (LM) or accuracy (classification)."""
    return "perplexity" if "perplexity" in cell["train"]["final"]["central"] else "accuracy"


def cell_row(cell: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one cell (one seed): utility, cost, every attack's leakage estimates, and
    flat columns of the primary attacks for the claims, sweeps and plots."""
    final, comm = cell["train"]["final"], cell["train"]["comm"]
    key = primary(cell)
    mia_primary, recovery_primary, _ = primary_attacks(cell.get("attack_plan", {}))
    row: dict[str, Any] = {
        "central": final["central"][key], "proxy": final["proxy"][key], "base": final["base"][key],
        "bytes_down": comm["bytes_down_per_round"], "bytes_up": comm["bytes_up_per_round"],
        "fidelity": cell.get("fidelity"),
        # per-record test results of the final models (the bootstrap's input), convergence
        "records": cell["train"].get("final_records"),
        "convergence": cell["train"].get("convergence"),
        "selection": cell["train"].get("selection"),
    }
    ok = [a for a in cell["attacks"] if a["status"] == "ok"]
    row["recovery"] = {a["attack"]: {"recovered": a["metrics"]["utility"][key],
                                     **{g: estimate(a["metrics"].get(g)) for g in GAINS + ERRORS}}
                       for a in ok if a["kind"] == "recovery"}
    row["membership"] = {t: {a["attack"]: {m: estimate(a["metrics"].get(m)) for m in LEAKAGE}
                             for a in ok if a["kind"] == "membership"
                             and a["config"].get("target") == t} for t in TARGETS}
    for name, r in row["recovery"].items():
        row[f"gain:{name}"] = r["recovered_gain"]["value"]
    if recovery_primary in row["recovery"]:
        row["recovered"] = row["recovery"][recovery_primary]["recovered"]
    for t in TARGETS:
        found = row["membership"][t].get(mia_primary.get(t, ""))
        if found:
            row[f"auc_{t}"] = found["auc"]["value"]
            row[f"auc_diff_{t}"] = found["auc_minus_control"]["value"]
    return row


def group_cells(suite: dict[str, Any], cells: list[dict[str, Any]]) -> dict[tuple, list[dict]]:
    """Cells grouped by every grid choice except the seed."""
    keys = [k for k in suite["grid_keys"] if k != "seed"]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in cells:
        if cell["status"] == "ok":
            groups[tuple((k, cell["labels"][k]) for k in keys if k in cell["labels"])].append(cell)
    return groups


NUMERIC = ["central", "proxy", "recovered", "bytes_down", "bytes_up", "fidelity"]
MODELS = ("central", "proxy", "base")  # utility with a bootstrap interval
SPREAD = ("recovered", "fidelity")  # per-seed numbers without records: mean and range


def _recovery_summary(per_seed: list[dict[str, Any] | None]) -> dict[str, Any]:
    """One recovery attack over seeds: gains as ratios of means, errors as :func:`combine`."""
    seeds = [s or {} for s in per_seed]
    den = [s.get("central_gain") for s in seeds]
    out: dict[str, Any] = {g: ratio_of_means([s.get(g) for s in seeds], den) for g in GAINS[1:]}
    out |= {e: combine([s.get(e) for s in seeds]) for e in ERRORS}
    return out | {"central_gain": combine(den),
                  "recovered": seed_values([s.get("recovered") for s in seeds])}


# the range of each leakage metric (an interval over seeds never leaves it)
LEAKAGE_BOUNDS = {"auc_minus_control": (-1.0, 1.0), "advantage": (-1.0, 1.0)}


def _membership_summary(per_seed: list[dict[str, Any] | None]) -> dict[str, Any]:
    return {m: combine([(s or {}).get(m) for s in per_seed], LEAKAGE_BOUNDS.get(m, (0.0, 1.0)))
            for m in LEAKAGE}


def summarize(groups: dict[tuple, list[dict]]) -> list[dict[str, Any]]:
    """One summary row per group: utility (mean over seeds; ``utility`` holds its bootstrap
    interval per model), the primary attacks' leakage, and every attack's leakage
    (``recovery_detail``, ``membership_detail``) over the group's seeds. Numeric columns are
    ``(mean, None)`` pairs; their intervals or ranges are in ``utility`` and ``spread``."""
    rows = []
    for key, members in groups.items():
        per_seed = [cell_row(c) for c in members]
        first = members[0]
        cfg, plan = first["config"], first.get("attack_plan", {})
        mia_primary, recovery_primary, notes = primary_attacks(plan)
        row: dict[str, Any] = {
            "group": dict(key), "bits": str(dict(key).get("quant", bits_label(cfg))),
            "metric": primary(first),
            "model": cfg["model"]["name"], "data": cfg["data"]["name"],
            "scope": cfg["quant"]["scope"], "partition": cfg["data"]["partition"],
            "clients": cfg["fed"]["num_clients"], "rounds": cfg["fed"]["rounds"],
            "local_steps": cfg["fed"]["local_steps"], "seeds": len(members),
            "base": seed_values([r["base"] for r in per_seed])["value"],
            # per seed, for paired comparisons between rows (same seed = same data and init)
            "per_seed": {c["config"]["seed"]: r for c, r in zip(members, per_seed, strict=True)},
            "config": cfg, "resamples": plan.get("resamples"), "primary_notes": notes,
        }
        for col in NUMERIC:
            row[col] = (seed_values([r.get(col) for r in per_seed])["value"], None)
        row["utility"] = utility_intervals([r["records"] for r in per_seed], metric=row["metric"],
                                           resamples=plan.get("resamples") or DEFAULT_RESAMPLES)
        row["spread"] = {col: seed_values([r.get(col) for r in per_seed]) for col in SPREAD}
        row["converged"] = converged_cell(row["per_seed"])
        row["round"] = selected_round(row["per_seed"], row["rounds"])
        names = list(dict.fromkeys(n for r in per_seed for n in r["recovery"]))
        row["recovery_detail"] = {n: _recovery_summary([r["recovery"].get(n) for r in per_seed])
                                  for n in names}
        row["recovery_attack"] = recovery_primary if recovery_primary in names else "–"
        row["gain"] = row["recovery_detail"].get(recovery_primary)
        row["membership_detail"] = {
            t: {n: _membership_summary([r["membership"][t].get(n) for r in per_seed])
                for n in dict.fromkeys(n for r in per_seed for n in r["membership"][t])}
            for t in TARGETS}
        for t in TARGETS:
            found = row["membership_detail"][t].get(mia_primary.get(t, ""))
            row[f"mia_{t}"] = mia_primary[t] if found else "–"
            row[f"leak_{t}"] = found
        rows.append(row)
    return rows


def _csv_value(c: dict[str, Any] | None, part: str) -> Any:
    if c is None:
        return None
    if part == "ci":
        return None if c["ci"] is None else json.dumps(c["ci"])
    return c[part]


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """The headline numbers, one line per row: primary attacks only (``_ci`` = [lo, hi], the
    bootstrap interval or a combined leakage CI; ``_range`` = [min, max] over the seeds)."""
    fields = ["model", "data", "scope", "partition", "bits", "group", "seeds", "metric", "base",
              "base_ci", "central", "central_ci", "proxy", "proxy_ci", "recovered",
              "recovered_range", "bytes_down", "bytes_up", "fidelity", "fidelity_range",
              "converged", "round"]
    gains = ["recovered_gain", "control_gain", "gain_over_control", *ERRORS]
    leak = ["auc", "control_auc", "auc_minus_control", "tpr@1%fpr", "tpr@0.1%fpr"]
    cols = (fields + ["recovery_attack"]
            + [f"{g}{s}" for g in gains for s in ("", "_ci", "_seeds")]
            + [f"{m}_{t}{s}" for t in TARGETS for m in ["mia", *leak]
               for s in (("",) if m == "mia" else ("", "_ci"))])
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            out = {k: r[k] for k in fields if k in r} | {"recovery_attack": r["recovery_attack"]}
            out["group"] = json.dumps(r["group"], sort_keys=True)
            for c in ("central", "proxy", "recovered", "bytes_down", "bytes_up", "fidelity"):
                out[c] = r[c][0]
            for m in MODELS:
                ci = r["utility"][m]["ci"]
                out[f"{m}_ci"] = None if ci is None else json.dumps(ci)
            for c in SPREAD:
                found = r["spread"][c]["range"]
                out[f"{c}_range"] = None if found is None else json.dumps(found)
            for g in gains:
                found = (r["gain"] or {}).get(g)
                out[g], out[f"{g}_ci"] = _csv_value(found, "value"), _csv_value(found, "ci")
                out[f"{g}_seeds"] = None if found is None else f"{found['k']}/{found['n']}"
            for t in TARGETS:
                out[f"mia_{t}"] = r[f"mia_{t}"]
                for m in leak:
                    found = (r[f"leak_{t}"] or {}).get(m)
                    out[f"{m}_{t}"] = _csv_value(found, "value")
                    out[f"{m}_{t}_ci"] = _csv_value(found, "ci")
            w.writerow(out)


def build_report(out: Path, *, command: str | None = None) -> Path:
    """Write ``report.md``, ``summary.csv``, ``results.csv`` (:mod:`benchmarks.tidy`) and plots
    into ``out``; returns the report path."""
    from benchmarks.plots import write_plots

    suite, cells = load_cells(out)
    ok = [c for c in cells if c["status"] == "ok"]
    rows = summarize(group_cells(suite, ok))
    write_csv(rows, out / "summary.csv")
    write_tidy(cells, out / "results.csv")  # every number, long format
    plots = write_plots(rows, ok, out)
    lines = header_lines(suite, cells, command=command)
    lines += method_lines(rows)
    lines += check_claims(rows)
    lines += ["## Results", ""] + markdown_tables(rows) + sweep_tables(rows)
    lines += defense_tables(rows, ok)
    lines += ["## Detail: every attack", ""] + detail_tables(rows)
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
