"""The round engine's seams: the server and client objects driven by hand give the simulator's
numbers; the trainer hook; a run that fails after starting is recorded, never half-written."""

import json

import pytest
import torch
from conftest import TINY, run_tiny
from safetensors.torch import load_file

from fedlpp.cli import main
from fedlpp.config import load_config
from fedlpp.defenses import DEFENSES, Defense
from fedlpp.methods.assemble import build_parts
from fedlpp.run.context import prepare_run
from fedlpp.run.simulator import RunFailed, run_federation


class CountingTrainer(Defense):
    """Wraps the local trainer and counts its calls (results unchanged)."""

    calls = 0

    def around_training(self, train, *, client, rnd):
        def wrapped(**kw):
            CountingTrainer.calls += 1
            return train(**kw)
        return wrapped

    def report(self):
        return {"trainer_calls": CountingTrainer.calls}


class BrokenTrainer(Defense):
    """A trainer that always raises."""

    def around_training(self, train, *, client, rnd):
        def broken(**kw):
            raise RuntimeError("the accelerator melted")
        return broken


if "test-counting-trainer" not in DEFENSES.names():
    DEFENSES.register("test-counting-trainer")(CountingTrainer)
    DEFENSES.register("test-broken-trainer")(BrokenTrainer)


def test_server_and_client_driven_by_hand_equal_the_simulator(tmp_path):
    """What another driver (a Flower strategy) does: broadcast, send bytes, aggregate bytes."""
    result, out = run_tiny(tmp_path)
    ctx = prepare_run(load_config(None, TINY))
    server, client, _ = build_parts(ctx)
    for rnd in (1, 2):
        payload = server.broadcast(rnd).data  # bytes, as a transport would carry them
        uploads = [client.round(client=c, rnd=rnd, payload=bytes(payload)) for c in (0, 1)]
        verdicts, refused = server.aggregate(rnd, uploads)
        assert refused is None and all(v.accepted for v in verdicts)
        assert sum(u.nbytes for u in uploads) == result["rounds"][rnd - 1]["bytes_up"]
    final = load_file(str(out / "trace" / "final_master.safetensors"))
    assert all(torch.equal(server.trainable[n], final[n]) for n in final)
    assert ctx.utility(server.master) == result["final"]["central"]


def test_the_trainer_hook_wraps_every_local_training(tmp_path):
    CountingTrainer.calls = 0
    plain, _ = run_tiny(tmp_path, name="plain")
    hooked, _ = run_tiny(tmp_path, 'defenses=[{name = "test-counting-trainer"}]', name="hooked")
    assert CountingTrainer.calls == 4  # 2 clients x 2 rounds
    assert hooked["defenses"] == [{"name": "test-counting-trainer", "trainer_calls": 4}]
    assert hooked["rounds"] == plain["rounds"] and hooked["final"] == plain["final"]


def test_a_run_that_fails_after_starting_is_recorded_and_exits_1(tmp_path, capsys):
    out = tmp_path / "run"
    sets = [*TINY, 'defenses=[{name = "test-broken-trainer"}]']
    with pytest.raises(RunFailed, match="the accelerator melted"):
        run_federation(load_config(None, sets), out=out, quiet=True, echo=False)
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "failed" and result["rounds"] == []
    assert "every client of round 1 failed" in result["error"]
    assert "the accelerator melted" in result["error"]
    code = main(["train", "--out", str(tmp_path / "cli"), "--quiet",
                 *(x for s in sets for x in ("--set", s))])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "failed in round 1" in err
    assert json.loads((tmp_path / "cli" / "result.json").read_text())["status"] == "failed"


def test_round_records_say_what_was_sent_and_refused(tmp_path):
    result, _ = run_tiny(tmp_path)
    for row in result["rounds"]:
        assert row["refused"] is None and row["rejected"] == []
        assert row["bytes_down"] == 2 * row["bytes_down_per_client"]
    timing = result["meta"]["timing"]
    assert len(timing["rounds"]) == 2
    assert all(r["round_s"] >= r["train_s"] + r["eval_s"] > 0 for r in timing["rounds"])
    assert result["defenses"] == []


def test_a_larger_block_costs_fewer_bytes_now_that_padding_is_not_sent(tmp_path):
    small, _ = run_tiny(tmp_path, "quant.block_size=64", "fed.rounds=1", name="b64")
    large, _ = run_tiny(tmp_path, "quant.block_size=65536", "fed.rounds=1", name="b65536")
    assert large["rounds"][0]["bytes_down_per_client"] < small["rounds"][0]["bytes_down_per_client"]


def test_the_trace_records_every_training_batch_with_its_record_ids(tmp_path):
    from fedlpp.run.trace_reader import TraceReader

    result, out = run_tiny(tmp_path, 'adversaries=[{behaviour = "nan", clients = [1], rounds = [2]}]')
    trace = TraceReader(out)
    cfg = load_config(None, TINY)
    for rnd in (1, 2):
        batches = trace.batches(rnd)
        assert sorted(batches) == [0, 1]
        for c, entry in batches.items():
            assert len(entry["steps"]) == cfg.fed.local_steps
            assert all(len(step) == cfg.fed.batch_size for step in entry["steps"])
            assert {i for step in entry["steps"] for i in step} <= set(trace.splits.members[c])
            assert entry["accepted"] == (rnd == 1 or c == 0)
    every = trace.trained(accepted_only=False)
    accepted = trace.trained()
    assert sum(every.values()) == 2 * 2 * cfg.fed.local_steps * cfg.fed.batch_size
    assert sum(accepted.values()) == 3 * cfg.fed.local_steps * cfg.fed.batch_size
