"""The quantizer interface and its wire payload, :class:`PackedTensor`.

A quantizer maps a float tensor to a ``PackedTensor`` (bit-packed codes + float32 per-block
absmax scales) and back. ``PackedTensor.to_bytes()`` is exactly what goes over the wire, so
``nbytes`` is the broadcast cost; ``meta()`` + ``to_bytes()`` store it without pickle. Only the
codes of the tensor's own values are sent: a partial last block costs no padding codes.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from fedlpp.errors import FedlppError
from fedlpp.quant.pack import packed_nbytes

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``"float16"``; only floating dtypes are accepted."""
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise FedlppError(f"Cannot quantize a tensor of dtype {name} (allowed: {', '.join(_DTYPES)})")
    return name


def torch_dtype(name: str) -> torch.dtype:
    """``"float16"`` -> ``torch.float16`` (the inverse of :func:`dtype_name`)."""
    if name not in _DTYPES:
        raise FedlppError(f"Unknown payload dtype {name!r} (allowed: {', '.join(_DTYPES)})")
    return _DTYPES[name]


def check_bits(bits: Any, *, quantizer: str, allowed: Sequence[int], text: str) -> int:
    """Return ``bits`` if it is an int in ``allowed``, else a one-line FedlppError."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in allowed:
        raise FedlppError(f"Invalid quant.bits: {bits!r} for quantizer '{quantizer}' (allowed: {text})")
    return bits


def check_block_size(block_size: Any, *, quantizer: str, allowed: Sequence[int] | None = None) -> int | None:
    """Return ``block_size`` if None or a valid size (``allowed`` restricts it), else raise."""
    if block_size is None:
        return None
    ok = isinstance(block_size, int) and not isinstance(block_size, bool) and block_size >= 1
    if ok and (allowed is None or block_size in allowed):
        return block_size
    text = "an integer >= 1" if allowed is None else ", ".join(map(str, allowed))
    raise FedlppError(f"Invalid quant.block_size: {block_size!r} for quantizer '{quantizer}' (allowed: {text})")


def _check_codes(n_codes: int, *, numel: int, bits: int, quantizer: str) -> None:
    """One-line FedlppError if ``n_codes`` bytes cannot hold ``numel`` codes of ``bits`` bits."""
    need = packed_nbytes(numel, bits)
    if n_codes < need:
        raise FedlppError(f"Payload codes of {n_codes} bytes are too short for {numel} values of "
                          f"{bits} bits (expected at least {need} bytes for quantizer '{quantizer}')")


# The largest block a payload may declare for a tensor smaller than the block: decoding pads a
# tensor to whole blocks, so this bounds what a crafted header can make a reader allocate
# (16,777,216 values; the largest block any suite uses is 65,536). A block up to the tensor's
# own size is always allowed.
MAX_BLOCK_SIZE = 2**24
_BITS = (*range(1, 9), 16, 32)  # packed code widths 1..8; raw float16 / float32 for ``none``
META_KEYS = ("quantizer", "bits", "block_size", "shape", "dtype", "codes_nbytes", "n_scales")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _field(ok: bool, field: str, value: Any, allowed: str) -> None:
    if not ok:
        raise FedlppError(f"Invalid payload field {field}: {value!r} ({allowed})")


def check_meta(meta: Any, *, nbytes: int, max_block_size: int | None = MAX_BLOCK_SIZE) -> None:
    """A one-line FedlppError naming the first field of payload metadata ``meta`` (see
    :meth:`PackedTensor.meta`) that is of the wrong type, contradicts the other fields, or
    that ``nbytes`` bytes of codes and scales cannot hold. Allocates nothing.

    ``max_block_size``: the largest ``block_size`` a tensor with fewer values may declare
    (None: no cap).
    """
    if not isinstance(meta, dict):
        raise FedlppError(f"Payload metadata is a {type(meta).__name__}, expected a JSON object")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise FedlppError(f"Payload metadata lacks {', '.join(missing)}")
    name, bits, block, shape = meta["quantizer"], meta["bits"], meta["block_size"], meta["shape"]
    n_codes, n_scales = meta["codes_nbytes"], meta["n_scales"]
    _field(isinstance(name, str) and bool(name), "quantizer", name, "allowed: a quantizer name")
    _field(_is_int(bits) and bits in _BITS, "bits", bits, "allowed: 1..8, 16, 32")
    _field(_is_int(block) and block >= 1, "block_size", block, "allowed: an integer >= 1")
    _field(isinstance(shape, list | tuple) and all(_is_int(d) and d >= 0 for d in shape),
           "shape", shape, "allowed: a list of integers >= 0")
    _field(isinstance(meta["dtype"], str) and meta["dtype"] in _DTYPES, "dtype", meta["dtype"],
           f"allowed: {', '.join(_DTYPES)}")
    _field(_is_int(n_codes) and n_codes >= 0, "codes_nbytes", n_codes, "allowed: an integer >= 0")
    _field(n_scales is None or (_is_int(n_scales) and n_scales >= 0), "n_scales", n_scales,
           "allowed: null or an integer >= 0")
    _field(isinstance(meta.get("extra", {}), dict), "extra", meta.get("extra"),
           "allowed: a JSON object")
    expected = n_codes + 4 * (n_scales or 0)
    if nbytes != expected:
        raise FedlppError(f"Payload of {nbytes} bytes does not match its metadata (expected "
                          f"{expected} bytes for quantizer {name!r}: codes_nbytes {n_codes} + "
                          f"4 x n_scales {n_scales or 0})")
    numel = math.prod(int(d) for d in shape)
    _check_codes(n_codes, numel=numel, bits=bits, quantizer=name)  # bounds numel by the bytes
    if n_scales is None:  # no blocks: the codes are the values (``none``)
        _field(n_codes == packed_nbytes(numel, bits), "codes_nbytes", n_codes,
               f"allowed: {packed_nbytes(numel, bits)} for {numel:,} values of {bits} bits")
        return
    blocks = -(-numel // block)
    _field(n_scales == blocks, "n_scales", n_scales,
           f"allowed: {blocks:,}, one per block of {block:,} of the tensor's {numel:,} values")
    if max_block_size is not None:
        _field(block <= max(max_block_size, numel), "block_size", block,
               f"allowed: at most {max(max_block_size, numel):,} for a tensor of {numel:,} "
               f"values in {nbytes:,} bytes")
    whole = packed_nbytes(n_scales * block, bits)  # older payloads sent codes of whole blocks
    _field(n_codes <= max(whole, packed_nbytes(numel, bits)), "codes_nbytes", n_codes,
           f"allowed: {packed_nbytes(numel, bits)}..{whole} for {n_scales:,} blocks of {block:,} "
           f"values of {bits} bits")


def blockwise_meta(quantizer: Quantizer, shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
    """:meth:`PackedTensor.meta` of a block-wise payload by arithmetic alone: densely packed
    codes of the ``numel`` values plus one float32 scale per (possibly partial) block."""
    shape = tuple(int(s) for s in shape)
    numel = math.prod(shape)
    return {"quantizer": quantizer.name, "bits": quantizer.bits, "block_size": quantizer.block_size,
            "shape": list(shape), "dtype": dtype_name(torch_dtype(dtype)),
            "codes_nbytes": packed_nbytes(numel, quantizer.bits),
            "n_scales": -(-numel // quantizer.block_size), "extra": dict(quantizer.extra())}


@dataclass(eq=False)
class PackedTensor:
    """One quantized tensor as sent over the wire.

    Attributes:
        quantizer: registered name of the quantizer that made it.
        bits: bits per stored code (16 / 32 for ``none``).
        block_size: values per absmax block (1 for ``none``, which has no blocks).
        shape: shape of the original tensor.
        dtype: original dtype name (``"float32"``, ``"float16"``, ``"bfloat16"``, ...).
        codes: 1-D uint8 tensor, the densely bit-packed codes of the ``numel`` values, i.e.
            ``ceil(numel * bits / 8)`` bytes, the unused low bits of the last byte zero (or the
            raw float bytes for ``none``). A partial last block sends no padding codes.
        scales: float32 per-block absmax (``ceil(numel / block_size)`` of them; the last block
            may be partial), or None.
        extra: small JSON-able quantizer options needed to decode (e.g. ``{"grid": "nf"}``).
    """

    quantizer: str
    bits: int
    block_size: int
    shape: tuple[int, ...]
    dtype: str
    codes: Tensor
    scales: Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def numel(self) -> int:
        """Number of values in the original tensor."""
        return math.prod(self.shape)

    @property
    def codes_needed(self) -> int:
        """Bytes the codes of ``numel`` values of ``bits`` bits take: ``ceil(numel * bits / 8)``."""
        return packed_nbytes(self.numel, self.bits)

    def real_codes(self) -> Tensor:
        """``codes`` cut to :attr:`codes_needed` bytes.

        Payloads written before padding codes were dropped carry codes for whole blocks; their
        extra trailing bytes encode only padding, so decoders read this instead of ``codes``.

        Raises:
            FedlppError: fewer code bytes than the values need.
        """
        _check_codes(self.codes.numel(), numel=self.numel, bits=self.bits, quantizer=self.quantizer)
        return self.codes[: self.codes_needed]

    @property
    def nbytes(self) -> int:
        """Wire size in bytes, ``len(self.to_bytes())``."""
        return self.codes.numel() + (0 if self.scales is None else 4 * self.scales.numel())

    def meta(self) -> dict[str, Any]:
        """JSON-able description; with :meth:`to_bytes` it rebuilds this payload exactly."""
        return {"quantizer": self.quantizer, "bits": self.bits, "block_size": self.block_size,
                "shape": list(self.shape), "dtype": self.dtype, "codes_nbytes": self.codes.numel(),
                "n_scales": None if self.scales is None else self.scales.numel(),
                "extra": dict(self.extra)}

    def to_bytes(self) -> bytes:
        """The wire format: packed code bytes, then the scales as little-endian float32."""
        out = self.codes.contiguous().numpy().tobytes()
        if self.scales is not None:
            out += self.scales.numpy().astype("<f4").tobytes()
        return out

    @classmethod
    def from_bytes(cls, data: bytes, *, meta: dict[str, Any],
                   max_block_size: int | None = MAX_BLOCK_SIZE) -> PackedTensor:
        """Rebuild a payload from :meth:`to_bytes` output and :meth:`meta`.

        Every field of ``meta`` is checked against the others and against ``len(data)`` before
        anything is allocated (:func:`check_meta`); ``max_block_size``: the largest block a
        tensor smaller than it may declare (None: no cap, for metadata this side computed).
        """
        check_meta(meta, nbytes=len(data), max_block_size=max_block_size)
        n_codes = int(meta["codes_nbytes"])
        n_scales = None if meta["n_scales"] is None else int(meta["n_scales"])
        shape = tuple(int(s) for s in meta["shape"])
        buf = np.frombuffer(data, dtype=np.uint8)
        codes = torch.from_numpy(buf[:n_codes].copy())
        scales = None
        if n_scales is not None:
            raw = np.frombuffer(data, dtype="<f4", count=n_scales, offset=n_codes)
            scales = torch.from_numpy(raw.astype(np.float32))
        return cls(quantizer=meta["quantizer"], bits=int(meta["bits"]),
                   block_size=int(meta["block_size"]), shape=shape,
                   dtype=dtype_name(torch_dtype(meta["dtype"])), codes=codes,
                   scales=scales, extra=dict(meta.get("extra", {})))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PackedTensor):
            return NotImplemented
        same_scales = (self.scales is None and other.scales is None) or (
            self.scales is not None and other.scales is not None
            and torch.equal(self.scales, other.scales))
        return self.meta() == other.meta() and torch.equal(self.codes, other.codes) and same_scales

    __hash__ = None  # mutable tensors inside: not hashable


class Quantizer(ABC):
    """Fake quantization of float tensors with a real, bit-packed payload.

    Subclasses define ``Config`` (a validating dataclass), set ``bits`` / ``block_size`` (resolved
    defaults, never None) in ``__init__`` and implement :meth:`quantize` / :meth:`dequantize`.
    """

    Config: ClassVar[type]
    registered_name: ClassVar[str]  # set by ``@QUANTIZERS.register``
    deterministic: bool = True  # False: the payload depends on ``seed``

    def __init__(self, config: Any, *, bits: int, block_size: int) -> None:
        self.config = config
        self.bits = bits
        self.block_size = block_size

    @property
    def name(self) -> str:
        """The registered name, e.g. ``"nf"``."""
        return type(self).registered_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, block_size={self.block_size})"

    @abstractmethod
    def quantize(self, x: Tensor, *, seed: int | None = None) -> PackedTensor:
        """Quantize ``x`` (any shape, floating dtype). ``seed`` drives stochastic quantizers."""

    @abstractmethod
    def dequantize(self, packed: PackedTensor) -> Tensor:
        """The tensor a receiver reconstructs: original shape and dtype."""

    def wire_meta(self, shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
        """The ``PackedTensor.meta()`` that ``quantize`` gives for a tensor of ``shape`` and
        ``dtype`` (dtype name such as "float32"), without quantizing anything: a receiver who
        knows the architecture can decode a headerless payload with it.

        This default quantizes a zero tensor (right for any quantizer); the built-in ones
        override it with arithmetic, which costs nothing even for 100M-element tensors.

        Args:
            shape: shape of the tensor that will be sent.
            dtype: its dtype name, e.g. ``"float32"``.

        Returns:
            The metadata dict, equal to ``self.quantize(x).meta()`` for such an ``x``.
        """
        zeros = torch.zeros(tuple(int(s) for s in shape), dtype=torch_dtype(dtype))
        return self.quantize(zeros, seed=0).meta()

    def levels(self) -> Tensor | None:
        """The normalized codebook in [-1, 1] (float32), indexed by code: a value decodes to
        ``levels()[code] * block_scale``. Sorted for nf / uniform / stochastic; None for
        quantizers without a codebook."""
        return None

    def interval(self, packed: PackedTensor) -> tuple[Tensor, Tensor]:
        """Elementwise float32 ``(lo, hi)`` bounds of every original value consistent with
        ``packed`` (original shape). Raises NotImplementedError where not well defined."""
        raise NotImplementedError(f"quantizer '{self.name}' has no interval()")

    def fake_quantize(self, x: Tensor, *, seed: int | None = None) -> Tensor:
        """``dequantize(quantize(x))``: what a receiver of ``x`` sees."""
        return self.dequantize(self.quantize(x, seed=seed))

    def extra(self) -> dict[str, Any]:
        """Options besides bits / block_size that a payload must record to be decoded."""
        return {}

    def check_payload(self, packed: PackedTensor) -> None:
        """Raise a FedlppError if ``packed`` was not made by a quantizer configured like this one."""
        mine = (self.name, self.bits, self.block_size, self.extra())
        theirs = (packed.quantizer, packed.bits, packed.block_size, packed.extra)
        if mine != theirs:
            raise FedlppError(f"Payload from quantizer '{packed.quantizer}' (bits {packed.bits}, "
                              f"block_size {packed.block_size}, {packed.extra}) cannot be decoded by "
                              f"'{self.name}' (bits {self.bits}, block_size {self.block_size}, {self.extra()})")
