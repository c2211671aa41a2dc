"""FedSP's auxiliary model: one decoder layer of the server's model repeated to the full depth
with shared weights, distilled on the server towards the full model's last hidden states.

The layer is repeated as thin copies: each copy is a new module tree whose parameters are the
one shared set, but whose modules that carry a layer index (an attention's ``layer_idx``, which
the key/value cache and so peft's prefix prompts are addressed by) carry their own. Repeating
the same module object instead would send every repeat to cache slot 0 (a shape error).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping

import torch
from torch import nn

from fedlpp.config import RunConfig
from fedlpp.data import Record, TextDataset, load_dataset
from fedlpp.data.batching import batch_slices, trim
from fedlpp.device import model_device, to_device
from fedlpp.errors import FedlppError
from fedlpp.seeding import numpy_rng, seed_torch, torch_generator


def decoder_layers_path(model: nn.Module) -> str:
    """Where ``model`` keeps its decoder layers: the ModuleList whose i-th element carries
    layer index i (``model.layers`` for Llama-style models)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and all(
                _layer_index(layer) == i for i, layer in enumerate(module)):
            return name
    raise FedlppError(f"fed.method=fedsp needs a model whose decoder layers carry a layer index "
                      f"(layer_idx, as Llama-style models in transformers do); "
                      f"{type(model).__name__} has none")


def _layer_index(module: nn.Module) -> int | None:
    """The layer index some submodule of ``module`` carries, or None."""
    for sub in module.modules():
        if isinstance(getattr(sub, "layer_idx", None), int):
            return sub.layer_idx
    return None


def layer_copy(layer: nn.Module, index: int) -> nn.Module:
    """A copy of ``layer`` sharing every parameter and buffer, with layer index ``index``.

    Only the modules on the way to one that carries an index are copied (shallow: their
    parameter dicts are the originals'); every other submodule is the original object.
    """
    new = copy.copy(layer)
    new._modules = {name: layer_copy(child, index) if _layer_index(child) is not None else child
                    for name, child in layer._modules.items()}
    if isinstance(getattr(new, "layer_idx", None), int):
        new.layer_idx = index
    return new


def build_aux(base: nn.Module, *, layer: int = 0) -> nn.Module:
    """A compressed copy of ``base``: its decoder layer ``layer`` repeated to ``base``'s depth,
    one shared set of weights; embeddings, final norm and head copied. ``base`` is unchanged."""
    path = decoder_layers_path(base)
    layers = base.get_submodule(path)
    if not 0 <= layer < len(layers):
        raise FedlppError(f"Invalid fedsp option aux_layer: {layer} (allowed: a layer of the "
                          f"model, 0..{len(layers) - 1})")
    parent, _, attr = path.rpartition(".")
    owner = base.get_submodule(parent) if parent else base
    setattr(owner, attr, nn.ModuleList([layers[layer]]))  # deep-copy one layer, not all
    try:
        aux = copy.deepcopy(base)
    finally:
        setattr(owner, attr, layers)
    shared = aux.get_submodule(path)[0]
    aux_owner = aux.get_submodule(parent) if parent else aux
    setattr(aux_owner, attr, nn.ModuleList([layer_copy(shared, i) for i in range(len(layers))]))
    return aux


def aux_weight_names(aux: nn.Module) -> list[str]:
    """Names of the auxiliary model's own weights (the shared layer, norms): every parameter
    but the input and output embeddings, which stay the public base's."""
    embeddings = {id(p) for m in (aux.get_input_embeddings(), aux.get_output_embeddings())
                  if m is not None for p in m.parameters()}
    return [n for n, p in aux.named_parameters() if id(p) not in embeddings]


def last_hidden(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The last hidden states (after the final norm) of ``model``'s body: no head, no logits."""
    out = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.last_hidden_state


def hidden_mse(student: nn.Module, teacher: nn.Module,
               batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared error between the two models' last hidden states over real tokens."""
    with torch.no_grad():
        target = last_hidden(teacher, batch)
    mask = batch["attention_mask"].unsqueeze(-1).to(target.dtype)
    diff = (last_hidden(student, batch) - target) * mask
    return diff.pow(2).sum() / (mask.sum() * target.shape[-1]).clamp(min=1)


def distill(aux: nn.Module, *, teacher: nn.Module, data: Mapping[str, torch.Tensor], steps: int,
            batch_size: int, lr: float, seed: int) -> list[float]:
    """AdamW on ``aux``'s trainable weights for ``steps`` seeded batches of ``data``, minimising
    :func:`hidden_mse` to the frozen ``teacher``. Returns the per-step losses."""
    params = [p for p in aux.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    gen = torch_generator(seed)
    seed_torch(seed)
    was_training = aux.training
    aux.train()
    teacher.eval()
    losses: list[float] = []
    n = int(data["input_ids"].shape[0])
    for idx in batch_slices(n, batch_size=batch_size, steps=steps, generator=gen):
        loss = hidden_mse(aux, teacher, to_device(trim({k: v[idx] for k, v in data.items()}),
                                                  model_device(aux)))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    aux.train(was_training)
    return losses


def server_records(cfg: RunConfig, *, drawn: TextDataset, count: int, seed: int) -> list[Record]:
    """``count`` records of the configured dataset that the run did not draw (seeded).

    They are the server's own text: no client holds them, and they are neither test records
    nor non-member candidates, so distilling on them touches no measurement.
    """
    full = load_dataset(dataclasses.replace(cfg.data, max_records=0), seed=cfg.seed)
    taken = {" ".join(r.text.split()) for r in drawn.records}
    pool = [r for r in full.records if " ".join(r.text.split()) not in taken]
    if not pool:
        raise FedlppError(
            f"Invalid data.max_records: {cfg.data.max_records} for fed.method=fedsp (the server "
            f"distils its auxiliary model on records the run does not draw, and "
            f"data.name={cfg.data.name!r} has none left: allowed: below its "
            f"{len(full.records):,} records)")
    picked = numpy_rng(seed).choice(len(pool), size=min(count, len(pool)), replace=False)
    return [pool[i] for i in sorted(picked.tolist())]
