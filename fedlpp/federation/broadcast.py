"""Server -> client: quantize the master's private tensors and pack them.

The wire format of one broadcast is the body of :mod:`fedlpp.protocol.wire`: per tensor,
``PackedTensor.to_bytes()`` (codes densely packed at ``bits`` bits plus per-block scales), in
the master's order. Tensor names and shapes are not sent: both sides know the architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import torch

from fedlpp.protocol.wire import encode_body
from fedlpp.quant import PackedTensor, Quantizer
from fedlpp.seeding import derive_seed


@dataclass
class Broadcast:
    """One round's broadcast: the packed payload, its wire bytes, and what a client decodes."""

    round: int
    packed: dict[str, PackedTensor]
    proxy: dict[str, torch.Tensor] = field(repr=False)

    @cached_property
    def data(self) -> bytes:
        """The bytes sent to each client."""
        return encode_body(self.packed)

    @property
    def nbytes(self) -> int:
        """Bytes one client receives."""
        return sum(p.nbytes for p in self.packed.values())


def make_broadcast(master: Mapping[str, torch.Tensor], *, quantizer: Quantizer, seed: int,
                   rnd: int = 0, cache: dict[str, tuple[PackedTensor, torch.Tensor]] | None = None,
                   static: frozenset[str] = frozenset()) -> Broadcast:
    """Quantize every tensor of ``master`` for round ``rnd``.

    Args:
        master: full-precision private tensors.
        quantizer: the broadcast quantizer.
        seed: this round's seed; a stochastic quantizer gets fresh randomness per round and tensor.
        rnd: the round the broadcast is for (recorded).
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
        proxy[name] = quantizer.dequantize(packed[name])
        if reuse:
            cache[name] = (packed[name], proxy[name])
    return Broadcast(round=rnd, packed=packed, proxy=proxy)
