"""Record-level DP local training (DP-SGD) with opacus: per-sequence losses, Poisson batches,
per-sample clipping of the trainable (LoRA and head) tensors, Gaussian noise.

Why not ``model(**batch).loss``: Hugging Face's causal-LM loss is a token mean over the whole
padded batch, so under opacus' per-sample hooks a record's gradient would be scaled by the other
records' lengths. Here each record's loss is its own (the mean NLL over its own tokens, or the
cross-entropy of its label), and the batch loss is their mean, which opacus' ``mean`` reduction
undoes exactly.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer

from fedlpp.data.batching import batch_slices, trim
from fedlpp.device import model_device, to_device
from fedlpp.protocol.records import Step
from fedlpp.seeding import derive_seed, seed_torch, torch_generator


def sequence_losses(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """One loss per record of ``batch``: mean next-token NLL over the record's own labels
    (``lm``: 2-D labels, -100 ignored) or the cross-entropy of its label (``cls``)."""
    batch = to_device(batch, model_device(model))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    labels = batch["labels"]
    logits = model(**inputs).logits.float()
    if labels.dim() == 1:
        return F.cross_entropy(logits, labels, reduction="none")
    shifted = torch.full_like(labels, -100)
    shifted[:, :-1] = labels[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), shifted.reshape(-1),
                          ignore_index=-100, reduction="none").view(shifted.shape)
    valid = (shifted != -100).float()
    return (nll * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)


def per_sample_norms(params: list[torch.Tensor]) -> torch.Tensor:
    """Each record's gradient norm over all ``params`` (from opacus' ``grad_sample``)."""
    return torch.stack([p.grad_sample.reshape(len(p.grad_sample), -1).norm(dim=1)
                        for p in params], dim=1).norm(dim=1)


def sample_rate(n: int, *, batch_size: int) -> float:
    """Each record's chance to be in a step's batch: ``batch_size / n`` (at most 1)."""
    return min(1.0, batch_size / n)


def poisson_batches(n: int, *, rate: float, steps: int,
                    generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` batches, each record in each independently with probability ``rate`` (the
    sampling the accountant assumes); a batch may be empty."""
    for _ in range(steps):
        yield torch.nonzero(torch.rand(n, generator=generator) < rate).flatten()


def _private_step(wrapped: GradSampleModule, opt: DPOptimizer, *, params: list[torch.nn.Parameter],
                  batch: torch.Tensor, data: Mapping[str, torch.Tensor],
                  on_norms: Callable[[torch.Tensor], None] | None) -> float | None:
    """One DP-SGD step on the records ``batch`` (row positions): per-record gradients, clipped,
    noised and applied by ``opt``. Returns the batch's mean loss, or None for an empty Poisson
    batch (the step is then the noise alone)."""
    loss_value = None
    if len(batch):
        rows = trim({k: v[batch] for k, v in data.items()})
        loss = sequence_losses(wrapped, rows).mean()
        loss.backward()
        loss_value = float(loss.detach())
        if on_norms is not None:
            on_norms(per_sample_norms(params))
    else:
        for p in params:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss_value


def dp_local_train(*, model: torch.nn.Module, data: Mapping[str, torch.Tensor], steps: int,
                   batch_size: int, lr: float, weight_decay: float = 0.0, seed: int,
                   noise_multiplier: float, max_grad_norm: float, poisson: bool,
                   on_step: Callable[[Step], None] | None = None,
                   on_norms: Callable[[torch.Tensor], None] | None = None) -> list[float]:
    """DP-SGD (with AdamW as the update rule) on the model's trainable tensors.

    Same signature and seeding as :func:`fedlpp.federation.client.local_train`, plus the DP
    options. With ``poisson`` each step samples records at rate ``batch_size / n``; otherwise it
    takes the trainer's shuffled fixed-size batches (the accountant's epsilon then assumes a
    sampling the batches did not use). ``on_norms`` gets each step's per-record gradient norms
    before clipping. The opacus hooks are removed before returning, so the
    shared model is left as it was found apart from its trained tensors.

    Returns:
        The mean of the records' losses of each step with a non-empty batch (an empty Poisson
        batch has none; its ``Step`` says ``batch=[]``, ``loss=0.0``). If every batch was
        empty, the one mean loss of all the records.
    """
    n = int(data["input_ids"].shape[0])
    rate = sample_rate(n, batch_size=batch_size)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch_generator(seed)
    seed_torch(seed)  # dropout, if configured
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="mean", strict=False)
    opt = DPOptimizer(torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
                      noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                      expected_batch_size=max(1, round(rate * n)), loss_reduction="mean",
                      generator=torch_generator(derive_seed(seed, 1)))
    batches = (poisson_batches(n, rate=rate, steps=steps, generator=gen) if poisson else
               batch_slices(n, batch_size=batch_size, steps=steps, generator=gen))
    losses: list[float] = []
    # LoRA's inputs need no gradient, so torch notes that opacus' backward hooks see only the
    # module outputs' gradients: that is all a Linear's per-sample gradients need
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        try:
            for idx in batches:
                t0 = time.perf_counter()
                loss = _private_step(wrapped, opt, params=params, batch=idx, data=data,
                                     on_norms=on_norms)
                if loss is not None:
                    losses.append(loss)
                if on_step is not None:
                    on_step(Step(batch=idx.tolist(), loss=0.0 if loss is None else loss,
                                 seconds=time.perf_counter() - t0))
        finally:
            wrapped.to_standard_module()
    if not losses:  # every batch was empty: the client's loss is that of all its records
        with torch.no_grad():
            losses = [float(sequence_losses(model, trim(dict(data))).mean())]
    return losses
