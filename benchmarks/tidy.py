"""A suite's every number in long format: ``results.csv``, one row per measurement.

``summary.csv`` is the headline view (one line per setting, primary attacks only); this file is
for analysis: every cell, every attack (ok, failed or not applicable), every metric with its
interval and its control, each attack's ``extra`` numbers, and each cell's training numbers.
:func:`tidy_rows` is a pure function of the cell records (as :func:`benchmarks.cell_files.load_cells`
returns them); :func:`write_tidy` writes its rows. ``pandas.read_csv(DIR / "results.csv")``
reads it (empty fields are NaN).

One row per (cell, target, attack, metric); the columns:

============  ==========================================================================
column        meaning
============  ==========================================================================
cell          the cell id (its file is ``cells/<cell>.json``)
setting       the cell's grid labels except the seed, ``key=value`` joined by ``"; "``
              in the suite's order (empty for a suite with only seeds)
seed          the cell's seed (its ``seed`` label, else ``config.seed``)
target        membership: the attacked model (``central``, ``proxy``, ``update``);
              training: the model measured (``central``, ``proxy``, ``base``) or empty
              for a whole-run number; recovery: empty (the estimate is of the master)
attack        the attack's registered name; empty for training rows and a failed cell
kind          ``membership`` or ``recovery`` (the attack's kind), ``training`` for the
              run's own numbers, empty for a failed cell
threat_model  the attack's threat model (``outsider``, ``client``, ``server``, ...)
metric        the metric's name as in the cell JSON: ``auc``, ``tpr@1%fpr``,
              ``recovered_gain``, ... ; a nested one joined by ``.`` (``utility.loss``);
              the attack's ``extra`` numbers as ``extra.<key>``; training rows: ``loss``,
              ``perplexity`` or ``accuracy`` per model, ``fidelity``,
              ``bytes_down_per_round``, ``bytes_up_per_round``. Empty on the one row of a
              failed cell or of an attack that did not give results
value         the number (float or int), empty when there is none
ci_low        lower end of its 95 % interval where the cell records one, else empty
ci_high       upper end of that interval
control       the same metric measured on the attack's control where the cell has it:
              membership: the untrained model's (``auc`` -> ``control_auc``, and the
              ``control`` block's ``advantage``, ``tpr@...``, ``epsilon_lb``); recovery:
              the no-payload control's (``recovered_gain`` -> ``control_gain``,
              ``utility.X`` -> ``control_utility.X``); else empty
reason        why ``value`` is empty (the metric's own reason, the attack's or the cell's
              error prefixed by its status); empty when there is a value
============  ==========================================================================

Not rows: ROC curves (``roc``), the name of the utility a gain uses (``gain_metric``), a
recovery result's copies of the run's final utilities (``central``, ``proxy``, ``base``: the
training rows hold them), a metric's side fields (``se``, thresholds, counts inside an estimate)
and non-numeric ``extra`` values (strings, lists): all stay in the cell JSON. Cells written
before attacks kept ``extra`` simply have no ``extra.*`` rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COLUMNS = ("cell", "setting", "seed", "target", "attack", "kind", "threat_model", "metric",
           "value", "ci_low", "ci_high", "control", "reason")

# top-level attack metrics that are not rows (see the module docstring)
SKIPPED = frozenset({"roc", "control", "gain_metric", "central", "proxy", "base"})
# metric -> the metric of the same attack that is its control
CONTROL_OF = {"auc": "control_auc", "recovered_gain": "control_gain"}
# why a metric is null where the cell gives no reason of its own
NULL_REASONS = {"control_utility": "the attack has no no-payload control",
                "fidelity": "no gradient fidelity for this training method (its clients hold "
                            "another model than the broadcast)"}
NO_REASON = "no value in the cell record"
TRAINING_MODELS = ("central", "proxy", "base")
COMM = ("bytes_down_per_round", "bytes_up_per_round")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def flatten(metrics: dict[str, Any], prefix: str = "",
            skip: frozenset[str] = frozenset()) -> Iterator[tuple[str, dict[str, Any]]]:
    """(metric name, {value, ci_low, ci_high, reason}) for every number of ``metrics``.

    An estimate (a dict with ``value``) is one metric with its ``ci`` and ``reason``; another
    dict is walked with its keys joined by ``.``; None is a null metric; a bool counts as 0/1;
    strings and lists are left out.
    """
    for key, item in metrics.items():
        name = f"{prefix}{key}"
        if key in skip:
            continue
        if isinstance(item, dict) and "value" in item:
            value, ci = item["value"], item.get("ci")
            if value is not None and not _number(value):
                continue
            ci = ci if isinstance(ci, list | tuple) and len(ci) == 2 else (None, None)
            yield name, {"value": value, "ci_low": ci[0], "ci_high": ci[1],
                         "reason": None if value is not None else
                         (item.get("reason") or NULL_REASONS.get(name, NO_REASON))}
        elif isinstance(item, dict):
            yield from flatten(item, f"{name}.")
        elif item is None or _number(item) or isinstance(item, bool):
            yield name, {"value": None if item is None else
                         (int(item) if isinstance(item, bool) else item),
                         "ci_low": None, "ci_high": None,
                         "reason": None if item is not None else
                         NULL_REASONS.get(name, NO_REASON)}


def _control(metrics: dict[str, Any], metric: str) -> Any:
    """The value of ``metric`` on the attack's control, or None."""
    if metric in CONTROL_OF:
        found = metrics.get(CONTROL_OF[metric])
    elif metric.startswith("utility."):
        found = (metrics.get("control_utility") or {}).get(metric.split(".", 1)[1])
    else:
        found = (metrics.get("control") or {}).get(metric)
    found = found.get("value") if isinstance(found, dict) else found
    return found if _number(found) else None


def _attack_rows(attack: dict[str, Any]) -> Iterator[dict[str, Any]]:
    head = {"target": attack.get("config", {}).get("target") or "", "attack": attack["attack"],
            "kind": attack["kind"], "threat_model": attack.get("threat_model") or ""}
    if attack["status"] != "ok":
        yield head | {"metric": "", "value": None, "ci_low": None, "ci_high": None,
                      "control": None,
                      "reason": f"{attack['status']}: {attack.get('error') or 'no error given'}"}
        return
    metrics = attack["metrics"]
    for name, found in flatten(metrics, skip=SKIPPED):
        yield head | {"metric": name, **found, "control": _control(metrics, name)}
    for name, found in flatten(attack.get("extra") or {}, prefix="extra."):
        yield head | {"metric": name, **found, "control": None}


def _training_rows(cell: dict[str, Any]) -> Iterator[dict[str, Any]]:
    head = {"attack": "", "kind": "training", "threat_model": "", "control": None}
    final = cell["train"]["final"]
    for model in TRAINING_MODELS:
        for name, found in flatten(final.get(model) or {}):
            yield head | {"target": model, "metric": name, **found}
    comm = cell["train"]["comm"]
    whole = {"fidelity": cell.get("fidelity"), **{k: comm.get(k) for k in COMM}}
    for name, found in flatten(whole):
        yield head | {"target": "", "metric": name, **found}


def setting_label(labels: dict[str, Any]) -> str:
    """A cell's grid labels except the seed: ``key=value`` joined by ``"; "``."""
    return "; ".join(f"{k}={v}" for k, v in labels.items() if k != "seed")


def cell_rows(cell: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one cell record (columns :data:`COLUMNS`)."""
    labels = cell.get("labels") or {}
    head = {"cell": cell["id"], "setting": setting_label(labels),
            "seed": labels.get("seed", (cell.get("config") or {}).get("seed"))}
    if cell["status"] != "ok":
        return [head | {"target": "", "attack": "", "kind": "", "threat_model": "", "metric": "",
                        "value": None, "ci_low": None, "ci_high": None, "control": None,
                        "reason": f"cell {cell['status']}: {cell.get('error')}"}]
    rows = [*_training_rows(cell)]
    for attack in cell["attacks"]:
        rows += _attack_rows(attack)
    return [{c: (head | r)[c] for c in COLUMNS} for r in rows]


def tidy_rows(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row of every cell, in the cells' order."""
    return [row for cell in cells for row in cell_rows(cell)]


def write_tidy(cells: list[dict[str, Any]], path: Path) -> Path:
    """Write :func:`tidy_rows` of ``cells`` as CSV (empty field = null; floats as Python's
    shortest repr, so they read back exactly); returns ``path``."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in tidy_rows(cells):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path
