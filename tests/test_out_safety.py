"""`--out` is safe: a refused command (exit 2) leaves nothing new and the old run intact, the tool
deletes only what it wrote, attack results of different options never share a file, a folder
is written by one command at a time, and a killed `bench run` leaves no worker behind.

Each row of a table is one case: the command, its exit code, a fragment of its first stderr
line, and what must be on disk afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import TINY

from attacks.runner import result_name
from benchmarks.matrix import load_suite
from benchmarks.runner import run_suite
from fedlpp.cli import main
from fedlpp.errors import FedlppError
from fedlpp.outdir import LOCK, MARKER, locked

SUITE = Path(__file__).parent / "data" / "tiny_suite.toml"
ROOT = Path(__file__).resolve().parent.parent


def _sets(*extra: str) -> list[str]:
    return [a for s in [*TINY, *extra] for a in ("--set", s)]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` -> a hash of its content ("dir" for a folder)."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else
            hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 3-round tiny run with an attack result beside it (copied by each test)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *_sets("fed.rounds=3"), "--out", str(out), "--quiet"]) == 0
    assert main(["attack", str(out), "--attack", "loss", "--resamples", "20", "--quiet"]) == 0
    assert (out / "trace" / "round_0003").is_dir() and (out / "attacks").is_dir()
    return out


# --- the folder before the command -----------------------------------------------------------
def _file(d: Path, run: Path) -> None:
    (d / "out").write_text("a user's file\n")


def _users(d: Path, run: Path) -> None:
    (d / "out").mkdir()
    (d / "out" / "config.json").write_text('{"mine": true}\n')


def _users_cache(d: Path, run: Path) -> None:
    (d / "out" / "cache").mkdir(parents=True)
    (d / "out" / "cache" / "mine.txt").write_text("keep me\n")


def _bench(d: Path, run: Path) -> None:
    (d / "out" / "cells").mkdir(parents=True)
    (d / "out" / "suite.json").write_text('{"name": "tiny"}\n')


def _finished(d: Path, run: Path) -> None:
    shutil.copytree(run, d / "out")


def _read_only(d: Path, run: Path) -> None:
    (d / "out").mkdir()
    (d / "out").chmod(0o555)


def _suite(d: Path, old: str, new: str) -> None:
    text = SUITE.read_text()
    assert old in text, old
    (d / "suite.toml").write_text(text.replace(old, new))


def _evil_name(d: Path, run: Path) -> None:
    _suite(d, 'name = "tiny"', 'name = "../../../../x"')


def _dot_name(d: Path, run: Path) -> None:
    _suite(d, 'name = "tiny"', 'name = ".hidden"')


def _nul_name(d: Path, run: Path) -> None:
    _suite(d, 'name = "tiny"', 'name = "a\\u0000b"')


def _dup_labels(d: Path, run: Path) -> None:
    _suite(d, 'label = "fp32"', 'label = "nf-2"')


GRID_NF3 = '\n[[grid]]\nquant = [{ label = "nf-2", name = "nf", bits = 3 }]\nseed = [2]\n'


def _dup_labels_across_grids(d: Path, run: Path) -> None:
    text = SUITE.read_text().replace("[grid]", "[[grid]]")
    (d / "suite.toml").write_text(text.replace("[attacks]", GRID_NF3 + "\n[attacks]"))


def _dotted_key(d: Path, run: Path) -> None:
    _suite(d, "seed = [0, 1]", "seed = [0, 1]\nfed.lr = [0.1, 0.2]")


@dataclass
class Case:
    id: str
    args: list[str]  # "OUT" is the folder under test, "SUITE" the (edited) suite file
    code: int
    first: str  # in the first line of stderr (exit 2: the only line)
    before: object = None  # sets up tmp_path (and "out" in it)
    after: object = None  # a check of tmp_path after the command; None: nothing changed
    tags: set[str] = field(default_factory=set)


def _train(*extra: str) -> list[str]:
    return ["train", *_sets(*extra), "--out", "OUT", "--quiet"]


def _bench_run(*extra: str) -> list[str]:
    return ["bench", "run", "SUITE", *extra, "--quiet"]


def _overwritten(d: Path) -> None:
    out = d / "out"
    config = json.loads((out / "config.json").read_text())
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and config["fed"]["rounds"] == len(result["rounds"]) == 1
    assert not (out / "attacks").exists()  # the old run's attack results went with it
    assert sorted(p.name for p in (out / "trace").glob("round_*")) == ["round_0001"]
    assert (out / "notes.txt").read_text() == "mine\n"  # not the tool's: kept


CASES = [
    # train
    Case("train-empty-out", ["train", *_sets(), "--out", "", "--quiet"], 2, "Invalid --out: ''"),
    Case("train-out-is-a-file", _train(), 2, "is a file, not a folder", _file),
    Case("train-into-users-folder", _train(), 2, "holds files fedlpp did not write", _users),
    Case("train-into-bench-folder", _train(), 2, "holds a suite's results", _bench),
    Case("train-finished-no-overwrite", _train(), 2, "already holds a finished run", _finished),
    Case("train-overwrite-bad-bits", [*_train("quant.bits=9"), "--overwrite"], 2, "quant.bits",
         _finished),
    Case("train-overwrite-missing-data", [*_train("data.name=jsonl", "data.path=/no/such.jsonl"),
                                          "--overwrite"], 2, "data.path", _finished),
    Case("train-overwrite-bad-engine", [*_train(), "--overwrite", "--engine", "flwr"], 2,
         "--engine", _finished),
    Case("train-overwrite-flower-dp", [*_train('defenses=[{name = "dp-sgd"}]'), "--overwrite",
                                       "--engine", "flower"], 2, "dp-sgd", _finished),
    Case("train-read-only-folder", _train(), 2, "cannot be written", _read_only, tags={"perm"}),
    Case("train-out-under-a-file", ["train", *_sets(), "--out", "OUT/run", "--quiet"], 2,
         "cannot be written", _file),
    # bench run
    Case("bench-suite-name-escapes-runs", _bench_run(), 2, "Invalid [suite] name '../../../../x'",
         _evil_name),
    Case("bench-suite-name-hidden", _bench_run(), 2, "Invalid [suite] name '.hidden'", _dot_name),
    Case("bench-suite-name-nul", _bench_run(), 2, "Invalid [suite] name", _nul_name),
    Case("bench-duplicate-labels", _bench_run("--out", "OUT"), 2,
         "grid key 'quant' has two values labelled 'nf-2'", _dup_labels),
    Case("bench-duplicate-labels-across-grids", _bench_run("--out", "OUT"), 2,
         "grid key 'quant' has two values labelled 'nf-2'", _dup_labels_across_grids),
    Case("bench-unquoted-dotted-key", _bench_run("--out", "OUT"), 2,
         'quote the key, "fed.lr" = [0.1, 0.2]', _dotted_key),
    Case("bench-empty-out", _bench_run("--out", ""), 2, "Invalid --out: ''"),
    Case("bench-out-is-a-file", _bench_run("--out", "OUT"), 2, "is a file, not a folder", _file),
    Case("bench-into-training-run", _bench_run("--out", "OUT"), 2, "holds a training run",
         _finished),
    Case("bench-into-users-cache", _bench_run("--out", "OUT"), 2,
         "holds files fedlpp did not write", _users_cache),
    Case("bench-bad-jobs-writes-nothing", _bench_run("--out", "OUT", "--jobs", "0"), 2,
         "Invalid --jobs: 0"),
]
SLOWER = [  # runs that are accepted: a few seconds each
    Case("train-overwrite-replaces-the-whole-old-run", [*_train("fed.rounds=1"), "--overwrite"],
         0, "", lambda d, run: (_finished(d, run), (d / "out" / "notes.txt").write_text("mine\n")),
         _overwritten),
]


def _first_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    return lines[0] if lines else ""


@pytest.mark.parametrize("case", CASES + SLOWER, ids=lambda c: c.id)
def test_out_cases(case, tmp_path, finished_run, capsys, monkeypatch):
    if "perm" in case.tags and os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    monkeypatch.chdir(tmp_path)  # a default --out (runs/bench-<name>) lands in tmp_path
    if case.before:
        case.before(tmp_path, finished_run)
    if "SUITE" in case.args and not (tmp_path / "suite.toml").exists():
        shutil.copy(SUITE, tmp_path / "suite.toml")
    args = [a.replace("OUT", str(tmp_path / "out")) if a.startswith("OUT") else
            str(tmp_path / "suite.toml") if a == "SUITE" else a for a in case.args]
    before = snapshot(tmp_path)
    capsys.readouterr()
    try:
        code = main(args)
    finally:
        if (tmp_path / "out").is_dir():
            (tmp_path / "out").chmod(0o755)
    err = capsys.readouterr().err
    assert code == case.code, err
    assert case.first in _first_line(err), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    if case.after is None:
        assert snapshot(tmp_path) == before  # nothing new, nothing changed
    else:
        case.after(tmp_path)


def test_an_unfinished_run_is_replaced_without_its_leftovers(tmp_path, finished_run):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    result = json.loads((out / "result.json").read_text())
    (out / "result.json").write_text(json.dumps({**result, "status": "failed"}))
    (out / "trace" / "round_0009").mkdir()
    assert main(_train("fed.rounds=1")[:-3] + ["--out", str(out), "--quiet"]) == 0
    assert not (out / "trace" / "round_0009").exists() and not (out / "attacks").exists()


def test_a_users_cache_in_a_suite_folder_survives_the_suite(tmp_path, capsys):
    out = tmp_path / "out"
    _bench(tmp_path, tmp_path)  # a suite folder written before markers existed
    _users_cache(tmp_path, tmp_path)
    shares = []

    def work(cell, *, out, keep_runs, share):
        shares.append(share)
        record = {"id": cell.id, "labels": cell.labels, "status": "ok"}
        (out / "cells").mkdir(exist_ok=True)
        (out / "cells" / f"{cell.id}.json").write_text(json.dumps(record))
        return record

    records = run_suite(load_suite(SUITE), out=out, quiet=True, work=work)
    assert len(records) == 4 and shares == [False] * 4  # no shared store in someone's folder
    assert (out / "cache" / "mine.txt").read_text() == "keep me\n"
    assert "was not made by fedlpp bench run" in capsys.readouterr().err
    # the tool's own store is made, marked and removed
    fresh = tmp_path / "fresh"
    run_suite(load_suite(SUITE), out=fresh, quiet=True, work=work)
    assert shares[-4:] == [True] * 4 and not (fresh / "cache").exists()
    assert json.loads((fresh / MARKER).read_text()) == {"kind": "bench", "suite": "tiny"}


def test_one_label_may_name_one_value_in_several_grids(tmp_path):
    """The same variant with more seeds in another [[grid]] is one row, rightly."""
    text = SUITE.read_text().replace("[grid]", "[[grid]]")
    more = GRID_NF3.replace("bits = 3", "bits = 2")
    (tmp_path / "s.toml").write_text(text.replace("[attacks]", more + "\n[attacks]"))
    assert len(load_suite(tmp_path / "s.toml").cells) == 5


# --- attack result names -----------------------------------------------------------------------
def _attack(name: str, **options):
    from attacks.runner import build_attacks

    (attack,) = build_attacks([name], [f"{k}={v}" for k, v in options.items()])
    return attack


@pytest.mark.parametrize("name, options, expected", [
    ("loss", {}, "loss@central"),  # the default options keep the names reports and tests use
    ("loss", {"target": "update"}, "loss@update"),
    ("loss", {"target": "proxy", "client": 1}, "loss@proxy+client=1"),
    ("loss", {"target": "proxy", "client": 0}, "loss@proxy"),  # 0 is the default client
    ("loss", {"max_records": 16, "seed": 3}, "loss@central+max_records=16,seed=3"),
    ("as-is", {}, "as-is"),
    ("as-is", {"client": 1}, "as-is+client=1"),
])
def test_a_result_is_named_by_every_option_that_changes_it(name, options, expected):
    assert result_name(_attack(name, **options)) == expected


def test_a_long_or_unsafe_option_is_named_by_its_hash():
    from attacks.membership.loss import LossAttack

    @dataclass
    class Config(LossAttack.Config):
        note: str = ""

    class Odd(LossAttack):
        registered_name = "odd"

    names = {result_name(Odd(Config(note=n))) for n in ("../../x", "a" * 80, "b" * 80)}
    assert len(names) == 3 and all(n.startswith("odd@central+") and len(n) == 20 for n in names)
    assert result_name(Odd(Config(note="fine"))) == "odd@central+note=fine"


def test_attacking_another_client_keeps_the_first_result(tmp_path, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    for client in ("0", "1"):
        assert main(["attack", str(run), "--attack", "loss", "--set", "target=proxy",
                     "--set", f"client={client}", "--resamples", "20", "--quiet"]) == 0
    saved = {p.name: json.loads(p.read_text())["config"]["client"]
             for p in (run / "attacks").glob("loss@proxy*.json")}
    assert saved == {"loss@proxy.json": 0, "loss@proxy+client=1.json": 1}


# --- the lock ----------------------------------------------------------------------------------
HOLD = ("import sys, time; from pathlib import Path; from fedlpp.outdir import locked\n"
        "with locked(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)\n")


def test_a_held_folder_stops_train_naming_the_holder(tmp_path, finished_run, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(tmp_path)
        capsys.readouterr()
        assert main([*_train("fed.rounds=1")[:-3], "--out", str(out), "--overwrite"]) == 2
        err = capsys.readouterr().err.strip()
        assert f"is in use by pid {holder.pid} on host {socket.gethostname()} since" in err, err
        assert snapshot(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp_path.joinpath(LOCK).write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "started": "2020-01-01T00:00:00"}))
    with locked(tmp_path):
        with locked(tmp_path):  # reentrant within a process
            pass
        assert json.loads(tmp_path.joinpath(LOCK).read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert f"taking over the lock left by pid {dead.pid}" in err and "no longer running" in err
    assert tmp_path.joinpath(LOCK).read_text() == ""  # released: nothing stale for the next one


def test_a_refused_lock_is_one_line(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FedlppError, match=f"in use by pid {holder.pid}"):
            with locked(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()


# --- real processes ----------------------------------------------------------------------------
def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "fedlpp.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for_lock(out: Path, pid: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads((out / LOCK).read_text() or "{}").get("pid") == pid:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} never took the lock: {proc.poll()}")


def test_two_bench_runs_on_one_folder(tmp_path):
    suite = tmp_path / "one.toml"  # one cell: nf-2, seed 0
    suite.write_text(SUITE.read_text().replace("seed = [0, 1]", "seed = [0]").replace(
        ', { label = "fp32", name = "none", bits = 32 }', ""))
    out = tmp_path / "out"
    first = _cli("bench", "run", str(suite), "--out", str(out), "--quiet")
    try:
        _wait_for_lock(out, first.pid, first)
        time.sleep(0.5)
        second = _cli("bench", "run", str(suite), "--out", str(out), "--quiet")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        assert f"is in use by pid {first.pid} on host {socket.gethostname()}" in \
            _first_line(err), err
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        first.kill()
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert len(cells) == 1 and cells[0]["status"] == "ok"
    assert (out / "report.md").is_file() and not (out / "cache").exists()


def test_kill_9_of_bench_run_takes_its_workers_with_it(tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "out"
    proc = _cli("bench", "run", str(SUITE), "--jobs", "2", "--out", str(out), "--quiet")
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 120
    children: list = []
    while time.time() < deadline and proc.poll() is None:
        try:
            children = parent.children(recursive=True)
            workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
            if len(workers) >= 2 and any(c.cpu_times().user > 1.0 for c in workers):
                break  # both workers started, one of them well into its cell
        except psutil.Error:  # a child that just exited
            pass
        time.sleep(0.1)
    assert len(children) >= 3, children  # two workers and the resource tracker
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=10)
    for p in alive:
        p.kill()
    assert alive == [], [(p.pid, p.cmdline()) for p in alive]
