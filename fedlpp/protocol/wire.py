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
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load, save

from fedlpp.errors import FedlppError
from fedlpp.quant import PackedTensor, Quantizer
from fedlpp.quant.base import MAX_BLOCK_SIZE, check_meta, dtype_name

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
    """Split a body into packed tensors by ``layout``; a length mismatch is a :class:`WireError`.

    The layout is what this side computed (not read from the message), so its block sizes are
    not capped; its length is checked before any tensor is made."""
    if len(data) != layout.nbytes:
        raise WireError(f"body of {len(data):,} bytes, expected {layout.nbytes:,} for this "
                        "model and quantizer (truncated or padded)")
    out, pos = {}, 0
    for name, meta, size in zip(layout.names, layout.metas, layout.sizes, strict=True):
        out[name] = PackedTensor.from_bytes(data[pos : pos + size], meta=meta, max_block_size=None)
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
    magic, version, reserved, fingerprint, count, loss, crc = HEADER.unpack_from(message)
    if magic != MAGIC:
        raise WireError(f"not an upload message (starts with {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise WireError(f"upload format version {version} (this server reads {VERSION})")
    if reserved != 0:
        raise WireError(f"upload header field reserved: {reserved} (expected 0)")
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


def decode_payload(data: bytes, *, layout: Layout | None = None) -> dict[str, PackedTensor]:
    """Inverse of :func:`encode_payload`; a defect is a one-line :class:`WireError`.

    Every field of the safetensors header (its length, each entry's dtype, shape and byte
    offsets) and of each tensor's metadata (bits, block size, shape, lengths) is checked
    against the file's real size before anything is allocated (:func:`payload_header`). With
    ``layout`` (what the run's config implies) the tensors must be exactly its names, each with
    its metadata; without, a block may hold at most ``MAX_BLOCK_SIZE`` values or as many as
    the payload's largest tensor.
    """
    metas = payload_header(data)
    if layout is not None:
        _check_against(metas, layout=layout)
    else:
        _check_blocks(metas)
    try:
        tensors = load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors' own error type, made one line
        raise WireError(f"payload file is not valid safetensors: {_one_line(exc)}") from None
    return {
        name: PackedTensor.from_bytes(tensors[name].numpy().tobytes(), meta=metas[name],
                                      max_block_size=None)  # checked above
        for name in tensors
    }


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def payload_header(data: bytes) -> dict[str, dict[str, Any]]:
    """Each tensor's metadata from the safetensors header of a payload file, every field
    checked against the others and the file's size (:func:`fedlpp.quant.base.check_meta`,
    without a cap on the block size); a defect is a one-line :class:`WireError`. Allocates
    nothing beyond the header."""
    if len(data) < 8:
        raise WireError(f"payload file of {len(data)} bytes is shorter than the 8-byte "
                        "safetensors header length")
    header_len = int.from_bytes(data[:8], "little")  # safetensors: u64 length, then JSON
    if header_len > len(data) - 8:
        raise WireError(f"payload header length {header_len:,} exceeds the {len(data) - 8:,} "
                        "bytes after it")
    try:
        header = json.loads(bytes(data[8 : 8 + header_len]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"payload header is not JSON: {_one_line(exc)}") from None
    if not isinstance(header, dict):
        raise WireError(f"payload header is a JSON {type(header).__name__}, expected an object")
    raw = header.pop("__metadata__", None)
    if not isinstance(raw, dict):
        raise WireError("payload header has no __metadata__ object (the per-tensor quantizer "
                        "metadata)")
    body = len(data) - 8 - header_len
    for name, entry in header.items():
        _check_entry(name, entry, body=body)
    if set(raw) != set(header):
        raise WireError(f"payload metadata names {sorted(set(raw) - set(header))[:3]} without a "
                        f"tensor and tensors {sorted(set(header) - set(raw))[:3]} without metadata")
    metas = {}
    for name in header:
        try:
            metas[name] = json.loads(raw[name])
        except (TypeError, ValueError, RecursionError) as exc:
            raise WireError(f"payload tensor {name!r}: metadata is not JSON "
                            f"({_one_line(exc)})") from None
        if not isinstance(metas[name], dict):
            raise WireError(f"payload tensor {name!r}: metadata is a JSON "
                            f"{type(metas[name]).__name__}, expected an object")
        try:
            check_meta(metas[name], nbytes=_entry_nbytes(header[name]), max_block_size=None)
        except FedlppError as exc:
            raise WireError(f"payload tensor {name!r}: {exc}") from None
    return metas


def _entry_nbytes(entry: dict) -> int:
    first, last = entry["data_offsets"]
    return last - first


def _check_entry(name: str, entry: Any, *, body: int) -> None:
    """One tensor entry of the safetensors header: 1-D uint8 within the ``body`` bytes."""
    def bad(field: str, value: Any, allowed: str) -> WireError:
        return WireError(f"payload tensor {name!r}: invalid header field {field}: {value!r} "
                         f"({allowed})")

    if not isinstance(entry, dict):
        raise bad("entry", entry, "expected an object with dtype, shape, data_offsets")
    if entry.get("dtype") != "U8":
        raise bad("dtype", entry.get("dtype"), "allowed: U8, the wire bytes")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and len(shape) == 1 and _is_count(shape[0])):
        raise bad("shape", shape, "allowed: [n], one dimension of n >= 0 bytes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
            and offsets[0] <= offsets[1] <= body):
        raise bad("data_offsets", offsets, f"allowed: [begin, end], 0 <= begin <= end <= {body:,}, "
                  "the bytes after the header")
    if offsets[1] - offsets[0] != shape[0]:
        raise bad("shape", shape, f"allowed: [{offsets[1] - offsets[0]}], the length its "
                  f"data_offsets {offsets} give")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_blocks(metas: Mapping[str, dict[str, Any]]) -> None:
    """No tensor declares a block larger than ``MAX_BLOCK_SIZE`` and the payload's largest
    tensor: decoding pads each tensor to whole blocks."""
    largest = max((math.prod(m["shape"]) for m in metas.values()), default=0)
    cap = max(MAX_BLOCK_SIZE, largest)
    for name, meta in metas.items():
        if meta["n_scales"] is not None and meta["block_size"] > cap:
            raise WireError(f"payload tensor {name!r}: invalid header field block_size: "
                            f"{meta['block_size']!r} (allowed: at most {cap:,}, the larger of "
                            f"{MAX_BLOCK_SIZE:,} and the payload's largest tensor)")


def _check_against(metas: Mapping[str, dict[str, Any]], *, layout: Layout) -> None:
    """The payload's tensors are exactly ``layout``'s, each with the layout's metadata (its
    code byte count is checked against the bytes and blocks by ``check_meta``: older payloads
    sent the codes of whole blocks)."""
    if set(metas) != set(layout.names):
        missing = sorted(set(layout.names) - set(metas))
        extra = sorted(set(metas) - set(layout.names))
        raise WireError(f"payload holds {len(metas)} tensors, the run's layout "
                        f"{len(layout.names)} (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, expected in zip(layout.names, layout.metas, strict=True):
        got = metas[name]
        for key in ("quantizer", "bits", "block_size", "shape", "dtype", "n_scales", "extra"):
            want, have = expected.get(key, {}), got.get(key, {})
            if key == "shape":
                want, have = list(want), list(have)
            if have != want:
                raise WireError(f"payload tensor {name!r}: invalid header field {key}: "
                                f"{have!r} (the run's layout: {want!r})")
