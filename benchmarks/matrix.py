"""A suite file -> the cells of its matrix, each with a stable id (hash of its resolved config).

Suite format (TOML)::

    [suite]
    name = "quick"
    description = "..."
    [base]                      # run-config keys every cell shares (same layout as a run config)
    model.name = "smollm2-135m"
    [grid]                      # key -> list of values; the cells are the cartesian product
                                # ([[grid]] tables: the union of several such products)
    seed = [0, 1]
    quant = [{name = "nf", bits = 2}, {name = "none", bits = 32}]   # a table sets several keys
    setting = [{label = "fedlpp"}, {label = "central", "fed.num_clients" = 1}]
    [attacks]
    names = ["as-is", "loss"]   # run on every cell ("all" = every registered attack); a
                                # [[grid]] may change keys for its cells: attacks = [{names = [...]}]
    set = ["max_records=64"]    # attack options, as `fedlpp attack --set`
    targets = ["central", "proxy", "update"]   # membership targets
    primary = {central = "loss", proxy = "loss", update = "loss"}   # headline attack per target
    primary_recovery = "as-is"  # headline recovery attack
    resamples = 1000            # bootstrap resamples (the report says when a suite sets fewer)

``primary`` and ``primary_recovery`` name the headline attacks (:mod:`benchmarks.attack_plan`);
the file is read and checked by :mod:`benchmarks.suite_file`.

A grid value that is a table sets each of its keys (dotted keys are relative to the grid key's
section, or absolute when they contain a dot; under the grid key ``setting`` every key is
absolute, e.g. ``defenses``); a ``label`` key only names the variant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.attack_plan import AttackPlan, attack_plan, grid_plan
from benchmarks.suite_file import base_config, find_suite, grid_tables, read_suite_file, suite_name
from fedlpp.config import RunConfig, merge
from fedlpp.device import device_id
from fedlpp.errors import FedlppError
from fedlpp.typed import from_dict


@dataclass
class Cell:
    """One point of the matrix: a resolved run config, the attacks to run, and its labels."""

    id: str
    config: RunConfig
    attacks: AttackPlan
    labels: dict[str, Any]  # the grid choices that made this cell (for the report)


@dataclass
class Suite:
    name: str
    description: str
    path: Path
    cells: list[Cell]
    grid_keys: list[str]


def _choice_items(key: str, value: Any) -> tuple[list[tuple[list[str], Any]], Any]:
    """The (config path, value) pairs one grid choice sets, and its label."""
    if not isinstance(value, dict):
        return [(key.split("."), value)], value
    items, label = [], None
    for sub, v in value.items():
        if sub == "label":
            label = str(v)
            continue
        # a `setting` names whole-config keys (`defenses`, `fed.lr`); other grid keys name a
        # section their undotted keys belong to
        path = sub.split(".") if "." in sub or key == "setting" else [*key.split("."), sub]
        items.append((path, v))
    if label is None:
        label = ",".join(f"{k}={v}" for k, v in value.items())
    return items, label


def _check_names(config: RunConfig, *, where: str) -> None:
    """Cheap checks that need no model: plugin names and quantizer options."""
    from fedlpp.data import DATASETS
    from fedlpp.models import MODELS
    from fedlpp.run.resolve import resolve

    try:
        DATASETS.get(config.data.name)
        MODELS.get(config.model.name)
        resolve(config)  # every plugin it names, and the quantizers' options
    except FedlppError as exc:
        raise FedlppError(f"{exc} (cell {where or 'base'})") from None


def cell_id(config: RunConfig, attacks: AttackPlan) -> str:
    """Stable id: the hash of the resolved config and attack plan."""
    values = config.to_dict()
    # where a cell computes is part of its identity only off the CPU, so CPU cells keep the ids
    # they had before system.device existed
    device = device_id(values.pop("system")["device"])
    if device:
        values["device"] = device
    blob = json.dumps({"config": values, "attacks": dataclasses.asdict(attacks)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


GridPoint = tuple[tuple[str, Any], ...]  # one choice per grid key: (key, value)


def _check_labels(cells: list[Cell], points: list[GridPoint], *, where: str) -> None:
    """Cells with the same labels (but the seed) are one row of the report, so they may differ
    in their seed only: two values of a grid key under one label (e.g. nf 2 and 3 bits both
    ``nf``) would be averaged as one variant."""
    rows: dict[tuple, tuple[str, dict[str, Any]]] = {}
    for cell, point in zip(cells, points, strict=True):
        row = tuple(sorted((k, str(v)) for k, v in cell.labels.items() if k != "seed"))
        config = {k: v for k, v in cell.config.to_dict().items() if k != "seed"}
        blob = json.dumps(config, sort_keys=True, default=str)
        first = rows.setdefault(row, (blob, dict(point)))
        if first[0] == blob:
            continue
        for key, value in point:
            other = first[1].get(key)
            if key != "attacks" and json.dumps(other, sort_keys=True) != json.dumps(
                    value, sort_keys=True):
                label = cell.labels.get(key)
                raise FedlppError(f"Suite {where}: grid key '{key}' has two values labelled "
                                  f"{str(label)!r}: {other!r} and {value!r} (cells with the same "
                                  "labels are one row of the report: give each value a label "
                                  "of its own)")
        raise FedlppError(f"Suite {where}: two cells labelled {dict(row)} differ in more than "
                          "their seed (cells with the same labels are one row of the report)")


def _grid_points(grids: list[dict[str, list[Any]]]) -> list[GridPoint]:
    """The cartesian product of each grid's choices, grid after grid (their union)."""
    return [c for grid in grids
            for c in itertools.product(*[[(k, v) for v in vs] for k, vs in grid.items()])]


def _build_cell(point: GridPoint, *, base: dict[str, Any], plan: AttackPlan, where: str) -> Cell:
    """The cell of one grid point: ``base`` with the point's choices merged in, resolved and
    checked; a grid's ``attacks`` choice changes keys of the suite's attack ``plan``."""
    values = json.loads(json.dumps(base))  # deep copy
    labels: dict[str, Any] = {}
    cell_plan = plan
    for key, value in point:
        if key == "attacks":  # this grid's attack plan: the suite's, with these keys changed
            cell_plan = grid_plan(plan, value, where)
            continue
        items, labels[key] = _choice_items(key, value)
        for p, v in items:
            merge(values, p, v)
    choices = ", ".join(f"{k}={v}" for k, v in labels.items())
    try:
        config = from_dict(RunConfig, values)
    except FedlppError as exc:
        raise FedlppError(f"{exc} (suite {where}, cell {choices or 'base'})") from None
    _check_names(config, where=choices)
    return Cell(id=cell_id(config, cell_plan), config=config, attacks=cell_plan, labels=labels)


def _check_cells(cells: list[Cell], *, where: str) -> None:
    """A suite has at least one cell, and no two cells with the same id."""
    if not cells:
        raise FedlppError(f"Suite {where} has an empty grid")
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise FedlppError(f"Suite {where} has duplicate cells (two grid points resolve to "
                          "the same config)")


def load_suite(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Suite:
    """Parse and fully validate a suite: every cell's config is resolved before anything runs."""
    path = find_suite(str(path))
    raw = read_suite_file(path)
    base = base_config(raw, overrides)
    grids = grid_tables(raw)
    name = suite_name(raw.get("suite", {}), path)
    plan = attack_plan(raw, where=path.name)
    points = _grid_points(grids)
    cells = [_build_cell(point, base=base, plan=plan, where=path.name) for point in points]
    _check_cells(cells, where=path.name)
    _check_labels(cells, points, where=path.name)
    meta = raw.get("suite", {})
    keys = list(dict.fromkeys(k for grid in grids for k in grid if k != "attacks"))
    return Suite(name=name, description=meta.get("description", ""),
                 path=path, cells=cells, grid_keys=keys)
