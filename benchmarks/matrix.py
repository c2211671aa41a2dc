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

``primary`` and ``primary_recovery`` name, before anything runs, the attacks the report's headline
tables and claims use (no best-of after the fact; every attack is in the detail tables). Without
them: ``loss`` for every target and ``as-is``, and the report says they were defaults.

A grid value that is a table sets each of its keys (dotted keys are relative to the grid key's
section, or absolute when they contain a dot; under the grid key ``setting`` every key is
absolute, e.g. ``defenses``); a ``label`` key only names the variant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedlpp.config import RunConfig, merge, parse_set
from fedlpp.device import device_id
from fedlpp.errors import FedlppError
from fedlpp.io import read_toml
from fedlpp.typed import from_dict

SUITES_DIR = Path(__file__).resolve().parent / "suites"


DEFAULT_PRIMARY = "loss"  # membership attack per target when a suite names none
DEFAULT_PRIMARY_RECOVERY = "as-is"
DEFAULT_RESAMPLES = 1000


@dataclass
class AttackPlan:
    """The attacks run on every cell; membership attacks run once per target in ``targets``.

    ``primary`` (target -> membership attack) and ``primary_recovery`` are the attacks the
    headline tables use; empty means the defaults (:func:`primary_attacks`).
    """

    names: list[str] = field(default_factory=list)
    set: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=lambda: ["central", "proxy", "update"])
    resamples: int = DEFAULT_RESAMPLES
    primary: dict[str, str] = field(default_factory=dict)
    primary_recovery: str = ""


def primary_attacks(plan: dict[str, Any]) -> tuple[dict[str, str], str, list[str]]:
    """(target -> primary membership attack, primary recovery attack, notes on defaults) of an
    attack plan as a cell JSON records it."""
    named, recovery = plan.get("primary") or {}, plan.get("primary_recovery") or ""
    targets = plan.get("targets", [])
    notes = [] if named else [f"no primary membership attack named: `{DEFAULT_PRIMARY}` for "
                              f"{', '.join(targets)}"]
    if not recovery:
        notes.append(f"no primary recovery attack named: `{DEFAULT_PRIMARY_RECOVERY}`")
    primary = {t: named.get(t, DEFAULT_PRIMARY) if named else DEFAULT_PRIMARY for t in targets}
    return primary, recovery or DEFAULT_PRIMARY_RECOVERY, notes


def primary_result(cell: dict[str, Any], target: str | None = None) -> dict[str, Any] | None:
    """The ok result of a cell's primary membership attack on ``target``, or (no target) of its
    primary recovery attack; None when it did not run or failed."""
    membership, recovery, _ = primary_attacks(cell.get("attack_plan", {}))
    name = recovery if target is None else membership.get(target)
    for a in cell.get("attacks", []):
        if (a["status"] == "ok" and a["attack"] == name
                and a["kind"] == ("recovery" if target is None else "membership")
                and (target is None or a["config"].get("target") == target)):
            return a
    return None


def _check_plan(plan: AttackPlan, where: str) -> None:
    """Targets, resamples and primary attacks of an [attacks] section; one-line errors."""
    bad = [t for t in plan.targets if t not in ("central", "proxy", "update")]
    if bad:
        raise FedlppError(f"Invalid [attacks] targets {bad} in {where} "
                          "(allowed: central, proxy, update)")
    if not isinstance(plan.resamples, int) or plan.resamples < 1:
        raise FedlppError(f"Invalid [attacks] resamples {plan.resamples!r} in {where} "
                          "(allowed: an integer >= 1)")
    if not (isinstance(plan.primary, dict) and isinstance(plan.primary_recovery, str)
            and all(isinstance(v, str) for v in plan.primary.values())):
        raise FedlppError(f"Invalid [attacks] primary in {where}: expected a table such as "
                          '{central = "loss"} and a string primary_recovery')
    for target in plan.primary:
        if target not in plan.targets:
            raise FedlppError(f"Invalid [attacks] primary target {target!r} in {where} (the "
                              f"suite runs targets: {', '.join(plan.targets)})")
    if not (plan.primary or plan.primary_recovery):
        return
    from attacks.base import ATTACKS
    names = ATTACKS.names() if "all" in plan.names else plan.names
    kinds = {n: ATTACKS.get(n).kind for n in names}
    for target, name in plan.primary.items():
        if kinds.get(name) != "membership":
            raise FedlppError(f"Invalid [attacks] primary {target} = {name!r} in {where} "
                              "(allowed: a membership attack of the suite's names: "
                              f"{', '.join(n for n in names if kinds[n] == 'membership')})")
    if plan.primary_recovery and kinds.get(plan.primary_recovery) != "recovery":
        raise FedlppError(f"Invalid [attacks] primary_recovery {plan.primary_recovery!r} in "
                          f"{where} (allowed: a recovery attack of the suite's names: "
                          f"{', '.join(n for n in names if kinds[n] == 'recovery')})")


def _grid_plan(plan: AttackPlan, value: Any, where: str) -> AttackPlan:
    """A ``[[grid]]``'s ``attacks = [{names = [...], ...}]``: the suite's attack plan with the
    given keys replaced for that grid's cells (e.g. LiRA only where shadows are affordable)."""
    if not isinstance(value, dict):
        raise FedlppError(f"Invalid grid attacks {value!r} in {where} (expected a one-element "
                          'list of tables of [attacks] keys, e.g. attacks = [{names = ["loss"]}])')
    changes = {k: v for k, v in value.items() if k != "label"}
    try:
        cell_plan = dataclasses.replace(plan, **changes)
    except TypeError as exc:
        raise FedlppError(f"Invalid grid attacks in {where}: {exc}") from None
    if cell_plan.names:
        from attacks.runner import build_attacks

        build_attacks(cell_plan.names, cell_plan.set)
    _check_plan(cell_plan, where)
    return cell_plan


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


def _read_suite_file(path: Path) -> dict[str, Any]:
    """A suite file's tables; a file that is not TOML or has an unknown section is an error."""
    raw = read_toml(path, what="a suite file (TOML)")
    unknown = set(raw) - {"suite", "base", "grid", "attacks"}
    if unknown:
        raise FedlppError(f"Unknown suite section(s) {sorted(unknown)} in {path.name} "
                          "(allowed: suite, base, grid, attacks)")
    return raw


def _base_config(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
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


def _grid_tables(raw: dict[str, Any]) -> list[dict[str, list[Any]]]:
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


def _suite_name(meta: Any, path: Path) -> str:
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


def _attack_plan(raw: dict[str, Any], *, where: str) -> AttackPlan:
    """The ``[attacks]`` section, its attacks and options checked before any cell is built."""
    try:
        plan = AttackPlan(**raw.get("attacks", {}))
    except TypeError as exc:
        raise FedlppError(f"Invalid [attacks] section in {where}: {exc}") from None
    if plan.names:
        from attacks.runner import build_attacks

        build_attacks(plan.names, plan.set)  # unknown attack / option: fail before any cell
    _check_plan(plan, where)
    return plan


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
            cell_plan = _grid_plan(plan, value, where)
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
    raw = _read_suite_file(path)
    base = _base_config(raw, overrides)
    grids = _grid_tables(raw)
    name = _suite_name(raw.get("suite", {}), path)
    plan = _attack_plan(raw, where=path.name)
    points = _grid_points(grids)
    cells = [_build_cell(point, base=base, plan=plan, where=path.name) for point in points]
    _check_cells(cells, where=path.name)
    _check_labels(cells, points, where=path.name)
    meta = raw.get("suite", {})
    keys = list(dict.fromkeys(k for grid in grids for k in grid if k != "attacks"))
    return Suite(name=name, description=meta.get("description", ""),
                 path=path, cells=cells, grid_keys=keys)
