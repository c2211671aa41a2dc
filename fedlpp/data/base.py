"""The dataset types every loader returns, and the registry loaders register in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedlpp.registry import Registry

DATASETS = Registry("dataset", group="fedlpp.datasets", builtins=["fedlpp.data.*"])


@dataclass(frozen=True)
class Record:
    """One example.

    Attributes:
        text: the raw text (tokenized later by :func:`fedlpp.data.encode.encode`).
        label: class id for classification data (index into ``label_names``), else ``None``.
        group: the record's natural group (a book, an author, a user); ``""`` when unknown.
            ``natural`` partitions keep a group on one client.
    """

    text: str
    label: int | None = None
    group: str = ""


@dataclass
class TextDataset:
    """A loaded dataset: records in a stable order, plus what task they serve.

    Attributes:
        name: the registered name it was loaded under (e.g. ``"kjv-lm"``).
        task: ``"lm"`` (causal language modelling) or ``"cls"`` (classification).
        records: the examples; their positions are the indices used by splits and traces.
        label_names: class names for ``"cls"`` (``label_names[record.label]``), else ``None``.
        repeats_dropped: records :func:`fedlpp.data.load_dataset` dropped because their text
            repeated an earlier one's (``data.dedup``); named when too few records are left.
    """

    name: str
    task: Literal["lm", "cls"]
    records: list[Record]
    label_names: list[str] | None = None
    repeats_dropped: int = 0
