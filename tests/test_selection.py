"""The reported round is chosen on a validation split, never on the test split; the run says
whether it converged; attacks see the run as released at that round."""

import json
import math

import pytest
import torch

from fedlpp.config import load_config
from fedlpp.errors import FedlppError
from fedlpp.protocol.wire import decode_payload
from fedlpp.quant import quantizer_for
from fedlpp.run.selection import convergence, select_round
from fedlpp.run.simulator import run_federation
from fedlpp.run.trace_reader import TraceReader

TINY = ["model.name=tiny-llama", "data.name=kjv-lm", "data.max_records=120", "data.seq_len=16",
        "fed.num_clients=2", "fed.rounds=4", "fed.local_steps=2", "fed.batch_size=4",
        "fed.lr=0.05", "eval.max_records=16", "eval.curve_records=8", "quant.bits=2"]


def test_select_round_takes_the_lowest_validation_loss_and_the_earliest_tie():
    losses = {0: 5.0, 1: 4.0, 2: 3.5, 3: 3.5, 4: 3.9}
    assert select_round(losses, by="validation")["round"] == 2
    assert select_round(losses, by="last")["round"] == 4
    # the untrained model is never reported, even when nothing beat it
    assert select_round({0: 1.0, 1: 2.0, 2: 3.0}, by="validation")["round"] == 1
    # a non-finite loss never wins
    assert select_round({1: math.nan, 2: 3.0, 3: math.inf}, by="validation")["round"] == 2


def test_convergence_compares_the_last_rounds_improvement_with_the_total_gain():
    flat = {0: 5.0, 1: 3.0, 2: 2.0, 3: 1.99, 4: 1.98}  # last 2 rounds: 2% of the gain
    out = convergence(flat, last_rounds=2, share=0.05)
    assert out["converged"] is True and out["improvement_share"] == pytest.approx(0.02 / 3.02)
    steep = {0: 5.0, 1: 4.0, 2: 3.0, 3: 2.0, 4: 1.0}
    assert convergence(steep, last_rounds=2, share=0.05)["converged"] is False
    # over-fitting after the best round: the best did not move in the last rounds
    overfit = {0: 5.0, 1: 3.0, 2: 2.0, 3: 2.5, 4: 3.0}
    assert convergence(overfit, last_rounds=2, share=0.05)["converged"] is True


def test_convergence_is_undefined_without_enough_rounds_or_any_gain():
    short = convergence({0: 5.0, 1: 4.0, 2: 3.0}, last_rounds=2, share=0.05)
    assert short["converged"] is None and "at least 3" in short["reason"]
    useless = convergence({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}, last_rounds=2, share=0.05)
    assert useless["converged"] is None and "never improved" in useless["reason"]


def test_the_validation_split_is_disjoint_and_leaves_the_test_split_unchanged():
    from fedlpp.data import load_dataset
    from fedlpp.data.partition import make_splits

    cfg = load_config(None, TINY).data
    ds = load_dataset(cfg, seed=0)
    with_val = make_splits(ds, cfg=cfg, num_clients=2, seed=0)
    cfg.val_fraction = 0.0
    without = make_splits(ds, cfg=cfg, num_clients=2, seed=0)
    assert with_val.test == without.test and not without.validation
    assert len(with_val.validation) == 12
    clients = {i for m in [*with_val.members, *with_val.nonmembers] for i in m}
    assert not set(with_val.validation) & (clients | set(with_val.test))


@pytest.mark.parametrize("bad, message", [
    ("data.val_fraction=0.95", "data.val_fraction"),
    ("eval.converge_share=0", "eval.converge_share"),
    ("eval.curve_records=-1", "eval.curve_records"),
])
def test_bad_evaluation_settings_are_one_line_errors(bad, message):
    with pytest.raises(FedlppError, match=message):
        load_config(None, [*TINY, bad])


def test_selecting_on_validation_needs_a_validation_split():
    with pytest.raises(FedlppError, match="eval.select.*'last' when data.val_fraction = 0"):
        load_config(None, [*TINY, "data.val_fraction=0"])
    load_config(None, [*TINY, "data.val_fraction=0", "eval.select=last"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run_federation(load_config(None, TINY), out=out, quiet=True, echo=False)
    return out, result


def test_a_run_records_its_curve_selection_and_convergence(run):
    out, result = run
    rounds = result["rounds"]
    assert all(set(r) >= {"central", "proxy", "validation"} for r in rounds)
    val = {0: result["start"]["validation"]["central"]["loss"],
           **{r["round"]: r["validation"]["central"]["loss"] for r in rounds}}
    best = min(range(1, 5), key=lambda r: (val[r], r))
    assert result["selection"] == {"round": best, "by": "validation", "metric": "loss",
                                   "loss": val[best]}
    assert result["convergence"] == convergence(val, last_rounds=2, share=0.05)
    # the final evaluation uses the whole test split (12 records), the learning curve 8 of them
    assert len(result["final_records"]["ids"]) == 12
    for model in ("central", "proxy", "base"):
        rec = result["final_records"][model]
        loss = sum(rec["loss"]) / sum(rec["count"])
        assert loss == pytest.approx(result["final"][model]["loss"], rel=1e-6)


def test_attacks_see_the_run_as_released_at_the_selected_round(run):
    from safetensors.torch import load_file

    out, result = run
    trace = TraceReader(out)
    r = result["selection"]["round"]
    assert trace.num_rounds == r and len(result["rounds"]) == 4
    assert sorted(trace.trained()) == sorted(trace.trained(rounds=list(range(1, r + 1))))
    # the final master is the one the round after the selected one started from (kept on disk
    # with trace.masters = "all"), and the final payload its broadcast; this seeded run selects
    # a round before the last, so the rounds after it exist and are hidden
    assert r < 4
    kept = load_file(str(trace.at.master(r + 1)))
    assert all((trace.master(r + 1)[n] == t).all() for n, t in kept.items())
    sent = decode_payload(trace.at.payload(r + 1).read_bytes())
    final = trace.payload(r + 1)
    assert sent.keys() == final.keys()
    assert all(torch.equal(quantizer_for(sent[n]).dequantize(sent[n]),
                           quantizer_for(final[n]).dequantize(final[n])) for n in sent)
    assert json.loads(trace.at.splits.read_text())["validation"]
