"""The Ray executor: one task per cell, the same cell files and numbers as worker processes,
resume, and failures (a raising cell, a dying worker) recorded for their cell alone."""

import json
import os
from pathlib import Path

import pytest
from test_bench import SUITE, _numbers

from benchmarks.matrix import load_suite
from benchmarks.runner import run_suite
from fedlpp.errors import FedlppError

TESTS = str(Path(__file__).parent)


@pytest.fixture
def ray_env(monkeypatch):
    """Ray workers import the stand-in runners from this folder."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")


def test_ray_cells_give_the_process_executors_numbers_and_resume(tmp_path, ray_env):
    procs, rays = tmp_path / "procs", tmp_path / "ray"
    run_suite(load_suite(SUITE), out=procs, jobs=1, quiet=True)
    run_suite(load_suite(SUITE), out=rays, jobs=2, quiet=True, executor="ray")
    assert _numbers(rays) == _numbers(procs)
    before = {f.name: f.stat().st_mtime_ns for f in (rays / "cells").glob("*.json")}
    run_suite(load_suite(SUITE), out=rays, jobs=2, quiet=True, executor="ray")  # nothing left
    assert before == {f.name: f.stat().st_mtime_ns for f in (rays / "cells").glob("*.json")}


def test_a_raising_cell_and_a_dying_worker_fail_alone(tmp_path, ray_env):
    import ray_cells

    # seeds 0-3 x 2 widths: seed 1 raises, seed 2 kills its worker
    text = SUITE.read_text().replace("seed = [0, 1]", "seed = [0, 1, 2, 3]")
    path = tmp_path / "four.toml"
    path.write_text(text)
    suite = load_suite(path)
    out = tmp_path / "out"
    records = run_suite(suite, out=out, jobs=2, quiet=True, executor="ray", work=ray_cells.flaky)
    by_seed = {}
    for r in records:
        by_seed.setdefault(r["labels"]["seed"], []).append(r)
    assert all(r["status"] == "ok" for s in (0, 3) for r in by_seed[s])
    assert all(r["status"] == "failed" and "this cell raises" in r["error"] for r in by_seed[1])
    assert all(r["status"] == "failed" and "\n" not in r["error"]
               and r["error"].startswith("WorkerCrashedError:") for r in by_seed[2])
    for r in records:  # every record is in its cell file
        assert json.loads((out / "cells" / f"{r['id']}.json").read_text())["status"] == r["status"]


def test_on_a_cluster_cells_run_in_their_own_directory_and_come_back(tmp_path, ray_env):
    """``address`` given: no shared disk assumed (a head node started for the test)."""
    import socket
    import subprocess
    import sys

    import ray_cells

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray_cli = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, capture_output=True)
    try:
        path = tmp_path / "ok.toml"
        path.write_text(SUITE.read_text().replace("seed = [0, 1]", "seed = [0, 3]"))
        out = tmp_path / "out"
        records = run_suite(load_suite(path, ["system.device=cpu"]), out=out, quiet=True,
                            executor="ray",
                            address=f"127.0.0.1:{port}", work=ray_cells.flaky)
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True)
    assert {r["status"] for r in records} == {"ok"}
    assert all(not r["out"].startswith(str(out)) for r in records)  # not the driver's folder
    assert len(list((out / "cells").glob("*.json"))) == len(records)


@pytest.mark.parametrize("kw, needle", [
    ({"executor": "dask"}, "Invalid --executor: 'dask'"),
    ({"address": "10.0.0.1:6379"}, "--address '10.0.0.1:6379' needs --executor ray"),
])
def test_bad_executor_options_are_one_line_errors(tmp_path, kw, needle):
    with pytest.raises(FedlppError, match=needle):
        run_suite(load_suite(SUITE), out=tmp_path, quiet=True, **kw)


def test_a_cluster_needs_the_device_named_before_anything_runs(tmp_path):
    with pytest.raises(FedlppError, match=r"system.device 'auto' would be resolved on this "
                                          r"machine.*--set system.device=cpu"):
        run_suite(load_suite(SUITE), out=tmp_path / "out", quiet=True, executor="ray",
                  address="10.0.0.1:6379")
    assert not (tmp_path / "out").exists()
