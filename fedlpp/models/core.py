"""Model registry, ``load_model`` (base model + peft LoRA) and state helpers shared by every model.

A model plugin is a loader function registered in ``MODELS``::

    @MODELS.register("my-model")
    def load_my_model(cfg: ModelConfig, *, task: Task, num_labels: int | None) -> Loaded: ...

It returns the base model (CPU, ``cfg.dtype``, eval mode), a tokenizer with a pad token, and the
LoRA target module names used when ``lora.targets`` is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

import torch
from torch import nn

from fedlpp.config import LoraConfig, ModelConfig
from fedlpp.errors import FedlppError
from fedlpp.registry import Registry
from fedlpp.seeding import seed_torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Task: TypeAlias = Literal["lm", "cls"]
Loaded: TypeAlias = "tuple[nn.Module, PreTrainedTokenizerBase, list[str]]"
Loader: TypeAlias = Callable[..., "Loaded"]

MODELS = Registry("model", group="fedlpp.models", builtins=["fedlpp.models.*"])

# peft-internal sub-modules that are nn.Linear but are adapters or head copies, not base weights
_ADAPTER_PARTS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector",
                  "modules_to_save", "original_module")


@dataclass
class ModelBundle:
    """A LoRA-wrapped model ready for federated fine-tuning.

    Attributes:
        model: the peft model; only LoRA A/B (and, for ``cls``, the classifier head) require grad.
        tokenizer: its tokenizer; ``pad_token`` is always set.
        task: ``"lm"`` (causal language modelling) or ``"cls"`` (sequence classification).
        name: the ``model.name`` it was built from.
        num_labels: number of classes for ``cls``; ``None`` for ``lm``.
    """

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    task: Task
    name: str
    num_labels: int | None


def torch_dtype(cfg: ModelConfig) -> torch.dtype:
    """The torch dtype named by ``cfg.dtype``."""
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.dtype]


def check_task(name: str, *, task: str, num_labels: int | None) -> None:
    """Raise a FedlppError for an unknown task or a ``cls`` task without a usable ``num_labels``."""
    if task not in ("lm", "cls"):
        raise FedlppError(f"Invalid task for model '{name}': {task!r} (allowed: 'lm', 'cls')")
    if task == "cls" and (num_labels is None or num_labels < 2):
        raise FedlppError(
            f"Invalid num_labels for model '{name}' with task 'cls': {num_labels!r} (allowed: >= 2)"
        )


def _is_linear(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    # GPT-2 style models (hf:gpt2) use transformers' Conv1D, a transposed linear that peft also wraps
    return type(module).__name__ == "Conv1D" and hasattr(module, "weight")


def block_linear_modules(model: nn.Module) -> list[str]:
    """Qualified names of base linear modules inside repeated transformer blocks.

    A block is an element of an ``nn.ModuleList`` (``model.layers.3``, ``encoder.layer.0``, ``h.5``);
    heads, poolers and embeddings live outside every ModuleList and are left out.
    """
    lists = {name for name, m in model.named_modules() if isinstance(m, nn.ModuleList)}
    found = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if not _is_linear(module) or any(p in _ADAPTER_PARTS for p in parts):
            continue
        in_block = any(
            ".".join(parts[:i]) in lists and parts[i].isdigit() for i in range(1, len(parts))
        )
        if in_block:
            found.append(name)
    return found


def linear_module_names(model: nn.Module) -> list[str]:
    """Sorted distinct leaf names of the linear modules of ``model`` (the valid LoRA targets)."""
    names = set()
    for name, module in model.named_modules():
        parts = name.split(".")
        if name and _is_linear(module) and not any(p in _ADAPTER_PARTS for p in parts):
            # a peft-wrapped layer shows up as "<target>.base_layer"; report the target name
            names.add(parts[-2] if parts[-1] == "base_layer" else parts[-1])
    return sorted(names)


def base_linear_weight_names(model: nn.Module) -> list[str]:
    """State-dict names of the frozen base linear weights inside the transformer blocks.

    These are the attention and MLP projections (``...q_proj.base_layer.weight`` once peft wraps a
    layer). Embeddings, the LM head / classifier, poolers, biases and LoRA matrices are excluded.
    The ``full`` broadcast scope keeps exactly these private and broadcasts them quantized.

    Args:
        model: a base model or its peft wrapper; names are relative to the object passed.

    Returns:
        Names in module order, each a key of ``model.state_dict()``.
    """
    return [f"{name}.weight" for name in block_linear_modules(model)]


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU copies of every parameter that requires grad (LoRA A/B, modules_to_save
    heads), wherever the model computes.

    Args:
        model: usually ``ModelBundle.model``.

    Returns:
        Parameter name -> tensor, in ``named_parameters`` order.
    """
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()
            if p.requires_grad}


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy ``tensors`` in place into the same-named parameters / buffers of ``model``.

    Storage is reused (no reallocation), so optimizers and views keep pointing at the right
    tensors; values are cast to the target's dtype.

    Args:
        model: the model to write into.
        tensors: name -> value; names as in ``named_parameters`` / ``named_buffers`` / state dict.

    Raises:
        FedlppError: a name ``model`` does not have, or a shape that differs from the target's.
    """
    targets: dict[str, torch.Tensor] = dict(model.named_parameters(remove_duplicate=False))
    targets.update(model.named_buffers(remove_duplicate=False))
    unknown = [n for n in tensors if n not in targets]
    if unknown:
        shown = ", ".join(unknown[:3]) + (f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else "")
        raise FedlppError(f"load_state: unknown tensor name(s) {shown}; the model has no such "
                          f"parameter or buffer (e.g. {next(iter(targets), '-')})")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(targets[name].shape):
            raise FedlppError(f"load_state: shape mismatch for '{name}': got {tuple(value.shape)}, "
                              f"the model has {tuple(targets[name].shape)}")
    with torch.no_grad():
        for name, value in tensors.items():
            targets[name].copy_(value)


def _check_targets(model: nn.Module, targets: list[str], *, from_config: bool, name: str) -> None:
    """Raise a FedlppError for a target that matches no linear module (peft's own error is vaguer)."""
    linear = [n for n, m in model.named_modules() if n and _is_linear(m)]
    # peft's rule for a list of names: the full name equals the key or ends with "." + key
    missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in linear)]
    if missing:
        where = "lora.targets" if from_config else f"the default LoRA targets of model '{name}'"
        raise FedlppError(f"Invalid {where}: {missing} match no linear module (valid: "
                          f"{', '.join(linear_module_names(model))})")


def load_model(cfg: ModelConfig, lora: LoraConfig, *, task: Task, num_labels: int | None = None,
               seed: int, device: torch.device | None = None) -> ModelBundle:
    """Build the base model named by ``cfg.name`` and wrap it with peft LoRA.

    Args:
        cfg: which model and dtype.
        lora: rank, alpha, dropout and target modules (empty = the model's defaults).
        task: ``"lm"`` for causal LM, ``"cls"`` for sequence classification.
        num_labels: number of classes, required (>= 2) for ``"cls"``.
        seed: seeds ``torch`` right before LoRA init, so the adapter init is reproducible.
        device: where the model computes (default: where its loader built it, the CPU).

    Returns:
        The bundle; LoRA A/B are trainable, and for ``"cls"`` the classifier head too
        (peft's ``modules_to_save``).

    Raises:
        FedlppError: unknown model, bad task / num_labels, or a LoRA target matching no linear module.
    """
    import peft

    check_task(cfg.name, task=task, num_labels=num_labels)
    loader: Loader = MODELS.get(cfg.name)
    base, tokenizer, default_targets = loader(cfg, task=task, num_labels=num_labels)
    targets = list(lora.targets) or list(default_targets)
    _check_targets(base, targets, from_config=bool(lora.targets), name=cfg.name)
    peft_cfg = peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
        task_type=peft.TaskType.CAUSAL_LM if task == "lm" else peft.TaskType.SEQ_CLS,
    )
    seed_torch(seed)
    model = peft.get_peft_model(base, peft_cfg)
    if device is not None:
        model.to(device)  # after LoRA init: the same initial adapter on every device
    return ModelBundle(model=model, tokenizer=tokenizer, task=task, name=cfg.name,
                       num_labels=num_labels if task == "cls" else None)
