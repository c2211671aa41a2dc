"""``hf:<name>``: a dataset through ``datasets.load_dataset`` (``data.path`` = split, default train).

Works offline for a local dataset folder or a dataset already in the local ``datasets`` cache;
anything that needs the Hub fails with a one-line FedlppError pointing at jsonl / csv / text.
"""

from __future__ import annotations

from fedlpp.config import DataConfig
from fedlpp.data.base import DATASETS, TextDataset
from fedlpp.data.columns import build_dataset, check_columns, group_field
from fedlpp.errors import FedlppError


@DATASETS.register("hf:")
def load_hf(cfg: DataConfig) -> TextDataset:
    """Load ``hf:<name>`` with the ``datasets`` library.

    Args:
        cfg: the data config: ``name`` (``hf:<name>``), ``path`` (the split, default ``"train"``),
            ``text_field`` and optional ``label_field`` (a ClassLabel column keeps its names).

    Returns:
        A ``"cls"`` dataset when ``label_field`` is set, else an ``"lm"`` one.
    """
    import datasets  # heavy import, only for this route

    name = cfg.name.split(":", 1)[1]
    split = cfg.path or "train"
    source = f"data.name={cfg.name!r} (split {split!r})"
    if not name:
        raise FedlppError("data.name='hf:' names no dataset: use hf:<dataset name or local folder>")
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # network, missing split, bad folder: all one message to the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FedlppError(
            f"data.name={cfg.name!r} could not be loaded offline with split data.path={split!r} "
            f"({type(exc).__name__}: {reason[:200]}); put the data in a local file and use "
            f"data.name='jsonl', 'csv' or 'text' with data.path=<file>"
        ) from None
    check_columns(list(ds.column_names), cfg=cfg, source=source)
    label_names = None
    if cfg.label_field:
        feature = ds.features[cfg.label_field]
        if isinstance(feature, datasets.ClassLabel):
            label_names = list(feature.names)
    return build_dataset(
        cfg=cfg, source=source,
        texts=list(ds[cfg.text_field]),
        labels=list(ds[cfg.label_field]) if cfg.label_field else None,
        groups=list(ds[group_field(cfg)]) if group_field(cfg) else None,
        label_names=label_names,
    )
