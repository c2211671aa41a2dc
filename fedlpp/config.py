"""Typed run configuration: defaults -> TOML file -> ``--set key=value``.

Every section is a dataclass that validates itself in ``__post_init__``. Unknown keys and wrong
types are ``FedlppError``s naming the key, the bad value and what is allowed. This module only
parses and validates: the plugins a config names (method, aggregator, defenses, adversaries)
are checked by :func:`fedlpp.run.resolve.resolve`, so a config can be read without them.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fedlpp.errors import FedlppError
from fedlpp.io import read_toml
from fedlpp.typed import check, from_dict


@dataclass
class ModelConfig:
    """Which base model; ``name`` is a registered model or ``hf:<path or id>``."""

    name: str = "tiny-llama"
    dtype: Literal["float32", "bfloat16"] = "float32"
    # tiny-llama only: its size (built from config, no download)
    tiny_hidden: int = 64
    tiny_layers: int = 2

    def __post_init__(self) -> None:
        check(self.tiny_hidden >= 8 and self.tiny_hidden % 4 == 0, "model.tiny_hidden",
               self.tiny_hidden, "a multiple of 4, >= 8")
        check(self.tiny_layers >= 1, "model.tiny_layers", self.tiny_layers, ">= 1")


@dataclass
class LoraConfig:
    """LoRA adapter (peft). Empty ``targets`` means the model's default attention projections."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check(self.r >= 1, "lora.r", self.r, "an integer >= 1")
        check(self.alpha > 0, "lora.alpha", self.alpha, "> 0")
        check(0.0 <= self.dropout < 1.0, "lora.dropout", self.dropout, "0 <= dropout < 1")


@dataclass
class DataConfig:
    """Dataset, its per-client partition and the member / non-member / test splits."""

    name: str = "kjv-lm"
    path: str = ""  # file for text / jsonl / csv; split or config for hf:<name>
    text_field: str = "text"
    label_field: str = ""
    group_field: str = ""  # column giving each record's natural group (user, author, source)
    max_records: int = 2000  # records drawn (seeded) from the dataset before splitting; 0 = all
    # drop records whose text repeats an earlier one before drawing: a repeated text would be a
    # member and a non-member at once (KJV has a verse 72 times)
    dedup: bool = True
    seq_len: int = 64
    partition: Literal["iid", "dirichlet", "natural"] = "iid"
    alpha: float = 0.5  # dirichlet concentration
    member_fraction: float = 0.5  # share of each client's shard used for training (members)
    test_fraction: float = 0.1  # global test split, held out from every client
    # validation split, held out from every client and from the test split: the round whose
    # results are reported is chosen on it (eval.select); 0 = none (the last round is reported)
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        check(self.max_records >= 0, "data.max_records", self.max_records, ">= 0 (0 = all)")
        check(self.seq_len >= 4, "data.seq_len", self.seq_len, ">= 4")
        check(self.alpha > 0, "data.alpha", self.alpha, "> 0")
        check(0 < self.member_fraction <= 1, "data.member_fraction", self.member_fraction, "0 < x <= 1")
        check(0 < self.test_fraction < 1, "data.test_fraction", self.test_fraction, "0 < x < 1")
        check(0 <= self.val_fraction < 1 and self.test_fraction + self.val_fraction < 1,
               "data.val_fraction", self.val_fraction,
               f"0 <= x < 1 - data.test_fraction ({1 - self.test_fraction:g}); 0 = no validation split")


@dataclass
class QuantConfig:
    """The broadcast quantizer. ``bits``/``block_size`` unset mean the quantizer's own default
    (2 bits, the paper's figure, for nf/uniform/stochastic; 4 or 8 for the bnb ones; 32 for none)."""

    name: str = "nf"
    bits: int | None = None
    block_size: int | None = None
    grid: Literal["nf", "uniform"] = "nf"  # the grid of the `stochastic` quantizer
    scope: Literal["adapter", "full"] = "adapter"
    upload: str = "none"  # quantizer for client uploads ("none" = fp32)
    upload_bits: int | None = None

    def __post_init__(self) -> None:
        check(self.block_size is None or self.block_size >= 1, "quant.block_size",
               self.block_size, "an integer >= 1")


@dataclass
class FedConfig:
    """The federation: clients, rounds, local training, server update."""

    num_clients: int = 4
    clients_per_round: int = 0  # 0 = all clients every round
    rounds: int = 3
    local_steps: int = 5  # optimizer steps per client per round; 0 = use local_epochs
    local_epochs: float = 1.0
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    server_lr: float = 1.0
    aggregation: Literal["straight_through", "replace"] = "straight_through"
    method: str = "fedlpp"  # training method (fedlpp.methods registry)
    # the server rejects an update whose L2 distance from the broadcast exceeds this; 0 = no bound
    max_update_norm: float = 0.0

    def __post_init__(self) -> None:
        check(self.num_clients >= 1, "fed.num_clients", self.num_clients, ">= 1")
        check(0 <= self.clients_per_round <= self.num_clients, "fed.clients_per_round",
               self.clients_per_round, f"0..fed.num_clients={self.num_clients} (0 = all)")
        check(self.rounds >= 1, "fed.rounds", self.rounds, ">= 1")
        check(self.local_steps >= 0, "fed.local_steps", self.local_steps, ">= 0 (0 = use local_epochs)")
        check(self.local_epochs > 0, "fed.local_epochs", self.local_epochs, "> 0")
        check(self.batch_size >= 1, "fed.batch_size", self.batch_size, ">= 1")
        check(self.lr > 0, "fed.lr", self.lr, "> 0")
        check(self.server_lr > 0, "fed.server_lr", self.server_lr, "> 0")
        check(self.max_update_norm >= 0, "fed.max_update_norm", self.max_update_norm,
               ">= 0 (0 = no bound)")


@dataclass
class EvalConfig:
    """Utility evaluation of central / proxy / base."""

    every: int = 1  # evaluate every N rounds (the last round always)
    max_records: int = 200  # test records of the final evaluation; 0 = the whole test split
    # the learning curve: central and proxy on this many test records (the first of the final
    # evaluation's) every evaluated round; 0 = the same records as the final evaluation
    curve_records: int = 0
    val_records: int = 0  # validation records evaluated per round; 0 = the whole split
    batch_size: int = 16
    # the round whose results are reported: "validation" = lowest central validation loss
    # (needs data.val_fraction > 0), "last" = the last round
    select: Literal["validation", "last"] = "validation"
    # converged: the best central validation loss improved by at most converge_share of its
    # total gain over the untrained model during the last converge_rounds evaluated rounds
    converge_rounds: int = 2
    converge_share: float = 0.05

    def __post_init__(self) -> None:
        check(self.every >= 1, "eval.every", self.every, ">= 1")
        check(self.max_records >= 0, "eval.max_records", self.max_records, ">= 0 (0 = all)")
        check(self.curve_records >= 0, "eval.curve_records", self.curve_records,
               ">= 0 (0 = the final evaluation's records)")
        check(self.val_records >= 0, "eval.val_records", self.val_records, ">= 0 (0 = all)")
        check(self.batch_size >= 1, "eval.batch_size", self.batch_size, ">= 1")
        check(self.converge_rounds >= 1, "eval.converge_rounds", self.converge_rounds, ">= 1")
        check(0 < self.converge_share < 1, "eval.converge_share", self.converge_share, "0 < x < 1")


@dataclass
class TraceConfig:
    """What the run keeps on disk for attacks (safetensors + JSON only)."""

    payloads: bool = True
    updates: bool = True
    masters: Literal["all", "last", "none"] = "all"


@dataclass
class SystemConfig:
    """Where the run computes (not what it computes: a CPU run's ids and numbers ignore it)."""

    device: str = "auto"  # auto (CUDA if torch sees one, else CPU), cpu, cuda, cuda:N

    def __post_init__(self) -> None:
        from fedlpp.device import check_device_name

        check_device_name(self.device)


@dataclass
class RunConfig:
    """A whole FedLPP run."""

    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    fed: FedConfig = field(default_factory=FedConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    trace: TraceConfig = field(default_factory=TraceConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    # plugin tables: {name = ..., option = value}; adversaries name a `behaviour` instead
    aggregator: dict[str, Any] = field(default_factory=lambda: {"name": "mean"})
    defenses: list[dict[str, Any]] = field(default_factory=list)
    adversaries: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        check(self.eval.select != "validation" or self.data.val_fraction > 0, "eval.select",
               self.eval.select, "'last' when data.val_fraction = 0 (no validation split to "
               "select on)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- loading

def parse_set(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b=value``: the value is read as a TOML literal, else kept as a string."""
    if "=" not in item:
        raise FedlppError(f"Invalid --set {item!r} (expected key=value, e.g. quant.bits=4)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise FedlppError(f"Invalid --set {item!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def merge(base: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``base[path[0]]...[path[-1]] = value``, creating sections."""
    node = base
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise FedlppError(f"Config key '{'.'.join(path)}': '{part}' is not a section")
    node[path[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                *, cls: type = RunConfig) -> Any:
    """Defaults, then the TOML file at ``path``, then each ``key=value`` override."""
    values: dict[str, Any] = {}
    if path is not None:
        values = read_toml(path, what="a config file (TOML)")
    for item in overrides:
        key, value = parse_set(item)
        merge(values, key, value)
    return from_dict(cls, values)
