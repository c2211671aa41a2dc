"""Everything a run needs before its first round: data, splits, model, quantizers, encodings.

Bad inputs fail here, before any training, and cheap checks (quantizer, data) come before the
model load so a typo costs no time. The config's own ranges are checked when it is parsed
(:mod:`fedlpp.config`); here come the bounds that need the data or the model: enough
``fed.local_epochs`` for one step on every client, ``data.seq_len`` within the model's positions,
``quant.block_size`` within the largest private tensor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedlpp.config import RunConfig
from fedlpp.data import TextDataset, load_dataset
from fedlpp.data.encode import encode
from fedlpp.data.partition import Splits, make_splits
from fedlpp.device import device_id, resolve_device
from fedlpp.errors import FedlppError
from fedlpp.evaluate import per_record_losses, summarize
from fedlpp.models import (
    ModelBundle,
    base_linear_weight_names,
    load_model,
    load_state,
    trainable_state,
)
from fedlpp.quant import Quantizer
from fedlpp.run.resolve import quantizer_from, resolve
from fedlpp.store import ResultStore, content_key, shared_result, tensors_key
from fedlpp.typed import check


@dataclass
class RunContext:
    """The prepared pieces of a run (the round engine only reads these)."""

    cfg: RunConfig
    dataset: TextDataset
    splits: Splits
    bundle: ModelBundle
    quantizer: Quantizer
    uploader: Quantizer
    client_data: list[dict[str, torch.Tensor]]
    test_data: dict[str, torch.Tensor]  # the final evaluation's test records
    trainable: list[str]  # LoRA A/B (+ classifier head): trained, aggregated, broadcast
    static: list[str]  # scope "full": base linear weights, private but never trained
    initial: dict[str, torch.Tensor]  # the trainable tensors before any training (LoRA init)
    model_load_s: float
    store: ResultStore | None = None  # evaluations and signals shared with other runs
    # the learning curve's test records (a prefix of test_data) and the validation records
    # (None without a validation split)
    curve_data: dict[str, torch.Tensor] | None = None
    val_data: dict[str, torch.Tensor] | None = None
    _records: dict[str, Any] = field(default_factory=dict, repr=False)  # per model key

    @property
    def task(self) -> str:
        return self.dataset.task

    def model_key(self, loaded: Mapping[str, torch.Tensor]) -> str | None:
        """The key of the run's model with ``loaded`` as its private tensors; None when
        ``loaded`` does not set every private tensor (the state would depend on earlier loads)."""
        private = [*self.trainable, *self.static]
        if not set(private) <= set(loaded):
            return None
        config = self.cfg.to_dict()
        device = device_id(self.cfg.system.device)  # none on the CPU: keys as before devices
        return content_key(model=config["model"], lora=config["lora"],
                           tensors=tensors_key({n: loaded[n] for n in private}),
                           **({"device": device} if device else {}))

    def shared(self, kind: str, *, loaded: Mapping[str, torch.Tensor],
               data: Mapping[str, torch.Tensor], compute: Callable[[], Any],
               dump: Callable[[Any], Any] | None = None,
               load: Callable[[Any], Any] | None = None) -> Any:
        """``compute()`` (a measurement of the model with ``loaded`` in it on ``data``), or the
        stored result of an identical one when the run has a store."""
        model = self.model_key(loaded) if self.store is not None else None
        return shared_result(self.store, kind, model=model, data=data, compute=compute,
                             dump=dump, load=load, task=self.task,
                             batch_size=self.cfg.eval.batch_size)

    def eval_data(self, on: str) -> dict[str, torch.Tensor]:
        """The records of evaluation ``on``: ``test`` (final), ``curve`` or ``validation``."""
        data = {"test": self.test_data, "curve": self.curve_data or self.test_data,
                "validation": self.val_data}.get(on)
        if data is None:
            raise FedlppError(f"No {on!r} records to evaluate on (allowed: test, curve, "
                              "validation when data.val_fraction > 0)")
        return data

    def record_losses(self, tensors: Mapping[str, torch.Tensor], *, on: str = "test") -> PerRecord:
        """Per-record results (:func:`fedlpp.evaluate.per_record_losses`) on the records of
        evaluation ``on`` (:meth:`eval_data`) of the shared model with ``tensors`` (private
        tensors: a master or a proxy) loaded into it; computed once per model and records in
        this process, and once per suite through the store."""
        if on == "curve" and self.curve_data is None:
            on = "test"  # the curve uses the final evaluation's records: measure them once
        data = self.eval_data(on)
        key = self.model_key(tensors)
        if key is not None and (key, on) in self._records:
            return self._records[key, on]

        def compute() -> PerRecord:
            load_state(self.bundle.model, dict(tensors))
            return per_record_losses(self.bundle.model, data, task=self.task,
                                     batch_size=self.cfg.eval.batch_size)

        result = self.shared("records", loaded=tensors, data=data, compute=compute,
                             dump=_records_to_arrays, load=_records_from_arrays)
        if key is not None:
            self._records[key, on] = result
        return result

    def utility(self, tensors: Mapping[str, torch.Tensor], *, on: str = "test") -> dict[str, float]:
        """Utility on the records of evaluation ``on`` of the model with ``tensors`` loaded."""
        return summarize(*self.record_losses(tensors, on=on),
                         labels=self.eval_data(on)["labels"], task=self.task)


PerRecord = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


def _records_to_arrays(r: PerRecord) -> dict[str, np.ndarray]:
    losses, counts, preds = r
    out = {"losses": losses.numpy(), "counts": counts.numpy()}
    return out if preds is None else {**out, "preds": preds.numpy()}


def _records_from_arrays(a: Mapping[str, np.ndarray]) -> PerRecord:
    preds = torch.from_numpy(a["preds"].copy()) if "preds" in a else None
    return torch.from_numpy(a["losses"].copy()), torch.from_numpy(a["counts"].copy()), preds


def prepare_run(cfg: RunConfig) -> RunContext:
    """Load and check everything for ``cfg``; ``ctx.cfg`` is the resolved config
    (:func:`fedlpp.run.resolve.resolve`: plugins checked, quantizer defaults filled in)."""
    cfg = resolve(cfg)
    quantizer = quantizer_from(cfg.quant)
    uploader = quantizer_from(cfg.quant, upload=True)

    dataset = load_dataset(cfg.data, seed=cfg.seed)
    splits = make_splits(dataset, cfg=cfg.data, num_clients=cfg.fed.num_clients, seed=cfg.seed)
    check_local_epochs(cfg, splits)

    t0 = time.perf_counter()
    num_labels = len(dataset.label_names) if dataset.task == "cls" and dataset.label_names else None
    bundle = load_model(cfg.model, cfg.lora, task=dataset.task, num_labels=num_labels, seed=cfg.seed,
                        device=resolve_device(cfg.system.device))
    model_load_s = time.perf_counter() - t0
    static = base_linear_weight_names(bundle.model) if cfg.quant.scope == "full" else []
    check_against_model(cfg, bundle, static=static)

    def enc(indices: list[int]) -> dict[str, torch.Tensor]:
        return encode([dataset.records[i] for i in indices], tokenizer=bundle.tokenizer,
                      task=dataset.task, seq_len=cfg.data.seq_len)

    test_idx = splits.test[: cfg.eval.max_records] if cfg.eval.max_records else splits.test
    curve_n = cfg.eval.curve_records
    val_idx = splits.validation[: cfg.eval.val_records or None]
    initial = trainable_state(bundle.model)
    return RunContext(
        cfg=cfg, dataset=dataset, splits=splits, bundle=bundle, quantizer=quantizer,
        uploader=uploader, client_data=[enc(m) for m in splits.members], test_data=enc(test_idx),
        trainable=list(initial), static=static, initial=initial, model_load_s=model_load_s,
        curve_data=enc(test_idx[:curve_n]) if 0 < curve_n < len(test_idx) else None,
        val_data=enc(val_idx) if val_idx else None,
    )


# a block this large is cheap however small the tensors (the quantizer pads each tensor to a
# whole block: 2**16 float32 = 256 KiB) and is the usual "whole tensor" setting (paper suite)
WHOLE_TENSOR_BLOCK = 2**16


def check_local_epochs(cfg: RunConfig, splits: Splits) -> None:
    """With ``fed.local_steps = 0`` a client takes ``ceil(local_epochs * n / batch_size)`` steps
    (at least one), and one step trains on ``min(batch_size, n)`` of its ``n`` member records: so
    ``local_epochs`` must ask for at least that many on every client, else the run silently trains
    more than asked (``1e-9`` epochs would be a whole batch)."""
    fed = cfg.fed
    if fed.local_steps > 0:  # local_epochs is not read
        return
    need, client = max((min(fed.batch_size, len(m)) / len(m), c)
                       for c, m in enumerate(splits.members))
    n = len(splits.members[client])
    check(fed.local_epochs >= need, "fed.local_epochs", fed.local_epochs,
          f">= {need:.4g} here: with fed.local_steps=0 one step trains on {min(fed.batch_size, n)} "
          f"of client {client}'s {n} member records (fed.batch_size={fed.batch_size})")


def max_positions(bundle: ModelBundle) -> int | None:
    """The longest input the model takes (its config's position count), or None if unstated."""
    config = getattr(bundle.model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_against_model(cfg: RunConfig, bundle: ModelBundle, *, static: list[str]) -> None:
    """``data.seq_len`` within the model's positions; ``quant.block_size`` within the largest
    private tensor (LoRA A/B and a classifier head, plus the base linear weights of scope
    ``full``), or :data:`WHOLE_TENSOR_BLOCK` when every tensor is smaller."""
    positions = max_positions(bundle)
    if positions is not None and cfg.data.seq_len > positions:
        raise FedlppError(f"Invalid data.seq_len: {cfg.data.seq_len} (allowed: 4..{positions}: "
                          f"model '{cfg.model.name}' takes at most {positions} positions)")
    state = bundle.model.state_dict()
    private = [n for n, p in bundle.model.named_parameters() if p.requires_grad] + static
    largest = max(state[n].numel() for n in private)
    block = cfg.quant.block_size
    if block is not None and block > max(largest, WHOLE_TENSOR_BLOCK):
        raise FedlppError(
            f"Invalid quant.block_size: {block} (allowed: 1..{max(largest, WHOLE_TENSOR_BLOCK)}: "
            f"the largest private tensor of model '{cfg.model.name}' has {largest} values, and "
            f"a block beyond it is the whole tensor, as {WHOLE_TENSOR_BLOCK} already gives)")
