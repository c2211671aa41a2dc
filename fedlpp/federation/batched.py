"""Client-batched local training: the clients of a round that start from the same broadcast
train as one computation.

Every client of a FedLPP round fine-tunes LoRA on the same frozen base from the same dequantized
broadcast; only their data and their LoRA tensors differ. Here each trainable ``nn.Linear``
(LoRA's A and B, a ``modules_to_save`` head) holds one weight per client, stacked on a leading
client axis, and each step runs one forward and backward over the rows of every active client:
the frozen base layers see one large batch (one GEMM instead of one per client), the trainable
layers apply each client's own weights to that client's rows. The objective is the sum of the
clients' own mean losses, so each client's slice receives exactly its own gradient, and AdamW is
elementwise, so one optimizer over the stacked tensors is each client's own optimizer.

What matches the sequential path (:func:`fedlpp.federation.client.local_train`): each client's
batch order (its own seeded generator), its number of steps (a client with fewer steps drops out
of the later ones: its tensors are kept as they were after its last step), its per-step losses
and its trained tensors, up to float rounding (larger GEMMs sum in another order). What it does
not serve (:func:`unbatchable_reason` says why, and the caller trains sequentially): a model
with active dropout in training (batched clients would draw other dropout masks than each client
draws alone), and a trainable tensor outside an ``nn.Linear``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from fedlpp.data.batching import batch_slices, trim
from fedlpp.device import model_device, to_device
from fedlpp.protocol.records import Step
from fedlpp.seeding import seed_torch, torch_generator

Tensors = dict[str, torch.Tensor]
DROPOUT_KEYS = ("attention_dropout", "attention_probs_dropout_prob", "hidden_dropout_prob",
                "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout")


def unbatchable_reason(model: nn.Module) -> str | None:
    """Why ``model``'s clients cannot train batched (None: they can)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            return f"the model uses dropout in training ({name}: p={module.p:g})"
    config = getattr(model, "config", None)
    for key in DROPOUT_KEYS:
        value = getattr(config, key, 0.0)
        if isinstance(value, int | float) and value > 0:
            return f"the model uses dropout in training ({key}={value:g})"
    if "" in trainable_linears(model):
        return "a trainable tensor is not an nn.Linear weight or bias"
    return None


def trainable_linears(model: nn.Module) -> dict[str, nn.Module]:
    """Module name -> module for every module owning a trainable parameter (``""`` maps a
    module that is not an ``nn.Linear``, which this path cannot serve)."""
    owners: dict[str, nn.Module] = {}
    modules = dict(model.named_modules())
    for pname, param in model.named_parameters():
        if param.requires_grad:
            mname, _, leaf = pname.rpartition(".")
            module = modules[mname]
            owners["" if not isinstance(module, nn.Linear) or leaf not in ("weight", "bias")
                   else mname] = module
    return owners


@dataclass
class ClientJob:
    """One client of a batched round: its encoded records, step count and seed."""

    data: Mapping[str, torch.Tensor]
    steps: int
    seed: int
    on_step: Callable[[Step], None] | None = None


@contextlib.contextmanager
def stacked_linears(linears: Mapping[str, nn.Module], weights: Mapping[str, torch.Tensor],
                    rows: list[int]) -> Iterator[None]:
    """Within the block, each of the trainable Linears ``linears`` (:func:`trainable_linears`)
    computes with the stacked ``weights`` (``<module>.weight`` / ``.bias``: ``[clients, ...]``),
    client ``c``'s weights on the ``rows[c]`` consecutive rows of its input that belong to it."""
    patched = []
    for mname, module in linears.items():
        w, b = weights[f"{mname}.weight"], weights.get(f"{mname}.bias")
        module.forward = _grouped_forward(w, b, rows)  # instance attribute: __call__ uses it
        patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _grouped_forward(weight: torch.Tensor, bias: torch.Tensor | None,
                     rows: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    active = [c for c, r in enumerate(rows) if r]
    equal = len({rows[c] for c in active}) == 1  # equal shares: one batched matmul
    if equal and len(active) < len(rows):  # the clients still training, gathered once
        idx = torch.tensor(active, device=weight.device)
        weight, bias = weight[idx], None if bias is None else bias[idx]

    def forward(x: torch.Tensor) -> torch.Tensor:
        if equal:
            xs = x.reshape(len(active), -1, x.shape[-1])
            out = torch.bmm(xs, weight.transpose(1, 2))
            if bias is not None:
                out = out + bias.unsqueeze(1)
            return out.reshape(*x.shape[:-1], weight.shape[1])
        parts = torch.split(x, [rows[c] for c in active], dim=0)
        return torch.cat([F.linear(p, weight[c], None if bias is None else bias[c])
                          for p, c in zip(parts, active, strict=True)], dim=0)

    return forward


def train_batched(*, model: nn.Module, jobs: Sequence[ClientJob], start: Mapping[str, torch.Tensor],
                  batch_size: int, lr: float, weight_decay: float, task: str,
                  pad_id: int) -> list[tuple[Tensors, list[float]]]:
    """Train every job's client from the trainable tensors ``start`` (parameter names, as
    :func:`fedlpp.models.trainable_state` gives them) as one computation.

    Returns, per job in order, its trained tensors (CPU copies) and its per-step losses.
    """
    device = model_device(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    stacked = {n: start[n].to(device, torch.float32).unsqueeze(0).repeat(
        len(jobs), *[1] * start[n].dim()).requires_grad_(True) for n in names}
    opt = torch.optim.AdamW(list(stacked.values()), lr=lr, weight_decay=weight_decay)
    orders = [batch_slices(int(j.data["input_ids"].shape[0]), batch_size=batch_size,
                           steps=j.steps, generator=torch_generator(j.seed)) for j in jobs]
    linears = trainable_linears(model)  # the modules that compute with the stacked weights
    losses: list[list[float]] = [[] for _ in jobs]
    done: list[Tensors | None] = [None] * len(jobs)
    model.train()
    for step in range(max(j.steps for j in jobs)):
        t0 = time.perf_counter()
        active = [c for c, j in enumerate(jobs) if step < j.steps]
        picked = {c: next(orders[c]) for c in active}
        batches = {c: trim({k: v[picked[c]] for k, v in jobs[c].data.items()}) for c in active}
        inputs, widths = _concat(batches, pad_id=pad_id)
        rows = [int(batches[c]["input_ids"].shape[0]) if c in batches else 0
                for c in range(len(jobs))]
        with stacked_linears(linears, stacked, rows):
            logits = model(**to_device(inputs, device)).logits
        step_losses = _client_losses(model, logits, batches, widths=widths, task=task)
        torch.stack(list(step_losses.values())).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        seconds = (time.perf_counter() - t0) / len(active)
        for c, loss in step_losses.items():
            losses[c].append(float(loss.detach()))
            if jobs[c].on_step is not None:
                jobs[c].on_step(Step(batch=picked[c].tolist(), loss=losses[c][-1], seconds=seconds))
            if step + 1 == jobs[c].steps:
                done[c] = {n: t[c].detach().to("cpu", copy=True) for n, t in stacked.items()}
    seed_torch(jobs[-1].seed)  # the global generator as the sequential path leaves it
    return [(d, loss) for d, loss in zip(done, losses, strict=True) if d is not None]


def _concat(batches: Mapping[int, Mapping[str, torch.Tensor]], *,
            pad_id: int) -> tuple[dict[str, torch.Tensor], dict[int, int]]:
    """The clients' trimmed batches stacked row-wise (client order), right-padded to the widest
    one with the encoder's pad id and a zero attention mask; and each client's own width."""
    widths = {c: int(b["input_ids"].shape[1]) for c, b in batches.items()}
    width = max(widths.values())

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return F.pad(t, (0, width - t.shape[1]), value=value) if t.shape[1] < width else t

    ids = torch.cat([pad(b["input_ids"], pad_id) for b in batches.values()])
    mask = torch.cat([pad(b["attention_mask"], 0) for b in batches.values()])
    return {"input_ids": ids, "attention_mask": mask}, widths


def _client_losses(model: nn.Module, logits: torch.Tensor,
                   batches: Mapping[int, Mapping[str, torch.Tensor]], *, widths: Mapping[int, int],
                   task: str) -> dict[int, torch.Tensor]:
    """Each client's loss as its own batch alone would give it (the model's loss function on
    the client's rows, cut back to the client's own width)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    out: dict[int, torch.Tensor] = {}
    start = 0
    for c, batch in batches.items():
        labels = batch["labels"].to(logits.device)
        rows = slice(start, start + labels.shape[0])
        start += labels.shape[0]
        if task == "lm":
            out[c] = base.loss_function(logits=logits[rows, : widths[c]], labels=labels,
                                        vocab_size=base.config.vocab_size)
        else:
            out[c] = F.cross_entropy(logits[rows].float().view(-1, logits.shape[-1]),
                                     labels.view(-1))
    return out
