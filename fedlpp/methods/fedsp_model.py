"""The models of a FedSP run: the server's full model and the auxiliary model, both wrapped in
peft prefix tuning and reading one set of prompts, installed as the run's model.

The engine evaluates "the model with these private tensors loaded". For FedSP those tensors are
``prompts`` and ``use_aux``, a one-element buffer that says which model reads them: the server's
master carries 0 (central utility: the full model with the global prompts), a broadcast's proxy
carries 1 (proxy utility: the auxiliary model a client holds, with the prompts it received).
So a model key names the model as well as its prompts. ``use_aux`` is never sent: the wire
carries the prompts alone.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fedlpp.data.encode import encode
from fedlpp.errors import FedlppError
from fedlpp.methods.fedsp_aux import aux_weight_names, build_aux, distill, server_records
from fedlpp.models import MODELS
from fedlpp.seeding import derive_seed, seed_torch

if TYPE_CHECKING:
    from fedlpp.run.context import RunContext

log = logging.getLogger("fedlpp")

PROMPTS, USE_AUX = "prompts", "use_aux"
FULL, AUX = 0.0, 1.0


def prompt_weight(model: nn.Module) -> nn.Parameter:
    """The prompt table of a peft prefix-tuning model."""
    return model.prompt_encoder[model.active_adapter].embedding.weight


class PromptedModels(nn.Module):
    """Prefix-tuned models reading one ``prompts`` parameter; ``use_aux`` picks which one runs.

    Args:
        aux: the auxiliary model (peft prefix tuning).
        full: the server's full model (peft prefix tuning), or None (a client holds no other).
    """

    def __init__(self, *, aux: nn.Module, full: nn.Module | None = None) -> None:
        super().__init__()
        self.aux, self.full = aux, full
        self.prompts = prompt_weight(aux)
        if full is not None:
            full.prompt_encoder[full.active_adapter].embedding.weight = self.prompts
        self.register_buffer(USE_AUX, torch.tensor(AUX if full is None else FULL))
        self.config = aux.get_base_model().config  # vocab size for the scorer's batch sizing

    def forward(self, **batch: Any) -> Any:
        reader = self.aux if self.full is None or bool(self.use_aux) else self.full
        return reader(**batch)


def check_run(ctx: RunContext) -> None:
    """One-line FedlppErrors for what FedSP cannot run."""
    cfg = ctx.cfg
    if cfg.quant.scope != "adapter":
        raise FedlppError(f"Invalid quant.scope: {cfg.quant.scope!r} for fed.method=fedsp "
                          "(allowed: 'adapter'; FedSP broadcasts prompts, never the server's "
                          "model)")
    if ctx.task != "lm":
        raise FedlppError(
            f"Invalid fed.method: 'fedsp' for data.name={cfg.data.name!r}, a classification task "
            "(allowed: fed.method=fedlpp, or fedsp on language-modelling data such as "
            "data.name=kjv-lm; peft prefix tuning needs a causal LM with a key/value cache)")


def activation_prompts(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Prompts equal to ``model``'s keys and values on ``input_ids`` (one row of tokens), in
    peft's layout ``[tokens, layers * 2 * kv_dim]`` (Li and Liang 2021's initialisation from
    real activations)."""
    with torch.no_grad():
        cache = model(input_ids=input_ids[None], use_cache=True).past_key_values
    rows = [t[0] for layer in cache.layers for t in (layer.keys, layer.values)]
    return torch.stack(rows).permute(2, 0, 1, 3).reshape(input_ids.shape[0], -1).float()


def _server_data(ctx: RunContext, options: Any) -> dict[str, torch.Tensor]:
    """The server's own text (records the run did not draw), encoded like the run's."""
    records = server_records(ctx.cfg, drawn=ctx.dataset, count=options.distill_records,
                             seed=derive_seed(ctx.cfg.seed, 101))
    return encode(records, tokenizer=ctx.bundle.tokenizer, task="lm", seq_len=ctx.cfg.data.seq_len)


def _prefix(model: nn.Module, tokens: int, *, seed: int) -> nn.Module:
    import peft

    seed_torch(seed)
    config = peft.PrefixTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=tokens)
    return peft.get_peft_model(model, config)


def build_models(ctx: RunContext, options: Any) -> PromptedModels:
    """The server's models: its full model (the base, frozen) and an auxiliary model distilled
    on its own text, both prefix-tuned. With ``prompt_init="activations"`` the prompts start as
    the full model's keys and values on the first tokens of that text: the full model then
    reads the server's text as context, where random prompts would wreck it. (The auxiliary
    model's own activations, which reveal nothing more of the full model, start the full model
    as badly as zero prompts: about twice the pretrained perplexity on SmolLM2.)"""
    cfg = ctx.cfg
    base, _, _ = MODELS.get(cfg.model.name)(cfg.model, task="lm", num_labels=None)
    base.requires_grad_(False)
    aux = build_aux(base, layer=options.aux_layer)
    own = set(aux_weight_names(aux))
    for name, param in aux.named_parameters():
        param.requires_grad_(name in own)
    data = _server_data(ctx, options)
    losses = distill(aux, teacher=base, data=data, steps=options.distill_steps,
                     batch_size=options.distill_batch, lr=options.distill_lr,
                     seed=derive_seed(cfg.seed, 102))
    if losses:
        log.info("fedsp: distilled the auxiliary model, hidden-state MSE %.4g -> %.4g in %d steps",
                 losses[0], losses[-1], len(losses))
    aux.requires_grad_(False).eval()
    seed = derive_seed(cfg.seed, 103)
    models = PromptedModels(aux=_prefix(aux, options.virtual_tokens, seed=seed),
                            full=_prefix(base, options.virtual_tokens, seed=seed))
    if options.prompt_init == "activations":
        tokens = data["input_ids"][data["attention_mask"].bool()]  # the records, end to end
        if len(tokens) < options.virtual_tokens:
            raise FedlppError(f"fedsp: the server's text has {len(tokens)} tokens, fewer than "
                              f"the {options.virtual_tokens} prompts to initialise")
        with torch.no_grad():
            models.prompts.copy_(activation_prompts(base, tokens[: options.virtual_tokens]))
    return models.eval()


def attach(ctx: RunContext, options: Any) -> PromptedModels:
    """Install the FedSP models as the run's model (once; later calls return them).

    The run's private tensors become ``prompts`` and ``use_aux``; its LoRA model is dropped.
    """
    if isinstance(ctx.bundle.model, PromptedModels):
        return ctx.bundle.model
    check_run(ctx)
    models = build_models(ctx, options)
    ctx.bundle = dataclasses.replace(ctx.bundle, model=models)
    ctx.trainable, ctx.static = [PROMPTS, USE_AUX], []
    ctx.initial = {PROMPTS: models.prompts.detach().clone(), USE_AUX: torch.tensor(FULL)}
    ctx._records.clear()  # evaluations of the LoRA model
    return models
