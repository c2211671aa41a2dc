"""Verification of a run's trace (:mod:`fedlpp.run.trace`), done when the run is opened.

A trace is checked before anything reads it, and a damaged one is refused with
one line naming the first problem found (a FedlppError: exit 2), in this order:

1. ``result.json`` (:class:`TraceCheck`): UTF-8 JSON of a finished run, its config valid, its
   rounds a list, the selected round one of them;
2. ``trace/manifest.json``: there, readable, of this format, and written for this result (the
   same config, number of rounds and selected round, then the same result as a whole);
3. every file it lists: a path inside ``trace/``, present, of its recorded size and sha256;
4. every file the run's config implies is listed: ``splits.json``, ``batches.json`` of every
   round, the payload of every round (``trace.payloads``), the masters ``trace.masters`` keeps,
   the final master and payload;
5. the JSON files: ``splits.json`` holds the splits of the run's clients, each ``batches.json``
   the batches of the run's clients;
6. with the run's model (:meth:`fedlpp.run.trace_reader.TraceReader.verify_layout`, called by
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

from pathlib import Path, PurePosixPath
from typing import Any

from fedlpp.config import RunConfig
from fedlpp.data.partition import Splits
from fedlpp.errors import FedlppError
from fedlpp.io import read_json
from fedlpp.run.trace import MANIFEST_FORMAT, TraceLayout, file_sha256, json_sha256
from fedlpp.typed import from_dict


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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


class TraceCheck:
    """A finished run's result and trace, opened: steps 1-5 of the module's list are verified
    here (step 6, which needs the run's model, is :meth:`TraceReader.verify_layout
    <fedlpp.run.trace_reader.TraceReader.verify_layout>`)."""

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
            self._read_batches(rnd)

    def _damaged(self, rel: str, problem: str) -> FedlppError:
        return FedlppError(f"The trace of run {str(self.dir)!r} is damaged: trace/{rel} {problem}")

    def _rel(self, path: Path) -> str:
        """``path`` as the manifest names it: relative to ``trace/``, ``/`` separated."""
        return path.relative_to(self.root).as_posix()

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
            self._require_listed(path, manifest["files"], "the run's config implies it")
        return manifest

    def _require_listed(self, path: Path, files: dict[str, Any], why: str) -> None:
        """``path``, which ``why`` says the run wrote, is one of the manifest's ``files``."""
        rel = self._rel(path)
        if rel not in files:
            state = "is there but" if path.exists() else "is missing and"
            raise self._damaged(rel, f"{state} not listed in trace/manifest.json ({why})")

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

    def _read_batches(self, rnd: int) -> dict[int, dict[str, Any]]:
        path = self.at.batches(rnd)
        data = read_json(path, what=f"the training batches of round {rnd} (JSON)")
        return self._check_batches(self._rel(path), data)
