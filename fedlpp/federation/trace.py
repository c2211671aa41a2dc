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
from safetensors.torch import save_file


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
