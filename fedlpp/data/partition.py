"""Who holds which record: per-client partitions and the member / non-member / test splits.

Pure functions of their inputs and a seed (numpy ``Generator``s), so a run's splits can be
rebuilt exactly and saved beside its trace. Indices always refer to ``dataset.records``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedlpp.config import DataConfig
from fedlpp.data.base import TextDataset
from fedlpp.errors import FedlppError
from fedlpp.seeding import numpy_rng

SCHEMES = ("iid", "dirichlet", "natural")


def _by_key(keys: Sequence[Hashable]) -> list[np.ndarray]:
    """Indices of each distinct key, keys in order of first appearance (deterministic)."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return [np.asarray(idx) for idx in groups.values()]


def _iid(n: int, num_clients: int, rng: np.random.Generator) -> list[list[int]]:
    return [list(shard) for shard in np.array_split(rng.permutation(n), num_clients)]


def _dirichlet(keys: Sequence[Hashable], num_clients: int, alpha: float,
               rng: np.random.Generator) -> list[list[int]]:
    shards: list[list[int]] = [[] for _ in range(num_clients)]
    for idx in _by_key(keys):
        idx = rng.permutation(idx)
        share = rng.dirichlet(np.full(num_clients, alpha))
        if not np.all(np.isfinite(share)) or share.sum() <= 0:
            # Tiny alpha can underflow every component; the limit is one client taking all.
            share = np.eye(num_clients)[rng.integers(num_clients)]
        cuts = np.round(np.cumsum(share)[:-1] * len(idx)).astype(int)
        for client, part in enumerate(np.split(idx, cuts)):
            shards[client].extend(part.tolist())
    # Small alpha leaves some clients empty; a client without data cannot train, so each empty
    # one takes a record from the currently largest shard (possible whenever n >= num_clients).
    for client in range(num_clients):
        if not shards[client]:
            donor = max(range(num_clients), key=lambda c: len(shards[c]))
            if len(shards[donor]) <= 1:
                break
            shards[client].append(shards[donor].pop())
    return shards


def _natural(keys: Sequence[Hashable], num_clients: int,
             rng: np.random.Generator) -> list[list[int]]:
    groups = _by_key(keys)
    if len(groups) < num_clients:
        raise FedlppError(
            f"data.partition=natural needs at least one group per client: the data has "
            f"{len(groups)} group(s) for {num_clients} clients (lower fed.num_clients or use "
            f"data.partition=iid or dirichlet)"
        )
    # Largest group first to the least-loaded client (LPT scheduling): sizes end up balanced.
    # The seeded shuffle before the stable sort decides ties between equal-sized groups.
    order = sorted(rng.permutation(len(groups)).tolist(), key=lambda g: -len(groups[g]))
    shards: list[list[int]] = [[] for _ in range(num_clients)]
    for g in order:
        client = min(range(num_clients), key=lambda c: len(shards[c]))
        shards[client].extend(groups[g].tolist())
    return shards


def partition(*, keys: Sequence[Hashable], num_clients: int, scheme: str, alpha: float,
              seed: int) -> list[list[int]]:
    """Assign every index ``0..len(keys)-1`` to exactly one client.

    Args:
        keys: one key per record: its label or group (``dirichlet``), its group (``natural``);
            ignored by ``iid`` except for its length.
        num_clients: number of clients (>= 1).
        scheme: ``"iid"`` (seeded shuffle, shards differing in size by at most one),
            ``"dirichlet"`` (for each key value, client shares drawn from Dir(``alpha``); small
            alpha = skewed, large = near uniform; every client gets >= 1 record when there are
            enough) or ``"natural"`` (whole key groups per client, balanced by size).
        alpha: the Dirichlet concentration (only ``dirichlet`` reads it).
        seed: seeds the numpy Generator.

    Returns:
        ``num_clients`` sorted index lists.

    Raises:
        FedlppError: unknown scheme, or ``natural`` with fewer groups than clients.
    """
    if num_clients < 1:
        raise FedlppError(f"Invalid fed.num_clients: {num_clients} (allowed: >= 1)")
    rng = numpy_rng(seed)
    if scheme == "iid":
        shards = _iid(len(keys), num_clients, rng)
    elif scheme == "dirichlet":
        if alpha <= 0:
            raise FedlppError(f"Invalid data.alpha: {alpha!r} (allowed: > 0)")
        shards = _dirichlet(keys, num_clients, alpha, rng)
    elif scheme == "natural":
        shards = _natural(keys, num_clients, rng)
    else:
        raise FedlppError(f"Invalid data.partition: {scheme!r} (allowed: {', '.join(SCHEMES)})")
    return [sorted(int(i) for i in shard) for shard in shards]


def dataset_fingerprint(dataset: TextDataset) -> str:
    """sha256 over the records' texts and labels, in order.

    Saved with the splits so that a trace read against different data (another file, another
    ``max_records`` or seed) is caught instead of silently mis-indexed.
    """
    h = hashlib.sha256()
    for record in dataset.records:
        h.update(record.text.encode("utf-8"))
        h.update(f"\x1f{record.label}\x1e".encode())
    return h.hexdigest()


@dataclass
class Splits:
    """Which records are test, and per client which are members (trained on) or not.

    Every list is in a seeded random order, not sorted: any prefix (``test[:200]`` for a
    cheaper evaluation, ``nonmembers[c][:k]`` to balance an attack) is a uniform sample rather
    than, say, the first books of the Bible.

    Attributes:
        test: global test split, held out from every client.
        members: per client, the records it trains on.
        nonmembers: per client, held-out records from the same shard (same distribution as its
            members): the negatives of membership inference.
        fingerprint: :func:`dataset_fingerprint` of the dataset the indices refer to.
        validation: held out from every client and from the test split; the reported round is
            chosen on it.
    """

    test: list[int]
    members: list[list[int]]
    nonmembers: list[list[int]]
    fingerprint: str = ""
    validation: list[int] = field(default_factory=list)

    @property
    def num_clients(self) -> int:
        """Number of clients."""
        return len(self.members)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (plain ints and lists)."""
        out: dict[str, Any] = {"fingerprint": self.fingerprint, "test": list(self.test),
                               "members": [list(m) for m in self.members],
                               "nonmembers": [list(m) for m in self.nonmembers]}
        if self.validation:  # without one, the file is what it was before validation existed
            out["validation"] = list(self.validation)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Splits:
        """Inverse of :meth:`to_json`; a malformed dict is a FedlppError."""
        try:
            splits = cls(test=[int(i) for i in d["test"]],
                         members=[[int(i) for i in m] for m in d["members"]],
                         nonmembers=[[int(i) for i in m] for m in d["nonmembers"]],
                         fingerprint=str(d.get("fingerprint", "")),
                         validation=[int(i) for i in d.get("validation", [])])
        except (KeyError, TypeError, ValueError) as exc:
            raise FedlppError(f"Invalid data splits JSON: {type(exc).__name__}: {exc}") from None
        if len(splits.members) != len(splits.nonmembers):
            raise FedlppError(f"Invalid data splits JSON: {len(splits.members)} member lists "
                              f"but {len(splits.nonmembers)} non-member lists")
        return splits

    def check(self, dataset: TextDataset) -> None:
        """Raise a FedlppError unless these splits were made from ``dataset``."""
        found = dataset_fingerprint(dataset)
        if self.fingerprint and self.fingerprint != found:
            raise FedlppError(
                f"The data splits were made from other data (fingerprint {self.fingerprint[:12]}, "
                f"data.name={dataset.name!r} now gives {found[:12]}): use the run's data config and seed"
            )
        every = [*self.test, *self.validation, *(i for m in self.members for i in m),
                 *(i for m in self.nonmembers for i in m)]
        if every and not 0 <= min(every) <= max(every) < len(dataset.records):
            raise FedlppError(f"The data splits index records outside 0..{len(dataset.records) - 1}")


def _records_left(dataset: TextDataset, cfg: DataConfig) -> str:
    """How the dataset came to its size, for errors about too few records."""
    drawn = f"data.max_records={cfg.max_records}"
    if not dataset.repeats_dropped:
        return drawn
    return (f"data.dedup dropped {dataset.repeats_dropped} repeated texts, "
            f"{drawn} left {len(dataset.records)}")


def _check_sizes(dataset: TextDataset, *, cfg: DataConfig, num_clients: int, n_val: int,
                 n_rest: int) -> None:
    """A record per client, and a validation record when a validation split is asked for."""
    if num_clients > n_rest:
        raise FedlppError(
            f"fed.num_clients={num_clients} exceeds the {n_rest} records available to clients "
            f"({_records_left(dataset, cfg)}, data.test_fraction={cfg.test_fraction}, "
            f"data.val_fraction={cfg.val_fraction})"
        )
    if cfg.val_fraction > 0 and n_val == 0:
        # a run must not report "no validation split" when one was asked for: refuse instead
        n = len(dataset.records)
        raise FedlppError(
            f"Invalid data.val_fraction: {cfg.val_fraction} (allowed here: 0 with "
            f"eval.select=last, or >= {0.5 / n:.3g}: {cfg.val_fraction} of the {n} records "
            f"({_records_left(dataset, cfg)}) rounds to 0 validation records)"
        )


def make_splits(dataset: TextDataset, *, cfg: DataConfig, num_clients: int, seed: int) -> Splits:
    """Hold out a test and a validation split, partition the rest over clients, split each shard into members
    and non-members.

    Partition keys: ``natural`` uses record groups; ``dirichlet`` uses labels for ``"cls"`` data
    (label skew) and groups for ``"lm"`` data (topic skew); ``iid`` ignores them.

    Args:
        dataset: the loaded dataset.
        cfg: the data config (``test_fraction``, ``val_fraction``, ``partition``, ``alpha``,
            ``member_fraction``).
        num_clients: number of clients.
        seed: the run seed; test split, partition and member split use separate streams.

    Returns:
        The splits, with the dataset's fingerprint.

    Raises:
        FedlppError: more clients than records left for them (naming the repeats ``data.dedup``
            dropped), a ``val_fraction`` > 0 that rounds to no validation record (the run
            would otherwise report that it has no validation split), ``natural`` with fewer
            groups than clients, or a client left without a member record.
    """
    n = len(dataset.records)
    # Seed tags 1..3 give independent streams (a [seed, 0] tag would collide with plain seed).
    rng_test, rng_part, rng_members = (numpy_rng(seed, tag) for tag in (1, 2, 3))
    n_test = max(1, math.floor(cfg.test_fraction * n + 0.5))
    n_val = math.floor(cfg.val_fraction * n + 0.5) if cfg.val_fraction > 0 else 0
    perm = rng_test.permutation(n)
    # the validation split follows the test split in the same permutation: with no validation
    # split, test and client records are exactly what they were before it existed
    test, validation = perm[:n_test].tolist(), perm[n_test : n_test + n_val].tolist()
    rest = sorted(perm[n_test + n_val :].tolist())
    _check_sizes(dataset, cfg=cfg, num_clients=num_clients, n_val=n_val, n_rest=len(rest))

    records = [dataset.records[i] for i in rest]
    by_label = cfg.partition == "dirichlet" and dataset.task == "cls"
    keys = [r.label if by_label else r.group for r in records]
    shards = partition(keys=keys, num_clients=num_clients, scheme=cfg.partition,
                       alpha=cfg.alpha, seed=int(rng_part.integers(2**31)))

    members: list[list[int]] = []
    nonmembers: list[list[int]] = []
    for client, shard in enumerate(shards):
        if not shard:
            raise FedlppError(
                f"client {client} got no member records (data.partition={cfg.partition}, "
                f"fed.num_clients={num_clients}, {len(rest)} records for clients)"
            )
        local = rng_members.permutation([rest[i] for i in shard]).tolist()
        k = min(len(local), max(1, math.floor(cfg.member_fraction * len(local) + 0.5)))
        members.append(local[:k])
        nonmembers.append(local[k:])
    return Splits(test=test, members=members, nonmembers=nonmembers,
                  fingerprint=dataset_fingerprint(dataset), validation=validation)
