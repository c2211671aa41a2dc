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


def build_dataset(*, cfg: DataConfig, source: str, texts: Sequence[Any],
                  labels: Sequence[Any] | None = None, groups: Sequence[Any] | None = None,
                  label_names: list[str] | None = None) -> TextDataset:
    """Records from parallel columns; rows with empty text are skipped.

    Args:
        cfg: the data config (for its name and the field names in messages).
        source: how to name the input in errors, e.g. ``"data.path='x.csv'"``.
        texts: one text per row (``None`` counts as empty).
        labels: raw label values per row, or ``None`` for language-modelling data.
        groups: group values per row, or ``None``.
        label_names: class names when ``labels`` already are class ids (a ``datasets``
            ClassLabel); otherwise names are the sorted distinct label values.

    Returns:
        A ``"cls"`` dataset when ``labels`` is given, else an ``"lm"`` one.
    """
    keep = [i for i, t in enumerate(texts) if t is not None and str(t).strip()]
    ids: list[int | None] = [None] * len(keep)
    if labels is not None:
        for i in keep:
            if labels[i] is None or str(labels[i]).strip() == "":
                raise FedlppError(f"row {i + 1} of {source} has no value for data.label_field={cfg.label_field!r}")
        if label_names is None:
            label_names = sorted({str(labels[i]) for i in keep}, key=_label_order)
            index = {name: k for k, name in enumerate(label_names)}
            ids = [index[str(labels[i])] for i in keep]
        else:
            ids = [int(labels[i]) for i in keep]
    records = [
        Record(text=str(texts[i]),
               label=ids[n],
               group=str(groups[i]) if groups is not None and groups[i] is not None else "")
        for n, i in enumerate(keep)
    ]
    return TextDataset(name=cfg.name, task="cls" if labels is not None else "lm", records=records,
                       label_names=label_names if labels is not None else None)
