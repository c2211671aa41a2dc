"""The commands that run something and say how it went: ``fedlpp train`` (a run), ``fedlpp
attack`` (attacks on a finished run) and ``fedlpp bench run``/``report``/``ls`` (a suite). Their
parsers are :func:`fedlpp.cli.build_parser`'s; a bad input is a
:class:`~fedlpp.errors.FedlppError` (exit 2), a run, attack or cell that started and then failed
exits 1 (its traceback on stderr with ``--debug``).

On the top floor beside :mod:`fedlpp.cli`: these reach ``attacks`` and ``benchmarks``. What
``train`` shares with :func:`fedlpp.train` is in :mod:`fedlpp.train_command`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fedlpp.errors import FedlppError


def _check_train(args: argparse.Namespace) -> tuple[Any, Path]:
    """:func:`~fedlpp.train_command.check_train` for the command's arguments; returns the
    config and the run folder."""
    from fedlpp.config import load_config
    from fedlpp.outdir import out_path
    from fedlpp.train_command import check_train

    out = out_path(args.out)
    cfg = load_config(args.config, args.set)  # all config errors before anything heavy
    check_train(cfg, out=out, engine=args.engine, overwrite=args.overwrite)
    return cfg, out


def _prepare(cfg, engine: str):
    """The run's data and model loaded, so that a bad one stops the command (exit 2) before
    anything is written; None for the Flower engine (its ServerApp loads them again) or when
    loading failed otherwise (the run then records that failure in result.json)."""
    from fedlpp.run.context import prepare_run

    try:
        prepared = prepare_run(cfg)
    except FedlppError:
        raise
    except Exception:  # noqa: BLE001 - not a bad input: run_federation records it
        return None
    return prepared if engine == "simulator" else None

def cmd_train(args: argparse.Namespace) -> int:
    from fedlpp.run.simulator import RunFailed
    from fedlpp.train_command import write_run

    cfg, out = _check_train(args)
    prepared = _prepare(cfg, args.engine)
    done = out / "result.json"
    try:
        result = write_run(cfg, out=out, engine=args.engine, overwrite=args.overwrite,
                           quiet=args.quiet, ctx=prepared)
    except RunFailed as exc:  # not a bad input (exit 2): the run started, then failed
        print_traceback(args, exc.result.get("traceback"))
        print(f"error: {exc} (recorded in {done})", file=sys.stderr)
        return 1
    print(json.dumps({k: result.get(k) for k in ("final", "selection", "convergence", "comm",
                                                  "defenses")}, indent=2))
    if not args.quiet:  # --quiet: stdout is the JSON alone
        print(f"wrote {done}")
    return 0


def print_traceback(args: argparse.Namespace, text: str | None, *, what: str = "") -> None:
    """With --debug (or FEDLPP_DEBUG=1): a recorded traceback, on stderr."""
    if getattr(args, "debug", False) and text:
        print(f"{what}{text.rstrip()}", file=sys.stderr)


def cmd_attack(args: argparse.Namespace) -> int:
    from attacks.runner import run_attacks

    if args.resamples < 1:
        raise FedlppError(f"Invalid --resamples: {args.resamples} (allowed: >= 1)")
    results = run_attacks(args.run_dir, names=args.attack, sets=args.set,
                          resamples=args.resamples, quiet=args.quiet)
    _print_accountants(Path(args.run_dir) / "result.json")
    for r in results:
        m = r.get("metrics", {})
        if r["status"] == "not_applicable":
            summary = f"not applicable: {r['error']}"
        elif r["status"] != "ok":
            summary = f"FAILED: {r['error']}"
        elif r["kind"] == "membership":
            summary = "  ".join(f"{name} {_estimate(m[name])}" for name in
                                ("auc", "control_auc", "auc_minus_control", "tpr@1%fpr",
                                 "epsilon_lb"))
        else:
            summary = "  ".join(f"{name} {_estimate(m[name])}" for name in
                                ("recovered_gain", "gain_over_control", "param_rel_error"))
        print(f"{r['attack']:<16} {r['threat_model']:<10} {summary}")
    failed = [r for r in results if r["status"] == "failed"]
    for r in failed:
        print_traceback(args, r.get("traceback"), what=f"attack {r['attack']}: ")
    if failed:  # each failed result is written too, with its full traceback
        print(f"error: {len(failed)} of {len(results)} attacks failed: "
              f"{', '.join(r['attack'] for r in failed)} (tracebacks in "
              f"{Path(args.run_dir) / 'attacks'}; --debug prints them)", file=sys.stderr)
    return 1 if failed else 0


def _print_accountants(result_file: Path) -> None:
    """The run's DP accountants' epsilons, to read beside the attacks' ``epsilon_lb``."""
    from fedlpp.io import read_json

    if not result_file.is_file():
        return
    result = read_json(result_file, what="a run's result (result.json of `fedlpp train`)")
    for d in (result.get("defenses") if isinstance(result, dict) else None) or []:
        if isinstance(d, dict) and isinstance(d.get("epsilon"), dict) and "delta" in d:
            print(f"accountant       {d['name']:<10} epsilon {_estimate(d['epsilon'])} at delta "
                  f"{d['delta']:g} ({d.get('guarantee', '')})")


def _estimate(metric: dict) -> str:
    """``value [lo, hi]``, or ``null (reason)`` for a number the data cannot give."""
    if metric["value"] is None:
        return f"null ({metric['reason']})"
    ci = metric.get("ci")
    ends = "" if not ci else " [" + ", ".join("…" if e is None else f"{e:.3f}" for e in ci) + "]"
    return f"{metric['value']:.3f}{ends}"


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.matrix import load_suite
    from benchmarks.suite_file import SUITES_DIR

    if args.bench_command == "ls":
        for path in sorted(SUITES_DIR.glob("*.toml")):
            suite = load_suite(path)
            print(f"{suite.name:<10} {len(suite.cells):>4} cells  {suite.description}")
        return 0
    from benchmarks.report import build_report

    if args.bench_command == "report":
        print(f"wrote {build_report(Path(args.dir))}")
        return 0
    from benchmarks.runner import check_options, run_suite
    from fedlpp.outdir import check_folder, locked, out_path

    out = None if args.out is None else out_path(args.out)
    suite = load_suite(args.suite, args.set)  # every cell validated before any runs
    out = out or Path("runs") / f"bench-{suite.name}"  # a suite's name is a safe folder name
    check_options(suite, jobs=args.jobs, executor=args.executor, address=args.address)
    check_folder(out, "bench")  # new, empty or a suite's: never a training run's or a user's
    sets = "".join(f" --set {s}" for s in args.set)
    jobs = f" --jobs {args.jobs}" if args.jobs != 1 else ""
    command = f"fedlpp bench run {args.suite}{sets}{jobs} --out {out}"
    with locked(out):  # one command at a time on a folder, the report included
        results = run_suite(suite, out=out, jobs=args.jobs, quiet=args.quiet,
                            keep_runs=args.keep_runs, command=command, executor=args.executor,
                            address=args.address)
        report = build_report(out)
    return _bench_outcome(args, results, report)


def _bench_outcome(args: argparse.Namespace, results: list[dict], report: Path) -> int:
    """The suite's counts (exit 1 if a cell or an attack failed; the report lists them at the
    top); with --debug, their tracebacks."""
    from benchmarks.report_header import failed_attacks

    failed = [r for r in results if r["status"] != "ok"]
    broken = failed_attacks(results)
    for r in failed:
        print_traceback(args, r.get("traceback"), what=f"cell {r['id']}: ")
    for cell, a in broken:
        print_traceback(args, a.get("traceback"), what=f"cell {cell['id']}, attack {a['attack']}: ")
    print(f"wrote {report}")
    print(f"{len(results) - len(failed)} cells ok, {len(failed)} failed"
          + (f"; {len(broken)} attacks failed (listed at the top of the report)" if broken else ""))
    return 1 if failed or broken else 0
