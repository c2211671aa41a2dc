"""Batches of encoded records: seeded training batches, in-order scoring batches, trimming.

Encoded records are dicts of tensors with one row per record (``input_ids``, ``attention_mask``,
``labels``); see :mod:`fedlpp.data.encode`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

from fedlpp.device import model_device, to_device

LOGITS_BUDGET = 16 * 2**20  # bytes of float32 logits one scoring batch may hold


def batch_slices(n: int, *, batch_size: int, steps: int,
                 generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Yield ``steps`` index batches: seeded shuffles, each example once per pass."""
    order = torch.randperm(n, generator=generator)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n and pos > 0:
            order, pos = torch.randperm(n, generator=generator), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        yield idx


def trim(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop padding columns that every row of the batch pads, so no compute goes to them."""
    mask = batch["attention_mask"]
    width = int(mask.sum(dim=1).max().item()) if mask.numel() else 0
    width = max(width, 1)
    out = {}
    for key, value in batch.items():
        out[key] = value[:, :width] if value.dim() == 2 and value.shape[1] == mask.shape[1] else value
    return out


def scoring_batches(model: torch.nn.Module, data: Mapping[str, torch.Tensor], *, task: str,
                    batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Yield padding-trimmed batches of ``data`` for scoring, in order.

    For ``lm`` the batch is also capped so its logits (rows x length x vocab floats) stay within
    ``LOGITS_BUDGET``: with a large vocabulary the logits, not the model, set the peak memory.
    """
    n, width = int(data["input_ids"].shape[0]), int(data["input_ids"].shape[1])
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) if task == "lm" else None
    if vocab:
        batch_size = max(1, min(batch_size, LOGITS_BUDGET // (4 * max(width, 1) * vocab)))
    device = model_device(model)
    for start in range(0, n, batch_size):
        yield to_device(trim({k: v[start : start + batch_size] for k, v in data.items()}), device)
