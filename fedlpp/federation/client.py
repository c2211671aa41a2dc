"""The client step of a round: decode the broadcast -> load it -> train LoRA locally -> encode
the upload. What comes back is bytes, exactly what the client sends.

The simulated clients of a process share one model (the base is loaded once); only the private
tensors are swapped in, so a client's state is exactly what it received.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fedlpp.adversaries import Adversary
from fedlpp.config import FedConfig
from fedlpp.data.batching import batch_slices, trim
from fedlpp.defenses import Defense
from fedlpp.device import model_device, to_device
from fedlpp.models import load_state, trainable_state
from fedlpp.protocol.records import LocalUpdate, Step, Upload
from fedlpp.protocol.trainer import StepCallback, Trainer
from fedlpp.protocol.wire import Layout, decode_body, encode_upload
from fedlpp.quant import Quantizer
from fedlpp.seeding import derive_seed, seed_torch, torch_generator


def num_local_steps(fed: FedConfig, *, num_examples: int) -> int:
    """``fed.local_steps``, or enough steps for ``fed.local_epochs`` passes when it is 0."""
    if fed.local_steps > 0:
        return fed.local_steps
    return max(1, math.ceil(fed.local_epochs * num_examples / fed.batch_size))


def local_train(*, model: torch.nn.Module, data: Mapping[str, torch.Tensor], steps: int,
                batch_size: int, lr: float, weight_decay: float = 0.0, seed: int,
                on_step: StepCallback | None = None,
                project: Callable[[], None] | None = None) -> list[float]:
    """AdamW on the model's trainable tensors for ``steps`` seeded batches of ``data``.

    Shared by honest clients and by attacks that keep training (``project`` is called after each
    step, e.g. to clamp parameters into a box). ``on_step`` gets each :class:`Step` (the batch's
    row positions in ``data``, the loss, the seconds).
    Returns the per-step losses.
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    gen = torch_generator(seed)
    seed_torch(seed)  # dropout, if configured
    n = int(data["input_ids"].shape[0])
    device = model_device(model)
    losses: list[float] = []
    for idx in batch_slices(n, batch_size=batch_size, steps=steps, generator=gen):
        t0 = time.perf_counter()
        batch = to_device(trim({k: v[idx] for k, v in data.items()}), device)
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if project is not None:
            with torch.no_grad():
                project()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(Step(batch=idx.tolist(), loss=losses[-1], seconds=time.perf_counter() - t0))
    return losses


class LocalModel:
    """A client's model: loads a broadcast payload into it, decoding only what it must.

    A payload is decoded once however many simulated clients train from it. A frozen tensor
    (scope ``full``'s base weights, resent every round) is decoded again only when its bytes
    change, and copied into the model again only when something else wrote there since (its
    version counter moved, e.g. an evaluation of the master); like any client, it keeps the
    decoded frozen weights for that.
    """

    def __init__(self, model: torch.nn.Module, *, layout: Layout, quantizer: Quantizer) -> None:
        self.model, self.layout, self.quantizer = model, layout, quantizer
        self._targets = dict(model.named_parameters(remove_duplicate=False))
        self._frozen = {n for n in layout.names if n in self._targets
                        and not self._targets[n].requires_grad}
        self._payload: bytes | None = None
        self._trainable: dict[str, torch.Tensor] = {}
        self._decoded: dict[str, tuple[bytes, torch.Tensor]] = {}  # frozen: bytes -> tensor
        self._version: dict[str, int] = {}  # frozen: the parameter's version after our copy

    def receive(self, payload: bytes) -> dict[str, torch.Tensor]:
        """Load ``payload`` into the model; returns the decoded trainable tensors."""
        if payload is not self._payload:
            packed = decode_body(payload, layout=self.layout)
            self._trainable = {n: self.quantizer.dequantize(p) for n, p in packed.items()
                               if n not in self._frozen}
            for name in self._frozen:
                raw = packed[name].to_bytes()
                if name not in self._decoded or self._decoded[name][0] != raw:
                    self._decoded[name] = (raw, self.quantizer.dequantize(packed[name]))
                    self._version.pop(name, None)
            self._payload = payload
        with torch.no_grad():
            for name, (_, tensor) in self._decoded.items():
                param = self._targets[name]
                if self._version.get(name) != param._version:
                    param.copy_(tensor)
                    self._version[name] = param._version
        load_state(self.model, self._trainable)
        return self._trainable


def encode_update(update: LocalUpdate, *, quantizer: Quantizer, seed: int) -> bytes:
    """An upload message of ``update`` under the upload quantizer (fp32 for ``none``)."""
    packed = {n: quantizer.quantize(t, seed=derive_seed(seed, i))
              for i, (n, t) in enumerate(update.tensors.items())}
    layout = Layout.of(update.tensors, quantizer=quantizer)
    return encode_upload(packed, layout=layout, num_examples=update.num_examples,
                         train_loss=update.train_loss)


def client_round(*, client: int, rnd: int, payload: bytes, local: LocalModel,
                 data: Mapping[str, torch.Tensor], fed: FedConfig, uploader: Quantizer, seed: int,
                 defenses: Sequence[Defense] = (), adversaries: Sequence[Adversary] = (),
                 on_step: StepCallback | None = None) -> Upload:
    """One client's round: decode -> load -> train -> encode; returns what it sends.

    Args:
        client, rnd: who and when (they seed the batch order, the upload quantizer and any
            adversarial behaviour, so a client's step is reproducible).
        payload: the broadcast bytes as received.
        local: the client's model (shared by the simulated clients of a process).
        data: the client's encoded member records.
        fed: local training hyperparameters.
        uploader: the upload quantizer.
        seed: the run seed.
        defenses: their ``around_training`` hooks wrap the local trainer.
        adversaries: behaviours that apply to this client and round edit its result.
        on_step: called with each :class:`Step` (batch positions in ``data``, loss, seconds).

    A client that raises is reported as failed (``Upload.error``), never ending the run.
    """
    try:
        received = local.receive(payload)
        train: Trainer = local_train
        for d in defenses:
            train = d.around_training(train, client=client, rnd=rnd)
        n = int(data["input_ids"].shape[0])
        losses = train(model=local.model, data=data, steps=num_local_steps(fed, num_examples=n),
                       batch_size=fed.batch_size, lr=fed.lr, weight_decay=fed.weight_decay,
                       seed=derive_seed(seed, rnd, client), on_step=on_step)
        update = LocalUpdate(tensors=trainable_state(local.model), num_examples=n,
                             train_loss=sum(losses) / len(losses))
        return upload_of(update, client=client, rnd=rnd, received=received, uploader=uploader,
                         seed=seed, adversaries=adversaries)
    except Exception as exc:  # noqa: BLE001 - a broken client is named by the server, the run goes on
        return failed_upload(client, exc)


def upload_of(update: LocalUpdate, *, client: int, rnd: int, received: Mapping[str, torch.Tensor],
              uploader: Quantizer, seed: int, adversaries: Sequence[Adversary] = ()) -> Upload:
    """What client ``client`` sends for its trained ``update`` in round ``rnd``: the update as
    its acting adversarial behaviours edit it, encoded, then its bytes as they edit those."""
    acting = [a for a in adversaries if a.acts(client=client, rnd=rnd)]
    rng = torch_generator(derive_seed(seed, rnd, client, 2))
    for a in acting:
        update = a.tamper_update(update, received=received, rng=rng)
    message = encode_update(update, quantizer=uploader, seed=derive_seed(seed, rnd, client, 1))
    byte_rng = np.random.default_rng(derive_seed(seed, rnd, client, 3))
    for a in acting:
        message = a.tamper_message(message, rng=byte_rng)
    return Upload(client=client, data=message)


def failed_upload(client: int, exc: BaseException) -> Upload:
    """The upload of a client that raised: no bytes, its error in one line."""
    return Upload(client=client, data=None, error=_one_line(exc))


def _one_line(exc: Any) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
