"""Quantizers for the FedLPP broadcast: fake quantization with real bit-packed payloads.

>>> q = build_quantizer("nf", bits=2)
>>> packed = q.quantize(torch.randn(64, 8))
>>> packed.nbytes, q.dequantize(packed).shape
(160, torch.Size([64, 8]))

Built-in quantizers (one module each): ``nf``, ``uniform``, ``stochastic``, ``bnb-nf4``,
``bnb-fp4``, ``bnb-int8``, ``none``. Third-party ones register in the entry-point group
``fedlpp.quantizers``.
"""

from __future__ import annotations

from typing import Any

from fedlpp.quant.base import PackedTensor, Quantizer
from fedlpp.registry import Registry

QUANTIZERS = Registry("quantizer", group="fedlpp.quantizers", builtins=["fedlpp.quant.*"],
                      option_prefix="quant.")


def build_quantizer(name: str, **kwargs: Any) -> Quantizer:
    """Build quantizer ``name`` from its Config options, e.g. ``build_quantizer("nf", bits=3)``.

    Raises:
        FedlppError: unknown name ("Did you mean ...?"), unknown option or invalid value.
    """
    return QUANTIZERS.build(name, **kwargs)


def quantizer_for(packed: PackedTensor) -> Quantizer:
    """A quantizer that decodes ``packed`` (rebuilt from the payload's own metadata)."""
    return QUANTIZERS.build(packed.quantizer, bits=packed.bits, block_size=packed.block_size,
                            **packed.extra)


__all__ = ["QUANTIZERS", "PackedTensor", "Quantizer", "build_quantizer", "quantizer_for"]
