"""The on-disk signal store: cells that score the same model on the same records share it."""

import numpy as np
import pytest
from conftest import run_tiny

import attacks.context as context_module
from attacks.context import AttackContext
from attacks.runner import run_attacks
from attacks.signal_store import SignalStore
from attacks.signals import SampleSignals


def _same(a: SampleSignals, b: SampleSignals) -> bool:
    return (np.array_equal(a.indices, b.indices)
            and all(len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y, strict=True))
                    for x, y in ((a.token_logprobs, b.token_logprobs), (a.token_mu, b.token_mu),
                                 (a.token_sigma, b.token_sigma))))


def test_round_trip_keeps_ragged_records_exactly(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [3, 0, 5, 1]
    signals = SampleSignals(indices=np.array([7, 2, 9, 4]),
                            token_logprobs=[rng.normal(size=n) for n in lengths],
                            token_mu=[rng.normal(size=n) for n in lengths],
                            token_sigma=[rng.random(n) for n in lengths])
    store = SignalStore(tmp_path)
    store.put("k", signals)
    assert _same(store.get("k"), signals)
    assert store.get("absent") is None
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00")  # unreadable: a miss
    assert store.get("bad") is None


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of one seed that differ only in the broadcast's bit width (two suite cells)."""
    root = tmp_path_factory.mktemp("store")
    return run_tiny(root, "quant.bits=2", name="nf2")[1], run_tiny(root, "quant.bits=3", name="nf3")[1]


def test_a_second_run_reads_the_shared_base_signals_instead_of_scoring(two_runs, tmp_path,
                                                                        monkeypatch):
    first, second = two_runs
    store = SignalStore(tmp_path)
    ctx = AttackContext(first, store=store)
    indices = [0, 3, 5, 8]
    base = ctx.signals(ctx.initial, indices)
    assert (store.hits, store.misses, len(list(tmp_path.iterdir()))) == (0, 1, 1)

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored a model whose signals are stored")

    other = AttackContext(second, store=store)
    monkeypatch.setattr(context_module, "compute_signals", no_scoring)
    assert _same(other.signals(other.initial, indices), base)
    assert store.hits == 1
    # a different model (the trained master) or other records are not in the store
    with pytest.raises(AssertionError, match="scored"):
        other.signals(other.trace.master(other.trace.num_rounds + 1), indices)
    with pytest.raises(AssertionError, match="scored"):
        other.signals(other.initial, [0, 3, 5])


def test_attacks_with_a_store_give_the_numbers_without_it(two_runs, tmp_path):
    first, second = two_runs
    store = SignalStore(tmp_path)
    sets = ["max_records=8"]
    run_attacks(first, names=["reference"], sets=sets, resamples=20, quiet=True,
                ctx=AttackContext(first, store=store))
    shared = run_attacks(second, names=["reference"], sets=sets, resamples=20, quiet=True,
                         ctx=AttackContext(second, store=store))
    alone = run_attacks(second, names=["reference"], sets=sets, resamples=20, quiet=True)
    assert store.hits >= 1  # the base model's signals came from the first run
    assert shared[0]["metrics"] == alone[0]["metrics"]
