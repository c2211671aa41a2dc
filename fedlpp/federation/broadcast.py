"""Server -> client: quantize the master's private tensors, pack them, count the bytes.

The wire format of one broadcast is, per tensor, ``PackedTensor.to_bytes()`` (codes densely
packed at ``bits`` bits plus per-block scales). Tensor names and shapes are not counted: both
sides know the architecture. ``encode_payload``/``decode_payload`` give that as a safetensors
file of uint8 tensors with the per-tensor metadata in its JSON header (never pickle).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import load, save

from fedlpp.quant import PackedTensor, Quantizer


@dataclass
class Broadcast:
    """One round's broadcast: the packed payload and what a client dequantizes it to."""

    packed: dict[str, PackedTensor]
    proxy: dict[str, torch.Tensor]

    @property
    def nbytes(self) -> int:
        """Bytes one client receives."""
        return sum(p.nbytes for p in self.packed.values())


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, round, client, ...), stable across processes."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def make_broadcast(master: Mapping[str, torch.Tensor], *, quantizer: Quantizer, seed: int,
                   cache: dict[str, tuple[PackedTensor, torch.Tensor]] | None = None,
                   static: frozenset[str] = frozenset()) -> Broadcast:
    """Quantize every tensor of ``master`` for one round.

    Args:
        master: full-precision private tensors.
        quantizer: the broadcast quantizer.
        seed: this round's seed; a stochastic quantizer gets fresh randomness per round and tensor.
        cache: where a deterministic quantizer keeps the payload of ``static`` tensors (base weights
            that never change), so they are quantized once, yet still sent and counted each round.
        static: names of tensors that never change during the run.
    """
    packed: dict[str, PackedTensor] = {}
    proxy: dict[str, torch.Tensor] = {}
    for i, (name, tensor) in enumerate(master.items()):
        reuse = cache is not None and quantizer.deterministic and name in static
        if reuse and name in cache:
            packed[name], proxy[name] = cache[name]
            continue
        packed[name] = quantizer.quantize(tensor, seed=derive_seed(seed, i))
        proxy[name] = receive(packed[name], quantizer=quantizer)
        if reuse:
            cache[name] = (packed[name], proxy[name])
    return Broadcast(packed=packed, proxy=proxy)


def receive(packed: PackedTensor, *, quantizer: Quantizer) -> torch.Tensor:
    """What a client does with one received tensor: dequantize it."""
    return quantizer.dequantize(packed)


def encode_payload(packed: Mapping[str, PackedTensor]) -> bytes:
    """Serialize a payload: one uint8 tensor of wire bytes per name, metadata in the header."""
    tensors = {
        name: torch.frombuffer(bytearray(p.to_bytes()), dtype=torch.uint8) if p.nbytes
        else torch.zeros(0, dtype=torch.uint8)
        for name, p in packed.items()
    }
    meta = {name: json.dumps(p.meta()) for name, p in packed.items()}
    return save(tensors, metadata=meta)


def decode_payload(data: bytes) -> dict[str, PackedTensor]:
    """Inverse of :func:`encode_payload`."""
    tensors = load(data)
    header_len = int.from_bytes(data[:8], "little")  # safetensors: u64 length, then JSON
    meta = json.loads(data[8 : 8 + header_len])["__metadata__"]
    return {
        name: PackedTensor.from_bytes(tensors[name].numpy().tobytes(), meta=json.loads(meta[name]))
        for name in tensors
    }
