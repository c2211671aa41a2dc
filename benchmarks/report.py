"""Cell JSONs -> ``report.md``, ``summary.csv`` and PNG plots. Nothing but the cell files is read.

Headline numbers are the suite's *primary* attacks (named in its ``[attacks]`` table before
anything ran); every attack is in the detail tables. Utility is the mean over seeds with a
percentile interval from a paired bootstrap over seeds and test records
(:mod:`benchmarks.bootstrap`); other numbers are aggregated as :mod:`benchmarks.stats` says.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.bootstrap import BOOT_SEED, utility_intervals
from benchmarks.claims import check_claims
from benchmarks.convergence import converged_cell, selected_round
from benchmarks.defense_tables import defense_tables
from benchmarks.matrix import DEFAULT_RESAMPLES, primary_attacks
from benchmarks.stats import combine, estimate, ratio_of_means, seed_values
from benchmarks.sweeps import sweep_tables
from benchmarks.tables import detail_tables, markdown_tables
from benchmarks.tidy import write_tidy
from fedlpp.errors import FedlppError
from fedlpp.io import read_json

TARGETS = ("central", "proxy", "update")
LEAKAGE = ("auc", "control_auc", "auc_minus_control", "tpr@1%fpr", "tpr@0.1%fpr", "advantage")
GAINS = ("central_gain", "recovered_gain", "control_gain", "gain_over_control")
ERRORS = ("param_rel_error", "param_rel_error_base")


# what a cell file must hold for the report (dotted keys, expected type); a file without them
# (a run's result.json, a cell of another tool or version) is refused, naming it
CELL_KEYS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("id", str), ("status", str), ("labels", dict), ("config", dict), ("meta", dict))
OK_CELL_KEYS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("config.model", dict), ("config.data", dict), ("config.quant", dict), ("config.fed", dict),
    ("train", dict), ("train.final", dict), ("train.final.central", dict),
    ("train.final.proxy", dict), ("train.final.base", dict), ("train.comm", dict),
    ("train.comm.bytes_down_per_round", (int, float)),
    ("train.comm.bytes_up_per_round", (int, float)), ("attacks", list))
SUITE_KEYS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("name", str), ("description", str), ("grid_keys", list), ("cells", list))
CELL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a cell id names its file: no folders


def _missing(value: Any, keys: tuple[tuple[str, Any], ...]) -> str | None:
    """The dotted keys of ``keys`` that ``value`` lacks or holds with another type (a key
    under a missing one is not named again), quoted and joined; None if it has them all."""
    missing: list[str] = []
    for dotted, kind in keys:
        if any(dotted.startswith(f"{m}.") for m in missing):
            continue
        node = value
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, kind) or (kind is not bool and isinstance(node, bool)):
            missing.append(dotted)
    if not missing:
        return None
    more = f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""
    return ", ".join(repr(m) for m in missing[:4]) + more


def _check_suite(suite: Any, path: Path) -> None:
    def bad(what: str) -> FedlppError:
        return FedlppError(f"{str(path)!r} is not a suite record of `fedlpp bench run`: {what}")

    if not isinstance(suite, dict):
        raise bad(f"a JSON {type(suite).__name__}, expected a JSON object")
    key = _missing(suite, SUITE_KEYS)
    if key:
        raise bad(f"no valid {key}")
    for i, c in enumerate(suite["cells"]):
        if not (isinstance(c, dict) and isinstance(c.get("id"), str)
                and CELL_ID.fullmatch(c["id"]) and isinstance(c.get("labels"), dict)):
            raise bad(f"cells[{i}] has no valid 'id' (a file name) and 'labels'")


def check_cell(cell: Any, path: Path, *, cell_id: str) -> dict[str, Any]:
    """``cell`` (read from ``path``) if it is the result of cell ``cell_id``, else a one-line
    FedlppError naming the file and the first thing it lacks."""
    def bad(what: str) -> FedlppError:
        return FedlppError(f"{str(path)!r} is not the result file of cell {cell_id!r}: {what}")

    if not isinstance(cell, dict):
        raise bad(f"a JSON {type(cell).__name__}, expected a JSON object")
    key = _missing(cell, CELL_KEYS + (OK_CELL_KEYS if cell.get("status") == "ok" else ()))
    if key:
        raise bad(f"no valid {key}")
    if cell["id"] != cell_id:
        raise bad(f"it holds cell id {cell['id']!r}")
    if not {"git_sha", "git_dirty"} <= set(cell["meta"]):
        raise bad("its 'meta' lacks 'git_sha' and 'git_dirty'")
    if cell["status"] != "ok":
        if not isinstance(cell.get("error"), str):
            raise bad(f"status {cell['status']!r} without an 'error'")
        return cell
    for i, a in enumerate(cell["attacks"]):
        if not (isinstance(a, dict) and all(isinstance(a.get(k), str)
                                            for k in ("attack", "kind", "status"))
                and isinstance(a.get("config"), dict)
                and (a["status"] != "ok" or isinstance(a.get("metrics"), dict))):
            raise bad(f"attacks[{i}] lacks its 'attack', 'kind', 'status', 'config' or 'metrics'")
    return cell


def load_cells(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The suite description and its cells' results, in suite order (missing cells skipped).

    A file that cannot be read, or that is not what it should be (a garbled, foreign or
    another cell's file), is a one-line FedlppError naming it: a report is never built from it.
    """
    suite_file = out / "suite.json"
    if not suite_file.exists():
        raise FedlppError(f"No suite results in {str(out)!r} (suite.json missing): run "
                          "`fedlpp bench run SUITE --out DIR` first")
    suite = read_json(suite_file, what="a suite record (suite.json of `fedlpp bench run`)")
    _check_suite(suite, suite_file)
    cells = []
    for c in suite["cells"]:
        path = out / "cells" / f"{c['id']}.json"
        if path.exists():
            cell = read_json(path, what=f"the result of cell {c['id']!r} (JSON)")
            cells.append(check_cell(cell, path, cell_id=c["id"]))
    return suite, cells


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


def _method_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What the headline columns are, which attacks are primary, and the bootstrap used."""
    notes = sorted({n for r in rows for n in r["primary_notes"]})
    resamples = sorted({r["resamples"] for r in rows if r["resamples"]})
    few = [n for n in resamples if n < DEFAULT_RESAMPLES]
    return [
        "Columns: central = the server's full-precision master; proxy = the final broadcast "
        "clients hold; recovered = the suite's primary recovery attack; recovered gain = "
        "(U(R) - U(base)) / (U(central) - U(base)) as a ratio of means over the seeds where it "
        "is defined (k/n: seeds with a significant central gain); gain over control = the same "
        "for R minus its no-payload control; AUC (control) = the primary membership attack's "
        "AUC and its AUC on the untrained model (same records); AUC − control = the leakage "
        "attributable to training (paired bootstrap). Utility (central, proxy, base): mean over "
        "seeds [95 % percentile interval of a bootstrap that resamples the seeds and, within "
        "each drawn seed, its test records; one seed: test-record noise only]; recovered and "
        "grad. fidelity have no per-record results: mean (seeds min–max); leakage: mean over "
        "seeds [95 % CI from the records' bootstrap standard errors]; one seed: its own "
        "interval. fidelity = cosine of LoRA gradients on the proxy vs the central model. "
        "converged / round: each cell's convergence verdict and the round its final models "
        "come from.", "",
        "Primary attacks: " + ("; ".join(notes) + " (defaults)" if notes else
                               "as named in the suite") + ". Every attack: see Detail.", "",
        f"Bootstrap: {', '.join(map(str, resamples)) or '?'} resamples per estimate"
        + (f" (fewer than the default {DEFAULT_RESAMPLES}: interval ends are coarse)"
           if few else "") + f"; utility and claims: percentile intervals, draws seeded "
        f"({BOOT_SEED}), paired over test records between the models of one seed.", ""]


def kernels_line(cells: list[dict[str, Any]]) -> str:
    """Which CPUs and torch kernels computed the cells: training floats differ in the last bits
    between kernel families (AVX2 vs AVX-512), so a rerun elsewhere matches within a tolerance
    (the README gives the measured one), not bit for bit."""
    kinds: dict[str, int] = {}
    for c in cells:
        cpu = c.get("meta", {}).get("cpu") or {}
        where = f"{cpu.get('model') or 'unknown CPU'}, torch {cpu.get('torch_capability')} kernels"
        kinds[where] = kinds.get(where, 0) + 1
    return ("Computed on: " + "; ".join(f"{w} ({n} cells)" for w, n in sorted(kinds.items()))
            + ". A rerun on other kernels matches within a tolerance, not bit for bit (README, "
            "\"Reproducing a published number\").")


def failed_attacks(cells: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(cell, attack) for every attack that failed in a cell that is otherwise ok."""
    return [(c, a) for c in cells if c["status"] == "ok" for a in c["attacks"]
            if a["status"] == "failed"]


def failure_lines(cells: list[dict[str, Any]]) -> list[str]:
    """The report's first section when anything failed: each failed cell and each failed
    attack with its one-line error (the full traceback is in the cell file); none otherwise."""
    def one_line(text: Any) -> str:
        return " ".join(str(text or "no error recorded").split())

    lines = [f"- cell `{c['id']}` {c['labels']}: {one_line(c.get('error'))}"
             for c in cells if c["status"] != "ok"]
    same: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)  # one line per error
    for c, a in failed_attacks(cells):
        target = a["config"].get("target")
        same[(f"{a['attack']}@{target}" if target else a["attack"], one_line(a.get("error")))] \
            .append(c)
    for (name, error), where in same.items():
        at = (f"cell `{where[0]['id']}` {where[0]['labels']}" if len(where) == 1 else
              f"{len(where)} cells (" + ", ".join(f"`{c['id']}`" for c in where) + ")")
        lines.append(f"- attack `{name}` in {at}: {error}")
    if not lines:
        return []
    return ["## Failed cells and attacks", "", *lines, "",
            "Their numbers are left out of every table below; the full tracebacks are in "
            "`cells/<id>.json` (`traceback`).", ""]


def build_report(out: Path, *, command: str | None = None) -> Path:
    """Write ``report.md``, ``summary.csv``, ``results.csv`` (:mod:`benchmarks.tidy`) and plots
    into ``out``; returns the report path."""
    from benchmarks.plots import write_plots

    suite, cells = load_cells(out)
    ok = [c for c in cells if c["status"] == "ok"]
    failed = [c for c in cells if c["status"] != "ok"]
    rows = summarize(group_cells(suite, ok))
    write_csv(rows, out / "summary.csv")
    write_tidy(cells, out / "results.csv")  # every number, long format
    plots = write_plots(rows, ok, out)
    shas = sorted({c["meta"]["git_sha"] or "unknown" for c in cells})
    dirty = any(c["meta"]["git_dirty"] for c in cells)
    broken = len(failed_attacks(cells))
    lines = [f"# {suite['name']} suite", "", *failure_lines(cells), suite["description"], "",
             f"Regenerate: `{command or suite.get('command') or 'fedlpp bench run ' + suite['file']}`"
             " (it also writes "
             "this report; `fedlpp bench report DIR` rebuilds it from the cell files).", "",
             f"{len(ok)} of {len(suite['cells'])} cells ok, {len(failed)} failed, "
             f"{len(suite['cells']) - len(cells)} not run"
             f"{f'; {broken} attacks failed in ok cells' if broken else ''}. "
             f"Code: {', '.join(s[:10] for s in shas)}{' (uncommitted changes)' if dirty else ''}. "
             "Each cell's resolved config and provenance are in `cells/<id>.json`.", "",
             kernels_line(cells), ""]
    lines += _method_lines(rows)
    lines += check_claims(rows)
    lines += ["## Results", ""] + markdown_tables(rows) + sweep_tables(rows)
    lines += defense_tables(rows, ok)
    lines += ["## Detail: every attack", ""] + detail_tables(rows)
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
