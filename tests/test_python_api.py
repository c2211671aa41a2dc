"""The Python API (``fedlpp.train``, ``fedlpp.attack``, ``fedlpp.bench.run``), loaded lazily, and
the project's own ``attacks`` and ``benchmarks`` packages, never a user's folder of that name."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

import fedlpp
from fedlpp.config import load_config
from fedlpp.errors import FedlppError

SUITE = Path(__file__).parent / "data" / "tiny_suite.toml"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    """A tiny run trained from Python, from a TOML path plus ``sets``."""
    toml = tmp_path_factory.mktemp("cfg") / "run.toml"
    toml.write_text("[fed]\nrounds = 2\n")
    return fedlpp.train(toml, sets=TINY, out=tmp_path_factory.mktemp("api") / "run", quiet=True)


def test_dir_lists_the_api():
    assert {"train", "attack", "bench", "RunResult"} <= set(dir(fedlpp))
    assert callable(fedlpp.bench.run) and callable(fedlpp.bench.report)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fedlpp.nope  # noqa: B018


def test_importing_the_config_does_not_import_the_api():
    code = ("import sys, fedlpp.config; "
            "print(sorted(m for m in ('fedlpp.api', 'fedlpp.cli', 'attacks', 'benchmarks') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_train_writes_a_run_and_returns_its_result(run):
    assert run.status == "ok" and run["status"] == "ok"
    assert (run.out / "result.json").is_file() and (run.out / "config.json").is_file()
    assert json.loads((run.out / "result.json").read_text())["final"] == run.final
    assert run.config["fed"]["rounds"] == 2 and run.config["quant"]["bits"] == 2
    assert run.comm["bytes_down_total"] > 0


def test_train_accepts_a_runconfig_or_a_dict_and_checks_like_the_command(run, tmp_path):
    cfg = load_config(None, TINY)
    with pytest.raises(FedlppError, match="already holds a finished run"):
        fedlpp.train(cfg, out=run.out)
    with pytest.raises(FedlppError, match="Unknown config key 'fed.roundz'"):
        fedlpp.train({"fed": {"roundz": 2}}, out=tmp_path / "a")
    with pytest.raises(FedlppError, match="Invalid engine"):
        fedlpp.train(cfg, out=tmp_path / "b", engine="warp")
    with pytest.raises(FedlppError, match="quant.bits"):
        fedlpp.train(cfg.to_dict(), sets=["quant.bits=12"], out=tmp_path / "c")
    assert not any(tmp_path.iterdir())  # nothing written for a bad input


def test_attack_returns_the_attack_results(run):
    results = fedlpp.attack(run, ["loss", "as-is"], sets=["max_records=16"], resamples=20,
                            quiet=True)
    assert [r["attack"] for r in results] == ["loss", "as-is"]
    assert all(r["status"] == "ok" for r in results)
    assert 0 <= results[0]["metrics"]["auc"]["value"] <= 1
    assert len(list((run.out / "attacks").glob("*.json"))) == 2
    with pytest.raises(FedlppError, match="Unknown attack 'los'"):
        fedlpp.attack(run.out, "los")
    with pytest.raises(FedlppError, match="resamples"):
        fedlpp.attack(run.out, "loss", resamples=0)


def test_bench_run_runs_a_suite_and_returns_its_report(tmp_path, one_thread):
    report = fedlpp.bench.run(SUITE, tmp_path / "bench", sets=["fed.rounds=1"], quiet=True)
    assert report == tmp_path / "bench" / "report.md"
    text = report.read_text()
    assert "4 of 4 cells ok, 0 failed" in text
    assert "Regenerate: `fedlpp bench run" in text and "--set fed.rounds=1" in text
    assert (tmp_path / "bench" / "results.csv").is_file()
    assert fedlpp.bench.report(tmp_path / "bench") == report


def _user_folder(tmp_path: Path) -> Path:
    """A working directory with the user's own ``attacks`` and ``benchmarks`` packages, which
    write a marker and raise when imported."""
    for name in ("attacks", "benchmarks"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"open({str(tmp_path / 'imported')!r}, 'a').write({name!r})\n"
            f"raise RuntimeError('the user\\'s own {name}')\n")
    return tmp_path


def test_a_users_attacks_folder_does_not_shadow_the_package(tmp_path):
    cwd = _user_folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": ""}
    control = subprocess.run([sys.executable, "-c", "import attacks"], cwd=cwd, env=env,
                             capture_output=True, text=True)
    assert "the user's own attacks" in control.stderr  # the folder would shadow the package
    (cwd / "imported").unlink()
    for args in (["ls", "attacks"], ["bench", "ls"]):
        proc = subprocess.run([sys.executable, "-m", "fedlpp.cli", *args], cwd=cwd, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert not (cwd / "imported").exists()
    assert proc.stdout.count("cells") >= 1
    listed = subprocess.run([sys.executable, "-m", "fedlpp.cli", "ls", "attacks"], cwd=cwd,
                            env=env, capture_output=True, text=True).stdout
    assert "loss" in listed and "[built-in]" in listed


def test_an_already_imported_shadow_is_one_line_naming_its_folder(tmp_path):
    cwd = tmp_path
    (cwd / "attacks").mkdir()
    (cwd / "attacks" / "__init__.py").write_text("")
    code = ("import attacks, fedlpp\n"
            "try:\n    fedlpp.attack('nowhere', 'loss')\n"
            "except fedlpp.api.FedlppError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "already imported from" in proc.stdout and str(cwd / "attacks") in proc.stdout
