"""``fedsp``: FedSP (Dong et al. 2023, "Tunable Soft Prompts are Messengers in Federated
Learning"), the baseline the FedLPP paper compares with.

The server keeps its full model (frozen) with peft prefix prompts. Before round 1 it builds an
auxiliary model (its first decoder layer repeated to the full depth, one shared set of weights)
and distils it towards the full model's last hidden states (MSE). As in the authors' code
(FederatedScope, branch ``fedsp``: the server trains on a shard of the data no client holds),
the server distils on its own text: records of the configured dataset that the run did not
draw, so no client's records, no test record and no membership candidate. Clients receive the
auxiliary model once (not counted in the per-round bytes).

Each round the server broadcasts the prompts through the wire format FedLPP uses (packed
bytes; quantized by ``quant.name``: ``none`` sends float32, FedSP as published; another
quantizer sends the prompts quantized and the server applies the clients' progress
straight-through, as FedLPP does). A client loads them into its auxiliary model and, as in the
authors' alternating training, first tunes its auxiliary model's own weights (the shared layer
and norms, prompts frozen; these never leave the client and persist across its rounds), then
the prompts (weights frozen) with FedLPP's client step, and uploads the prompts alone. The
server checks and averages them (example-weighted) with FedLPP's server.

Utility: ``central`` is the full model with the global prompts, ``proxy`` the auxiliary model
(as distilled) with the prompts a client receives, ``base`` the full model with the initial
prompts. Differences from the paper at this scale: the server does not also train its prompts
on its own data between rounds; the prompts start as the full model's keys and values on a few
tokens of the server's text rather than at random (Li and Liang 2021; random prefixes multiply a
pretrained model's perplexity by ~35, which a few rounds cannot undo), so round 1's broadcast
shows clients those activations, the only view of the full model they get beyond the auxiliary
model; and the distillation budget is a few dozen steps, not thousands, so the auxiliary model
(and the proxy) is far from the full model.

Options are :class:`FedSPConfig`'s. ``fed.method`` names a method without options, so a run
uses the defaults; a subclass with other defaults, registered under its own name, changes them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from fedlpp.defenses import Defense
from fedlpp.federation.broadcast import Broadcast
from fedlpp.federation.client import LocalModel, client_round, local_train, num_local_steps
from fedlpp.federation.server import FedLPPServer
from fedlpp.methods import METHODS, Method
from fedlpp.methods.fedsp_aux import aux_weight_names
from fedlpp.methods.fedsp_model import AUX, FULL, PROMPTS, USE_AUX, PromptedModels, attach
from fedlpp.models import load_state
from fedlpp.protocol.records import Step, Upload, Verdict
from fedlpp.protocol.trainer import StepCallback, Trainer
from fedlpp.protocol.wire import Layout
from fedlpp.seeding import derive_seed
from fedlpp.typed import check

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from fedlpp.adversaries import Adversary
    from fedlpp.run.context import RunContext

AUX_STAGE = 4  # seed tag of the auxiliary-weights stage (the client step uses tags 0..3)


@dataclass
class FedSPConfig:
    """FedSP's options (``fed.*`` sets rounds, local steps, batch size and learning rate)."""

    virtual_tokens: int = 8  # prefix length (prompts per layer)
    aux_layer: int = 0  # the decoder layer the auxiliary model repeats
    distill_steps: int = 30  # server-side distillation of the auxiliary model, once
    distill_batch: int = 8
    distill_lr: float = 5e-3
    distill_records: int = 240  # server records drawn for it (outside the run's draw)
    aux_steps: int = -1  # local steps on the auxiliary weights per round; -1 = as the prompts'
    prompt_init: Literal["activations", "random"] = "activations"

    def __post_init__(self) -> None:
        lowest = {"virtual_tokens": 1, "distill_batch": 1, "distill_records": 1, "aux_layer": 0,
                  "distill_steps": 0, "aux_steps": -1}
        for key, low in lowest.items():
            value = getattr(self, key)
            check(value >= low, f"fedsp option {key}", value, f"an integer >= {low}")
        check(self.distill_lr > 0, "fedsp option distill_lr", self.distill_lr, "> 0")


class FedSPServer:
    """FedLPP's server over the prompts alone (broadcast, checks, weighted mean, trace). The
    engine's ``master`` and a broadcast's ``proxy`` name the model that reads them (``use_aux``)."""

    static: frozenset[str] = frozenset()

    def __init__(self, inner: FedLPPServer) -> None:
        self.inner = inner
        self._sent: dict[int, Broadcast] = {}

    @property
    def master(self) -> dict[str, torch.Tensor]:
        """The global prompts, read by the full model (central)."""
        return {**self.inner.master, USE_AUX: torch.tensor(FULL)}

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        return self.master

    def broadcast(self, rnd: int) -> Broadcast:
        """The prompts as sent; the proxy is the auxiliary model reading them."""
        sent = self.inner.broadcast(rnd)
        if rnd not in self._sent or self._sent[rnd].packed is not sent.packed:
            self._sent = {r: b for r, b in self._sent.items() if r >= rnd - 1}
            self._sent[rnd] = Broadcast(round=sent.round, packed=sent.packed,
                                        proxy={**sent.proxy, USE_AUX: torch.tensor(AUX)})
        return self._sent[rnd]

    @property
    def aggregation_report(self) -> dict[str, Any]:
        """What the aggregation rule did in the last round."""
        return self.inner.aggregation_report

    def aggregate(self, rnd: int, uploads: Iterable[Upload], *,
                  observe: Callable[[Verdict], None] | None = None,
                  ) -> tuple[list[Verdict], dict | None]:
        """FedLPPServer's aggregation of the uploaded prompts."""
        return self.inner.aggregate(rnd, uploads, observe=observe)


class FedSPClient:
    """Every simulated client trains one auxiliary model; each client's own auxiliary weights
    are swapped in for its round and kept for its next one."""

    def __init__(self, ctx: RunContext, models: PromptedModels, *, aux_steps: int,
                 defenses: Sequence[Defense], adversaries: Sequence[Adversary]) -> None:
        self.ctx, self.aux_steps = ctx, aux_steps
        self.defenses, self.adversaries = list(defenses), list(adversaries)
        self.model = PromptedModels(aux=copy.deepcopy(models.aux))
        base = self.model.aux.get_base_model()
        names = set(aux_weight_names(base))
        own = {id(p) for n, p in base.named_parameters() if n in names}
        self.weights = [n for n, p in self.model.named_parameters() if id(p) in own]
        self.received = {n: p.detach().clone() for n, p in self.model.named_parameters()
                         if n in self.weights}  # the distilled weights every client starts from
        self.own: dict[int, dict[str, torch.Tensor]] = {}
        layout = Layout.of({PROMPTS: torch.empty(models.prompts.shape, device="meta")},
                           quantizer=ctx.quantizer)
        self.local = LocalModel(self.model, layout=layout, quantizer=ctx.quantizer)

    def round(self, *, client: int, rnd: int, payload: bytes,
              on_step: StepCallback | None = None) -> Upload:
        """Client ``client``'s round: its auxiliary weights, then the prompts; sends the prompts."""
        records = self.ctx.splits.members[client]

        def step(s: Step) -> None:
            if on_step is not None:
                on_step(Step(batch=[records[i] for i in s.batch], loss=s.loss, seconds=s.seconds))

        load_state(self.model, self.own.get(client, self.received))
        try:
            self.tune_aux(client=client, rnd=rnd, payload=payload, on_step=step)
        except Exception as exc:  # noqa: BLE001 - a broken client is named by the server
            return Upload(client=client, data=None, error=" ".join(f"{type(exc).__name__}: "
                                                                   f"{exc}".split())[:300])
        upload = client_round(client=client, rnd=rnd, payload=payload, local=self.local,
                              data=self.ctx.client_data[client], fed=self.ctx.cfg.fed,
                              uploader=self.ctx.uploader, seed=self.ctx.cfg.seed,
                              defenses=self.defenses, adversaries=self.adversaries, on_step=step)
        self.own[client] = {n: p.detach().clone() for n, p in self.model.named_parameters()
                            if n in self.weights}
        return upload

    def tune_aux(self, *, client: int, rnd: int, payload: bytes, on_step: StepCallback) -> None:
        """The auxiliary-weights stage: prompts as received and frozen, the weights trained."""
        fed, data = self.ctx.cfg.fed, self.ctx.client_data[client]
        n = int(data["input_ids"].shape[0])
        steps = self.aux_steps if self.aux_steps >= 0 else num_local_steps(fed, num_examples=n)
        if steps == 0:
            return
        self.local.receive(payload)
        train: Trainer = local_train
        for d in self.defenses:
            train = d.around_training(train, client=client, rnd=rnd)
        self._trainable(self.weights)
        try:
            train(model=self.model, data=data, steps=steps, batch_size=fed.batch_size, lr=fed.lr,
                  weight_decay=fed.weight_decay, seed=derive_seed(self.ctx.cfg.seed, rnd, client,
                                                                  AUX_STAGE), on_step=on_step)
        finally:
            self._trainable([PROMPTS])

    def _trainable(self, names: list[str]) -> None:
        for name, param in self.model.named_parameters():
            if name == PROMPTS or name in self.weights:
                param.requires_grad_(name in names)


@METHODS.register("fedsp")
class FedSP(Method):
    """FedSP: prompts as messengers between the server's full model and clients' auxiliary one."""

    Config = FedSPConfig
    # what a fedsp trace supports: (attack kind, target). Recovery attacks need payloads of a
    # LoRA master; the proxy and update targets a client's auxiliary model, not in the trace.
    attackable = frozenset({("membership", "central")})

    def server(self, ctx: RunContext, *, defenses: Sequence[Defense]) -> FedSPServer:
        models = attach(ctx, self.config)
        cfg = ctx.cfg
        prompts = {PROMPTS: models.prompts.detach().float().clone()}
        inner = FedLPPServer(master=prompts, reference={PROMPTS: models.prompts.detach()},
                             static=[], quantizer=ctx.quantizer, uploader=ctx.uploader,
                             enrolled=[len(m) for m in ctx.splits.members], fed=cfg.fed,
                             aggregator=cfg.aggregator, defenses=defenses, seed=cfg.seed)
        return FedSPServer(inner)

    def install(self, ctx: RunContext) -> None:
        """Make ``ctx``'s model the one a fedsp run is evaluated on (to attack its trace)."""
        attach(ctx, self.config)

    def client(self, ctx: RunContext, *, defenses: Sequence[Defense],
               adversaries: Sequence[Adversary]) -> FedSPClient:
        models = attach(ctx, self.config)
        return FedSPClient(ctx, models, aux_steps=self.config.aux_steps, defenses=defenses,
                           adversaries=adversaries)
