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
    manifest.json                     every file above that the run wrote, with its size and
                                      sha256; written last, once the run has finished

Attacks read a run as if it had stopped after its reported round: later rounds only served to
choose it, and the reader does not show them.

Every file is written to a temporary name and renamed, so a killed run never leaves a
half-written file under a final name.

The manifest (``manifest.json``, format :data:`MANIFEST_FORMAT`)::

    {"format": "fedlpp-trace-manifest/1", "rounds": 2, "selected_round": 2,
     "config_sha256": "<sha256 of the run's config as canonical JSON>",
     "result_sha256": "<sha256 of the whole result.json as canonical JSON>",
     "files": {"final_master.safetensors": {"bytes": 17480, "sha256": "<hex>"}, ...}}

``files`` holds every file of the trace but itself, by its path relative to ``trace/`` (``/``
separated); ``rounds``, ``selected_round``, ``config_sha256`` and ``result_sha256`` tie the
trace to the ``result.json`` it was written with (result.json is written after the trace, from
the same record, so its digest is known when the manifest is written).

This module writes a trace (:class:`TraceWriter`); :mod:`fedlpp.run.trace_check` verifies one
when it is opened and :mod:`fedlpp.run.trace_reader` reads it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fedlpp.federation.broadcast import Broadcast
from fedlpp.io import atomic_save_tensors, atomic_write_bytes, atomic_write_json
from fedlpp.methods import ServerPart
from fedlpp.protocol.records import RoundRecord, RunResult, Step, Verdict
from fedlpp.protocol.wire import encode_payload
from fedlpp.run.context import RunContext
from fedlpp.run.observers import Observer

MANIFEST_FORMAT = "fedlpp-trace-manifest/1"


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of the file at ``path``, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def json_sha256(value: Any) -> str:
    """The sha256 of ``value`` as canonical JSON, the same for ``value`` and for what reading
    it back from a JSON file gives (``result.json``, its config)."""
    text = json.dumps(json.loads(json.dumps(value)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class TraceLayout:
    """Where each record of a trace lives under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.splits = self.root / "splits.json"
        self.private_base = self.root / "private_base.safetensors"
        self.final_master = self.root / "final_master.safetensors"
        self.final_payload = self.root / "final_payload.safetensors"
        self.manifest = self.root / "manifest.json"

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
    """Writes what the trace config asks for, as an observer of the round driver, and the
    manifest of what it wrote once the run has finished."""

    def __init__(self, root: Path, *, payloads: bool, updates: bool, masters: str,
                 rounds: int) -> None:
        self.at = TraceLayout(root)
        self.payloads, self.updates, self.masters, self.rounds = payloads, updates, masters, rounds
        self.server: Any = None
        self.steps: dict[int, list[list[int]]] = {}  # this round's batches, per client
        self.accepted: dict[int, bool] = {}
        self.files: dict[str, dict[str, Any]] = {}  # the manifest's entries, by relative path
        self.at.root.mkdir(parents=True, exist_ok=True)

    def _wrote(self, path: Path) -> None:
        """Record ``path`` (just written) for the manifest: its size and sha256."""
        rel = path.relative_to(self.at.root).as_posix()
        self.files[rel] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}

    def on_start(self, ctx: RunContext, server: ServerPart) -> None:
        self.server = server
        atomic_write_json(self.at.splits, ctx.splits.to_json())
        self._wrote(self.at.splits)
        base = {n: t for n, t in server.master.items() if n in server.static}
        if self.masters != "none" and base:
            atomic_save_tensors(self.at.private_base, base)
            self._wrote(self.at.private_base)

    def on_broadcast(self, rnd: int, sent: Broadcast) -> None:
        if self.payloads:
            atomic_write_bytes(self.at.payload(rnd), encode_payload(sent.packed))
            self._wrote(self.at.payload(rnd))
        if self.masters == "all" or (self.masters == "last" and rnd == self.rounds):
            atomic_save_tensors(self.at.master(rnd), self.server.trainable, {"round": str(rnd)})
            self._wrote(self.at.master(rnd))

    def on_step(self, rnd: int, client: int, step: Step) -> None:
        self.steps.setdefault(client, []).append(list(step.batch))

    def on_verdict(self, rnd: int, verdict: Verdict) -> None:
        self.accepted[verdict.client] = verdict.accepted
        if self.updates and verdict.tensors is not None:
            meta = {"client": str(verdict.client), "num_examples": str(verdict.num_examples),
                    "accepted": str(verdict.accepted).lower(), "reason": verdict.reason or ""}
            atomic_save_tensors(self.at.update(rnd, verdict.client), verdict.tensors, meta)
            self._wrote(self.at.update(rnd, verdict.client))

    def on_round(self, record: RoundRecord) -> None:
        batches = {str(c): {"accepted": self.accepted.get(c, False), "steps": steps}
                   for c, steps in sorted(self.steps.items())}
        atomic_write_json(self.at.batches(record.round), batches)
        self._wrote(self.at.batches(record.round))
        self.steps, self.accepted = {}, {}

    def on_end(self, result: RunResult, server: ServerPart) -> None:
        if result.status != "ok":
            return
        # the reported round's master and the broadcast made from it: what the run released
        selected = result.selected
        atomic_save_tensors(self.at.final_master, selected.master, {"round": str(selected.round)})
        self._wrote(self.at.final_master)
        atomic_write_bytes(self.at.final_payload, encode_payload(selected.broadcast.packed))
        self._wrote(self.at.final_payload)
        # last: a trace without its manifest is never taken for a finished one
        atomic_write_json(self.at.manifest, {
            "format": MANIFEST_FORMAT, "rounds": len(result.rounds),
            "selected_round": selected.round, "config_sha256": json_sha256(result.config),
            "result_sha256": json_sha256(result.to_dict()),  # what result.json will hold
            "files": dict(sorted(self.files.items()))})
