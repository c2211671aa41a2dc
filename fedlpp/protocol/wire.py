"""The bytes on the wire, both ways, and the self-describing payload file of the trace.

Both sides know the architecture and the quantizers, i.e. a :class:`Layout`: tensor names in
order, and for each the ``PackedTensor`` metadata its codes and scales take. So neither names nor
shapes travel:

* a **broadcast** (server -> client) is the body alone: every tensor's ``PackedTensor.to_bytes()``
  (packed codes, then float32 block scales) in layout order;
* an **upload** (client -> server) is a 32-byte header, then the body of the client's trained
  tensors under the upload quantizer. The header carries what the server cannot know: the
  client's example count (its aggregation weight) and mean training loss, plus a magic, a format
  version, a fingerprint of the layout the client encoded for and a CRC-32 of the body, so a
  garbled, truncated or foreign message is refused before any value is read.

Bytes counted are the lengths of these messages.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load, save

from fedlpp.errors import FedlppError
from fedlpp.quant import PackedTensor, Quantizer
from fedlpp.quant.base import dtype_name

MAGIC = b"FLPU"
VERSION = 1
# magic, format version, reserved, layout fingerprint, example count, mean train loss, body CRC-32
HEADER = struct.Struct("<4sHHQIdI")
MAX_EXAMPLES = 2**32 - 1


class WireError(FedlppError):
    """A message that cannot be decoded; its text is the reason the server records."""


@dataclass(frozen=True)
class Layout:
    """What sender and receiver agree on without sending it: names, shapes, dtypes, quantizer."""

    names: tuple[str, ...]
    metas: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, tensors: Mapping[str, torch.Tensor], *, quantizer: Quantizer) -> Layout:
        """The layout of ``tensors`` (their names, shapes and dtypes, in order) under ``quantizer``."""
        metas = tuple(quantizer.wire_meta(tuple(t.shape), dtype_name(t.dtype))
                      for t in tensors.values())
        return cls(names=tuple(tensors), metas=metas)

    @property
    def sizes(self) -> list[int]:
        """Bytes each tensor takes in a body."""
        return [int(m["codes_nbytes"]) + 4 * int(m["n_scales"] or 0) for m in self.metas]

    @property
    def nbytes(self) -> int:
        """Bytes of a whole body."""
        return sum(self.sizes)

    @property
    def fingerprint(self) -> int:
        """A 64-bit digest of the layout: an upload made for another model or quantizer differs."""
        text = json.dumps([self.names, self.metas], sort_keys=True)
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def encode_body(packed: Mapping[str, PackedTensor]) -> bytes:
    """The wire bytes of a set of packed tensors, in their order."""
    return b"".join(p.to_bytes() for p in packed.values())


def decode_body(data: bytes, *, layout: Layout) -> dict[str, PackedTensor]:
    """Split a body into packed tensors by ``layout``; a length mismatch is a :class:`WireError`."""
    if len(data) != layout.nbytes:
        raise WireError(f"body of {len(data):,} bytes, expected {layout.nbytes:,} for this "
                        "model and quantizer (truncated or padded)")
    out, pos = {}, 0
    for name, meta, size in zip(layout.names, layout.metas, layout.sizes, strict=True):
        out[name] = PackedTensor.from_bytes(data[pos : pos + size], meta=meta)
        pos += size
    return out


@dataclass
class UploadContent:
    """A decoded upload: packed tensors plus what the client says about its training."""

    packed: dict[str, PackedTensor]
    num_examples: int
    train_loss: float


def encode_upload(packed: Mapping[str, PackedTensor], *, layout: Layout, num_examples: int,
                  train_loss: float) -> bytes:
    """An upload message: header (with ``layout``'s fingerprint) + body of ``packed``."""
    body = encode_body(packed)
    count = max(0, min(int(num_examples), MAX_EXAMPLES))
    head = HEADER.pack(MAGIC, VERSION, 0, layout.fingerprint, count, float(train_loss),
                       zlib.crc32(body))
    return head + body


def reseal(message: bytes) -> bytes:
    """``message`` with its header's CRC recomputed over whatever body it now has (a sender
    that tampers with its own body on purpose keeps the message well-formed)."""
    if len(message) < HEADER.size:
        return message
    fields = list(HEADER.unpack_from(message))
    fields[-1] = zlib.crc32(message[HEADER.size :])
    return HEADER.pack(*fields) + message[HEADER.size :]


def decode_upload(message: bytes, *, layout: Layout) -> UploadContent:
    """Check and decode an upload made for ``layout``; any defect is a one-line :class:`WireError`."""
    if len(message) < HEADER.size:
        raise WireError(f"message of {len(message)} bytes is shorter than the "
                        f"{HEADER.size}-byte upload header")
    magic, version, _, fingerprint, count, loss, crc = HEADER.unpack_from(message)
    if magic != MAGIC:
        raise WireError(f"not an upload message (starts with {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise WireError(f"upload format version {version} (this server reads {VERSION})")
    if fingerprint != layout.fingerprint:
        raise WireError(f"encoded for another model layout or upload quantizer (fingerprint "
                        f"{fingerprint:016x}, expected {layout.fingerprint:016x})")
    body = message[HEADER.size :]
    if len(body) != layout.nbytes:
        raise WireError(f"body of {len(body):,} bytes, expected {layout.nbytes:,} "
                        "(truncated or padded)")
    if zlib.crc32(body) != crc:
        raise WireError("body does not match its checksum (corrupted in transit)")
    return UploadContent(packed=decode_body(body, layout=layout), num_examples=count,
                         train_loss=loss)


def encode_payload(packed: Mapping[str, PackedTensor]) -> bytes:
    """The trace's self-describing payload file: one uint8 tensor of wire bytes per name, the
    per-tensor metadata in the safetensors header (never pickle)."""
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
