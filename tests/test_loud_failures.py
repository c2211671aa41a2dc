"""Failures are loud and precise: a failing attack or cell is listed at the top of the report,
`fedlpp attack` and `fedlpp bench run` exit 1, `--debug` (or FEDLPP_DEBUG=1) prints the full
traceback that the records keep, and a plugin hook's error names its round and hook. `--quiet`
prints only JSON; a closed pipe ends the command quietly."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, run_tiny

from attacks.base import ATTACKS
from attacks.membership.loss import LossAttack
from fedlpp.cli import main
from fedlpp.config import load_config
from fedlpp.defenses import DEFENSES, Defense
from fedlpp.run.simulator import RunFailed, run_federation

BOOM = "test-loud-boom"
HOOKED = "test-loud-hook"


class Boom(LossAttack):
    """A third-party-like attack that breaks at run time."""

    def score(self, target, *, obs, indices):
        return {}["missing"]  # KeyError: 'missing', from inside the plugin


class Hooked(Defense):
    """Raises in one hook from one round on; counts its calls (its report)."""

    hook, fail_from, calls = "before_broadcast", 2, 0

    def _maybe_fail(self, rnd):
        Hooked.calls += 1
        if rnd >= Hooked.fail_from:
            raise KeyError("missing")

    def before_broadcast(self, rnd, tensors, *, static):
        if Hooked.hook == "before_broadcast":
            self._maybe_fail(rnd)
        return tensors

    def on_update(self, rnd, client, tensors, *, broadcast):
        if Hooked.hook == "on_update":
            self._maybe_fail(rnd)
        return tensors

    def after_aggregate(self, rnd, mean, *, broadcast, weights):
        if Hooked.hook == "after_aggregate":
            self._maybe_fail(rnd)
        return mean

    def report(self):
        return {"calls": Hooked.calls}


@pytest.fixture(scope="module", autouse=True)
def plugins():
    ATTACKS.register(BOOM)(Boom)
    DEFENSES.register(HOOKED)(Hooked)
    yield
    ATTACKS._items.pop(BOOM)
    DEFENSES._items.pop(HOOKED)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    _, out = run_tiny(tmp_path_factory.mktemp("loud"))
    return out


SUITE = """
[suite]
name = "loud"
description = "one tiny cell whose second attack fails"

[base]
model.name = "tiny-llama"
data = { name = "kjv-lm", max_records = 120, seq_len = 24 }
fed = { num_clients = 2, rounds = 2, local_steps = 2, batch_size = 4, lr = 0.01 }
eval.max_records = 16
quant = { name = "nf", bits = 2 }

[grid]
seed = [0]

[attacks]
names = ["loss", "test-loud-boom"]
set = ["max_records=16"]
targets = ["central"]
primary = { central = "loss" }
resamples = 20
"""


def test_a_failing_attack_is_listed_at_the_top_of_the_report_and_exits_1(tmp_path, capsys):
    suite = tmp_path / "loud.toml"
    suite.write_text(SUITE)
    out = tmp_path / "bench"
    assert main(["bench", "run", str(suite), "--out", str(out), "--quiet"]) == 1
    said = capsys.readouterr().out
    assert "1 cells ok, 0 failed; 1 attacks failed" in said
    lines = (out / "report.md").read_text().splitlines()
    assert lines[:3] == ["# loud suite", "", "## Failed cells and attacks"]
    assert lines[4].startswith(f"- attack `{BOOM}@central` in cell `")
    assert lines[4].endswith("KeyError: 'missing'")
    assert any("1 of 1 cells ok, 0 failed, 0 not run; 1 attacks failed in ok cells" in line
               for line in lines)
    (cell,) = [json.loads(f.read_text()) for f in (out / "cells").glob("*.json")]
    boom, loss = sorted(cell["attacks"], key=lambda a: a["attack"] != BOOM)
    assert boom["status"] == "failed" and "in score" in boom["traceback"]
    assert loss["status"] == "ok" and "traceback" not in loss
    # rebuilt from the cells: the same report
    assert main(["bench", "report", str(out)]) == 0
    assert (out / "report.md").read_text().splitlines() == lines


def test_a_failed_cell_is_listed_at_the_top_with_its_one_line_error(tmp_path, monkeypatch):
    import fedlpp.run.simulator as simulator

    def broken(cfg, **kw):
        raise RuntimeError("disk\non fire")

    monkeypatch.setattr(simulator, "run_federation", broken)
    suite = tmp_path / "loud.toml"
    suite.write_text(SUITE)
    out = tmp_path / "bench"
    assert main(["bench", "run", str(suite), "--out", str(out), "--quiet"]) == 1
    lines = (out / "report.md").read_text().splitlines()
    assert lines[2] == "## Failed cells and attacks"
    assert lines[4].startswith("- cell `") and lines[4].endswith("RuntimeError: disk on fire")
    (cell,) = [json.loads(f.read_text()) for f in (out / "cells").glob("*.json")]
    assert "in broken" in cell["traceback"]  # the whole traceback, down to the raising frame


def test_fedlpp_attack_exits_1_when_an_attack_fails(tiny_run, capsys):
    code = main(["attack", str(tiny_run), "--attack", BOOM, "--attack", "loss",
                 "--resamples", "20", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "FAILED: KeyError: 'missing'" in out
    assert f"1 of 2 attacks failed: {BOOM}" in err and "Traceback" not in err
    saved = json.loads((tiny_run / "attacks" / f"{BOOM}@central.json").read_text())
    assert saved["status"] == "failed" and saved["error"] == "KeyError: 'missing'"
    assert "in score" in saved["traceback"] and "KeyError: 'missing'" in saved["traceback"]
    assert main(["attack", str(tiny_run), "--attack", "loss", "--resamples", "20",
                 "--quiet"]) == 0


@pytest.mark.parametrize("how", [["--debug"], ["env"], ["--debug", "first"]])
def test_debug_prints_the_plugins_traceback(tiny_run, capsys, monkeypatch, how):
    args = ["attack", str(tiny_run), "--attack", BOOM, "--resamples", "20", "--quiet"]
    if how == ["env"]:
        monkeypatch.setenv("FEDLPP_DEBUG", "1")
    elif "first" in how:
        args = ["--debug", *args]
    else:
        args = [*args, "--debug"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "in score" in err and 'return {}["missing"]' in err


@pytest.mark.parametrize("hook, rnd", [("before_broadcast", 2), ("on_update", 1),
                                       ("after_aggregate", 2)])
def test_a_hooks_error_names_its_round_and_hook(tmp_path, monkeypatch, hook, rnd):
    monkeypatch.setattr(Hooked, "hook", hook)
    monkeypatch.setattr(Hooked, "fail_from", rnd)
    monkeypatch.setattr(Hooked, "calls", 0)
    out = tmp_path / "run"
    cfg = load_config(None, [*TINY, f'defenses=[{{name = "{HOOKED}"}}]'])
    where = f"round {rnd}, hook {hook} of defense '{HOOKED}': KeyError: 'missing'"
    with pytest.raises(RunFailed, match=f"the run failed in {where}"):
        run_federation(cfg, out=out, quiet=True, echo=False)
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "failed" and result["error"] == where
    assert result["failed_in"] == {"round": rnd, "hook": hook, "plugin": f"defense '{HOOKED}'"}
    assert result["defenses"] == [{"name": HOOKED, "calls": Hooked.calls}]  # its report kept
    assert Hooked.calls >= 1
    assert f"in {hook}" in result["traceback"] and "KeyError: 'missing'" in result["traceback"]


def test_train_reports_the_hook_in_one_line_and_debug_adds_the_traceback(tmp_path, capsys):
    sets = [x for s in [*TINY, f'defenses=[{{name = "{HOOKED}"}}]'] for x in ("--set", s)]
    assert main(["train", *sets, "--out", str(tmp_path / "a"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"the run failed in round 2, hook before_broadcast of defense '{HOOKED}'" in err
    assert main(["train", *sets, "--out", str(tmp_path / "b"), "--quiet", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in before_broadcast" in err


def test_quiet_train_prints_only_json(tmp_path, capsys):
    sets = [x for s in [*TINY, "fed.rounds=1"] for x in ("--set", s)]
    assert main(["train", *sets, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out)  # the whole of stdout: no round lines, no `wrote ...`
    assert {"final", "comm"} <= set(summary)


def _fedlpp(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedlpp.cli", *args]


def test_a_closed_pipe_ends_quietly():
    # `fedlpp ls attacks | head -1`
    ls = subprocess.Popen(_fedlpp("ls", "attacks"), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent)
    head = subprocess.Popen(["head", "-1"], stdin=ls.stdout, stdout=subprocess.PIPE)
    ls.stdout.close()  # head alone reads it now
    first, _ = head.communicate(timeout=120)
    err = ls.stderr.read()
    assert ls.wait(timeout=120) == 0 and err == b""
    assert first == b"attacks:\n"
    # a reader gone before the first line is written
    ls = subprocess.Popen(_fedlpp("ls"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ls.stdout.close()
    err = ls.stderr.read()
    assert ls.wait(timeout=120) == 0 and err == b""


def test_an_attack_the_run_cannot_serve_is_not_applicable_not_failed(tmp_path, capsys):
    _, run = run_tiny(tmp_path, "fed.num_clients=1")  # one client: no other clients' records
    code = main(["attack", str(run), "--attack", "loss", "--set", "target=proxy",
                 "--resamples", "20", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0 and "attacks failed" not in err
    assert "not applicable: Target 'proxy' has 0 trained members" in out
    saved = json.loads((run / "attacks" / "loss@proxy.json").read_text())
    assert saved["status"] == "not_applicable" and "traceback" not in saved
