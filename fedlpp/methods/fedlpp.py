"""``fedlpp``: the paper's method. The server keeps a float32 master of the private tensors and
broadcasts it quantized; clients train LoRA from the dequantized proxy; the server applies the
clients' mean progress straight-through (``master += server_lr * (mean - broadcast)``).

The clients of a round can train as one batched computation (``system.batch_clients``,
:mod:`fedlpp.federation.batched`) where that gives what each would train alone; the run's
``meta.local_training`` says, per round, which path ran and why.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from fedlpp.data.encode import pad_id
from fedlpp.defenses import Defense
from fedlpp.device import model_device
from fedlpp.federation.batched import ClientJob, train_batched, unbatchable_reason
from fedlpp.federation.client import (
    LocalModel,
    client_round,
    failed_upload,
    num_local_steps,
    upload_of,
)
from fedlpp.federation.server import FedLPPServer
from fedlpp.methods import METHODS, Method
from fedlpp.models import trainable_state
from fedlpp.protocol.records import LocalUpdate, Step, Upload
from fedlpp.protocol.trainer import StepCallback
from fedlpp.protocol.wire import Layout
from fedlpp.seeding import derive_seed

if TYPE_CHECKING:
    from fedlpp.adversaries import Adversary
    from fedlpp.run.context import RunContext


class FedLPPClient:
    """The client part: every simulated client of a process trains the one shared model."""

    def __init__(self, ctx: RunContext, *, defenses: Sequence[Defense],
                 adversaries: Sequence[Adversary]) -> None:
        self.ctx, self.defenses, self.adversaries = ctx, list(defenses), list(adversaries)
        model = ctx.bundle.model
        state = model.state_dict()
        # the master's layout (float32, trainable then static), from shapes alone
        shapes = {n: torch.empty(state[n].shape, device="meta")
                  for n in [*ctx.trainable, *ctx.static]}
        self.local = LocalModel(model, layout=Layout.of(shapes, quantizer=ctx.quantizer),
                                quantizer=ctx.quantizer)
        self.paths: dict[int, str] = {}  # round -> how its clients trained (rounds())

    def round(self, *, client: int, rnd: int, payload: bytes,
              on_step: StepCallback | None = None) -> Upload:
        """Client ``client``'s step of round ``rnd`` from the payload it received; ``on_step``
        gets each step with its batch as dataset record ids (the evaluation's ground truth of
        who was trained on; it is not part of what the client sends)."""
        return client_round(client=client, rnd=rnd, payload=payload, local=self.local,
                            data=self.ctx.client_data[client], fed=self.ctx.cfg.fed,
                            uploader=self.ctx.uploader, seed=self.ctx.cfg.seed,
                            defenses=self.defenses, adversaries=self.adversaries,
                            on_step=self._record_ids(client, on_step))

    def rounds(self, clients: Sequence[int], *, rnd: int, payload: bytes,
               on_step: Callable[[int, Step], None]) -> Iterator[Upload]:
        """The uploads of round ``rnd``'s ``clients`` in their order: trained as one batched
        computation where it applies (:meth:`batch_reason`), else one after another.
        ``paths[rnd]`` records which ran, and why."""
        reason = self.batch_reason(clients, rnd=rnd)
        self.paths[rnd] = "batched" if reason is None else f"sequential: {reason}"
        if reason is not None:
            for c in clients:
                yield self.round(client=c, rnd=rnd, payload=payload,
                                 on_step=functools.partial(on_step, c))
            return
        for chunk in self._chunks(clients):
            yield from self._batched(chunk, rnd=rnd, payload=payload, on_step=on_step)

    def batch_reason(self, clients: Sequence[int], *, rnd: int) -> str | None:
        """Why round ``rnd``'s clients train one after another (None: they train batched)."""
        setting = self.ctx.cfg.system.batch_clients
        if setting == "off" or len(clients) < 2:
            return "system.batch_clients=off" if setting == "off" else "one client"
        if setting == "auto" and model_device(self.ctx.bundle.model).type != "cuda":
            return "system.batch_clients=auto batches on a CUDA device only"
        if any(type(d).around_training is not Defense.around_training for d in self.defenses):
            return "a defense acts inside local training"
        if any(a.acts(client=c, rnd=rnd) for a in self.adversaries for c in clients):
            return "an adversarial client acts this round"
        return unbatchable_reason(self.ctx.bundle.model)

    def _chunks(self, clients: Sequence[int]) -> Iterator[list[int]]:
        """Consecutive groups of clients whose batch rows fit ``system.max_batch_records``."""
        per = max(1, self.ctx.cfg.system.max_batch_records // self.ctx.cfg.fed.batch_size)
        for i in range(0, len(clients), per):
            yield list(clients[i : i + per])

    def _batched(self, clients: list[int], *, rnd: int, payload: bytes,
                 on_step: Callable[[int, Step], None]) -> Iterator[Upload]:
        ctx, fed, seed = self.ctx, self.ctx.cfg.fed, self.ctx.cfg.seed
        try:
            received = self.local.receive(payload)
            jobs = [ClientJob(data=ctx.client_data[c], seed=derive_seed(seed, rnd, c),
                              steps=num_local_steps(fed, num_examples=len(ctx.splits.members[c])),
                              on_step=self._record_ids(c, functools.partial(on_step, c)))
                    for c in clients]
            trained = train_batched(model=ctx.bundle.model, jobs=jobs,
                                    start=trainable_state(ctx.bundle.model),
                                    batch_size=fed.batch_size, lr=fed.lr,
                                    weight_decay=fed.weight_decay, task=ctx.task,
                                    pad_id=pad_id(ctx.bundle.tokenizer))
        except Exception as exc:  # noqa: BLE001 - every client of the chunk failed, the run goes on
            yield from (failed_upload(c, exc) for c in clients)
            return
        for c, (tensors, losses) in zip(clients, trained, strict=True):
            update = LocalUpdate(tensors=tensors, num_examples=len(ctx.splits.members[c]),
                                 train_loss=sum(losses) / len(losses))
            yield upload_of(update, client=c, rnd=rnd, received=received, uploader=ctx.uploader,
                            seed=seed, adversaries=self.adversaries)

    def _record_ids(self, client: int, on_step: StepCallback | None) -> StepCallback:
        """``on_step`` with each step's batch as dataset record ids instead of row positions."""
        records = self.ctx.splits.members[client]

        def step(s: Step) -> None:
            if on_step is not None:
                on_step(Step(batch=[records[i] for i in s.batch], loss=s.loss, seconds=s.seconds))

        return step


@METHODS.register("fedlpp")
class FedLPP(Method):
    """FedLPP: quantized broadcast, local LoRA training, straight-through aggregation."""

    def server(self, ctx: RunContext, *, defenses: Sequence[Defense]) -> FedLPPServer:
        state = ctx.bundle.model.state_dict()
        master = {n: state[n].detach().to("cpu", torch.float32, copy=True)
                  for n in [*ctx.trainable, *ctx.static]}
        reference = {n: state[n].detach().cpu() for n in ctx.trainable}
        cfg = ctx.cfg
        return FedLPPServer(master=master, reference=reference, static=ctx.static,
                            quantizer=ctx.quantizer, uploader=ctx.uploader,
                            enrolled=[len(m) for m in ctx.splits.members], fed=cfg.fed,
                            aggregator=cfg.aggregator, defenses=defenses, seed=cfg.seed)

    def client(self, ctx: RunContext, *, defenses: Sequence[Defense],
               adversaries: Sequence[Adversary]) -> FedLPPClient:
        return FedLPPClient(ctx, defenses=defenses, adversaries=adversaries)
