"""Typed run configuration: defaults -> TOML file -> ``--set key=value``.

Every section is a dataclass that validates itself in ``__post_init__``. Unknown keys and wrong
types are ``FedlppError``s naming the key, the bad value and what is allowed; every number has a
stated range (finite, and within a cap derived from what it means: see the bounds below). This module only
parses and validates: the plugins a config names (method, aggregator, defenses, adversaries)
are checked by :func:`fedlpp.run.resolve.resolve`, so a config can be read without them.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fedlpp.errors import FedlppError
from fedlpp.io import read_toml
from fedlpp.typed import check, from_dict

# ----------------------------------------------------------------------------- bounds
# Every number a config holds has a stated range, checked when the config is parsed, so a typo
# (a huge count, an inf, a negative seed) is one line naming the key before anything runs, not
# a run until killed or an exception deep in round 1. The caps are far above any meaningful
# value; each says why. Bounds that need the model or the data (seq_len against the model's
# positions, block_size against the largest tensor, local_epochs against the shards) are checked
# by fedlpp.run.context.prepare_run before any training.
SEED_MAX = 2**32 - 1  # numpy's (legacy) seed range; torch takes it too
# counts of work: each unit costs real time, so a cap turns "runs until killed" into an error
MAX_ROUNDS = 100_000
MAX_LOCAL_STEPS = 1_000_000  # optimizer steps per client per round
MAX_LOCAL_EPOCHS = 1_000.0  # passes over a client's shard per round
MAX_CLIENTS = 10_000  # every client's shard is encoded and held in this one process
MAX_RECORDS = 10_000_000  # every record is held in memory (KJV has 31,102)
MAX_BATCH = 65_536  # records per step; one batch is one tensor on the device
# tokens per record: the longest context of the models this tool is meant for is 8192; the
# model's own maximum is checked once it is loaded
MAX_SEQ_LEN = 8_192
# values per quantization block: the quantizer pads every tensor to a whole block, so a block
# is one allocation (2**24 float32 = 64 MiB); the largest private tensor bounds it at prepare
MAX_BLOCK_SIZE = 2**24
MAX_LORA_R = 4_096  # a rank above a layer's width adds nothing; 4096 is a 7B model's width
MAX_TINY_HIDDEN = 4_096  # tiny-llama is built in memory: a 7B model's width is plenty
MAX_TINY_LAYERS = 64
# AdamW moves each weight by about lr per step whatever the gradient's scale, so lr = 10
# already destroys any model in a step: a larger one is a typo (1e-3 is usual)
MAX_LR = 10.0
# the server step is master += server_lr * (mean - broadcast): 1 is FedAvg, server optimizers
# use a few; 100 is a generous cap
MAX_SERVER_LR = 100.0
# Dir(alpha) is uniform to within ~1e-3 per share well before 1e6; beyond it is a typo
MAX_DIRICHLET_ALPHA = 1e6
MAX_LORA_ALPHA = 1e6  # the adapter's output is scaled by alpha / r
MAX_QUANT_BITS = 32  # no quantizer stores more bits per value (32 = float32)


def check_int(key: str, value: int, lo: int, hi: int, note: str = "") -> None:
    """``lo <= value <= hi``, else ``Invalid <key>: <value> (allowed: an integer lo..hi<note>)``."""
    check(lo <= value <= hi, key, value, f"an integer {lo}..{hi}{note}")


def check_float(key: str, value: float, lo: float, hi: float, *, lo_open: bool = True,
                note: str = "") -> None:
    """A finite ``value`` in ``(lo, hi]`` (``[lo, hi]`` unless ``lo_open``), else one line."""
    ok = math.isfinite(value) and (lo < value if lo_open else lo <= value) and value <= hi
    check(ok, key, value, f"a finite number {lo:g} {'<' if lo_open else '<='} x <= {hi:g}{note}")


@dataclass
class ModelConfig:
    """Which base model; ``name`` is a registered model or ``hf:<path or id>``."""

    name: str = "tiny-llama"
    dtype: Literal["float32", "bfloat16"] = "float32"
    # tiny-llama only: its size (built from config, no download)
    tiny_hidden: int = 64
    tiny_layers: int = 2

    def __post_init__(self) -> None:
        check(8 <= self.tiny_hidden <= MAX_TINY_HIDDEN and self.tiny_hidden % 4 == 0,
              "model.tiny_hidden", self.tiny_hidden, f"a multiple of 4, 8..{MAX_TINY_HIDDEN}")
        check_int("model.tiny_layers", self.tiny_layers, 1, MAX_TINY_LAYERS)


@dataclass
class LoraConfig:
    """LoRA adapter (peft). Empty ``targets`` means the model's default attention projections."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_int("lora.r", self.r, 1, MAX_LORA_R)
        check_float("lora.alpha", self.alpha, 0, MAX_LORA_ALPHA)
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
        check_int("data.max_records", self.max_records, 0, MAX_RECORDS, " (0 = all)")
        check_int("data.seq_len", self.seq_len, 4, MAX_SEQ_LEN,
                  " and at most the model's maximum positions")
        check_float("data.alpha", self.alpha, 0, MAX_DIRICHLET_ALPHA)
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
        if self.block_size is not None:
            check_int("quant.block_size", self.block_size, 1, MAX_BLOCK_SIZE,
                      " and at most the largest private tensor's values")
        for key, bits in (("quant.bits", self.bits), ("quant.upload_bits", self.upload_bits)):
            if bits is not None:  # the quantizer then says which of these it takes
                check_int(key, bits, 1, MAX_QUANT_BITS)


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
        check_int("fed.num_clients", self.num_clients, 1, MAX_CLIENTS)
        check(0 <= self.clients_per_round <= self.num_clients, "fed.clients_per_round",
               self.clients_per_round, f"0..fed.num_clients={self.num_clients} (0 = all)")
        check_int("fed.rounds", self.rounds, 1, MAX_ROUNDS)
        check_int("fed.local_steps", self.local_steps, 0, MAX_LOCAL_STEPS,
                  " (0 = use local_epochs)")
        # read only when local_steps = 0; that every client's shard then gets at least one
        # step's worth of records is checked once the shards are known (prepare_run)
        check_float("fed.local_epochs", self.local_epochs, 0, MAX_LOCAL_EPOCHS)
        check_int("fed.batch_size", self.batch_size, 1, MAX_BATCH)
        check_float("fed.lr", self.lr, 0, MAX_LR)
        check_float("fed.server_lr", self.server_lr, 0, MAX_SERVER_LR)
        # AdamW multiplies each weight by 1 - lr * weight_decay per step (torch refuses a
        # negative one): at lr * weight_decay >= 1 it zeroes or flips every weight
        check(math.isfinite(self.weight_decay) and self.weight_decay >= 0
              and self.lr * self.weight_decay < 1, "fed.weight_decay", self.weight_decay,
              f"a finite number >= 0 with fed.lr * weight_decay < 1, i.e. < {1 / self.lr:g} at "
              f"fed.lr={self.lr:g}")
        check(math.isfinite(self.max_update_norm) and self.max_update_norm >= 0,
              "fed.max_update_norm", self.max_update_norm, "a finite number >= 0 (0 = no bound)")


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
        check_int("eval.every", self.every, 1, MAX_ROUNDS)
        check_int("eval.max_records", self.max_records, 0, MAX_RECORDS, " (0 = all)")
        check_int("eval.curve_records", self.curve_records, 0, MAX_RECORDS,
                  " (0 = the final evaluation's records)")
        check_int("eval.val_records", self.val_records, 0, MAX_RECORDS, " (0 = all)")
        check_int("eval.batch_size", self.batch_size, 1, MAX_BATCH)
        check_int("eval.converge_rounds", self.converge_rounds, 1, MAX_ROUNDS)
        check(math.isfinite(self.converge_share) and 0 < self.converge_share < 1,
              "eval.converge_share", self.converge_share, "a finite number 0 < x < 1")


@dataclass
class TraceConfig:
    """What the run keeps on disk for attacks (safetensors + JSON only)."""

    payloads: bool = True
    updates: bool = True
    masters: Literal["all", "last", "none"] = "all"


@dataclass
class SystemConfig:
    """Where and how the run computes (not what it computes: cell ids ignore this section on
    the CPU, and its settings change numbers at most at float-rounding level)."""

    device: str = "auto"  # auto (CUDA if torch sees one, else CPU), cpu, cuda, cuda:N
    # train a round's clients as one batched computation where it applies (fedlpp method, no
    # adversary acting, no defense inside local training, no dropout): "auto" = on a CUDA
    # device only (on the CPU it measured no faster for SmolLM2: benchmarks/bench_batched.py)
    batch_clients: Literal["auto", "on", "off"] = "auto"
    max_batch_records: int = 256  # rows of one batched step (clients x batch size), at most

    def __post_init__(self) -> None:
        from fedlpp.device import check_device_name

        check_device_name(self.device)
        check(1 <= self.max_batch_records <= 1_000_000, "system.max_batch_records",
              self.max_batch_records, "1..1000000 (rows of one batched step)")


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
        check_int("seed", self.seed, 0, SEED_MAX, ", numpy's seed range")
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
