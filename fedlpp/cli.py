"""The ``fedlpp`` command: ``train`` a FedLPP run, ``attack`` it, ``bench`` a suite, ``ls`` the
registered plugins.

Bad input ends with exit code 2 and one line on stderr naming the bad value and what is allowed.

This module holds the parser and :func:`main`; the commands are :mod:`fedlpp.commands`
(``train``, ``attack``, ``bench``) and :mod:`fedlpp.discovery` (``ls``, ``config show``, ``new``).
They are the top floor of the house, with :mod:`fedlpp.api` (the same commands as Python calls):
the modules of ``fedlpp/`` that import ``attacks`` and ``benchmarks`` (which sit above the
trainer); ``tests/test_architecture.py`` holds the stage map. What ``train`` shares with :func:`fedlpp.train` is in :mod:`fedlpp.train_command`.

The command's ``attacks`` and ``benchmarks`` are always this project's (:mod:`fedlpp.own_packages`):
importing this module puts its finder first on ``sys.meta_path``, before anything imports them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings

from fedlpp.commands import cmd_attack, cmd_bench, cmd_train
from fedlpp.discovery import cmd_config, cmd_ls, cmd_new
from fedlpp.errors import FedlppError
from fedlpp.own_packages import install_own_packages, own_packages

install_own_packages()  # before anything imports attacks or benchmarks


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise FedlppError(f"{self.prog}: {message}")


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
