"""Datasets: loaders registered by name, seeded subsampling, partitions and splits, encoding.

``load_dataset(cfg, seed=...)`` returns a :class:`TextDataset`; ``partition.make_splits`` turns
it into per-client member / non-member shards plus a global test split; ``encode.encode`` makes
tensors. Built-in loaders: ``kjv-lm``, ``kjv-genre``, ``text``, ``jsonl``, ``csv``, ``hf:<name>``;
third-party ones register through the ``fedlpp.datasets`` entry-point group.
"""

from __future__ import annotations

import numpy as np

from fedlpp.config import DataConfig
from fedlpp.data.base import DATASETS, Record, TextDataset
from fedlpp.errors import FedlppError
from fedlpp.seeding import numpy_rng

__all__ = ["DATASETS", "Record", "TextDataset", "load_dataset"]


def unique_texts(records: list[Record]) -> list[Record]:
    """``records`` without those whose text (whitespace-normalised) repeats an earlier one's."""
    seen: set[str] = set()
    out = []
    for r in records:
        key = " ".join(r.text.split())
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def load_dataset(cfg: DataConfig, *, seed: int) -> TextDataset:
    """Load dataset ``cfg.name`` and, when ``cfg.max_records`` > 0, draw that many records.

    With ``cfg.dedup`` (the default) records repeating an earlier record's text are dropped
    first (how many: ``dataset.repeats_dropped``). The draw is a seeded sample without
    replacement (``numpy`` ``default_rng(seed)``); the drawn records keep their order in the
    full dataset, so the result depends only on the data, ``max_records`` and ``seed``, and
    nearby records (one book, one file region) stay together.

    Args:
        cfg: the data config.
        seed: the run seed.

    Returns:
        The dataset, its ``name`` set to ``cfg.name``.

    Raises:
        FedlppError: unknown dataset name, unreadable input, or no records.
    """
    dataset = DATASETS.get(cfg.name)(cfg)
    dataset.name = cfg.name
    if cfg.dedup:
        loaded = len(dataset.records)
        dataset.records = unique_texts(dataset.records)
        dataset.repeats_dropped = loaded - len(dataset.records)
    n = len(dataset.records)
    if n == 0:
        raise FedlppError(f"data.name={cfg.name!r} gave no records (data.path={cfg.path!r})")
    if 0 < cfg.max_records < n:
        picked = numpy_rng(seed).choice(n, size=cfg.max_records, replace=False)
        dataset.records = [dataset.records[i] for i in np.sort(picked)]
    return dataset
