"""The Python API: what ``fedlpp train``, ``fedlpp attack`` and ``fedlpp bench run`` do, as calls.

::

    import fedlpp

    run = fedlpp.train("configs/tiny.toml", sets=["quant.bits=2"], out="runs/r1")
    print(run.final, run.comm)
    results = fedlpp.attack(run.out, ["loss", "as-is"])
    report = fedlpp.bench.run("tiny", "runs/bench-tiny")

Each function takes its options as keywords, checks them as the command does (a bad input is a
:class:`~fedlpp.errors.FedlppError` with the command's one-line message, raised before anything
is written) and writes the same files into the same folders, so ``fedlpp attack`` and
``fedlpp bench report`` read what these calls write, and the other way round. Nothing is ever
fetched from a hub (``HF_HUB_OFFLINE=1`` unless set otherwise), as with the command.

A run that starts and then fails raises :class:`RunFailed` (its ``result`` is the recorded
``result.json``); a failing attack does not raise: its result says ``status: "failed"`` with its
error and traceback, as ``fedlpp attack`` writes it (that command then exits 1).

Like the command, these calls import this project's own ``attacks`` and ``benchmarks``, never a
user's folder of that name (:func:`fedlpp.own_packages.own_packages`).

This module is on the top floor of ``tests/test_architecture.py``, beside :mod:`fedlpp.cli`
(what :func:`train` shares with ``fedlpp train`` is :mod:`fedlpp.train_command`);
``fedlpp/__init__.py`` loads it on first use of ``fedlpp.train`` and the others.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedlpp.errors import FedlppError
from fedlpp.own_packages import HOME, own_packages
from fedlpp.run.simulator import RunFailed  # raised by train() for a run that started, then failed
from fedlpp.train_command import check_train, write_run

if TYPE_CHECKING:
    from fedlpp.config import RunConfig

__all__ = ["FedlppError", "RunFailed", "RunResult", "attack", "bench", "train"]


@dataclass(frozen=True)
class RunResult:
    """A finished run: its folder ``out`` and its ``result.json`` (``result``, a dict).

    ``result["..."]`` reads a key of the record; ``final``, ``selection``, ``convergence``,
    ``comm`` and ``defenses`` are what ``fedlpp train`` prints.
    """

    out: Path
    result: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.result[key]

    @property
    def status(self) -> str:
        return self.result["status"]

    @property
    def config(self) -> dict[str, Any]:
        return self.result["config"]

    @property
    def final(self) -> dict[str, Any] | None:
        return self.result.get("final")

    @property
    def selection(self) -> dict[str, Any] | None:
        return self.result.get("selection")

    @property
    def convergence(self) -> dict[str, Any] | None:
        return self.result.get("convergence")

    @property
    def comm(self) -> dict[str, int]:
        return self.result["comm"]

    @property
    def defenses(self) -> list[dict[str, Any]]:
        return self.result.get("defenses", [])


def _setup() -> None:
    """What the command sets up first: offline, and its own ``attacks`` and ``benchmarks``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched from a hub
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    own_packages()


def _strings(value: Sequence[str] | str, what: str) -> list[str]:
    """``value`` as a list of strings (one string is a list of one)."""
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(v, str) for v in items):
        raise FedlppError(f"Invalid {what}: {value!r} (expected strings, e.g. ['quant.bits=4'])")
    return items


def _config(config: RunConfig | dict[str, Any] | str | Path | None,
            sets: list[str]) -> RunConfig:
    """A RunConfig from a RunConfig, a dict of config keys or a TOML path, then ``sets``."""
    import copy

    from fedlpp.config import RunConfig, load_config, merge, parse_set
    from fedlpp.typed import from_dict

    if config is None or isinstance(config, str | os.PathLike):
        return load_config(config, sets)
    if isinstance(config, RunConfig):
        config = config.to_dict()
    if not isinstance(config, dict):
        raise FedlppError(f"Invalid config: a {type(config).__name__} (expected a RunConfig, "
                          "a dict of config keys or a TOML file's path)")
    values = copy.deepcopy(config)
    for item in sets:
        merge(values, *parse_set(item))
    return from_dict(RunConfig, values)


def train(config: RunConfig | dict[str, Any] | str | Path | None = None, *,
          out: str | Path, sets: Sequence[str] = (), overwrite: bool = False,
          engine: str = "simulator", quiet: bool = False) -> RunResult:
    """Run a federation, as ``fedlpp train``; returns its :class:`RunResult`.

    ``config``: a :class:`~fedlpp.config.RunConfig`, a dict of config keys (``{"fed":
    {"rounds": 2}}``), a TOML file's path, or None (the defaults); ``sets`` then overrides keys
    (``["quant.bits=4"]``, as ``--set``). ``out`` is the run folder (new, empty or a training
    run's; a finished run there only with ``overwrite``); ``engine``: ``simulator`` or
    ``flower``; ``quiet``: no progress bar. ::

        run = fedlpp.train({"fed": {"rounds": 2}}, sets=["quant.bits=2"], out="runs/r1")
        run.final["central"]["loss"], run.out / "result.json"
    """
    from fedlpp.outdir import out_path

    _setup()
    folder = out_path(os.fspath(out), flag="out")
    cfg = _config(config, _strings(sets, "sets"))
    check_train(cfg, out=folder, engine=engine, overwrite=overwrite, api=True)
    result = write_run(cfg, out=folder, engine=engine, overwrite=overwrite, quiet=quiet, api=True)
    return RunResult(out=folder, result=result)


def attack(run_dir: str | Path | RunResult, names: Sequence[str] | str, *,
           sets: Sequence[str] = (), resamples: int = 1000,
           quiet: bool = False) -> list[dict[str, Any]]:
    """Run attacks on a finished run, as ``fedlpp attack``; returns one result dict per attack
    (each also written to ``run_dir/attacks/``).

    ``names``: attack names (or ``"all"``); ``sets``: attack options, ``key=value`` (every
    attack that has it) or ``NAME.key=value``; ``resamples``: bootstrap resamples for the
    intervals. A result's ``status`` is ``ok`` (then ``metrics``), ``not_applicable`` or
    ``failed`` (then ``error`` and ``traceback``). ::

        for r in fedlpp.attack("runs/r1", ["loss", "as-is"], sets=["max_records=16"]):
            print(r["attack"], r["status"], r.get("metrics", {}).get("auc"))
    """
    from attacks.runner import run_attacks

    _setup()
    if isinstance(run_dir, RunResult):
        run_dir = run_dir.out
    if not isinstance(resamples, int) or resamples < 1:
        raise FedlppError(f"Invalid resamples: {resamples!r} (allowed: >= 1)")
    return run_attacks(run_dir, names=_strings(names, "names"), sets=_strings(sets, "sets"),
                       resamples=resamples, quiet=quiet)


def bench_run(suite: str | Path, out: str | Path, *, sets: Sequence[str] = (), jobs: int = 1,
              executor: str = "process", address: str | None = None, keep_runs: bool = False,
              quiet: bool = False) -> Path:
    """Run (or resume) a suite and build its report, as ``fedlpp bench run``; returns the path
    of ``report.md`` (``summary.csv``, ``results.csv``, the plots and ``cells/`` beside it).

    ``suite``: a suite TOML file or a shipped suite's name; ``sets`` overrides a run-config key
    in every cell; ``jobs``, ``executor``, ``address`` and ``keep_runs`` are the command's
    options. Failed cells and attacks are listed at the top of the report. ::

        report = fedlpp.bench.run("tests/data/tiny_suite.toml", "runs/bench-tiny", jobs=2)
        print(report.read_text())
    """
    from benchmarks.matrix import load_suite
    from benchmarks.report import build_report
    from benchmarks.runner import check_options, run_suite
    from fedlpp.outdir import check_folder, locked, out_path

    _setup()
    folder = out_path(os.fspath(out), flag="out")
    sets = _strings(sets, "sets")
    loaded = load_suite(suite, sets)  # every cell validated before any runs
    check_options(loaded, jobs=jobs, executor=executor, address=address)
    check_folder(folder, "bench", flag="out")
    command = (f"fedlpp bench run {suite}{''.join(f' --set {s}' for s in sets)}"
               f"{f' --jobs {jobs}' if jobs != 1 else ''} --out {folder}")
    with locked(folder, flag="out"), _home_first(jobs > 1 and executor == "process"):
        run_suite(loaded, out=folder, jobs=jobs, quiet=quiet, keep_runs=keep_runs,
                  command=command, executor=executor, address=address)
        return build_report(folder)


@contextlib.contextmanager
def _home_first(on: bool) -> Iterator[None]:
    """While ``on``: the folder that holds ``fedlpp/`` first on ``sys.path``, which spawned
    worker processes copy, so that they too import this project's ``attacks`` and
    ``benchmarks`` (a worker of a notebook or of a script unpickles its work before anything
    could put :class:`~fedlpp.own_packages.OwnPackages` on its ``sys.meta_path``)."""
    if not on:
        yield
        return
    sys.path.insert(0, str(HOME))
    try:
        yield
    finally:
        sys.path.remove(str(HOME))


def bench_report(out: str | Path) -> Path:
    """Rebuild a suite's report from its cell files, as ``fedlpp bench report``; returns its
    path. ::

        fedlpp.bench.report("runs/bench-tiny")
    """
    from benchmarks.report import build_report

    _setup()
    return build_report(Path(out))


class Bench:
    """Benchmark suites: ``fedlpp.bench.run(suite, out)`` and ``fedlpp.bench.report(out)``."""

    run = staticmethod(bench_run)
    report = staticmethod(bench_report)

    def __repr__(self) -> str:
        return "fedlpp.bench (run, report)"


bench = Bench()
