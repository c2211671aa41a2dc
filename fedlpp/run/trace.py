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

Verification: a trace is checked before anything reads it, and a damaged one is refused with
one line naming the first problem found (a FedlppError: exit 2), in this order:

1. ``result.json`` (:class:`TraceReader`): UTF-8 JSON of a finished run, its config valid, its
   rounds a list, the selected round one of them;
2. ``trace/manifest.json``: there, readable, of this format, and written for this result (the
   same config, number of rounds and selected round, then the same result as a whole);
3. every file it lists: a path inside ``trace/``, present, of its recorded size and sha256;
4. every file the run's config implies is listed: ``splits.json``, ``batches.json`` of every
   round, the payload of every round (``trace.payloads``), the masters ``trace.masters`` keeps,
   the final master and payload;
5. the JSON files: ``splits.json`` holds the splits of the run's clients, each ``batches.json``
   the batches of the run's clients;
6. with the run's model (:meth:`TraceReader.verify_layout`, called by
   :class:`attacks.context.AttackContext`): every safetensors file parses; each master holds
   exactly the run's trainable tensors (float32, of the model's shapes) and records its round
   (the final one: the selected round); the private base holds exactly the base weights
   (scope ``full``); an update only trainable tensors, of the model's shapes and dtypes; every
   payload decodes under the run's quantizer (:func:`fedlpp.protocol.wire.decode_payload`
   with the layout the config implies: private tensors, each encoded as the quantizer encodes
   its shape), all with the tensors of the final payload.

A trace without ``manifest.json`` (written before traces carried one) is refused, with a line
saying to train the run again: checking its structure alone would let a changed value through
(one flipped payload byte moved a ``param_rel_error`` from 0.4322 to 0.4388 with status ok),
and a result that cannot be trusted is worse than none. Training again gives the same tensors
on the same kernels (not the same bytes: safetensors writes a header's metadata in no fixed
order, so a trace's checksums are its own; compare two traces by their tensors).

Cost: hashing reads every file once (``hashlib.file_digest``: about 0.7 ms per MB on one core
with SHA instructions, 2.4 ms on a busy one); the other checks read headers, JSON and the
payloads. Measured on SmolLM2-135M, 2 clients x 2 rounds, every part traced: scope ``full``
(513 MB, the base weights included) 0.35 s for steps 1-5 and 0.12 s for step 6; scope
``adapter`` (13 MB) 12 ms and 25 ms; the tiny test run, 3 ms.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load

from fedlpp.config import RunConfig
from fedlpp.data.partition import Splits
from fedlpp.errors import FedlppError
from fedlpp.federation.broadcast import Broadcast
from fedlpp.io import (
    atomic_save_tensors,
    atomic_write_bytes,
    atomic_write_json,
    read_bytes,
    read_json,
)
from fedlpp.methods import ServerPart
from fedlpp.protocol.records import RoundRecord, RunResult, Step, Verdict
from fedlpp.protocol.wire import Layout, decode_payload, encode_payload, payload_header
from fedlpp.quant import Quantizer
from fedlpp.run.context import RunContext
from fedlpp.run.observers import Observer
from fedlpp.typed import from_dict

MANIFEST_FORMAT = "fedlpp-trace-manifest/1"
# safetensors' dtype names of the torch dtypes a trace holds
ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
             torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


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


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shown(values: Iterable[str], n: int = 3) -> str:
    values = sorted(values)
    more = f" (+{len(values) - n} more)" if len(values) > n else ""
    return ", ".join(repr(v) for v in values[:n]) + more


def _check_result(result: Any, file: Path) -> None:
    """One line naming ``file`` for a result.json that is no finished run's result."""
    def bad(what: str) -> FedlppError:
        return FedlppError(f"{str(file)!r} is not the result of a finished run: {what}")

    if not isinstance(result, dict):
        raise bad(f"a JSON {type(result).__name__}, expected a JSON object")
    if result.get("status") != "ok":
        raise FedlppError(f"The run in {str(file.parent)!r} did not finish "
                          f"(status {result.get('status')!r})")
    if not isinstance(result.get("config"), dict):
        raise bad("it has no 'config' object")
    rounds = result.get("rounds")
    if not isinstance(rounds, list) or not rounds:
        raise bad("it has no 'rounds' list")
    for i, r in enumerate(rounds, start=1):
        if not (isinstance(r, dict) and isinstance(r.get("clients"), list)
                and all(_count(c) for c in r["clients"]) and isinstance(r.get("rejected"), list)
                and all(isinstance(x, dict) and _count(x.get("client")) for x in r["rejected"])):
            raise bad(f"round {i} of 'rounds' lacks its 'clients' or 'rejected' list")
    selection = result.get("selection")
    if selection is not None:
        rnd = selection.get("round") if isinstance(selection, dict) else None
        if not (_count(rnd) and 1 <= rnd <= len(rounds)):
            raise bad(f"its selection names round {rnd!r}, not a round of the run "
                      f"(1..{len(rounds)})")


class TraceReader:
    """Read a finished run: its result, config, splits, payloads, updates and masters.

    Opening a run verifies its result and trace (steps 1-5 of the module's list; step 6 is
    :meth:`verify_layout`); asking for something the run did not record is a FedlppError
    naming the config key that records it.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)
        result_file = self.dir / "result.json"
        if not result_file.exists():
            raise FedlppError(f"No finished run in {str(self.dir)!r}: result.json is missing "
                              "(run `fedlpp train --out DIR` first)")
        self.result = read_json(result_file, what="a run's result (result.json of `fedlpp train`)")
        _check_result(self.result, result_file)
        try:
            self.config: RunConfig = from_dict(RunConfig, self.result["config"])
        except (FedlppError, TypeError, ValueError) as exc:
            raise FedlppError(f"{str(result_file)!r}: its config is not valid ({exc})") from None
        self.at = TraceLayout(self.dir / "trace")
        self.root = self.at.root
        # the reported round (chosen on validation): the run as released ends there
        selection = self.result.get("selection") or {}
        self.num_rounds = int(selection.get("round", len(self.result["rounds"])))
        self.manifest = self._verify_files()
        self.splits = self._read_splits()
        for rnd in range(1, len(self.result["rounds"]) + 1):
            self.batches(rnd)

    # --- verification ---------------------------------------------------------------------------
    def _damaged(self, rel: str, problem: str) -> FedlppError:
        return FedlppError(f"The trace of run {str(self.dir)!r} is damaged: trace/{rel} {problem}")

    def _read_manifest(self) -> dict[str, Any]:
        """The manifest, checked for its format and against result.json (steps 2)."""
        path = self.at.manifest
        if not path.exists():
            where = "has no trace/ folder" if not self.root.is_dir() else \
                "has no trace/manifest.json (a trace written before traces recorded a checksum " \
                "per file)"
            raise FedlppError(f"The run in {str(self.dir)!r} {where}: its files cannot be "
                              "checked, so it is not attacked; train the run again (the same "
                              "config gives the same trace)")
        manifest = read_json(path, what="a trace manifest (JSON written by `fedlpp train`)")
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if (not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT
                or not isinstance(files, dict)):
            raise self._damaged("manifest.json", f"is not a trace manifest of format "
                                f"{MANIFEST_FORMAT!r} with a 'files' object")
        for rel, entry in files.items():
            if not (isinstance(entry, dict) and _count(entry.get("bytes"))
                    and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64):
                raise self._damaged("manifest.json", f"records {rel!r} without its size "
                                    "('bytes') and 'sha256'")
        result_file = self.dir / "result.json"
        if manifest.get("config_sha256") != json_sha256(self.result["config"]):
            raise FedlppError(f"{str(result_file)!r}: its config is not the one its trace was "
                              "written with (trace/manifest.json records another): was it "
                              "edited? train the run again")
        rounds, selected = len(self.result["rounds"]), self.num_rounds
        if (manifest.get("rounds"), manifest.get("selected_round")) != (rounds, selected):
            raise FedlppError(f"{str(result_file)!r} reports round {selected} of {rounds}, but "
                              f"its trace was written for round {manifest.get('selected_round')}"
                              f" of {manifest.get('rounds')} (trace/manifest.json)")
        if manifest.get("result_sha256") != json_sha256(self.result):
            raise FedlppError(f"{str(result_file)!r} is not the result its trace was written "
                              "with (trace/manifest.json records another checksum): it was "
                              "changed after the run; train the run again")
        return manifest

    def _verify_files(self) -> dict[str, Any]:
        """Steps 2-4: the manifest, every file it lists, and every file the config implies."""
        manifest = self._read_manifest()
        root = self.root.resolve()
        for rel, entry in sorted(manifest["files"].items()):
            parts = PurePosixPath(rel).parts
            path = (self.root / rel).resolve()
            if (not parts or PurePosixPath(rel).is_absolute() or ".." in parts
                    or not path.is_relative_to(root)):
                raise self._damaged("manifest.json", f"lists {rel!r}, a path outside trace/")
            if not path.is_file():
                raise self._damaged(rel, "is missing (the manifest lists it)")
            size = path.stat().st_size
            if size != entry["bytes"]:
                raise self._damaged(rel, f"has {size:,} bytes, the run wrote {entry['bytes']:,} "
                                    "(truncated or changed)")
            digest = file_sha256(path)
            if digest != entry["sha256"]:
                raise self._damaged(rel, f"does not match its checksum (sha256 {digest[:12]}..., "
                                    f"the run wrote {entry['sha256'][:12]}...): changed after "
                                    "the run wrote it")
        for path in self._implied():
            rel = path.relative_to(self.root).as_posix()
            if rel not in manifest["files"]:
                state = "is there but" if path.exists() else "is missing and"
                raise self._damaged(rel, f"{state} not listed in trace/manifest.json (the "
                                    "run's config implies it)")
        return manifest

    def _implied(self) -> list[Path]:
        """The files the run's config implies (step 4)."""
        rounds, trace = len(self.result["rounds"]), self.config.trace
        paths = [self.at.splits, self.at.final_master, self.at.final_payload]
        for rnd in range(1, rounds + 1):
            paths.append(self.at.batches(rnd))
            if trace.payloads:
                paths.append(self.at.payload(rnd))
            if trace.masters == "all" or (trace.masters == "last" and rnd == rounds):
                paths.append(self.at.master(rnd))
        return paths

    def _read_splits(self) -> Splits:
        path = self.at.splits
        data = read_json(path, what="the run's data splits (JSON)")
        try:
            splits = Splits.from_json(data if isinstance(data, dict) else {})
        except FedlppError as exc:
            raise self._damaged("splits.json", f"does not hold the run's splits ({exc})") from None
        n = self.config.fed.num_clients
        if len(splits.members) != n:
            raise self._damaged("splits.json", f"holds the splits of {len(splits.members)} "
                                f"client(s), the run has {n}")
        return splits

    def _check_batches(self, rel: str, data: Any) -> dict[int, dict[str, Any]]:
        n = self.config.fed.num_clients
        if not isinstance(data, dict):
            raise self._damaged(rel, f"is a JSON {type(data).__name__}, expected an object of "
                                "clients")
        out = {}
        for key, entry in data.items():
            if not (key.isdigit() and int(key) < n):
                raise self._damaged(rel, f"names client {key!r} (the run has clients 0..{n - 1})")
            if not (isinstance(entry, dict) and isinstance(entry.get("accepted"), bool)
                    and isinstance(entry.get("steps"), list)
                    and all(isinstance(s, list) and all(_count(i) for i in s)
                            for s in entry["steps"])):
                raise self._damaged(rel, f"holds no 'accepted' (true or false) and 'steps' "
                                    f"(lists of record ids) for client {key}")
            out[int(key)] = entry
        return out

    def _header(self, path: Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
        """A safetensors file's tensors (dtype, shape) and metadata, from its header alone."""
        rel = path.relative_to(self.root).as_posix()
        try:
            with safe_open(str(path), framework="pt") as fh:
                tensors = {k: (fh.get_slice(k).get_dtype(), tuple(fh.get_slice(k).get_shape()))
                           for k in fh.keys()}
                return tensors, dict(fh.metadata() or {})
        except (SafetensorError, OSError, ValueError) as exc:
            raise self._damaged(rel, f"is not a valid safetensors file "
                                f"({' '.join(str(exc).split())})") from None

    def _check_tensors(self, path: Path, expected: Mapping[str, tuple[str, tuple[int, ...]]],
                       *, subset: bool = False) -> dict[str, str]:
        """``path`` holds exactly (``subset``: only) ``expected``'s tensors, each of its dtype and
        shape; returns the file's metadata."""
        rel = path.relative_to(self.root).as_posix()
        tensors, meta = self._header(path)
        missing, extra = set(expected) - set(tensors), set(tensors) - set(expected)
        if extra:
            raise self._damaged(rel, f"holds tensor(s) the run's model does not: {_shown(extra)}")
        if missing and not subset:
            raise self._damaged(rel, f"lacks tensor(s) of the run's model: {_shown(missing)}")
        if not tensors:
            raise self._damaged(rel, "holds no tensor")
        for name, (dtype, shape) in tensors.items():
            want_dtype, want_shape = expected[name]
            if shape != want_shape:
                raise self._damaged(rel, f"holds tensor {name!r} of shape {list(shape)}, the "
                                    f"run's model has {list(want_shape)}")
            if dtype != want_dtype:
                raise self._damaged(rel, f"holds tensor {name!r} of dtype {dtype}, the run's "
                                    f"model has {want_dtype}")
        return meta

    def _check_round(self, path: Path, meta: Mapping[str, str], rnd: int) -> None:
        if meta.get("round") != str(rnd):
            rel = path.relative_to(self.root).as_posix()
            raise self._damaged(rel, f"records round {meta.get('round')}, expected round {rnd}"
                                + (" (the selected one)" if path == self.at.final_master else ""))

    def verify_layout(self, *, trainable: Mapping[str, torch.Tensor],
                      static: Mapping[str, Sequence[int]], quantizer: Quantizer) -> None:
        """Step 6: the tensors files have the layout the run's config implies.

        Args:
            trainable: the run's trainable tensors as its model holds them (their names,
                shapes and dtypes; e.g. ``RunContext.initial``).
            static: the shape of each private base weight (scope ``full``; else empty).
            quantizer: the run's broadcast quantizer.
        """
        f32 = ST_DTYPES[torch.float32]
        master = {n: (f32 if t.is_floating_point() else ST_DTYPES.get(t.dtype, str(t.dtype)),
                      tuple(t.shape)) for n, t in trainable.items()}
        update = {n: (ST_DTYPES.get(t.dtype, str(t.dtype)), tuple(t.shape))
                  for n, t in trainable.items()}
        files = self.manifest["files"]
        for rnd in range(1, len(self.result["rounds"]) + 1):
            path = self.at.master(rnd)
            if path.relative_to(self.root).as_posix() in files:
                self._check_round(path, self._check_tensors(path, master), rnd)
            updates = self.at.round_dir(rnd) / "updates"
            for rel in sorted(r for r in files if (self.root / r).parent == updates):
                self._check_tensors(self.root / rel, update, subset=True)
        meta = self._check_tensors(self.at.final_master, master)
        self._check_round(self.at.final_master, meta, self.num_rounds)
        if static and self.config.trace.masters != "none":
            rel = self.at.private_base.relative_to(self.root).as_posix()
            if rel not in files:
                state = "is there but" if self.at.private_base.exists() else "is missing and"
                raise self._damaged(rel, f"{state} not listed in trace/manifest.json (scope "
                                    "'full' with trace.masters kept implies it)")
            self._check_tensors(self.at.private_base,
                                {n: (f32, tuple(s)) for n, s in static.items()})
        self._check_payloads({**{n: tuple(t.shape) for n, t in trainable.items()},
                              **{n: tuple(s) for n, s in static.items()}}, quantizer)

    def _check_payloads(self, private: Mapping[str, tuple[int, ...]], quantizer: Quantizer) -> None:
        """Every payload decodes under the run's quantizer with the final payload's tensors,
        each a private tensor of the run encoded as ``quantizer`` encodes its shape."""
        final = self.at.final_payload
        names = set(self._payload_names(final))
        if names - set(private):
            raise self._damaged(final.name, f"holds tensor(s) that are no private tensor of the "
                                f"run: {_shown(names - set(private))}")
        layout = Layout.of({n: torch.empty(s, device="meta") for n, s in private.items()
                            if n in names}, quantizer=quantizer)
        paths = [self.at.payload(r) for r in range(1, len(self.result["rounds"]) + 1)]
        for path in [p for p in paths if p.exists()] + [final]:
            rel = path.relative_to(self.root).as_posix()
            have = set(self._payload_names(path))
            if have != names:
                raise self._damaged(rel, f"lacks tensor(s) of the final payload: "
                                    f"{_shown(names - have)}" if names - have else
                                    f"holds tensor(s) the final payload does not: "
                                    f"{_shown(have - names)}")
            try:
                decode_payload(self._bytes(path, "a payload"), layout=layout)
            except FedlppError as exc:
                raise self._damaged(rel, f"cannot be decoded under the run's quantizer "
                                    f"({exc})") from None

    def _payload_names(self, path: Path) -> list[str]:
        try:
            return list(payload_header(self._bytes(path, "a payload")))
        except FedlppError as exc:
            rel = path.relative_to(self.root).as_posix()
            raise self._damaged(rel, f"cannot be decoded ({exc})") from None

    # --- reading --------------------------------------------------------------------------------
    def _bytes(self, path: Path, what: str) -> bytes:
        return read_bytes(path, what=f"{what} of the trace in {str(self.dir)!r}")

    def _tensors(self, path: Path, what: str) -> dict[str, torch.Tensor]:
        data = self._bytes(path, what)
        try:
            return load(data)
        except (SafetensorError, ValueError) as exc:
            raise self._damaged(path.relative_to(self.root).as_posix(),
                                f"is not a valid safetensors file ({exc})") from None

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
            return self._bytes(self.at.final_payload, "the final payload")
        path = self._need(self.at.payload(rnd), "trace.payloads=true", f"payload of round {rnd}")
        return self._bytes(path, f"the payload of round {rnd}")

    def payload(self, rnd: int) -> dict:
        """Round ``rnd``'s broadcast as ``{name: PackedTensor}``."""
        return decode_payload(self.payload_bytes(rnd))

    def update(self, rnd: int, client: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """A received update and its metadata (``num_examples``, ``accepted``, ``reason``)."""
        path = self.at.update(rnd, client)
        rejected = {r["client"]: r.get("reason")
                    for r in self.result["rounds"][rnd - 1]["rejected"]}
        if not path.exists() and client in rejected:
            raise FedlppError(f"The upload of client {client} in round {rnd} was rejected and "
                              f"holds no readable update ({rejected[client]})")
        self._need(path, "trace.updates=true", f"update of client {client} in round {rnd}")
        tensors = self._tensors(path, f"the update of client {client} in round {rnd}")
        return tensors, self._header(path)[1]

    def batches(self, rnd: int) -> dict[int, dict[str, Any]]:
        """Round ``rnd``'s local training batches: client -> ``{"accepted", "steps"}``, each step
        the record ids of one batch."""
        path = self.at.batches(rnd)
        if not path.exists():
            raise FedlppError(f"The trace in {str(self.dir)!r} does not record which records were "
                              f"trained on in round {rnd} (a trace made before batches were "
                              "recorded): train the run again")
        data = read_json(path, what=f"the training batches of round {rnd} (JSON)")
        return self._check_batches(path.relative_to(self.root).as_posix(), data)

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
            return self._tensors(self.at.final_master, "the final master")
        path = self._need(self.at.master(rnd), "trace.masters=all", f"master of round {rnd}")
        return self._tensors(path, f"the master of round {rnd}")

    def private_base(self) -> dict[str, torch.Tensor]:
        """Scope ``full``: the private base weights (empty in scope ``adapter``)."""
        if self.config.quant.scope != "full":
            return {}
        path = self._need(self.at.private_base, "trace.masters=last", "private base weights")
        return self._tensors(path, "the private base weights")
