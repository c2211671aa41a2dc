"""Reading a suite's results for the report: ``suite.json`` and its cells' JSON files, each
checked to be what it should be before any number is taken from it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fedlpp.errors import FedlppError
from fedlpp.io import read_json

# what a cell file must hold for the report (dotted keys, expected type); a file without them
# (a run's result.json, a cell of another tool or version) is refused, naming it
CELL_KEYS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("id", str), ("status", str), ("labels", dict), ("config", dict), ("meta", dict))
OK_CELL_KEYS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("config.model", dict), ("config.data", dict), ("config.quant", dict), ("config.fed", dict),
    ("train", dict), ("train.final", dict), ("train.final.central", dict),
    ("train.final.proxy", dict), ("train.final.base", dict), ("train.comm", dict),
    ("train.comm.bytes_down_per_round", (int, float)),
    ("train.comm.bytes_up_per_round", (int, float)), ("attacks", list))
SUITE_KEYS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("name", str), ("description", str), ("grid_keys", list), ("cells", list))
CELL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a cell id names its file: no folders


def _missing(value: Any, keys: tuple[tuple[str, Any], ...]) -> str | None:
    """The dotted keys of ``keys`` that ``value`` lacks or holds with another type (a key
    under a missing one is not named again), quoted and joined; None if it has them all."""
    missing: list[str] = []
    for dotted, kind in keys:
        if any(dotted.startswith(f"{m}.") for m in missing):
            continue
        node = value
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, kind) or (kind is not bool and isinstance(node, bool)):
            missing.append(dotted)
    if not missing:
        return None
    more = f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""
    return ", ".join(repr(m) for m in missing[:4]) + more


def _check_suite(suite: Any, path: Path) -> None:
    def bad(what: str) -> FedlppError:
        return FedlppError(f"{str(path)!r} is not a suite record of `fedlpp bench run`: {what}")

    if not isinstance(suite, dict):
        raise bad(f"a JSON {type(suite).__name__}, expected a JSON object")
    key = _missing(suite, SUITE_KEYS)
    if key:
        raise bad(f"no valid {key}")
    for i, c in enumerate(suite["cells"]):
        if not (isinstance(c, dict) and isinstance(c.get("id"), str)
                and CELL_ID.fullmatch(c["id"]) and isinstance(c.get("labels"), dict)):
            raise bad(f"cells[{i}] has no valid 'id' (a file name) and 'labels'")


def check_cell(cell: Any, path: Path, *, cell_id: str) -> dict[str, Any]:
    """``cell`` (read from ``path``) if it is the result of cell ``cell_id``, else a one-line
    FedlppError naming the file and the first thing it lacks."""
    def bad(what: str) -> FedlppError:
        return FedlppError(f"{str(path)!r} is not the result file of cell {cell_id!r}: {what}")

    if not isinstance(cell, dict):
        raise bad(f"a JSON {type(cell).__name__}, expected a JSON object")
    key = _missing(cell, CELL_KEYS + (OK_CELL_KEYS if cell.get("status") == "ok" else ()))
    if key:
        raise bad(f"no valid {key}")
    if cell["id"] != cell_id:
        raise bad(f"it holds cell id {cell['id']!r}")
    if not {"git_sha", "git_dirty"} <= set(cell["meta"]):
        raise bad("its 'meta' lacks 'git_sha' and 'git_dirty'")
    if cell["status"] != "ok":
        if not isinstance(cell.get("error"), str):
            raise bad(f"status {cell['status']!r} without an 'error'")
        return cell
    for i, a in enumerate(cell["attacks"]):
        if not (isinstance(a, dict) and all(isinstance(a.get(k), str)
                                            for k in ("attack", "kind", "status"))
                and isinstance(a.get("config"), dict)
                and (a["status"] != "ok" or isinstance(a.get("metrics"), dict))):
            raise bad(f"attacks[{i}] lacks its 'attack', 'kind', 'status', 'config' or 'metrics'")
    return cell


def load_cells(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The suite description and its cells' results, in suite order (missing cells skipped).

    A file that cannot be read, or that is not what it should be (a garbled, foreign or
    another cell's file), is a one-line FedlppError naming it: a report is never built from it.
    """
    suite_file = out / "suite.json"
    if not suite_file.exists():
        raise FedlppError(f"No suite results in {str(out)!r} (suite.json missing): run "
                          "`fedlpp bench run SUITE --out DIR` first")
    suite = read_json(suite_file, what="a suite record (suite.json of `fedlpp bench run`)")
    _check_suite(suite, suite_file)
    cells = []
    for c in suite["cells"]:
        path = out / "cells" / f"{c['id']}.json"
        if path.exists():
            cell = read_json(path, what=f"the result of cell {c['id']!r} (JSON)")
            cells.append(check_cell(cell, path, cell_id=c["id"]))
    return suite, cells
