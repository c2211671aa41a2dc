"""The folders the tool writes into (``--out``): what they hold, and one command at a time.

Markers: a folder the tool writes a run or a suite into holds ``.fedlpp`` (JSON: its ``kind``,
``train`` or ``bench``, and a suite's name); the shared store of a suite (``cache/``) holds one of
kind ``store``. The tool deletes a folder or a file only where a marker (or, for folders written
before markers existed, the tool's own files: ``result.json``/``trace/`` of a run,
``suite.json``/``cells/`` of a suite) says it wrote it.

Lock: a command that writes into a folder holds an exclusive ``fcntl.flock`` on ``.fedlpp.lock``
in it for as long as it runs (Linux and macOS; on a system without ``fcntl`` nothing is locked).
The lock file records the holder (pid, host, start time): a second command on the folder stops
with one line naming it. The operating system releases the lock of a process that dies, however
it dies, so a lock left by a killed command is taken over, with a warning line naming it. The
lock file is emptied, never deleted, when the command ends (deleting it would let two commands
lock two different files of the same name).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedlpp.errors import FedlppError
from fedlpp.io import atomic_write_json, read_json

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

MARKER = ".fedlpp"
LOCK = ".fedlpp.lock"
KINDS = {"train": "a training run (fedlpp train)", "bench": "a suite's results (fedlpp bench run)",
         "store": "a suite's shared store"}
# what a folder written before markers existed shows of its kind
LEGACY = {"train": ("result.json", "trace"), "bench": ("suite.json", "cells")}


def out_path(value: str | None, *, flag: str = "--out") -> Path:
    """``value`` as the folder to write into; an empty value or a NUL is one error line."""
    if value is None or not value.strip():
        raise FedlppError(f"Invalid {flag}: {value!r} (expected a folder path; '' would write "
                          "into the current directory, name it '.' to mean that)")
    if "\0" in value:
        raise FedlppError(f"Invalid {flag}: {value!r} (a path cannot hold a NUL character)")
    return Path(value)


def kind_of(folder: Path) -> str:
    """``missing``, ``file``, ``empty``, a marker's kind (``train``, ``bench``, ``store``), the kind
    a folder written before markers existed shows, or ``other`` (a folder of someone else's)."""
    if not folder.exists():
        return "missing"
    if not folder.is_dir():
        return "file"
    marker = folder / MARKER
    if marker.is_file():
        kind = read_json(marker, what="a fedlpp folder marker (JSON)")
        kind = kind.get("kind") if isinstance(kind, dict) else None
        return kind if kind in KINDS else "other"
    try:
        names = {p.name for p in folder.iterdir()} - {LOCK}
    except OSError as exc:
        raise FedlppError(f"Folder {str(folder)!r} cannot be read "
                          f"({exc.strerror or exc})") from None
    if not names:
        return "empty"
    for kind, signs in LEGACY.items():
        if names & set(signs):
            return kind
    return "other"


def check_folder(folder: Path, kind: str, *, flag: str = "--out") -> str:
    """Refuse to write ``kind`` into ``folder`` unless it is new, empty or of that kind; returns
    what it is (see :func:`kind_of`). Reads only."""
    found = kind_of(folder)
    if found in ("missing", "empty", kind):
        return found
    if found == "file":
        raise FedlppError(f"{flag} {str(folder)!r} is a file, not a folder")
    what = KINDS.get(found, "files fedlpp did not write")
    raise FedlppError(f"{flag} {str(folder)!r} holds {what}, not {KINDS[kind]}: choose a new or "
                      "empty folder")


def is_marked(folder: Path, kind: str) -> bool:
    """Whether ``folder`` carries the tool's marker of ``kind``."""
    try:
        return (folder / MARKER).is_file() and kind_of(folder) == kind
    except FedlppError:
        return False


def mark(folder: Path, kind: str, **info: Any) -> None:
    """Create ``folder`` if need be and write its marker (kind plus ``info``)."""
    atomic_write_json(folder / MARKER, {"kind": kind, **info})


def remove_written(folder: Path, names: Iterable[str]) -> list[str]:
    """Delete the files and folders ``names`` of ``folder`` (and the temporary files of their
    atomic writes); returns what was deleted. Only for a folder the tool wrote."""
    import shutil

    gone = []
    for name in names:
        for p in [folder / name, *folder.glob(f".{name}.tmp*")]:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
            else:
                continue
            gone.append(p.name)
    return gone


_HELD: dict[str, int] = {}  # folders this process has locked -> depth (the lock is reentrant)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _holder(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe(holder: dict[str, Any]) -> str:
    """``pid N on host H since T``, or what is known of a holder that recorded nothing yet."""
    if not holder.get("pid"):
        return "another process (it has not recorded its pid yet)"
    return f"pid {holder['pid']} on host {holder.get('host', '?')} since {holder.get('started', '?')}"


def _acquire(fd: int, folder: Path, flag: str) -> None:
    """Take the lock on ``fd`` or raise naming its holder; a stale holder is named in a warning."""
    here = socket.gethostname()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = True
    except BlockingIOError:
        raise FedlppError(f"{flag} {str(folder)!r} is in use by {describe(_holder(fd))}: wait for "
                          f"it to finish or choose another {flag}") from None
    except OSError:  # a filesystem without flock: the recorded pid decides
        locked = False
    previous = _holder(fd)
    if not previous.get("pid"):
        return
    same_host = previous.get("host") == here
    if not locked and same_host and _alive(int(previous["pid"])):
        raise FedlppError(f"{flag} {str(folder)!r} is in use by {describe(previous)}: wait for "
                          f"it to finish or choose another {flag}")
    why = "which is no longer running" if same_host and not _alive(int(previous["pid"])) else \
        "which no longer holds it"
    print(f"warning: {flag} {str(folder)!r}: taking over the lock left by {describe(previous)}, "
          f"{why}", file=sys.stderr)


@contextmanager
def locked(folder: Path, *, flag: str = "--out") -> Iterator[None]:
    """Hold the exclusive lock on ``folder`` (created if need be) while the block runs.

    A second holder stops with a FedlppError naming the first (pid, host, start time).
    Reentrant within a process (a command and the library function it calls may both lock).
    """
    key = os.path.realpath(folder)
    if key in _HELD or fcntl is None:
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise FedlppError(f"{flag} {str(folder)!r} cannot be written "
                          f"({exc.strerror or exc})") from None
    try:
        _acquire(fd, folder, flag)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[:8]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            os.ftruncate(fd, 0)  # released: the next holder finds nothing stale
    finally:
        os.close(fd)  # closing releases the flock
