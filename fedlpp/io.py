"""Atomic file writes: a temporary file in the same folder, flushed, then renamed over the target.

Every result, trace file and store entry goes through here, so a process killed at any moment
leaves either the old file or the new one under a final name, never half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def _temporary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    tmp = _temporary(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON-dump ``obj`` atomically (sorted keys, indented, trailing newline)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_save_tensors(path: Path, tensors: Mapping[str, torch.Tensor],
                        meta: Mapping[str, str] | None = None) -> None:
    """Save ``tensors`` as a safetensors file (``meta`` in its header) atomically."""
    from safetensors.torch import save_file

    tmp = _temporary(path)
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata=dict(meta or {}))
    os.replace(tmp, path)
