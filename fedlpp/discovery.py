"""The commands that say what there is: ``fedlpp ls`` (the registered plugins, or one plugin's
options and docs), ``fedlpp config show`` (the resolved config as TOML) and ``fedlpp new`` (a
ready plugin package). Their parsers are :func:`fedlpp.cli.build_parser`'s.

On the top floor beside :mod:`fedlpp.cli`: listing reaches the ``attacks`` registry.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fedlpp.errors import FedlppError


def registries() -> dict:
    """Every plugin registry by its ``fedlpp ls`` kind, the attacks included."""
    from attacks.base import ATTACKS
    from fedlpp import describe

    return {**describe.registries(), "attacks": ATTACKS}


def ls_attacks() -> None:
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

    regs = registries()
    if args.name:  # argparse fills KIND first: a NAME always comes with its kind
        print(describe(args.kind, regs[args.kind], args.name), end="")
        return 0
    for kind in [args.kind] if args.kind else list(regs):
        if kind == "attacks":
            ls_attacks()
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
    registry = registries()[f"{args.kind}s"]
    if args.name in registry.names():
        article = "an" if args.kind == "attack" else "a"
        raise FedlppError(f"{article} {args.kind} named {args.name!r} is already registered "
                          f"(in {registry.get(args.name).__module__}): choose another NAME")
    out = out_path(args.out) if args.out is not None else Path(n["dist"])
    for path in write(args.kind, args.name, out):
        print(f"wrote {path}")
    print(f"next: pip install --no-deps -e {out} && fedlpp ls {args.kind}s {args.name}")
    return 0

