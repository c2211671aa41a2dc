"""Shared field handling for the user-data loaders (``text``, ``jsonl``, ``csv``, ``hf:``).

Not a loader itself: it turns columns into :class:`Record` s with the same rules and the same
error messages whatever the file format.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedlpp.config import DataConfig
from fedlpp.data.base import Record, TextDataset
from fedlpp.errors import FedlppError


def group_field(cfg: DataConfig) -> str:
    """The column holding each record's natural group (``data.group_field``), or ``""``."""
    return cfg.group_field


def require_file(cfg: DataConfig) -> Path:
    """``cfg.path`` as an existing file, else a FedlppError naming ``data.path`` and its value."""
    if not cfg.path:
        raise FedlppError(f"data.path is empty: data.name={cfg.name!r} reads a file; set data.path to it")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise FedlppError(f"data.path={cfg.path!r}: no such file (data.name={cfg.name!r})")
    return path


def check_columns(columns: Sequence[str], *, cfg: DataConfig, source: str) -> None:
    """Raise if a configured field is not among ``columns``, naming the ones that exist."""
    wanted = (("data.text_field", cfg.text_field), ("data.label_field", cfg.label_field),
              ("data.group_field", group_field(cfg)))
    for key, name in wanted:
        if name and name not in columns:
            raise FedlppError(
                f"{key}={name!r} is not a column of {source} (columns: {', '.join(columns) or '(none)'})"
            )


def _label_order(value: str) -> tuple[int, float, str]:
    # Numeric labels sort numerically ("2" before "10"); others alphabetically after them.
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


_SCALARS = (str, int, float, bool)


def check_values(*, cfg: DataConfig, source: str, texts: Sequence[Any],
                 labels: Sequence[Any] | None, groups: Sequence[Any] | None,
                 rows: Sequence[str] | None = None) -> None:
    """Raise unless every text is a string (or ``None``, empty) and every label and group a
    scalar: a number or an object in the text field would otherwise be stringified and trained
    on. The error names the input, the row (``rows[i]``, e.g. ``"line 7"``; default
    ``"row i+1"``) and the field."""
    def bad(i: int, key: str, field: str, value: Any, wanted: str) -> FedlppError:
        where = rows[i] if rows is not None else f"row {i + 1}"
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return FedlppError(f"{where} of {source}: {key}={field!r} holds {type(value).__name__} "
                           f"{shown} (allowed: {wanted})")

    for i, t in enumerate(texts):
        if t is not None and not isinstance(t, str):
            raise bad(i, "data.text_field", cfg.text_field, t, "a string")
    for key, field, column in (("data.label_field", cfg.label_field, labels),
                               ("data.group_field", group_field(cfg), groups)):
        for i, v in enumerate(column or []):
            if v is not None and not isinstance(v, _SCALARS):
                raise bad(i, key, field, v, "a string, a number or a boolean")


def build_dataset(*, cfg: DataConfig, source: str, texts: Sequence[Any],
                  labels: Sequence[Any] | None = None, groups: Sequence[Any] | None = None,
                  label_names: list[str] | None = None,
                  rows: Sequence[str] | None = None) -> TextDataset:
    """Records from parallel columns; rows with empty text are skipped.

    Args:
        cfg: the data config (for its name and the field names in messages).
        source: how to name the input in errors, e.g. ``"data.path='x.csv'"``.
        texts: one text per row: a string, or ``None`` (counts as empty).
        labels: raw label values per row (scalars), or ``None`` for language-modelling data.
        groups: group values per row (scalars), or ``None``.
        label_names: class names when ``labels`` already are class ids (a ``datasets``
            ClassLabel); otherwise names are the sorted distinct label values.
        rows: how to name each row in errors (e.g. ``"line 7"``); default ``"row i+1"``.

    Returns:
        A ``"cls"`` dataset when ``labels`` is given, else an ``"lm"`` one.

    Raises:
        FedlppError: a text that is not a string, a label or group that is not a scalar
            (:func:`check_values`), or a kept row without a label.
    """
    check_values(cfg=cfg, source=source, texts=texts, labels=labels, groups=groups, rows=rows)
    keep = [i for i, t in enumerate(texts) if t is not None and t.strip()]
    ids: list[int | None] = [None] * len(keep)
    if labels is not None:
        for i in keep:
            if labels[i] is None or str(labels[i]).strip() == "":
                where = rows[i] if rows is not None else f"row {i + 1}"
                raise FedlppError(f"{where} of {source} has no value for data.label_field={cfg.label_field!r}")
        if label_names is None:
            label_names = sorted({str(labels[i]) for i in keep}, key=_label_order)
            index = {name: k for k, name in enumerate(label_names)}
            ids = [index[str(labels[i])] for i in keep]
        else:
            ids = [int(labels[i]) for i in keep]
    records = [
        Record(text=texts[i],
               label=ids[n],
               group=str(groups[i]) if groups is not None and groups[i] is not None else "")
        for n, i in enumerate(keep)
    ]
    return TextDataset(name=cfg.name, task="cls" if labels is not None else "lm", records=records,
                       label_names=label_names if labels is not None else None)
