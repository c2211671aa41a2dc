"""Reading a run's trace (:mod:`fedlpp.run.trace`), opened and verified by
:mod:`fedlpp.run.trace_check`: what attacks read, as if the run had stopped after its reported
round, and the check of its tensors files against the run's model (step 6)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load

from fedlpp.errors import FedlppError
from fedlpp.io import read_bytes
from fedlpp.protocol.wire import Layout, decode_payload, payload_header
from fedlpp.quant import Quantizer
from fedlpp.run.trace_check import TraceCheck

# safetensors' dtype names of the torch dtypes a trace holds
ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
             torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def _shown(values: Iterable[str], n: int = 3) -> str:
    values = sorted(values)
    more = f" (+{len(values) - n} more)" if len(values) > n else ""
    return ", ".join(repr(v) for v in values[:n]) + more


class TraceReader(TraceCheck):
    """Read a finished run: its result, config, splits, payloads, updates and masters.

    Opening a run verifies its result and trace (steps 1-5 of :mod:`fedlpp.run.trace_check`'s
    list; step 6 is :meth:`verify_layout`); asking for something the run did not record is a FedlppError
    naming the config key that records it.
    """

    # --- step 6: the tensors files against the run's model ----------------------------------
    def _header(self, path: Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
        """A safetensors file's tensors (dtype, shape) and metadata, from its header alone."""
        rel = self._rel(path)
        try:
            with safe_open(str(path), framework="pt") as fh:
                tensors = {k: (fh.get_slice(k).get_dtype(), tuple(fh.get_slice(k).get_shape()))
                           for k in fh.keys()}
                return tensors, dict(fh.metadata() or {})
        except (SafetensorError, OSError, ValueError) as exc:
            raise self._damaged(rel, f"is not a valid safetensors file "
                                f"({' '.join(str(exc).split())})") from None

    def _check_tensors(self, path: Path, expected: Mapping[str, tuple[str, tuple[int, ...]]],
                       *, subset: bool = False) -> dict[str, str]:
        """``path`` holds exactly (``subset``: only) ``expected``'s tensors, each of its dtype and
        shape; returns the file's metadata."""
        rel = self._rel(path)
        tensors, meta = self._header(path)
        missing, extra = set(expected) - set(tensors), set(tensors) - set(expected)
        if extra:
            raise self._damaged(rel, f"holds tensor(s) the run's model does not: {_shown(extra)}")
        if missing and not subset:
            raise self._damaged(rel, f"lacks tensor(s) of the run's model: {_shown(missing)}")
        if not tensors:
            raise self._damaged(rel, "holds no tensor")
        for name, (dtype, shape) in tensors.items():
            want_dtype, want_shape = expected[name]
            if shape != want_shape:
                raise self._damaged(rel, f"holds tensor {name!r} of shape {list(shape)}, the "
                                    f"run's model has {list(want_shape)}")
            if dtype != want_dtype:
                raise self._damaged(rel, f"holds tensor {name!r} of dtype {dtype}, the run's "
                                    f"model has {want_dtype}")
        return meta

    def _check_round(self, path: Path, meta: Mapping[str, str], rnd: int) -> None:
        if meta.get("round") != str(rnd):
            rel = self._rel(path)
            raise self._damaged(rel, f"records round {meta.get('round')}, expected round {rnd}"
                                + (" (the selected one)" if path == self.at.final_master else ""))

    def verify_layout(self, *, trainable: Mapping[str, torch.Tensor],
                      static: Mapping[str, Sequence[int]], quantizer: Quantizer) -> None:
        """Step 6: the tensors files have the layout the run's config implies.

        Args:
            trainable: the run's trainable tensors as its model holds them (their names,
                shapes and dtypes; e.g. ``RunContext.initial``).
            static: the shape of each private base weight (scope ``full``; else empty).
            quantizer: the run's broadcast quantizer.
        """
        f32 = ST_DTYPES[torch.float32]
        master = {n: (f32 if t.is_floating_point() else ST_DTYPES.get(t.dtype, str(t.dtype)),
                      tuple(t.shape)) for n, t in trainable.items()}
        update = {n: (ST_DTYPES.get(t.dtype, str(t.dtype)), tuple(t.shape))
                  for n, t in trainable.items()}
        files = self.manifest["files"]
        for rnd in range(1, len(self.result["rounds"]) + 1):
            path = self.at.master(rnd)
            if self._rel(path) in files:
                self._check_round(path, self._check_tensors(path, master), rnd)
            updates = self.at.round_dir(rnd) / "updates"
            for rel in sorted(r for r in files if (self.root / r).parent == updates):
                self._check_tensors(self.root / rel, update, subset=True)
        meta = self._check_tensors(self.at.final_master, master)
        self._check_round(self.at.final_master, meta, self.num_rounds)
        if static and self.config.trace.masters != "none":
            self._require_listed(self.at.private_base, files,
                                 "scope 'full' with trace.masters kept implies it")
            self._check_tensors(self.at.private_base,
                                {n: (f32, tuple(s)) for n, s in static.items()})
        self._check_payloads({**{n: tuple(t.shape) for n, t in trainable.items()},
                              **{n: tuple(s) for n, s in static.items()}}, quantizer)

    def _check_payloads(self, private: Mapping[str, tuple[int, ...]], quantizer: Quantizer) -> None:
        """Every payload decodes under the run's quantizer with the final payload's tensors,
        each a private tensor of the run encoded as ``quantizer`` encodes its shape."""
        final = self.at.final_payload
        names = set(self._payload_names(final))
        if names - set(private):
            raise self._damaged(final.name, f"holds tensor(s) that are no private tensor of the "
                                f"run: {_shown(names - set(private))}")
        layout = Layout.of({n: torch.empty(s, device="meta") for n, s in private.items()
                            if n in names}, quantizer=quantizer)
        paths = [self.at.payload(r) for r in range(1, len(self.result["rounds"]) + 1)]
        for path in [p for p in paths if p.exists()] + [final]:
            rel = self._rel(path)
            have = set(self._payload_names(path))
            if have != names:
                raise self._damaged(rel, f"lacks tensor(s) of the final payload: "
                                    f"{_shown(names - have)}" if names - have else
                                    f"holds tensor(s) the final payload does not: "
                                    f"{_shown(have - names)}")
            try:
                decode_payload(self._bytes(path, "a payload"), layout=layout)
            except FedlppError as exc:
                raise self._damaged(rel, f"cannot be decoded under the run's quantizer "
                                    f"({exc})") from None

    def _payload_names(self, path: Path) -> list[str]:
        try:
            return list(payload_header(self._bytes(path, "a payload")))
        except FedlppError as exc:
            rel = self._rel(path)
            raise self._damaged(rel, f"cannot be decoded ({exc})") from None

    # --- reading --------------------------------------------------------------------------------
    def _bytes(self, path: Path, what: str) -> bytes:
        return read_bytes(path, what=f"{what} of the trace in {str(self.dir)!r}")

    def _tensors(self, path: Path, what: str) -> dict[str, torch.Tensor]:
        data = self._bytes(path, what)
        try:
            return load(data)
        except (SafetensorError, ValueError) as exc:
            raise self._damaged(self._rel(path),
                                f"is not a valid safetensors file ({exc})") from None

    def _need(self, path: Path, key: str, what: str) -> Path:
        if not path.exists():
            raise FedlppError(f"The trace in {str(self.dir)!r} holds no {what} ({path.name}): "
                              f"rerun training with --set {key}")
        return path

    def participants(self, rnd: int) -> list[int]:
        """Clients sampled in round ``rnd``; round ``num_rounds + 1`` (final delivery) is everyone."""
        if rnd == self.num_rounds + 1:
            return list(range(self.config.fed.num_clients))
        return list(self.result["rounds"][rnd - 1]["clients"])

    def payload_bytes(self, rnd: int) -> bytes:
        """Round ``rnd``'s broadcast as sent; ``num_rounds + 1`` is the final delivered one."""
        if rnd == self.num_rounds + 1:
            return self._bytes(self.at.final_payload, "the final payload")
        path = self._need(self.at.payload(rnd), "trace.payloads=true", f"payload of round {rnd}")
        return self._bytes(path, f"the payload of round {rnd}")

    def payload(self, rnd: int) -> dict:
        """Round ``rnd``'s broadcast as ``{name: PackedTensor}``."""
        return decode_payload(self.payload_bytes(rnd))

    def update(self, rnd: int, client: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """A received update and its metadata (``num_examples``, ``accepted``, ``reason``)."""
        path = self.at.update(rnd, client)
        rejected = {r["client"]: r.get("reason")
                    for r in self.result["rounds"][rnd - 1]["rejected"]}
        if not path.exists() and client in rejected:
            raise FedlppError(f"The upload of client {client} in round {rnd} was rejected and "
                              f"holds no readable update ({rejected[client]})")
        self._need(path, "trace.updates=true", f"update of client {client} in round {rnd}")
        tensors = self._tensors(path, f"the update of client {client} in round {rnd}")
        return tensors, self._header(path)[1]

    def batches(self, rnd: int) -> dict[int, dict[str, Any]]:
        """Round ``rnd``'s local training batches: client -> ``{"accepted", "steps"}``, each step
        the record ids of one batch."""
        path = self.at.batches(rnd)
        if not path.exists():
            raise FedlppError(f"The trace in {str(self.dir)!r} does not record which records were "
                              f"trained on in round {rnd} (a trace made before batches were "
                              "recorded): train the run again")
        return self._read_batches(rnd)

    def trained(self, *, clients: list[int] | None = None, rounds: list[int] | None = None,
                accepted_only: bool = True) -> dict[int, int]:
        """How many times each record was in a training batch, over ``rounds`` (default all)
        and ``clients`` (default all), counting only accepted updates unless told otherwise."""
        counts: dict[int, int] = {}
        for rnd in rounds or range(1, self.num_rounds + 1):
            for c, entry in self.batches(rnd).items():
                if (clients is None or c in clients) and (entry["accepted"] or not accepted_only):
                    for step in entry["steps"]:
                        for i in step:
                            counts[i] = counts.get(i, 0) + 1
        return counts

    def master(self, rnd: int) -> dict[str, torch.Tensor]:
        """The master round ``rnd``'s payload was made from; ``num_rounds + 1`` is the final one."""
        if rnd == self.num_rounds + 1:
            return self._tensors(self.at.final_master, "the final master")
        path = self._need(self.at.master(rnd), "trace.masters=all", f"master of round {rnd}")
        return self._tensors(path, f"the master of round {rnd}")

    def private_base(self) -> dict[str, torch.Tensor]:
        """Scope ``full``: the private base weights (empty in scope ``adapter``)."""
        if self.config.quant.scope != "full":
            return {}
        path = self._need(self.at.private_base, "trace.masters=last", "private base weights")
        return self._tensors(path, "the private base weights")
