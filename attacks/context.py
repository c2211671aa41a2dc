"""What attacks run against: a finished run (trace + its model and data), and per-threat-model views.

``AttackContext`` loads a run once (trace, dataset, splits, the shared model) and caches signals;
``Observation`` is the slice of it one threat model may see. Asking a view for something outside
its threat model, or that the trace did not record, is a one-line FedlppError.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attacks.signals import SampleSignals, compute_signals
from fedlpp.errors import FedlppError
from fedlpp.models import load_state
from fedlpp.quant import quantizer_for
from fedlpp.run.context import RunContext, prepare_run
from fedlpp.run.trace_reader import TraceReader
from fedlpp.store import ResultStore, tensors_key

THREAT_MODELS = ("outsider", "client", "colluding", "server")


def _prepare(config: Any) -> RunContext:
    """The run prepared again from its config, its model installed as its training method
    evaluates it (a method's optional ``install(run)``, e.g. FedSP's prompt-tuned models)."""
    from fedlpp.methods import build_method

    run = prepare_run(config)
    install = getattr(build_method(config.fed.method), "install", None)
    if install is not None:
        install(run)
    return run


def _static_shapes(run: RunContext) -> dict[str, tuple[int, ...]]:
    """Scope ``full``: the shape of each private base weight of the run's model."""
    if not run.static:
        return {}
    state = run.bundle.model.state_dict()
    return {n: tuple(state[n].shape) for n in run.static}


class AttackContext:
    """A finished run, loaded once for every attack on it: its trace verified first (a damaged
    one is a one-line FedlppError naming the file, see :mod:`fedlpp.run.trace_check`)."""

    def __init__(self, run_dir: str | Path, *, run: RunContext | None = None,
                 store: ResultStore | None = None) -> None:
        """Load the run in ``run_dir``; ``run`` reuses the prepared run that produced it (and its
        store); ``store`` shares evaluations and signals with other runs (a suite's cells)."""
        self.trace = TraceReader(run_dir)  # result and trace verified (files, checksums)
        self.run: RunContext = run or _prepare(self.trace.config)
        if store is not None:
            self.run.store = store
        if self.run.splits.fingerprint != self.trace.splits.fingerprint:
            raise FedlppError(f"The data of run {str(run_dir)!r} no longer matches its trace "
                              "(dataset fingerprint differs): were the data files changed?")
        # and the tensors files have the layout of the run's model and quantizer
        self.trace.verify_layout(trainable=self.run.initial, static=_static_shapes(self.run),
                                 quantizer=self.run.quantizer)
        self.task = self.run.dataset.task
        # the model before any fine-tuning (the seeded LoRA init), so no trace is needed
        self.initial = self.run.initial
        # scope "full": the master's private base weights, completed into every model loaded
        self.private_base = self.trace.private_base()
        self._signals: dict[str, dict[int, SampleSignals]] = {}  # model -> record -> signals
        self._encoded: dict[str, dict[str, torch.Tensor]] = {}
        # attacks' shared work beyond signals (LiRA's shadow models), keyed by its maker
        self.cache: dict[Hashable, Any] = {}

    # --- models -------------------------------------------------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        return self.run.bundle.model

    @contextlib.contextmanager
    def loaded(self, tensors: Mapping[str, torch.Tensor]) -> Iterator[torch.nn.Module]:
        """The shared model with ``tensors`` (private tensors of some model) loaded into it.

        In scope ``full`` a model given by its trainable tensors alone gets the master's base.
        """
        load_state(self.model, {**self.private_base, **tensors})
        yield self.model

    def dequantize(self, packed: Mapping) -> dict[str, torch.Tensor]:
        """A payload as a client sees it."""
        return {n: quantizer_for(p).dequantize(p) for n, p in packed.items()}

    def utility(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Utility on the run's test records, exactly as the run measured central and proxy
        (the same measurement, shared through the run's store when it has one)."""
        return self.run.utility({**self.private_base, **tensors})

    def record_utility(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Per-record utility on the same test records as :meth:`utility` (float64 arrays).

        ``{"loss": summed loss per record, "count": its tokens (1 per record for
        classification)}`` plus ``"correct"`` (1.0 where the prediction is right) for
        classification: :meth:`utility` is ``sum(loss) / sum(count)`` and ``mean(correct)``.
        Shared through the run's store when it has one.
        """
        losses, counts, preds = self.run.record_losses({**self.private_base, **tensors})
        out = {"loss": losses.double().numpy(), "count": counts.double().numpy()}
        if preds is not None:
            out["correct"] = (preds == self.run.test_data["labels"]).double().numpy()
        return out

    # --- records and signals -----------------------------------------------------------------
    def encode(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Encoded records (cached by the index list)."""
        from fedlpp.data.encode import encode

        key = ",".join(map(str, indices))
        if key not in self._encoded:
            self._encoded[key] = encode([self.run.dataset.records[i] for i in indices],
                                        tokenizer=self.run.bundle.tokenizer, task=self.task,
                                        seq_len=self.trace.config.data.seq_len)
        return self._encoded[key]

    def signals(self, tensors: Mapping[str, torch.Tensor], indices: Sequence[int]) -> SampleSignals:
        """Signals of the model with ``tensors`` on records ``indices``: each record is scored
        once per model (and the records a request adds are scored once per suite through the
        run's store)."""
        have = self._signals.setdefault(tensors_key(tensors), {})
        missing = list(dict.fromkeys(i for i in indices if i not in have))
        if missing:
            def compute() -> SampleSignals:
                with self.loaded(tensors) as model:
                    return compute_signals(model, self.encode(missing), indices=missing,
                                           task=self.task,
                                           batch_size=self.trace.config.eval.batch_size)

            new = self.run.shared(
                "signals", loaded={**self.private_base, **tensors},
                data=self.encode(missing), compute=compute, dump=SampleSignals.to_arrays,
                load=SampleSignals.from_arrays)
            for pos, i in enumerate(missing):
                have[i] = new.subset([pos])
        return SampleSignals.concat([have[i] for i in indices])


@dataclass
class Observation:
    """What one threat model sees of a run.

    ``outsider``: black-box scores of the final central model. ``client``/``colluding``: its
    clients' own data and splits, every payload they were sent, their own updates. ``server``:
    every update it received and the masters.
    """

    threat_model: str
    ctx: AttackContext
    clients: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.threat_model not in THREAT_MODELS:
            raise FedlppError(f"Unknown threat model {self.threat_model!r} "
                              f"(allowed: {', '.join(THREAT_MODELS)})")
        n = self.ctx.trace.config.fed.num_clients
        for c in self.clients:
            if not 0 <= c < n:
                raise FedlppError(f"Invalid attacker client {c} (the run has clients 0..{n - 1})")

    def _allow(self, *models: str, what: str) -> None:
        if self.threat_model not in models:
            raise FedlppError(f"Threat model '{self.threat_model}' cannot see {what} "
                              f"(only: {', '.join(models)})")

    # --- what clients see --------------------------------------------------------------------
    @property
    def num_rounds(self) -> int:
        return self.ctx.trace.num_rounds

    def payload_rounds(self) -> list[int]:
        """Rounds whose broadcast this view received; ``num_rounds + 1`` is the final delivery."""
        self._allow("client", "colluding", "server", what="payloads")
        rounds = range(1, self.num_rounds + 2)
        if self.threat_model == "server":
            return list(rounds)
        return [r for r in rounds if set(self.clients) & set(self.ctx.trace.participants(r))]

    def payload(self, rnd: int) -> dict:
        """The broadcast of round ``rnd`` as ``{name: PackedTensor}``."""
        if rnd not in self.payload_rounds():
            raise FedlppError(f"Clients {list(self.clients)} were not sent the payload of round {rnd}")
        return self.ctx.trace.payload(rnd)

    def proxy(self, rnd: int) -> dict[str, torch.Tensor]:
        """The dequantized broadcast of round ``rnd``."""
        return self.ctx.dequantize(self.payload(rnd))

    def update(self, rnd: int, client: int) -> dict[str, torch.Tensor]:
        """The update ``client`` sent in round ``rnd`` (its own, or any for the server)."""
        self._allow("client", "colluding", "server", what="client updates")
        if self.threat_model != "server" and client not in self.clients:
            raise FedlppError(f"Threat model '{self.threat_model}' sees only the updates of "
                              f"clients {list(self.clients)}, not client {client}")
        return self.ctx.trace.update(rnd, client)[0]

    def own_records(self) -> list[int]:
        """Indices of the records this view's clients trained on (their members), pooled."""
        self._allow("client", "colluding", what="client data")
        return [i for c in self.clients for i in self.ctx.trace.splits.members[c]]

    def own_data(self) -> dict[str, torch.Tensor]:
        """The encoded training records of this view's clients."""
        return self.ctx.encode(self.own_records())

    # --- what the server sees ----------------------------------------------------------------
    def master(self, rnd: int) -> dict[str, torch.Tensor]:
        """The server's master that round ``rnd``'s payload was made from."""
        self._allow("server", what="the masters")
        return self.ctx.trace.master(rnd)

    # --- black-box access --------------------------------------------------------------------
    def central_signals(self, indices: Sequence[int]) -> SampleSignals:
        """Scores of the final central model on records (an API serving it)."""
        self._allow("outsider", "server", what="the central model")
        return self.ctx.signals(self.ctx.trace.master(self.num_rounds + 1), indices)
