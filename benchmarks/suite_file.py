"""Reading and checking a suite file: its sections, ``[base]`` with overrides, grid tables and
``[suite]`` name (the format is in :mod:`benchmarks.matrix`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedlpp.config import merge, parse_set
from fedlpp.errors import FedlppError
from fedlpp.io import read_toml

SUITES_DIR = Path(__file__).resolve().parent / "suites"


def find_suite(name_or_path: str) -> Path:
    """A suite file by path, or by name among the shipped suites."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = SUITES_DIR / f"{name_or_path.removesuffix('.toml')}.toml"
    if shipped.is_file():
        return shipped
    names = sorted(f.stem for f in SUITES_DIR.glob("*.toml"))
    raise FedlppError(f"Suite not found: {name_or_path!r} (a TOML file, or one of: {', '.join(names)})")


def read_suite_file(path: Path) -> dict[str, Any]:
    """A suite file's tables; a file that is not TOML or has an unknown section is an error."""
    raw = read_toml(path, what="a suite file (TOML)")
    unknown = set(raw) - {"suite", "base", "grid", "attacks"}
    if unknown:
        raise FedlppError(f"Unknown suite section(s) {sorted(unknown)} in {path.name} "
                          "(allowed: suite, base, grid, attacks)")
    return raw


def base_config(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The ``[base]`` keys every cell shares, with the ``--set`` overrides applied."""
    base: dict[str, Any] = raw.get("base", {})
    for item in overrides:
        key, value = parse_set(item)
        merge(base, key, value)
    return base


def _dotted(key: str, table: dict[str, Any]) -> tuple[str, Any]:
    """The first dotted key and its value TOML read as nested tables (``fed.lr = [...]`` is
    ``fed = {lr = [...]}``)."""
    sub, value = next(iter(table.items()))
    key = f"{key}.{sub}"
    return _dotted(key, value) if isinstance(value, dict) and value else (key, value)


def grid_tables(raw: dict[str, Any]) -> list[dict[str, list[Any]]]:
    """The ``[grid]`` table, or every ``[[grid]]`` table; each key a non-empty list of choices."""
    grids = raw.get("grid", {})
    grids = grids if isinstance(grids, list) else [grids]  # [[grid]] tables: union of grids
    for grid in grids:
        for key, values in grid.items():
            if isinstance(values, dict) and values:  # an unquoted dotted key
                dotted, value = _dotted(key, values)
                shown = json.dumps(value, default=str)
                raise FedlppError(f"Suite grid key {dotted} = {shown} reads as a table '{key}' "
                                  "(TOML splits an unquoted dotted key): quote the key, "
                                  f'"{dotted}" = {shown}')
            if not isinstance(values, list) or not values:
                raise FedlppError(f"Suite grid key '{key}' must be a non-empty list, "
                                  f"got {values!r}")
    return grids


def suite_name(meta: Any, path: Path) -> str:
    """The ``[suite]`` name (default: the file's stem), which names the default ``--out``
    ``runs/bench-<name>``: a name that is not one safe folder name is refused."""
    if not isinstance(meta, dict):
        raise FedlppError(f"Invalid [suite] section in {path.name}: expected a table")
    name = meta.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise FedlppError(f"Invalid [suite] name {name!r} in {path.name} (expected a non-empty "
                          "string)")
    if (name.startswith(".") or any(c in name for c in "/\\:") or len(name) > 100
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise FedlppError(f"Invalid [suite] name {name!r} in {path.name} (it names the folder "
                          "runs/bench-<name>: allowed: up to 100 characters, no '/', '\\', ':' "
                          "or control character, not starting with '.')")
    return name
