"""The run trace on disk, which attacks read: safetensors and JSON only, never pickle.

Layout under ``DIR/trace/`` (:class:`TraceLayout`, shared by the writer and the reader)::

    splits.json                       member / non-member / test indices per client
    round_0001/payload.safetensors    the broadcast exactly as sent (see wire.encode_payload)
    round_0001/master.safetensors     the full-precision master the payload was made from
                                      (the tensors that change: LoRA A/B and heads)
    private_base.safetensors          scope ``full``: the private base weights (they never change)
    round_0001/updates/client_0003.safetensors   a decoded update (+ num_examples, accepted,
                                      reason); an upload that could not be decoded has none
    round_0001/batches.json           per client: the record ids of each local training batch
                                      and whether its update was accepted (the ground truth of
                                      who was trained on, for membership labels)
    final_master.safetensors          the master after the reported round (always kept): the
                                      round chosen on validation (eval.select), else the last
    final_payload.safetensors         its broadcast: what a client would receive next

Attacks read a run as if it had stopped after its reported round: later rounds only served to
choose it, and the reader does not show them.

Every file is written to a temporary name and renamed, so a killed run never leaves a
half-written file under a final name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fedlpp.config import RunConfig
from fedlpp.data.partition import Splits
from fedlpp.errors import FedlppError
from fedlpp.federation.broadcast import Broadcast
from fedlpp.io import atomic_save_tensors, atomic_write_bytes, atomic_write_json
from fedlpp.methods import ServerPart
from fedlpp.protocol.records import RoundRecord, RunResult, Step, Verdict
from fedlpp.protocol.wire import decode_payload, encode_payload
from fedlpp.run.context import RunContext
from fedlpp.run.observers import Observer
from fedlpp.typed import from_dict


class TraceLayout:
    """Where each record of a trace lives under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.splits = self.root / "splits.json"
        self.private_base = self.root / "private_base.safetensors"
        self.final_master = self.root / "final_master.safetensors"
        self.final_payload = self.root / "final_payload.safetensors"

    def round_dir(self, rnd: int) -> Path:
        return self.root / f"round_{rnd:04d}"

    def payload(self, rnd: int) -> Path:
        return self.round_dir(rnd) / "payload.safetensors"

    def master(self, rnd: int) -> Path:
        return self.round_dir(rnd) / "master.safetensors"

    def update(self, rnd: int, client: int) -> Path:
        return self.round_dir(rnd) / "updates" / f"client_{client:04d}.safetensors"

    def batches(self, rnd: int) -> Path:
        return self.round_dir(rnd) / "batches.json"


class TraceWriter(Observer):
    """Writes what the trace config asks for, as an observer of the round driver."""

    def __init__(self, root: Path, *, payloads: bool, updates: bool, masters: str,
                 rounds: int) -> None:
        self.at = TraceLayout(root)
        self.payloads, self.updates, self.masters, self.rounds = payloads, updates, masters, rounds
        self.server: Any = None
        self.steps: dict[int, list[list[int]]] = {}  # this round's batches, per client
        self.accepted: dict[int, bool] = {}
        self.at.root.mkdir(parents=True, exist_ok=True)

    def on_start(self, ctx: RunContext, server: ServerPart) -> None:
        self.server = server
        atomic_write_json(self.at.splits, ctx.splits.to_json())
        base = {n: t for n, t in server.master.items() if n in server.static}
        if self.masters != "none" and base:
            atomic_save_tensors(self.at.private_base, base)

    def on_broadcast(self, rnd: int, sent: Broadcast) -> None:
        if self.payloads:
            atomic_write_bytes(self.at.payload(rnd), encode_payload(sent.packed))
        if self.masters == "all" or (self.masters == "last" and rnd == self.rounds):
            atomic_save_tensors(self.at.master(rnd), self.server.trainable, {"round": str(rnd)})

    def on_step(self, rnd: int, client: int, step: Step) -> None:
        self.steps.setdefault(client, []).append(list(step.batch))

    def on_verdict(self, rnd: int, verdict: Verdict) -> None:
        self.accepted[verdict.client] = verdict.accepted
        if self.updates and verdict.tensors is not None:
            meta = {"client": str(verdict.client), "num_examples": str(verdict.num_examples),
                    "accepted": str(verdict.accepted).lower(), "reason": verdict.reason or ""}
            atomic_save_tensors(self.at.update(rnd, verdict.client), verdict.tensors, meta)

    def on_round(self, record: RoundRecord) -> None:
        batches = {str(c): {"accepted": self.accepted.get(c, False), "steps": steps}
                   for c, steps in sorted(self.steps.items())}
        atomic_write_json(self.at.batches(record.round), batches)
        self.steps, self.accepted = {}, {}

    def on_end(self, result: RunResult, server: ServerPart) -> None:
        if result.status != "ok":
            return
        # the reported round's master and the broadcast made from it: what the run released
        selected = result.selected
        atomic_save_tensors(self.at.final_master, selected.master, {"round": str(selected.round)})
        atomic_write_bytes(self.at.final_payload, encode_payload(selected.broadcast.packed))


class TraceReader:
    """Read a finished run: its result, config, splits, payloads, updates and masters.

    Asking for something the run did not record is a FedlppError naming the config key that
    records it.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)
        result_file = self.dir / "result.json"
        if not result_file.is_file():
            raise FedlppError(f"No finished run in {str(self.dir)!r}: result.json is missing "
                              "(run `fedlpp train --out DIR` first)")
        self.result = json.loads(result_file.read_text())
        if self.result.get("status") != "ok":
            raise FedlppError(f"The run in {str(self.dir)!r} did not finish "
                              f"(status {self.result.get('status')!r})")
        self.config: RunConfig = from_dict(RunConfig, self.result["config"])
        self.at = TraceLayout(self.dir / "trace")
        self.root = self.at.root
        self.splits = Splits.from_json(json.loads(self.at.splits.read_text()))
        # the reported round (chosen on validation): the run as released ends there
        selection = self.result.get("selection") or {}
        self.num_rounds = int(selection.get("round", len(self.result["rounds"])))

    def _need(self, path: Path, key: str, what: str) -> Path:
        if not path.exists():
            raise FedlppError(f"The trace in {str(self.dir)!r} holds no {what} ({path.name}): "
                              f"rerun training with --set {key}")
        return path

    def participants(self, rnd: int) -> list[int]:
        """Clients sampled in round ``rnd``; round ``num_rounds + 1`` (final delivery) is everyone."""
        if rnd == self.num_rounds + 1:
            return list(range(self.config.fed.num_clients))
        return list(self.result["rounds"][rnd - 1]["clients"])

    def payload_bytes(self, rnd: int) -> bytes:
        """Round ``rnd``'s broadcast as sent; ``num_rounds + 1`` is the final delivered one."""
        if rnd == self.num_rounds + 1:
            return self.at.final_payload.read_bytes()
        return self._need(self.at.payload(rnd), "trace.payloads=true", f"payload of round {rnd}").read_bytes()

    def payload(self, rnd: int) -> dict:
        """Round ``rnd``'s broadcast as ``{name: PackedTensor}``."""
        return decode_payload(self.payload_bytes(rnd))

    def update(self, rnd: int, client: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """A received update and its metadata (``num_examples``, ``accepted``, ``reason``)."""
        path = self.at.update(rnd, client)
        rejected = {r["client"]: r["reason"] for r in self.result["rounds"][rnd - 1]["rejected"]}
        if not path.exists() and client in rejected:
            raise FedlppError(f"The upload of client {client} in round {rnd} was rejected and "
                              f"holds no readable update ({rejected[client]})")
        self._need(path, "trace.updates=true", f"update of client {client} in round {rnd}")
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata())

    def batches(self, rnd: int) -> dict[int, dict[str, Any]]:
        """Round ``rnd``'s local training batches: client -> ``{"accepted", "steps"}``, each step
        the record ids of one batch."""
        path = self.at.batches(rnd)
        if not path.exists():
            raise FedlppError(f"The trace in {str(self.dir)!r} does not record which records were "
                              f"trained on in round {rnd} (a trace made before batches were "
                              "recorded): train the run again")
        return {int(c): v for c, v in json.loads(path.read_text()).items()}

    def trained(self, *, clients: list[int] | None = None, rounds: list[int] | None = None,
                accepted_only: bool = True) -> dict[int, int]:
        """How many times each record was in a training batch, over ``rounds`` (default all)
        and ``clients`` (default all), counting only accepted updates unless told otherwise."""
        counts: dict[int, int] = {}
        for rnd in rounds or range(1, self.num_rounds + 1):
            for c, entry in self.batches(rnd).items():
                if (clients is None or c in clients) and (entry["accepted"] or not accepted_only):
                    for step in entry["steps"]:
                        for i in step:
                            counts[i] = counts.get(i, 0) + 1
        return counts

    def master(self, rnd: int) -> dict[str, torch.Tensor]:
        """The master round ``rnd``'s payload was made from; ``num_rounds + 1`` is the final one."""
        if rnd == self.num_rounds + 1:
            return load_file(str(self.at.final_master))
        return load_file(str(self._need(self.at.master(rnd), "trace.masters=all", f"master of round {rnd}")))

    def private_base(self) -> dict[str, torch.Tensor]:
        """Scope ``full``: the private base weights (empty in scope ``adapter``)."""
        if self.config.quant.scope != "full":
            return {}
        return load_file(str(self._need(self.at.private_base, "trace.masters=last", "private base weights")))
