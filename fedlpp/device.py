"""Where a run's model computes: ``system.device`` = ``auto`` (CUDA when torch sees a GPU, else
the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

Only the model and the batches it reads live on that device. Everything that leaves the model
(trainable state, per-record results) comes back to the CPU, so the master, quantization, the
wire format, aggregation, the trace and the attacks' statistics are device-independent code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from fedlpp.errors import FedlppError

ALLOWED = "auto, cpu, cuda, cuda:N"


def check_device_name(name: str) -> None:
    """A one-line error for a value that is not a device name (availability is checked later)."""
    if not (name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", name)):
        raise FedlppError(f"Invalid system.device: {name!r} (allowed: {ALLOWED})")


def resolve_device(name: str) -> torch.device:
    """The device ``name`` means on this machine; CUDA asked for where there is none is an error."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FedlppError(f"system.device = {name!r}, but torch sees no CUDA device here "
                              "(allowed here: auto, cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FedlppError(f"system.device = {name!r}, but torch sees "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def device_id(name: str) -> str | None:
    """What a result's identity records of the device: None for the CPU (so every CPU result
    keeps the id it had before devices existed), else the resolved device, e.g. ``"cuda"``.
    An explicit ``cuda`` is taken at its word (a suite may be planned on a machine without one)."""
    check_device_name(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else None
    return None if name == "cpu" else name


def model_device(model: torch.nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """``batch`` on ``device`` (the same tensors when already there)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def describe(device: torch.device) -> dict[str, str | None]:
    """What a result records of the device it ran on."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"device": str(device), "device_name": name}
