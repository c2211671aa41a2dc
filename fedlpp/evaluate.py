"""Utility of a model on encoded records: loss + perplexity (LM) or loss + accuracy (classification)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F


@torch.no_grad()
def per_record_losses(model: torch.nn.Module, data: Mapping[str, torch.Tensor], *, task: str,
                      batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-record summed loss, per-record token counts, and (classification) predictions.

    For ``lm`` a record's loss is the sum of next-token NLLs over its non-padding labels; for
    ``cls`` it is the cross-entropy of its label (count 1).
    """
    from fedlpp.federation.client import trim

    was_training = model.training
    model.eval()
    losses, counts, preds = [], [], []
    n = int(data["input_ids"].shape[0])
    for start in range(0, n, batch_size):
        batch = trim({k: v[start : start + batch_size] for k, v in data.items()})
        labels = batch.pop("labels")
        logits = model(**batch).logits.float()
        if task == "lm":
            # shift the labels, not the logits: a sliced copy of a (batch, len, vocab) tensor
            # would cost as much memory as the logits themselves
            shift_labels = torch.full_like(labels, -100)
            shift_labels[:, :-1] = labels[:, 1:]
            nll = F.cross_entropy(logits.view(-1, logits.shape[-1]), shift_labels.view(-1),
                                  ignore_index=-100, reduction="none").view(shift_labels.shape)
            del logits
            valid = shift_labels != -100
            losses.append((nll * valid).sum(dim=1))
            counts.append(valid.sum(dim=1))
        else:
            losses.append(F.cross_entropy(logits, labels, reduction="none"))
            counts.append(torch.ones_like(labels))
            preds.append(logits.argmax(dim=-1))
    model.train(was_training)
    return torch.cat(losses), torch.cat(counts), (torch.cat(preds) if preds else None)


def utility(model: torch.nn.Module, data: Mapping[str, torch.Tensor], *, task: str,
            batch_size: int) -> dict[str, float]:
    """``{"loss", "perplexity"}`` for ``lm`` (token-weighted), ``{"loss", "accuracy"}`` for ``cls``."""
    losses, counts, preds = per_record_losses(model, data, task=task, batch_size=batch_size)
    loss = float(losses.sum() / counts.sum().clamp(min=1))
    if task == "lm":
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
    accuracy = float((preds == data["labels"]).float().mean())
    return {"loss": loss, "accuracy": accuracy}
