"""``fedlpp``: the paper's method. The server keeps a float32 master of the private tensors and
broadcasts it quantized; clients train LoRA from the dequantized proxy; the server applies the
clients' mean progress straight-through (``master += server_lr * (mean - broadcast)``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from fedlpp.defenses import Defense
from fedlpp.federation.client import LocalModel, client_round
from fedlpp.federation.server import FedLPPServer
from fedlpp.methods import METHODS, Method
from fedlpp.protocol.records import Step, Upload
from fedlpp.protocol.trainer import StepCallback
from fedlpp.protocol.wire import Layout

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

    def round(self, *, client: int, rnd: int, payload: bytes,
              on_step: StepCallback | None = None) -> Upload:
        """Client ``client``'s step of round ``rnd`` from the payload it received; ``on_step``
        gets each step with its batch as dataset record ids (the evaluation's ground truth of
        who was trained on; it is not part of what the client sends)."""
        records = self.ctx.splits.members[client]

        def step(s: Step) -> None:
            if on_step is not None:
                on_step(Step(batch=[records[i] for i in s.batch], loss=s.loss, seconds=s.seconds))

        return client_round(client=client, rnd=rnd, payload=payload, local=self.local,
                            data=self.ctx.client_data[client], fed=self.ctx.cfg.fed,
                            uploader=self.ctx.uploader, seed=self.ctx.cfg.seed,
                            defenses=self.defenses, adversaries=self.adversaries, on_step=step)


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
