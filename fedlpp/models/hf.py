"""``hf:<path or id>``: any local Hugging Face folder, or a model already in the local HF cache.

Loading is strictly offline (``local_files_only=True``): nothing is ever downloaded. Nor is a
folder's own Python code ever run (``trust_remote_code=False`` on every load, so transformers
never asks at a terminal either): a model whose architecture needs it (an ``auto_map`` in its
config without a built-in transformers class) is a one-line error.
"""

from __future__ import annotations

import torch

from fedlpp.config import ModelConfig
from fedlpp.errors import FedlppError
from fedlpp.models.core import MODELS, Loaded, Task, block_linear_modules, torch_dtype

HEAD_SEED = 0  # a fresh classifier head is a fixed init, identical in every process
REMOTE_CODE = "trust_remote_code"  # named in transformers' refusal to run a folder's own code


@MODELS.register("hf:")
def load_hf(cfg: ModelConfig, *, task: Task, num_labels: int | None) -> Loaded:
    """``AutoModelForCausalLM`` / ``AutoModelForSequenceClassification`` from ``cfg.name[3:]``.

    Args:
        cfg: ``name`` is ``hf:<path or id>``; ``dtype`` is used.
        task: ``"lm"`` or ``"cls"``.
        num_labels: classes for ``"cls"``.

    Returns:
        (model in eval mode, tokenizer (pad falls back to eos, else a new ``[PAD]`` token),
        default LoRA targets: peft's table for the model type, else every block linear layer).

    Raises:
        FedlppError: the value cannot be loaded offline, or needs the folder's own code.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    value = cfg.name[len("hf:"):]
    if not value:
        raise FedlppError("Invalid model.name: 'hf:' (expected hf:<local folder or cached model id>)")
    kwargs = {"dtype": torch_dtype(cfg), "local_files_only": True, "trust_remote_code": False}
    try:
        tokenizer = AutoTokenizer.from_pretrained(value, local_files_only=True,
                                                  trust_remote_code=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(HEAD_SEED)
            if task == "lm":
                model = AutoModelForCausalLM.from_pretrained(value, **kwargs)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(
                    value, num_labels=num_labels, **kwargs
                )
    except (OSError, ValueError, KeyError) as exc:
        if REMOTE_CODE in str(exc):
            raise FedlppError(
                f"Invalid model.name: {cfg.name!r}: {value!r} needs its own Python code to load "
                "(an auto_map in its config or tokenizer config names a class transformers does "
                "not have), and fedlpp never runs a model's code: use a model of a built-in "
                "transformers architecture"
            ) from None
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FedlppError(
            f"Invalid model.name: {cfg.name!r}: {value!r} is neither a local model folder nor a model "
            f"in the local Hugging Face cache loadable offline for task '{task}' ({reason})"
        ) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "[PAD]"})
            model.resize_token_embeddings(len(tokenizer))
    if task == "cls":
        # sequence classifiers find each row's last real token through pad_token_id
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer, _default_targets(model)


def _default_targets(model: torch.nn.Module) -> list[str]:
    """peft's per-architecture LoRA targets, else the leaf names of all block linear layers."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TABLE

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in TABLE:
        return list(TABLE[model_type])
    return sorted({name.rsplit(".", 1)[-1] for name in block_linear_modules(model)})
