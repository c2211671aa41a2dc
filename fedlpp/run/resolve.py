"""The run config made concrete before anything is prepared.

:mod:`fedlpp.config` only parses and checks types and ranges, so a config (or a trace's) can be
read without the engine, even when a plugin it names is not installed. :func:`resolve` is the
step that needs the plugins: it builds every plugin the config names once, so a bad name or
option fails before any data or model is loaded, and returns a copy with the quantizers'
defaults filled in (``quant.bits``, ``quant.block_size``, ``quant.upload_bits``): the config a
run records in its ``result.json``.
"""

from __future__ import annotations

import copy
import dataclasses

from fedlpp.adversaries import build_adversaries
from fedlpp.aggregators import build_aggregator
from fedlpp.config import QuantConfig, RunConfig
from fedlpp.defenses import build_defenses
from fedlpp.errors import FedlppError
from fedlpp.methods import build_method
from fedlpp.quant import QUANTIZERS, Quantizer, build_quantizer


def check_plugins(cfg: RunConfig) -> None:
    """Build every plugin ``cfg`` names once: a bad name or option is a FedlppError now."""
    build_method(cfg.fed.method)
    build_aggregator(cfg.aggregator).check_run(
        clients_per_round=cfg.fed.clients_per_round or cfg.fed.num_clients)
    build_defenses(cfg.defenses)
    build_adversaries(cfg.adversaries, num_clients=cfg.fed.num_clients)


def quantizer_from(q: QuantConfig, *, upload: bool = False) -> Quantizer:
    """Build the broadcast (or upload) quantizer from the ``quant`` section."""
    name = q.upload if upload else q.name
    bits = q.upload_bits if upload else q.bits
    kwargs: dict[str, object] = {}
    if bits is not None:
        kwargs["bits"] = bits
    if q.block_size is not None:
        kwargs["block_size"] = q.block_size
    fields = {f.name for f in dataclasses.fields(QUANTIZERS.get(name).Config)}
    if "grid" in fields:
        kwargs["grid"] = q.grid
    # a field a quantizer has no use for (block size of `none`) is not passed to it
    kwargs = {k: v for k, v in kwargs.items() if k in fields}
    if not upload:
        return build_quantizer(name, **kwargs)
    try:
        return build_quantizer(name, **kwargs)
    except FedlppError as exc:  # the quantizer names its own keys: say they are the upload's
        raise FedlppError(str(exc).replace("Invalid quant.bits:", "Invalid quant.upload_bits:")
                          .replace(" for quantizer '", " for upload quantizer '")) from None


def resolve(cfg: RunConfig) -> RunConfig:
    """A copy of ``cfg`` with every plugin checked and the quantizers' defaults filled in
    (``cfg`` itself is not changed). Raises FedlppError naming a bad plugin or option."""
    check_plugins(cfg)
    quantizer = quantizer_from(cfg.quant)
    uploader = quantizer_from(cfg.quant, upload=True)
    out = copy.deepcopy(cfg)
    out.quant = dataclasses.replace(cfg.quant, bits=quantizer.bits,
                                    block_size=quantizer.block_size, upload_bits=uploader.bits)
    return out
