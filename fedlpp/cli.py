"""The ``fedlpp`` command: ``train`` a FedLPP run, ``attack`` it, ``bench`` a suite, ``ls`` the
registered plugins.

Bad input ends with exit code 2 and one line on stderr naming the bad value and what is allowed.

This is the top floor of the house, with :mod:`fedlpp.api` (the same commands as Python calls): the
modules of ``fedlpp/`` that import ``attacks`` and ``benchmarks`` (which sit above the trainer);
``tests/test_architecture.py`` holds the stage map.

The command's ``attacks`` and ``benchmarks`` are always this project's, the folders beside
``fedlpp/``: a user's own ``attacks/`` or ``benchmarks/`` folder in the working directory (first
on ``sys.path`` under ``python -m fedlpp.cli``) is never imported. Importing this module puts
:class:`OwnPackages` first on ``sys.meta_path``; it finds those two names beside ``fedlpp/`` and
nowhere else, so ``sys.path`` stays as it was and the user's other modules in the working
directory (a plugin module, say) still import. This was chosen over taking the working directory
off ``sys.path`` (that would hide those modules too) and over refusing to run beside such a
folder (``attacks/`` is a natural name for a folder of one's own attacks). A spawned worker of
``fedlpp bench run --jobs N`` imports this module first too (its main module). Where a module of
either name is already imported from elsewhere (a Python session that imported its own), the
command and the API stop with one line naming that folder (:func:`own_packages`).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from fedlpp.errors import FedlppError

HOME = Path(__file__).resolve().parent.parent  # the folder that holds fedlpp/, attacks/, benchmarks/
OWN = ("attacks", "benchmarks")  # the project's other top-level packages


class OwnPackages(importlib.abc.MetaPathFinder):
    """Finds :data:`OWN` in :data:`HOME` only (and nothing else), whatever ``sys.path`` holds."""

    def find_spec(self, name: str, path=None, target=None):  # noqa: ANN001, ANN201 - the protocol
        if name not in OWN:
            return None
        return importlib.machinery.PathFinder.find_spec(name, [str(HOME)])


def install_own_packages() -> None:
    """Put :class:`OwnPackages` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, OwnPackages) for f in sys.meta_path):
        sys.meta_path.insert(0, OwnPackages())


def own_packages() -> None:
    """:func:`install_own_packages`, and a one-line error if ``attacks`` or ``benchmarks`` is
    already imported from a folder that is not beside ``fedlpp/`` (e.g. a user's own)."""
    install_own_packages()
    for name in OWN:
        module = sys.modules.get(name)
        if module is None:
            continue
        where = list(getattr(module, "__path__", None) or [getattr(module, "__file__", None)])
        if not any(w and Path(w).resolve() == HOME / name for w in where):
            shown = ", ".join(str(w) for w in where if w) or "an unknown place"
            raise FedlppError(f"a module named {name!r} is already imported from {shown}, not "
                              f"fedlpp's ({HOME / name}): rename that folder, or use fedlpp "
                              f"before importing it")


install_own_packages()  # before anything imports attacks or benchmarks


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise FedlppError(f"{self.prog}: {message}")


def _registries() -> dict:
    from attacks.base import ATTACKS
    from fedlpp.describe import registries

    return {**registries(), "attacks": ATTACKS}


def _ls_attacks() -> None:
    from attacks.base import ATTACKS
    from fedlpp.describe import summary_line
    print("attacks:")
    for name in ATTACKS.names():
        cls = ATTACKS.get(name)
        try:
            threat = cls(cls.Config()).threat_model
        except Exception:  # noqa: BLE001 - a plugin whose defaults don't build is still listed
            threat = "?"
        origin = "built-in" if cls.__module__.startswith("attacks.") else cls.__module__
        print(f"  {name:<16} {cls.kind:<10} {threat:<10} {cls.summary}  [{origin}]")
        options = summary_line("attacks", ATTACKS, name)
        if options:
            print(f"  {'':<16} options: {options}")


def cmd_ls(args: argparse.Namespace) -> int:
    from fedlpp.describe import describe, summary_line

    regs = _registries()
    if args.name:  # argparse fills KIND first: a NAME always comes with its kind
        print(describe(args.kind, regs[args.kind], args.name), end="")
        return 0
    for kind in [args.kind] if args.kind else list(regs):
        if kind == "attacks":
            _ls_attacks()
            continue
        print(f"{kind}:")
        reg = regs[kind]
        for name in reg.names():
            doc = (reg.get(name).__doc__ or "").strip().splitlines()
            print(f"  {name:<16} {doc[0] if doc else ''}")
            options = summary_line(kind, reg, name)
            if options:
                print(f"  {'':<16} options: {options}")
        if not reg.names():
            print("  (none registered)")
    print("(fedlpp ls KIND NAME: a plugin's options, their types and defaults, and its docs)")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from fedlpp.describe import config_toml

    print(config_toml(args.config, args.set), end="")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from fedlpp.outdir import out_path
    from fedlpp.scaffold import names, write

    n = names(args.kind, args.name)
    registry = _registries()[f"{args.kind}s"]
    if args.name in registry.names():
        article = "an" if args.kind == "attack" else "a"
        raise FedlppError(f"{article} {args.kind} named {args.name!r} is already registered "
                          f"(in {registry.get(args.name).__module__}): choose another NAME")
    out = out_path(args.out) if args.out is not None else Path(n["dist"])
    for path in write(args.kind, args.name, out):
        print(f"wrote {path}")
    print(f"next: pip install --no-deps -e {out} && fedlpp ls {args.kind}s {args.name}")
    return 0


def finished(path: Path) -> bool:
    """Whether ``path`` is the result.json of a finished run (one that cannot be read is not)."""
    from fedlpp.io import read_json

    try:
        result = read_json(path, what="a run's result (JSON)")
    except FedlppError:
        return False
    return isinstance(result, dict) and result.get("status") == "ok"


ENGINES = ("simulator", "flower")
# what `fedlpp train` and `fedlpp attack` write into a run folder: what --overwrite removes
RUN_FILES = ("result.json", "config.json", "trace", "attacks")


def check_train(cfg: Any, *, out: Path, engine: str, overwrite: bool, api: bool = False) -> None:
    """Every check of a train command that writes nothing: the config's plugins, the engine,
    the folder (``api``: errors name the Python arguments instead of the command's flags)."""
    from fedlpp.outdir import check_folder
    from fedlpp.run.resolve import resolve

    flag, engine_flag, again = (("out", "engine", "overwrite=True") if api
                                else ("--out", "--engine", "--overwrite"))
    resolve(cfg)  # every plugin the config names
    if engine not in ENGINES:
        raise FedlppError(f"Invalid {engine_flag}: {engine!r} (allowed: {', '.join(ENGINES)})")
    if engine == "flower":
        from fedlpp.flower.server_app import check_engine

        check_engine(cfg)
    # new, empty or a training run: never someone else's folder
    check_folder(out, "train", **({"flag": "out"} if api else {}))
    if finished(out / "result.json") and not overwrite:
        raise FedlppError(f"{flag} {str(out)!r} already holds a finished run (result.json); "
                          f"choose another directory or pass {again}")


def _check_train(args: argparse.Namespace) -> Any:
    """:func:`check_train` for the command's arguments; returns the config."""
    from fedlpp.config import load_config
    from fedlpp.outdir import out_path

    out = out_path(args.out)
    cfg = load_config(args.config, args.set)  # all config errors before anything heavy
    check_train(cfg, out=out, engine=args.engine, overwrite=args.overwrite)
    return cfg


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
    from fedlpp.io import atomic_write_json
    from fedlpp.outdir import locked, mark, remove_written
    from fedlpp.run.simulator import RunFailed, run_federation

    cfg = _check_train(args)
    prepared = _prepare(cfg, args.engine)
    out = Path(args.out)
    done = out / "result.json"
    with locked(out):
        _check_train(args)  # again, now that no other command can write here
        remove_written(out, RUN_FILES)  # an unfinished run, or a finished one under --overwrite
        mark(out, "train")
        atomic_write_json(out / "config.json", cfg.to_dict())  # the accepted run's config
        try:
            if args.engine == "flower":
                from fedlpp.flower.simulation import run_flower_simulation

                result = run_flower_simulation(cfg, out=out, quiet=args.quiet)
            else:
                result = run_federation(cfg, out=out, quiet=args.quiet, ctx=prepared)
        except RunFailed as exc:  # not a bad input (exit 2): the run started, then failed
            _print_traceback(args, exc.result.get("traceback"))
            print(f"error: {exc} (recorded in {done})", file=sys.stderr)
            return 1
    print(json.dumps({k: result.get(k) for k in ("final", "selection", "convergence", "comm",
                                                  "defenses")}, indent=2))
    if not args.quiet:  # --quiet: stdout is the JSON alone
        print(f"wrote {done}")
    return 0


def _print_traceback(args: argparse.Namespace, text: str | None, *, what: str = "") -> None:
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
        _print_traceback(args, r.get("traceback"), what=f"attack {r['attack']}: ")
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
    from benchmarks.matrix import SUITES_DIR, load_suite

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
    from benchmarks.report import failed_attacks

    failed = [r for r in results if r["status"] != "ok"]
    broken = failed_attacks(results)
    for r in failed:
        _print_traceback(args, r.get("traceback"), what=f"cell {r['id']}: ")
    for cell, a in broken:
        _print_traceback(args, a.get("traceback"), what=f"cell {cell['id']}, attack {a['attack']}: ")
    print(f"wrote {report}")
    print(f"{len(results) - len(failed)} cells ok, {len(failed)} failed"
          + (f"; {len(broken)} attacks failed (listed at the top of the report)" if broken else ""))
    return 1 if failed or broken else 0


def _discovery_commands(sub) -> None:
    """The commands that say what there is: ``ls``, ``config show``, ``new``."""
    ls = sub.add_parser("ls", help="list registered plugins, or describe one")
    ls.add_argument("kind", nargs="?", choices=["quantizers", "datasets", "models", "methods",
                                             "aggregators", "defenses", "adversaries",
                                             "attacks"])
    ls.add_argument("name", nargs="?", help="a plugin of KIND: its options, types, defaults "
                                            "and docstring")
    ls.set_defaults(func=cmd_ls)
    c = sub.add_parser("config", help="the run config")
    csub = c.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    cs = csub.add_parser("show", help="print the resolved config as TOML (what `fedlpp train "
                                      "--config` reads back to the same config)")
    cs.add_argument("--config", help="TOML config file (defaults apply to keys it leaves out)")
    cs.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set quant.bits=4 (repeatable)")
    cs.set_defaults(func=cmd_config)
    new = sub.add_parser("new", help="write a ready plugin package: pyproject with its entry "
                                     "point, the plugin, a test, a README")
    new.add_argument("kind", choices=["attack", "defense"])
    new.add_argument("name", help="the plugin's registered name, e.g. my-attack")
    new.add_argument("--out", help="folder to write (new or empty; default ./fedlpp-NAME)")
    new.set_defaults(func=cmd_new)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fedlpp", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="run a FedLPP federation")
    t.add_argument("--config", help="TOML config file (defaults apply to keys it leaves out)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set quant.bits=4 (repeatable)")
    t.add_argument("--out", required=True, help="run directory (result.json, trace/)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --out (its result, config, trace, attacks)")
    t.add_argument("--engine", default="simulator",
                   help="simulator (in this process) or flower (a Flower simulation: each "
                        "client a ClientApp; same numbers)")
    t.add_argument("--quiet", action="store_true", help="no progress bar; stdout: the JSON alone")
    t.set_defaults(func=cmd_train)
    a = sub.add_parser("attack", help="run attacks on a finished run")
    a.add_argument("run_dir", help="a directory written by `fedlpp train`")
    a.add_argument("--attack", action="append", required=True, metavar="NAME",
                   help="attack to run (repeatable), or `all`")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="attack option: key=value (every attack that has it) or NAME.key=value")
    a.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for CIs")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_attack)
    b = sub.add_parser("bench", help="run a benchmark suite and build its report")
    bsub = b.add_subparsers(dest="bench_command", required=True, parser_class=_Parser)
    br = bsub.add_parser("run", help="run (or resume) a suite's cells, then build the report")
    br.add_argument("suite", help="a suite TOML file or a shipped suite name (fedlpp bench ls)")
    br.add_argument("--out", help="result directory (default runs/bench-<suite>)")
    br.add_argument("--jobs", type=int, default=1,
                    help="cells run in parallel (with --executor ray: the local Ray CPUs)")
    br.add_argument("--executor", default="process",
                    help="process (local worker processes) or ray (one Ray task per cell)")
    br.add_argument("--address", help="with --executor ray: join the Ray cluster at ADDR "
                                      "(cells run on its nodes and their records come back)")
    br.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a run-config key in every cell")
    br.add_argument("--keep-runs", action="store_true", help="keep each cell's run trace")
    br.add_argument("--quiet", action="store_true", help="no progress bar")
    brep = bsub.add_parser("report", help="build report.md, summary.csv and plots from cells")
    brep.add_argument("dir", help="a directory written by `fedlpp bench run`")
    bsub.add_parser("ls", help="list the shipped suites")
    b.set_defaults(func=cmd_bench)
    _discovery_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fedlpp`` command."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched from a hub
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # bitsandbytes logs a harmless missing-optional-kernel line on every import on CPU
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    debug = False
    try:
        own_packages()
        parser = build_parser()
        add_debug(parser)
        args = parser.parse_args(argv)
        debug = args.debug
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
        return code
    except FedlppError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `fedlpp ls attacks | head -1`: the reader has had enough
        return _closed_pipe()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback (--debug shows it)
        if debug or os.environ.get("FEDLPP_DEBUG"):
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {' '.join(str(exc).split())} "
              "(--debug prints the traceback)", file=sys.stderr)
        return 1


def _closed_pipe() -> int:
    """A closed stdout ends the command quietly (exit 0): what is still buffered for it goes
    nowhere, so that the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0


def add_debug(parser: argparse.ArgumentParser, *, top: bool = True) -> None:
    """``--debug`` on ``parser`` and every subcommand (before or after it): full tracebacks on
    stderr for a failed run, cell or attack, and for an unexpected error (``FEDLPP_DEBUG=1``
    does the same)."""
    parser.add_argument("--debug", action="store_true",
                        default=bool(os.environ.get("FEDLPP_DEBUG")) if top else argparse.SUPPRESS,
                        help="print full tracebacks on stderr (the same: FEDLPP_DEBUG=1)")
    for action in parser._actions:  # noqa: SLF001 - argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in dict.fromkeys(action.choices.values()):
                add_debug(sub, top=False)


if __name__ == "__main__":
    sys.exit(main())
