"""Signals shared between runs: a content-addressed store on disk.

Cells of a suite that share a model and records compute its signals once: the public base model,
the reference of the ``central`` and ``proxy`` targets, is the same for every bit width of one
task, partition and seed. An entry's key hashes everything the signals depend on: the model's
identity (model and LoRA config), the content of the private tensors loaded into it (and of the
private base they are completed with in scope ``full``), the encoded records, the task and the
scoring batch size. Entries are safetensors files written atomically, so a run killed at any
moment never leaves a half-written entry behind; an entry that cannot be read is recomputed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from attacks.signals import SampleSignals
from fedlpp.federation.trace import atomic_write_bytes

FORMAT = "signals-v1"  # part of every key: a change in how signals are computed changes it


def store_key(*, model: dict, tensors: str, data: str, task: str, batch_size: int) -> str:
    """The key of the signals of a model on encoded records.

    ``model``: the run's model and LoRA config; ``tensors``: a content hash of the private
    tensors as loaded (base completion included); ``data``: a content hash of the encoded
    records; ``batch_size``: the scoring batch (padding can shift the last bits of a logit).
    """
    material = json.dumps({"format": FORMAT, "model": model, "tensors": tensors, "data": data,
                           "task": task, "batch_size": batch_size}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def _pack(signals: SampleSignals) -> dict[str, np.ndarray]:
    lengths = np.array([lp.size for lp in signals.token_logprobs], dtype=np.int64)

    def cat(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float64)

    return {"indices": np.asarray(signals.indices, dtype=np.int64), "lengths": lengths,
            "token_logprobs": cat(signals.token_logprobs), "token_mu": cat(signals.token_mu),
            "token_sigma": cat(signals.token_sigma)}


def _unpack(arrays: dict[str, np.ndarray]) -> SampleSignals:
    cuts = np.cumsum(arrays["lengths"])[:-1]

    def split(name: str) -> list[np.ndarray]:
        return [a.copy() for a in np.split(arrays[name], cuts)] if arrays["lengths"].size else []

    return SampleSignals(indices=arrays["indices"], token_logprobs=split("token_logprobs"),
                         token_mu=split("token_mu"), token_sigma=split("token_sigma"))


class SignalStore:
    """Signals on disk under ``root``, one file per key."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def get(self, key: str) -> SampleSignals | None:
        """The stored signals of ``key``, or None (absent or unreadable)."""
        path = self._path(key)
        try:
            signals = _unpack(load_file(str(path)))
        except (OSError, SafetensorError, KeyError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return signals

    def put(self, key: str, signals: SampleSignals) -> None:
        atomic_write_bytes(self._path(key), save(_pack(signals)))
