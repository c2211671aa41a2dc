"""Client side of a round: start from the dequantized proxy, train LoRA locally, return it.

The model object is shared by every simulated client (the base is loaded once); only the
private tensors are swapped in, so a client's state is exactly what it received.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from fedlpp.config import FedConfig
from fedlpp.federation.aggregate import ClientUpdate
from fedlpp.models import load_state, trainable_state


@dataclass
class StepTimer:
    """Seconds spent inside optimizer steps (forward, backward, update), for overhead accounting."""

    seconds: float = 0.0


def num_local_steps(fed: FedConfig, *, num_examples: int) -> int:
    """``fed.local_steps``, or enough steps for ``fed.local_epochs`` passes when it is 0."""
    if fed.local_steps > 0:
        return fed.local_steps
    return max(1, math.ceil(fed.local_epochs * num_examples / fed.batch_size))


def batch_slices(n: int, *, batch_size: int, steps: int, generator: torch.Generator):
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


def local_train(*, model: torch.nn.Module, data: Mapping[str, torch.Tensor], steps: int,
                batch_size: int, lr: float, weight_decay: float = 0.0, seed: int,
                timer: StepTimer | None = None,
                on_step: Callable[[float], None] | None = None,
                project: Callable[[], None] | None = None) -> list[float]:
    """AdamW on the model's trainable tensors for ``steps`` seeded batches of ``data``.

    Shared by honest clients and by attacks that keep training (``project`` is called after each
    step, e.g. to clamp parameters into a box). Returns the per-step losses.
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout, if configured
    n = int(data["input_ids"].shape[0])
    losses: list[float] = []
    for idx in batch_slices(n, batch_size=batch_size, steps=steps, generator=gen):
        t0 = time.perf_counter()
        batch = trim({k: v[idx] for k, v in data.items()})
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if project is not None:
            with torch.no_grad():
                project()
        if timer is not None:
            timer.seconds += time.perf_counter() - t0
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(losses[-1])
    return losses


def client_update(*, client: int, model: torch.nn.Module, proxy: Mapping[str, torch.Tensor],
                  data: Mapping[str, torch.Tensor], fed: FedConfig, seed: int,
                  timer: StepTimer | None = None,
                  on_step: Callable[[float], None] | None = None) -> ClientUpdate:
    """Run one client's local training from the broadcast proxy.

    Args:
        client: the client's id (recorded in the update).
        model: the shared peft model; its private tensors are overwritten with ``proxy``.
        proxy: dequantized broadcast (LoRA A/B and heads; base linear weights in scope ``full``).
        data: the client's encoded member records (``input_ids``, ``attention_mask``, ``labels``).
        fed: local training hyperparameters.
        seed: seeds batch order and any dropout, so a client's step is reproducible.
        timer: accumulates seconds spent in training steps.
        on_step: called with the loss after each step (progress display).
    """
    load_state(model, proxy)
    n = int(data["input_ids"].shape[0])
    losses = local_train(model=model, data=data, steps=num_local_steps(fed, num_examples=n),
                         batch_size=fed.batch_size, lr=fed.lr, weight_decay=fed.weight_decay,
                         seed=seed, timer=timer, on_step=on_step)
    return ClientUpdate(client=client, tensors=trainable_state(model), num_examples=n,
                        train_loss=sum(losses) / len(losses))


def pack_upload(tensors: Mapping[str, torch.Tensor], *, quantizer, seed: int):
    """Quantize a client's update for the uplink; returns (what the server decodes, bytes sent).

    With the ``none`` quantizer at 32 bits this is the raw float32 update.
    """
    from fedlpp.federation.broadcast import derive_seed

    received: dict[str, torch.Tensor] = {}
    nbytes = 0
    for i, (name, t) in enumerate(tensors.items()):
        packed = quantizer.quantize(t, seed=derive_seed(seed, i))
        nbytes += packed.nbytes
        received[name] = quantizer.dequantize(packed)
    return received, nbytes
