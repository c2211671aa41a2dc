"""``csv``: a CSV file with a header row; text from ``data.text_field``, label from ``data.label_field``."""

from __future__ import annotations

import csv
import io

from fedlpp.config import DataConfig
from fedlpp.data.base import DATASETS, TextDataset
from fedlpp.data.columns import build_dataset, check_columns, group_field, require_file
from fedlpp.errors import FedlppError
from fedlpp.io import read_text


@DATASETS.register("csv")
def load_csv(cfg: DataConfig) -> TextDataset:
    """Read a comma-separated file whose first row names the columns.

    Args:
        cfg: the data config: ``path``, ``text_field`` and, for classification, ``label_field``
            (labels become ids of their sorted distinct values; numeric ones sort numerically).

    Returns:
        A ``"cls"`` dataset when ``label_field`` is set, else an ``"lm"`` one, in file order.

    Every CSV cell is text, so a cell reading ``42`` is the text "42" (CSV cannot say it is a
    number); what a CSV can get wrong silently is a row with more cells than the header (an
    unquoted comma in a text), and that is refused, naming the row and its line.
    """
    path = require_file(cfg)
    source = f"data.path={cfg.path!r}"
    rows: list[dict] = []
    where: list[str] = []  # each row's name in errors: its number and the line it ends on
    # newline="" lets the csv module handle quoted fields that contain line breaks.
    text = read_text(path, what="a CSV file (UTF-8)")
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        for n, row in enumerate(reader, start=1):
            rows.append(row)
            where.append(f"row {n} (line {reader.line_num})")
            # DictReader puts cells beyond the header under the key None; empty ones (a
            # trailing comma) lose nothing
            if any(cell.strip() for cell in row.get(None) or []):
                raise FedlppError(
                    f"{where[-1]} of {source} has {len(reader.fieldnames or []) + len(row[None])} "
                    f"cells but the header names {len(reader.fieldnames or [])}: quote a field "
                    f"that holds a comma (its text would be cut there)")
        columns = list(reader.fieldnames or [])
    if not columns:
        raise FedlppError(f"{source} is empty (expected a header row naming the columns)")
    check_columns(columns, cfg=cfg, source=source)
    # A short row gives None for its missing cells: treated as empty text / missing label.
    return build_dataset(
        cfg=cfg, source=source,
        texts=[row[cfg.text_field] for row in rows],
        labels=[row[cfg.label_field] for row in rows] if cfg.label_field else None,
        groups=[row[group_field(cfg)] for row in rows] if group_field(cfg) else None,
        rows=where,
    )
