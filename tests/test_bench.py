"""The benchmark harness: matrix expansion, validation, resume after SIGKILL, reports."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.matrix import load_suite
from benchmarks.report import build_report
from benchmarks.runner import run_suite
from fedlpp.cli import main
from fedlpp.errors import FedlppError

SUITE = Path(__file__).parent / "data" / "tiny_suite.toml"


def test_matrix_expands_the_grid_with_stable_ids():
    suite = load_suite(SUITE)
    assert len(suite.cells) == 4
    assert [c.labels for c in suite.cells][:2] == [{"quant": "nf-2", "seed": 0},
                                                  {"quant": "nf-2", "seed": 1}]
    assert suite.cells[2].config.quant.name == "none" and suite.cells[2].config.quant.bits == 32
    assert [c.id for c in load_suite(SUITE).cells] == [c.id for c in suite.cells]
    assert len({c.id for c in suite.cells}) == 4
    other = load_suite(SUITE, ["fed.rounds=3"])
    assert not {c.id for c in other.cells} & {c.id for c in suite.cells}


def test_a_grid_may_change_the_attack_plan_of_its_cells(tmp_path):
    text = SUITE.read_text().replace("[grid]", "[[grid]]")
    text += ('\n[[grid]]\nquant = [{ label = "nf-4", name = "nf", bits = 4 }]\nseed = [0]\n'
             'attacks = [{ names = ["as-is", "loss", "reference", "zlib"] }]\n')
    path = tmp_path / "two.toml"
    path.write_text(text)
    suite = load_suite(path)
    plans = {c.labels["quant"]: c.attacks for c in suite.cells}
    assert plans["nf-4"].names[-1] == "zlib" and "zlib" not in plans["nf-2"].names
    assert plans["nf-4"].targets == plans["nf-2"].targets  # the other keys are the suite's
    assert "attacks" not in suite.grid_keys and "attacks" not in suite.cells[-1].labels
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('{ names = ["as-is", "loss", "reference", "zlib"] }',
                                '{ nams = ["loss"] }'))
    with pytest.raises(FedlppError, match="Invalid grid attacks.*nams"):
        load_suite(bad)


@pytest.mark.parametrize(
    "edit, words",
    [
        (("[grid]", "[grid]\nbogus.key = [1]"), ["bogus"]),
        (("seed = [0, 1]", "seed = []"), ["seed", "non-empty"]),
        (("bits = 2 }", "bits = 12 }"), ["quant.bits", "12"]),
        (('names = ["as-is", "loss", "reference"]', 'names = ["as-is", "los"]'), ["Unknown attack 'los'"]),
        (('set = ["max_records=16"]', 'set = ["max_recs=16"]'), ["max_recs"]),
        (("[attacks]", "[attackz]"), ["attackz"]),
        (('targets = ["central", "update"]', 'targets = ["server"]'), ["server"]),
        (('update = "reference"', 'update = "zlib"'), ["primary update = 'zlib'", "loss, reference"]),
        (('update = "reference"', 'update = "as-is"'), ["primary update = 'as-is'"]),
        (('central = "loss"', 'proxy = "loss"'), ["primary target 'proxy'", "central, update"]),
        (('primary_recovery = "as-is"', 'primary_recovery = "loss"'),
         ["primary_recovery 'loss'", "recovery attack", "as-is"]),
        (('primary = { central = "loss", update = "reference" }', 'primary = "loss"'),
         ["primary", "table"]),
        (("resamples = 50", "resamples = 0"), ["resamples", "0"]),
    ],
)
def test_bad_suites_fail_before_any_cell_with_one_line(tmp_path, capsys, edit, words):
    text = SUITE.read_text().replace(*edit)
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(FedlppError):
        load_suite(bad)
    assert main(["bench", "run", str(bad), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out").exists()


def test_unknown_suite_name(capsys):
    assert main(["bench", "run", "nosuchsuite", "--quiet"]) == 2
    assert "quick" in capsys.readouterr().err


def _numbers(out: Path) -> dict:
    cells = {}
    for f in sorted((out / "cells").glob("*.json")):
        c = json.loads(f.read_text())
        cells[c["id"]] = {"train": c["train"], "fidelity": c["fidelity"],
                          "attacks": [{k: a[k] for k in ("attack", "config", "metrics")}
                                      for a in c["attacks"]]}
    return cells


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The whole tiny suite, uninterrupted, one job."""
    out = tmp_path_factory.mktemp("reference")
    run_suite(load_suite(SUITE), out=out, jobs=1, quiet=True)
    build_report(out, command="x")
    return out


def test_kill_and_resume_gives_the_uninterrupted_report(tmp_path, reference):
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fedlpp.cli", "bench", "run", str(SUITE),
                             "--out", str(killed), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((killed / "cells").glob("*.json")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # the first cell is written, the second one is under way
    proc.wait()
    done_before = len(list((killed / "cells").glob("*.json")))
    assert 1 <= done_before < 4
    for partial in (killed / "cells").glob(".*"):
        partial.unlink()  # a temp file the kill left behind is never read as a result
    results = run_suite(load_suite(SUITE), out=killed, jobs=1, quiet=True)
    assert len(results) == 4 and all(r["status"] == "ok" for r in results)
    build_report(killed, command="x")
    assert _numbers(killed) == _numbers(reference)
    assert (killed / "report.md").read_text() == (reference / "report.md").read_text()
    assert (killed / "summary.csv").read_text() == (reference / "summary.csv").read_text()


def test_cells_share_what_they_measured_on_the_same_model(reference):
    cells = [json.loads(f.read_text()) for f in (reference / "cells").glob("*.json")]
    # within a cell, what the run measured (base, central, the final broadcast) is read from
    # memory by the attacks; across cells, fp32 (run after nf-2, same seed) reads from the store
    # the base model's evaluations (round 0, test and validation records) and its signals on
    # target central's records
    by_bits = sorted((c["labels"]["quant"], c["meta"]["from_store"]) for c in cells)
    assert by_bits == [("fp32", 3), ("fp32", 3), ("nf-2", 0), ("nf-2", 0)]
    assert not (reference / "cache").exists()


def test_two_jobs_give_the_same_numbers_and_resume_skips_finished_cells(tmp_path, reference):
    two = tmp_path / "two"
    run_suite(load_suite(SUITE), out=two, jobs=2, quiet=True)
    assert _numbers(two) == _numbers(reference)
    assert not (two / "cache").exists()  # the cells' shared signals go when the suite ends
    # resume: nothing left to run, nothing changes
    before = {f.name: f.stat().st_mtime_ns for f in (two / "cells").glob("*.json")}
    run_suite(load_suite(SUITE), out=two, jobs=1, quiet=True)
    assert before == {f.name: f.stat().st_mtime_ns for f in (two / "cells").glob("*.json")}


def test_a_failing_cell_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    import fedlpp.run.simulator as simulator

    real = simulator.run_federation

    def flaky(cfg, **kw):
        if cfg.quant.name == "none":
            raise RuntimeError("disk on fire")
        return real(cfg, **kw)

    monkeypatch.setattr(simulator, "run_federation", flaky)
    results = run_suite(load_suite(SUITE), out=tmp_path, jobs=1, quiet=True)
    status = sorted(r["status"] for r in results)
    assert status == ["failed", "failed", "ok", "ok"]
    assert all("disk on fire" in r["error"] for r in results if r["status"] == "failed")
    report = build_report(tmp_path).read_text()
    assert "## Failed cells" in report and "disk on fire" in report


def test_report_tables_claims_and_plots(reference):
    tmp_path = reference
    report = build_report(tmp_path, command="fedlpp bench run tiny").read_text()
    assert "Regenerate: `fedlpp bench run tiny`" in report
    assert "2 clients, 2 rounds x 2 local steps" in report
    assert "(c) downlink far below fp32: **held**" in report
    assert "| nf-2, " not in report  # variants are named by their labels
    assert "Primary attacks: as named in the suite" in report
    assert "membership central / proxy / update: `loss / – / reference`" in report
    assert "recovery: `as-is`" in report
    assert "50 resamples per estimate (fewer than the default 1000" in report
    detail = report.split("## Detail: every attack")[1]
    for target, attack in [("central", "loss"), ("central", "reference"), ("update", "loss"),
                           ("update", "reference")]:
        assert f"| nf-2 | {target} | {attack} | " in detail
    assert "- –: needs >= 100 non-members, have 16" in detail
    assert "| fp32 | as-is | " in detail
    csv = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(csv) == 3 and csv[0].startswith("model,data,scope")
    assert "auc_minus_control_update" in csv[0] and "best" not in csv[0]
    for png in ("recovery_kjv-lm.png", "privacy_utility.png", "model_privacy.png",
                "membership_kjv-lm.png", "roc_loss.png"):
        assert (tmp_path / png).stat().st_size > 1000
        assert f"({png})" in report
