"""``text``: one language-modelling record per non-empty line of ``data.path``."""

from __future__ import annotations

from fedlpp.config import DataConfig
from fedlpp.data.base import DATASETS, TextDataset
from fedlpp.data.columns import build_dataset, require_file
from fedlpp.io import read_text


@DATASETS.register("text")
def load_text(cfg: DataConfig) -> TextDataset:
    """Read ``cfg.path`` (UTF-8); each non-blank line, stripped of its line ending, is a record.

    Args:
        cfg: the data config; only ``path`` is used.

    Returns:
        An ``"lm"`` dataset in file order.
    """
    path = require_file(cfg)
    lines = read_text(path, what="a text file (UTF-8)").splitlines()
    return build_dataset(cfg=cfg, source=f"data.path={cfg.path!r}", texts=lines)
