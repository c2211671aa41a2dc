"""``results.csv``: every cell, attack and metric in long format, with its documented schema."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from synthetic_cells import cell as synthetic_cell
from synthetic_cells import lm_records

from benchmarks import tidy
from benchmarks.tidy import COLUMNS, cell_rows, tidy_rows, write_tidy
from fedlpp.cli import main

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"


def _estimate(value: float | None, ci: list[float] | None = None,
              reason: str | None = None) -> dict[str, Any]:
    return {"value": value, "ci": ci, "se": None, "reason": reason}


def _membership(target: str) -> dict[str, Any]:
    return {"attack": "loss", "kind": "membership", "threat_model": "outsider", "status": "ok",
            "config": {"target": target}, "error": None, "seconds": 1.0,
            "extra": {"coverage": 0.5, "note": "a string is not a row",
                      "inner": {"k": 3, "missing": None}},
            "metrics": {
                "auc": _estimate(0.8, [0.7, 0.9]), "control_auc": _estimate(0.55, [0.4, 0.7]),
                "auc_minus_control": _estimate(0.25, [0.1, 0.4]),
                "advantage": {**_estimate(0.5, [0.2, 0.8]), "threshold": -3.0},
                "tpr@1%fpr": _estimate(None, None, "needs >= 100 non-members, have 16"),
                "control": {"advantage": _estimate(0.1, [-0.2, 0.4]),
                            "tpr@1%fpr": _estimate(None, None, "needs more")},
                "roc": {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0], "thresholds": [1.0, 0.0]},
                "num_members": 16, "resamples": 50}}


def _recovery(status: str = "ok") -> dict[str, Any]:
    final = {"loss": 4.0, "perplexity": 54.6}
    if status != "ok":
        return {"attack": "local-finetune", "kind": "recovery", "threat_model": "client",
                "status": status, "config": {}, "error": "KeyError: 'missing'", "seconds": 0.1}
    return {"attack": "as-is", "kind": "recovery", "threat_model": "client", "status": "ok",
            "config": {}, "error": None, "seconds": 1.0,  # a cell written before `extra`
            "metrics": {"utility": final, "control_utility": None, "gain_metric": "loss",
                        "central": final, "proxy": final, "base": final,
                        "central_gain": _estimate(0.6, [0.5, 0.7]),
                        "recovered_gain": _estimate(1.0, [1.0, 1.0]),
                        "control_gain": _estimate(None, None, "the attack has no control"),
                        "param_rel_error": {"value": 0.0, "reason": None},
                        "round": 3, "resamples": 50}}


@pytest.fixture
def cell() -> dict[str, Any]:
    c = synthetic_cell(0, "nf-2", lm_records(0, level=50.0, factors={"central": 1.0,
                                                                     "proxy": 1.05}))
    c["id"] = "abc123"
    c["attacks"] = [_recovery(), _recovery("failed"), _membership("central"),
                    _membership("update")]
    return c


def test_the_schema_is_the_documented_one(tmp_path, cell):
    assert COLUMNS == ("cell", "setting", "seed", "target", "attack", "kind", "threat_model",
                       "metric", "value", "ci_low", "ci_high", "control", "reason")
    table = [line.split()[0] for line in tidy.__doc__.splitlines()
             if line and not line.startswith((" ", "=")) and line.split()[0] in COLUMNS]
    assert tuple(table) == COLUMNS  # the docstring's table names every column, in order
    path = write_tidy([cell], tmp_path / "results.csv")
    with open(path, newline="") as fh:
        assert tuple(next(csv.reader(fh))) == COLUMNS
    assert all(tuple(r) == COLUMNS for r in cell_rows(cell))


def test_one_row_per_attack_and_metric(cell):
    rows = cell_rows(cell)
    keys = [(r["attack"], r["target"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys))
    membership = {"auc", "control_auc", "auc_minus_control", "advantage", "tpr@1%fpr",
                  "num_members", "resamples", "extra.coverage", "extra.inner.k",
                  "extra.inner.missing"}
    recovery = {"utility.loss", "utility.perplexity", "control_utility", "central_gain",
                "recovered_gain", "control_gain", "param_rel_error", "round", "resamples"}
    training = {(m, k) for m in ("central", "proxy", "base") for k in ("loss", "perplexity")}
    assert {(t, m) for a, t, m in keys if a == "" and t} == training
    assert {m for a, t, m in keys if a == "" and not t} == {"fidelity", "bytes_down_per_round",
                                                            "bytes_up_per_round"}
    assert {m for a, t, m in keys if a == "as-is"} == recovery  # no extra.*: it has none
    for target in ("central", "update"):
        assert {m for a, t, m in keys if a == "loss" and t == target} == membership
    failed = [r for r in rows if r["attack"] == "local-finetune"]
    assert len(failed) == 1 and failed[0]["metric"] == "" and failed[0]["value"] is None
    assert failed[0]["reason"] == "failed: KeyError: 'missing'"
    first = rows[0]
    assert (first["cell"], first["setting"], first["seed"]) == ("abc123", "quant=nf-2", 0)
    assert {r["kind"] for r in rows} == {"training", "recovery", "membership"}


def test_controls_and_intervals_sit_beside_their_metric(cell):
    by = {(r["attack"], r["target"], r["metric"]): r for r in cell_rows(cell)}
    auc = by["loss", "central", "auc"]
    assert (auc["value"], auc["ci_low"], auc["ci_high"], auc["control"]) == (0.8, 0.7, 0.9, 0.55)
    assert by["loss", "central", "advantage"]["control"] == 0.1
    assert by["loss", "central", "tpr@1%fpr"]["control"] is None  # the control's is null too
    assert by["as-is", "", "recovered_gain"]["control"] is None  # no control_gain value
    assert by["as-is", "", "utility.loss"]["control"] is None  # control_utility is null
    assert by["loss", "update", "extra.inner.k"]["value"] == 3


def test_a_null_always_carries_a_reason(cell):
    failed = {**cell, "id": "dead", "status": "failed", "error": "RuntimeError: boom"}
    rows = tidy_rows([cell, failed])
    for r in rows:
        assert (r["value"] is None) == bool(r["reason"]), r
    assert rows[-1]["reason"] == "cell failed: RuntimeError: boom"
    by = {(r["attack"], r["target"], r["metric"]): r["reason"] for r in rows}
    assert by["loss", "central", "tpr@1%fpr"] == "needs >= 100 non-members, have 16"
    assert by["as-is", "", "control_utility"] == "the attack has no no-payload control"


def _lookup(node: Any, path: str) -> Any:
    """``path`` (keys joined by '.', a key may hold a '.' itself: ``tpr@0.1%fpr``) in ``node``."""
    if path in node:
        return node[path]
    key = next(k for k in node if path.startswith(f"{k}."))
    return _lookup(node[key], path[len(key) + 1:])


def _from_cell(cell: dict[str, Any], row: dict[str, str]) -> Any:
    """What the cell JSON holds for one CSV row (the estimate dict, or the number)."""
    if row["kind"] == "training":
        if row["target"]:
            return cell["train"]["final"][row["target"]][row["metric"]]
        return cell["fidelity"] if row["metric"] == "fidelity" else cell["train"]["comm"][
            row["metric"]]
    attack = next(a for a in cell["attacks"] if a["attack"] == row["attack"]
                  and (a["config"].get("target") or "") == row["target"])
    if row["metric"].startswith("extra."):
        return _lookup(attack["extra"], row["metric"][len("extra."):])
    return _lookup(attack["metrics"], row["metric"])


def _same(field: str, expected: Any) -> bool:
    if expected is None:
        return field == ""
    return float(field) == expected and (field.lstrip("-").isdigit() or
                                         not isinstance(expected, int))


def _check_round_trip(out: Path) -> list[dict[str, str]]:
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if not row["metric"]:
            continue
        found = _from_cell(cells[row["cell"]], row)
        value = found.get("value") if isinstance(found, dict) else found
        ci = (found.get("ci") if isinstance(found, dict) else None) or [None, None]
        assert _same(row["value"], value), (row, found)
        assert _same(row["ci_low"], ci[0]) and _same(row["ci_high"], ci[1]), (row, found)
    return rows


def test_bench_report_writes_every_attack_of_every_published_cell(tmp_path):
    out = tmp_path / "quick"
    shutil.copytree(REPORTS / "quick", out)
    assert main(["bench", "report", str(out)]) == 0
    assert (out / "report.md").read_bytes() == (REPORTS / "quick" / "report.md").read_bytes()
    rows = _check_round_trip(out)
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    expected = {(c["id"], a["attack"], a["config"].get("target") or "")
                for c in cells for a in c["attacks"]}
    assert {(r["cell"], r["attack"], r["target"]) for r in rows if r["attack"]} == expected
    assert {r["cell"] for r in rows if r["kind"] == "training"} == {c["id"] for c in cells}
    assert not any(r["metric"].startswith("extra.") for r in rows)  # cells predate `extra`
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(out / "results.csv")
    assert tuple(frame.columns) == COLUMNS and len(frame) == len(rows)


@pytest.mark.parametrize("name", ["paper", "defenses"])
def test_published_suites_give_unique_rows_whose_nulls_have_reasons(name):
    from benchmarks.cell_files import load_cells

    _, cells = load_cells(REPORTS / name)
    rows = tidy_rows(cells)
    keys = [(r["cell"], r["target"], r["attack"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert all((r["value"] is None) == bool(r["reason"]) for r in rows)
    expected = {(c["id"], a["attack"], a["config"].get("target") or "")
                for c in cells if c["status"] == "ok" for a in c["attacks"]}
    assert {(r["cell"], r["attack"], r["target"]) for r in rows if r["attack"]} == expected


def test_extra_is_kept_json_safe():
    from attacks.runner import json_safe

    extra = {"n": np.int64(3), "x": np.float32(0.5), "t": torch.tensor([1.0, 2.0]),
             "nan": math.nan, "pair": (1, 2), "ids": {3, 1}, 4: "key", "obj": Path("a")}
    safe = json_safe(extra)
    assert json.loads(json.dumps(safe, allow_nan=False)) == {
        "n": 3, "x": 0.5, "t": [1.0, 2.0], "nan": None, "pair": [1, 2], "ids": [1, 3],
        "4": "key", "obj": "a"}


def test_a_cell_record_keeps_each_attacks_extra(tmp_path, monkeypatch):
    """run_cell keeps what run_attacks returns as ``extra`` in the cell's attack entries."""
    import attacks.context
    import attacks.runner
    import benchmarks.cell as cell_module
    import fedlpp.run.context
    import fedlpp.run.simulator
    from benchmarks.matrix import load_suite

    one = load_suite(ROOT / "tests" / "data" / "tiny_suite.toml").cells[0]
    monkeypatch.setattr(fedlpp.run.context, "prepare_run", lambda config: type("P", (), {})())
    monkeypatch.setattr(fedlpp.run.simulator, "run_federation", lambda *a, **k: {})
    monkeypatch.setattr(attacks.context, "AttackContext", lambda *a, **k: None)
    monkeypatch.setattr(cell_module, "_summary", lambda result: {})
    monkeypatch.setattr(cell_module, "_fidelity", lambda ctx: None)

    def fake_attacks(run_dir, *, names, **kwargs):
        return [{"attack": n, "kind": "recovery", "threat_model": "client", "config": {},
                 "status": "ok", "metrics": {}, "extra": {"rounds_used": 2},
                 "meta": {"seconds": 0.0}} for n in names]

    monkeypatch.setattr(attacks.runner, "run_attacks", fake_attacks)
    record = cell_module.run_cell(one, out=tmp_path, share=False)
    assert record["status"] == "ok", record.get("error")
    assert record["attacks"] and all(a["extra"] == {"rounds_used": 2} for a in record["attacks"])
