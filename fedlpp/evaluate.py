"""Utility of a model on encoded records: loss + perplexity (LM) or loss + accuracy (classification)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from fedlpp.data.batching import scoring_batches, trim
from fedlpp.device import model_device, to_device


@torch.no_grad()
def per_record_losses(model: torch.nn.Module, data: Mapping[str, torch.Tensor], *, task: str,
                      batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-record summed loss, per-record token counts, and (classification) predictions.

    For ``lm`` a record's loss is the sum of next-token NLLs over its non-padding labels; for
    ``cls`` it is the cross-entropy of its label (count 1).
    """
    was_training = model.training
    model.eval()
    losses, counts, preds = [], [], []
    for batch in scoring_batches(model, data, task=task, batch_size=batch_size):
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
    return (torch.cat(losses).cpu(), torch.cat(counts).cpu(),
            (torch.cat(preds).cpu() if preds else None))


def utility(model: torch.nn.Module, data: Mapping[str, torch.Tensor], *, task: str,
            batch_size: int) -> dict[str, float]:
    """``{"loss", "perplexity"}`` for ``lm`` (token-weighted), ``{"loss", "accuracy"}`` for ``cls``."""
    losses, counts, preds = per_record_losses(model, data, task=task, batch_size=batch_size)
    return summarize(losses, counts, preds, labels=data["labels"], task=task)


def summarize(losses: torch.Tensor, counts: torch.Tensor, preds: torch.Tensor | None, *,
              labels: torch.Tensor, task: str) -> dict[str, float]:
    """:func:`utility` from the per-record results of :func:`per_record_losses`."""
    loss = float(losses.sum() / counts.sum().clamp(min=1))
    if task == "lm":
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
    accuracy = float((preds == labels).float().mean())
    return {"loss": loss, "accuracy": accuracy}


def lora_gradient(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The loss gradient w.r.t. the trainable (LoRA) tensors on ``batch``, flattened."""
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()  # no dropout: the two gradients must differ only by the weights
    loss = model(**to_device(trim(batch), model_device(model))).loss
    grads = torch.autograd.grad(loss, params)
    model.train(was_training)
    return torch.cat([g.reshape(-1).float() for g in grads])


def gradient_fidelity(model: torch.nn.Module, *, central: Mapping[str, torch.Tensor],
                      proxy: Mapping[str, torch.Tensor], data: Mapping[str, torch.Tensor],
                      batch_size: int, batches: int = 4) -> float:
    """Mean cosine similarity between the LoRA gradient on the proxy and on the central model.

    The paper's claim is that a client's gradient on the quantized proxy is an accurate estimate
    of the gradient on the full-precision model; this measures it on the same batches.
    """
    from fedlpp.models import load_state

    n = int(data["input_ids"].shape[0])
    sims = []
    for start in range(0, min(n, batches * batch_size), batch_size):
        batch = {k: v[start : start + batch_size] for k, v in data.items()}
        load_state(model, dict(central))
        g_central = lora_gradient(model, batch)
        load_state(model, dict(proxy))
        g_proxy = lora_gradient(model, batch)
        sims.append(float(F.cosine_similarity(g_central, g_proxy, dim=0)))
    return sum(sims) / len(sims)
