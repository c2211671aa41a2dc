"""Results shared between runs (a suite's cells): a content-addressed store on disk.

Cells of a suite that evaluate or score the same model on the same records do it once: the base
model (round 0 of every bit width of one seed), the final broadcast (measured by the run, then
by the ``as-is`` attack), the public base as the reference of membership attacks. A key hashes
everything the result depends on: the model's identity (model and LoRA config), the content of
*every* private tensor loaded into it (a partial state is never stored: what it leaves in place
would not be in the key), the encoded records, the task and the batch size. Entries are JSON or
safetensors written atomically, so a run killed at any moment never leaves a half-written entry;
an entry that cannot be read is computed again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save

from fedlpp.errors import FedlppError
from fedlpp.io import atomic_write_bytes, read_bytes, read_json

FORMAT = "store-v1"  # part of every key: a change in what is stored changes it


def tensors_key(tensors: Mapping[str, torch.Tensor]) -> str:
    """A content hash of named tensors (a model's private ones, encoded records)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def content_key(**parts: Any) -> str:
    """The key of a result from the JSON-able ``parts`` it depends on."""
    material = json.dumps({"format": FORMAT, **parts}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:32]


class ResultStore:
    """Results on disk under ``root``: ``<kind>/<key>.json`` or ``.safetensors``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _read(self, path: Path, load: Callable[[Path], Any]) -> Any:
        """The entry at ``path`` read by ``load``, or None (a miss) when it is absent or cannot
        be read: missing, a folder, unreadable, not UTF-8, not JSON, not safetensors."""
        try:
            value = load(path)
        except (FedlppError, OSError, ValueError, SafetensorError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def unread(self) -> None:
        """Count the last hit as a miss (its entry was read but could not be used)."""
        self.hits -= 1
        self.misses += 1

    def get_json(self, kind: str, key: str) -> Any:
        return self._read(self.root / kind / f"{key}.json",
                          lambda p: read_json(p, what="a stored result (JSON)"))

    def put_json(self, kind: str, key: str, value: Any) -> None:
        atomic_write_bytes(self.root / kind / f"{key}.json", json.dumps(value).encode())

    def get_arrays(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        return self._read(self.root / kind / f"{key}.safetensors",
                          lambda p: load_arrays(read_bytes(p, what="stored arrays (safetensors)")))

    def put_arrays(self, kind: str, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        atomic_write_bytes(self.root / kind / f"{key}.safetensors", save(dict(arrays)))


def shared_result(store: ResultStore | None, kind: str, *, model: str | None,
                  data: Mapping[str, torch.Tensor], compute: Callable[[], Any],
                  dump: Callable[[Any], Any] | None = None,
                  load: Callable[[Any], Any] | None = None, **parts: Any) -> Any:
    """``compute()`` (a measurement of a model on encoded ``data``), or the stored result of an
    identical one.

    Args:
        store: where results are shared; None computes.
        kind: what is measured (``"utility"``, ``"signals"``), a folder of the store.
        model: the model's key (its identity and every private tensor loaded), or None when the
            model's state is not fully known: then nothing is read or stored.
        data: the encoded records measured on.
        compute: makes the result.
        dump, load: to and from a dict of arrays (stored as safetensors); results are JSON
            without them.
        parts: anything else the result depends on (task, batch size), JSON-able.
    """
    if store is None or model is None:
        return compute()
    key = content_key(model=model, data=tensors_key(data), **parts)
    arrays = dump is not None
    found = store.get_arrays(kind, key) if arrays else store.get_json(kind, key)
    if found is not None:
        try:
            return load(found) if load else found
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            store.unread()  # an entry of another shape (another version wrote it): compute again
    result = compute()
    if arrays:
        store.put_arrays(kind, key, dump(result))
    else:
        store.put_json(kind, key, result)
    return result
