"""``jsonl``: one JSON object per line; text from ``data.text_field``, label from ``data.label_field``."""

from __future__ import annotations

import json

from fedlpp.config import DataConfig
from fedlpp.data.base import DATASETS, TextDataset
from fedlpp.data.columns import build_dataset, check_columns, group_field, require_file
from fedlpp.errors import FedlppError
from fedlpp.io import read_text


@DATASETS.register("jsonl")
def load_jsonl(cfg: DataConfig) -> TextDataset:
    """Read a JSON-lines file; blank lines are ignored.

    Args:
        cfg: the data config: ``path``, ``text_field`` and, for classification, ``label_field``
            (labels become ids of their sorted distinct values).

    Returns:
        A ``"cls"`` dataset when ``label_field`` is set, else an ``"lm"`` one, in file order.

    Raises:
        FedlppError: a line that is not a JSON object, a record without a configured field,
            or a text field holding anything but a string (or null, an empty record): a number
            or an object is refused, naming the line, not stringified and trained on.
    """
    path = require_file(cfg)
    source = f"data.path={cfg.path!r}"
    rows: list[dict] = []
    lines: list[str] = []  # each record's line, for errors
    for lineno, line in enumerate(read_text(path, what="a JSONL file (UTF-8)").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FedlppError(f"line {lineno} of {source} is not valid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise FedlppError(f"line {lineno} of {source} is not a JSON object")
        rows.append(row)
        lines.append(f"line {lineno}")
    if not rows:
        raise FedlppError(f"{source} has no records")
    # The first object names the columns; a later one lacking a field is reported by line.
    check_columns(list(rows[0]), cfg=cfg, source=source)
    fields = [f for f in (cfg.text_field, cfg.label_field, group_field(cfg)) if f]
    for n, row in enumerate(rows, start=1):
        for f in fields:
            if f not in row:
                raise FedlppError(f"record {n} ({lines[n - 1]}) of {source} has no field {f!r} "
                                  f"(its fields: {', '.join(row)})")
    return build_dataset(
        cfg=cfg, source=source,
        texts=[row[cfg.text_field] for row in rows],
        labels=[row[cfg.label_field] for row in rows] if cfg.label_field else None,
        groups=[row[group_field(cfg)] for row in rows] if group_field(cfg) else None,
        rows=lines,
    )
