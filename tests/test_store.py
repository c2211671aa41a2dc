"""The result store: cells that evaluate or score the same model on the same records share it."""

import numpy as np
import pytest
from conftest import TINY, run_tiny

import attacks.context as context_module
import fedlpp.run.context as context_run
from attacks.context import AttackContext
from attacks.runner import run_attacks
from attacks.signals import SampleSignals
from fedlpp.config import load_config
from fedlpp.run.context import prepare_run
from fedlpp.run.simulator import run_federation
from fedlpp.store import ResultStore


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
    store = ResultStore(tmp_path)
    store.put_arrays("signals", "k", signals.to_arrays())
    assert _same(SampleSignals.from_arrays(store.get_arrays("signals", "k")), signals)
    store.put_json("utility", "k", {"loss": 0.1 + 0.2})
    assert store.get_json("utility", "k") == {"loss": 0.1 + 0.2}  # floats exactly
    assert store.get_arrays("signals", "absent") is None
    (tmp_path / "signals" / "bad.safetensors").write_bytes(b"\x10\x00\x00")  # unreadable
    assert store.get_arrays("signals", "bad") is None
    assert (store.hits, store.misses) == (2, 2)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of one seed that differ only in the broadcast's bit width (two suite cells)."""
    root = tmp_path_factory.mktemp("store")
    return run_tiny(root, "quant.bits=2", name="nf2")[1], run_tiny(root, "quant.bits=3", name="nf3")[1]


def test_a_second_run_reads_the_shared_base_signals_instead_of_scoring(two_runs, tmp_path,
                                                                        monkeypatch):
    first, second = two_runs
    store = ResultStore(tmp_path)
    ctx = AttackContext(first, store=store)
    indices = [0, 3, 5, 8]
    base = ctx.signals(ctx.initial, indices)
    assert (store.hits, store.misses, len(list((tmp_path / "signals").iterdir()))) == (0, 1, 1)

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
        other.signals(other.initial, [0, 3, 5, 9])
    # records already scored for this model are not scored again, in any subset or order
    assert _same(other.signals(other.initial, [8, 0]), base.subset([3, 0]))
    # a partial state (what it leaves in place is not in its key) is never stored
    partial = dict(list(other.initial.items())[1:])
    assert other.run.model_key(partial) is None


def test_attacks_with_a_store_give_the_numbers_without_it(two_runs, tmp_path):
    first, second = two_runs
    store = ResultStore(tmp_path)
    names, sets = ["as-is", "reference"], ["max_records=8"]
    run_attacks(first, names=names, sets=sets, resamples=20, quiet=True,
                ctx=AttackContext(first, store=store))
    shared = run_attacks(second, names=names, sets=sets, resamples=20, quiet=True,
                         ctx=AttackContext(second, store=store))
    alone = run_attacks(second, names=names, sets=sets, resamples=20, quiet=True)
    assert store.hits >= 1  # the base model's signals came from the first run
    assert [a["metrics"] for a in shared] == [a["metrics"] for a in alone]


def test_a_run_reads_the_base_evaluation_another_run_stored(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "store")

    def run(bits, *, shared):
        cfg = load_config(None, [*TINY, f"quant.bits={bits}"])
        ctx = prepare_run(cfg)
        ctx.store = store if shared else None
        return run_federation(cfg, out=tmp_path / f"{bits}-{shared}", quiet=True, echo=False,
                              ctx=ctx)

    # stores round 0 (base) on test and validation records, then central and proxy of rounds
    # 1 and 2 on test records and central on validation records
    run(2, shared=True)
    assert (store.hits, len(list((tmp_path / "store" / "records").iterdir()))) == (0, 8)
    alone = run(3, shared=False)
    shared = run(3, shared=True)
    assert store.hits == 2  # the base model of the same seed: the same evaluations
    assert shared["final"] == alone["final"] and shared["rounds"] == alone["rounds"]
    # a hit skips the evaluation itself
    monkeypatch.setattr(context_run, "per_record_losses",
                        lambda *a, **k: pytest.fail("evaluated"))
    with pytest.raises(pytest.fail.Exception, match="evaluated"):
        run(4, shared=True)  # the base comes from the store; the trained model does not
    assert store.hits == 4
