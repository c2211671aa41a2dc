"""The run trace on disk, which attacks read: safetensors and JSON only, never pickle.

Layout under ``DIR/trace/``::

    splits.json                       member / non-member / test indices per client
    round_0001/payload.safetensors    the broadcast exactly as sent (see broadcast.encode_payload)
    round_0001/master.safetensors     the full-precision master the payload was made from
                                      (the tensors that change: LoRA A/B and heads)
    private_base.safetensors          scope ``full``: the private base weights (they never change)
    round_0001/updates/client_0003.safetensors   a received update (+ num_examples, accepted)
    final_master.safetensors          the master after the last round (always kept)
    final_payload.safetensors         its broadcast: what a client would receive next

Every file is written to a temporary name and renamed, so a killed run never leaves a
half-written file under a final name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fedlpp.config import RunConfig, from_dict
from fedlpp.data.partition import Splits
from fedlpp.errors import FedlppError
from fedlpp.federation.broadcast import decode_payload


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON-dump ``obj`` atomically (sorted keys, indented, trailing newline)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], meta: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


class TraceWriter:
    """Writes what the trace config asks for; each method is one kind of record."""

    def __init__(self, root: Path, *, payloads: bool, updates: bool, masters: str) -> None:
        self.root = root
        self.payloads, self.updates, self.masters = payloads, updates, masters
        root.mkdir(parents=True, exist_ok=True)

    def round_dir(self, rnd: int) -> Path:
        return self.root / f"round_{rnd:04d}"

    def splits(self, splits_json: dict[str, Any]) -> None:
        atomic_write_json(self.root / "splits.json", splits_json)

    def payload(self, rnd: int, data: bytes) -> None:
        if self.payloads:
            atomic_write_bytes(self.round_dir(rnd) / "payload.safetensors", data)

    def master(self, rnd: int, tensors: Mapping[str, torch.Tensor], *, last: bool) -> None:
        if self.masters == "all" or (self.masters == "last" and last):
            _save_tensors(self.round_dir(rnd) / "master.safetensors", tensors, {"round": str(rnd)})

    def private_base(self, tensors: Mapping[str, torch.Tensor]) -> None:
        if self.masters != "none" and tensors:
            _save_tensors(self.root / "private_base.safetensors", tensors, {})

    def update(self, rnd: int, client: int, tensors: Mapping[str, torch.Tensor], *,
               num_examples: int, accepted: bool, reason: str | None) -> None:
        if self.updates and all(isinstance(t, torch.Tensor) for t in tensors.values()):
            meta = {"client": str(client), "num_examples": str(num_examples),
                    "accepted": str(accepted).lower(), "reason": reason or ""}
            path = self.round_dir(rnd) / "updates" / f"client_{client:04d}.safetensors"
            _save_tensors(path, tensors, meta)

    def final_payload(self, data: bytes) -> None:
        atomic_write_bytes(self.root / "final_payload.safetensors", data)

    def final_master(self, tensors: Mapping[str, torch.Tensor]) -> None:
        _save_tensors(self.root / "final_master.safetensors", tensors, {})


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
        self.root = self.dir / "trace"
        self.splits = Splits.from_json(json.loads((self.root / "splits.json").read_text()))
        self.num_rounds = len(self.result["rounds"])

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
            return (self.root / "final_payload.safetensors").read_bytes()
        path = self.round_dir(rnd) / "payload.safetensors"
        return self._need(path, "trace.payloads=true", f"payload of round {rnd}").read_bytes()

    def payload(self, rnd: int) -> dict:
        """Round ``rnd``'s broadcast as ``{name: PackedTensor}``."""
        return decode_payload(self.payload_bytes(rnd))

    def round_dir(self, rnd: int) -> Path:
        return self.root / f"round_{rnd:04d}"

    def update(self, rnd: int, client: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """A received update and its metadata (``num_examples``, ``accepted``, ``reason``)."""
        path = self.round_dir(rnd) / "updates" / f"client_{client:04d}.safetensors"
        self._need(path, "trace.updates=true", f"update of client {client} in round {rnd}")
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata())

    def master(self, rnd: int) -> dict[str, torch.Tensor]:
        """The master round ``rnd``'s payload was made from; ``num_rounds + 1`` is the final one."""
        if rnd == self.num_rounds + 1:
            return load_file(str(self.root / "final_master.safetensors"))
        path = self.round_dir(rnd) / "master.safetensors"
        return load_file(str(self._need(path, "trace.masters=all", f"master of round {rnd}")))

    def private_base(self) -> dict[str, torch.Tensor]:
        """Scope ``full``: the private base weights (empty in scope ``adapter``)."""
        if self.config.quant.scope != "full":
            return {}
        path = self.root / "private_base.safetensors"
        return load_file(str(self._need(path, "trace.masters=last", "private base weights")))
