"""Adversarial clients end to end on a tiny model: each behaviour is rejected and named (or, for
the undetectable ones, accepted), honest clients still train the master, the run finishes."""

import json
import math

import pytest
from conftest import TINY, run_tiny

from fedlpp.cli import main
from fedlpp.config import load_config
from fedlpp.errors import FedlppError
from fedlpp.run.resolve import resolve


def _adversary(behaviour, **options):
    items = ", ".join([f'behaviour = "{behaviour}"', "clients = [1]",
                       *(f"{k} = {json.dumps(v)}" for k, v in options.items())])
    return f"adversaries=[{{{items}}}]"


@pytest.mark.parametrize("behaviour, options, extra, words", [
    ("nan", {}, [], "non-finite values"),
    ("inf", {}, [], "non-finite values"),
    ("huge", {"value": 3e38}, [], "cannot be aggregated in float32"),
    ("scaled", {"factor": 1e4}, ["fed.max_update_norm=5.0"], "exceeds fed.max_update_norm"),
    ("garbage-bytes", {}, [], "malformed upload: not an upload message"),
    ("garbage-bytes", {"keep_header": True}, ["fed.max_update_norm=5.0"], ""),
    ("truncated", {}, [], "malformed upload: body of"),
    ("wrong-shape", {}, [], "encoded for another model layout"),
    ("inflated-count", {"factor": 1000.0}, [], "training examples, enrolled with"),
    # a quantized upload cannot encode NaN: the client fails, is named, the run goes on
    ("nan", {}, ["quant.upload=nf", "quant.upload_bits=4"], "client failed: FedlppError"),
])
def test_a_malicious_client_is_rejected_named_and_the_run_goes_on(tmp_path, behaviour, options,
                                                                   extra, words):
    result, _ = run_tiny(tmp_path, _adversary(behaviour, **options), *extra)
    assert result["status"] == "ok"
    for row in result["rounds"]:
        assert [r["client"] for r in row["rejected"]] == [1], row["rejected"]
        assert words in row["rejected"][0]["reason"]
        assert row["refused"] is None and row["train_loss"] is not None  # client 0 was applied
    final = result["final"]
    assert all(math.isfinite(final[w]["loss"]) for w in ("central", "proxy"))
    assert final["central"]["loss"] < final["base"]["loss"]  # the honest client still trained it


@pytest.mark.parametrize("behaviour", ["sign-flip", "scaled"])
def test_plausible_updates_pass_validation(tmp_path, behaviour):
    result, _ = run_tiny(tmp_path, _adversary(behaviour))
    assert all(row["rejected"] == [] for row in result["rounds"])


def test_an_adversary_acts_only_in_its_rounds(tmp_path):
    result, _ = run_tiny(tmp_path, 'adversaries=[{behaviour = "nan", clients = [1], rounds = [2]}]')
    assert [len(row["rejected"]) for row in result["rounds"]] == [0, 1]


@pytest.mark.parametrize("sets, words", [
    (['adversaries=[{behaviour = "nann", clients = [1]}]'],
     ["adversaries[0].behaviour", "Did you mean 'nan'"]),
    (['adversaries=[{behaviour = "nan", clients = [5]}]'], ["adversaries[0].clients", "[5]", "allowed: 0.."]),
    (['adversaries=[{behaviour = "nan", clients = []}]'], ["adversaries[0]", "clients"]),
    (['adversaries=[{behaviour = "nan", clients = [1], fraktion = 0.5}]'], ["fraktion", "fraction"]),
    (['adversaries=[{behaviour = "nan", clients = [1], fraction = "x"}]'],
     ["adversaries[0].fraction", "'x'", "float"]),
    (['adversaries=[{behaviour = "truncated", clients = [1], keep = 1.5}]'], ["keep", "1.5"]),
    (["fed.method=fedlp"], ["fed.method", "Did you mean 'fedlpp'"]),
    (["aggregator.name=meen"], ["aggregator.name", "Did you mean 'mean'"]),
    (['defenses=[{name = "dp"}]'], ["defenses[0].name", "Unknown defense 'dp'"]),
    (["fed.max_update_norm=-1.0"], ["fed.max_update_norm", "-1.0"]),
])
def test_bad_adversary_and_plugin_tables_are_one_line_errors(tmp_path, capsys, sets, words):
    cfg = load_config(None, [*TINY, *sets]) if "max_update_norm" not in sets[0] else None
    with pytest.raises(FedlppError):  # a range error at parsing, a plugin error at resolve
        resolve(cfg if cfg is not None else load_config(None, [*TINY, *sets]))
    args = ["train", "--out", str(tmp_path / "out"), "--quiet"]
    assert main(args + [x for s in sets for x in ("--set", s)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out" / "result.json").exists()


def test_ls_adversaries_lists_every_behaviour(capsys):
    assert main(["ls", "adversaries"]) == 0
    out = capsys.readouterr().out
    for name in ("nan", "inf", "huge", "sign-flip", "scaled", "garbage-bytes", "truncated",
                 "wrong-shape", "inflated-count"):
        assert f"  {name} " in out


def test_the_trace_keeps_decodable_updates_and_says_why_others_are_missing(tmp_path):
    from fedlpp.run.trace_reader import TraceReader

    _, out = run_tiny(tmp_path, _adversary("truncated"), name="truncated")
    trace = TraceReader(out)
    trace.update(1, 0)  # the honest client's update is there
    with pytest.raises(FedlppError, match="client 1 in round 1 was rejected"):
        trace.update(1, 1)
    _, out = run_tiny(tmp_path, _adversary("nan"), name="nan")
    tensors, meta = TraceReader(out).update(1, 1)  # decodable: kept, marked rejected
    assert meta["accepted"] == "false" and "non-finite" in meta["reason"]
