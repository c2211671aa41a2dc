"""Reading and writing files safely.

Reads: every file the tool reads from the user or from disk goes through :func:`read_bytes`,
:func:`read_text`, :func:`read_json` or :func:`read_toml`, which turn a missing file, a folder, a
permission error, bad UTF-8 or a parse error into one :class:`FedlppError` line naming the file
and what was expected, never a traceback.

Writes: a temporary file in the same folder, flushed, then renamed over the target. Every
result, trace file and store entry goes through here, so a process killed at any moment leaves
either the old file or the new one under a final name, never half of one.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fedlpp.errors import FedlppError


def read_bytes(path: str | Path, *, what: str) -> bytes:
    """The bytes of ``path``; a missing file, a folder or a permission error is one FedlppError
    line naming the file and ``what`` it should be (e.g. ``"a suite file (TOML)"``)."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise FedlppError(f"{what} not found: {str(p)!r}") from None
    except IsADirectoryError:
        raise FedlppError(f"{str(p)!r} is a folder, not {what}") from None
    except PermissionError:
        raise FedlppError(f"{str(p)!r} cannot be read (permission denied); expected {what}") from None
    except OSError as exc:
        raise FedlppError(f"{str(p)!r} cannot be read ({exc.strerror or exc}); expected {what}") from None


def read_text(path: str | Path, *, what: str) -> str:
    """The UTF-8 text of ``path`` (see :func:`read_bytes`); bad UTF-8 names the byte offset."""
    data = read_bytes(path, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FedlppError(f"{str(path)!r} is not UTF-8 text (byte {exc.start}: "
                          f"{data[exc.start:exc.start + 1]!r}); expected {what}") from None


def read_json(path: str | Path, *, what: str) -> Any:
    """The parsed JSON of ``path`` (see :func:`read_text`); a parse error names line and column."""
    try:
        return json.loads(read_text(path, what=what))
    except json.JSONDecodeError as exc:
        raise FedlppError(f"{str(path)!r} is not valid JSON (line {exc.lineno}, column "
                          f"{exc.colno}: {exc.msg}); expected {what}") from None


def read_toml(path: str | Path, *, what: str) -> dict[str, Any]:
    """The parsed TOML of ``path`` (see :func:`read_text`)."""
    try:
        return tomllib.loads(read_text(path, what=what))
    except tomllib.TOMLDecodeError as exc:
        raise FedlppError(f"{str(path)!r} is not valid TOML ({exc}); expected {what}") from None


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
