"""FedLPP on Flower: the ServerApp drives the same server object and the ClientApp the same
client step as the in-process simulator, so the numbers are the same; a client that fails or
does not answer is rejected and named and the run goes on; what Flower cannot run faithfully is
refused in one line.

Most tests drive the ServerApp and the ClientApp's handlers through a stand-in grid in this
process (seconds); one runs a real Flower simulation (Ray backend).
"""

import json
import types

import pytest
import torch
from conftest import TINY, run_tiny
from flwr.app import Error, Message, RecordDict
from safetensors.torch import load_file

from fedlpp.config import load_config
from fedlpp.errors import FedlppError
from fedlpp.flower import client_app
from fedlpp.flower.messages import (
    Instruction,
    decode_instruction,
    decode_reply,
    encode_instruction,
    encode_reply,
)
from fedlpp.flower.server_app import check_engine, discover, run_on_grid
from fedlpp.protocol.records import Step, Upload


@pytest.fixture(autouse=True)
def _tiny_threads(one_thread):
    yield


@pytest.fixture
def task_identity(monkeypatch):
    """Flower messages can only be made inside a Flower task; pretend to be one."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


class StandInGrid:
    """A Flower grid whose nodes are the ClientApp's handlers called in this process.

    ``partitions``: node id -> partition-id; ``silent``: (node, round) pairs that never answer
    a train message; ``broken``: (node, round) pairs that answer with a Flower error. Replies
    come back in reverse order of sending.
    """

    def __init__(self, partitions, *, silent=(), broken=()):
        self.partitions, self.silent, self.broken = partitions, set(silent), set(broken)

    def get_node_ids(self):
        return list(self.partitions)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            context = types.SimpleNamespace(node_config={"partition-id": self.partitions[node]})
            if msg.metadata.message_type == "query":
                reply = client_app.query(msg, context)
            else:
                rnd = int(msg.metadata.group_id)
                if (node, rnd) in self.silent:
                    continue
                if (node, rnd) in self.broken:
                    reply = Message(Error(code=0, reason="ClientApp raised: out of memory"),
                                    reply_to=msg)
                else:
                    reply = client_app.train(msg, context)
            replies.append(reply)
        return replies[::-1]


def _same_numbers(a, b):
    keys = ("status", "final", "final_records", "selection", "convergence", "rounds", "comm",
            "start", "defenses")
    return {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}


def test_instruction_and_reply_round_trip_the_bytes_intact():
    payload = bytes(range(256)) * 3
    ins = decode_instruction(encode_instruction(
        Instruction(config={"seed": 3}, client=1, rnd=2, payload=payload)))
    assert (ins.config, ins.client, ins.rnd, ins.payload) == ({"seed": 3}, 1, 2, payload)
    steps = [Step(batch=[4, 7], loss=1.5, seconds=0.25)]
    upload, got = decode_reply(encode_reply(Upload(client=1, data=b"\x00\xff"), steps), client=1)
    assert (upload.data, upload.error, got) == (b"\x00\xff", None, steps)
    failed, _ = decode_reply(encode_reply(Upload(client=1, data=None, error="ValueError: x"), []),
                             client=1)
    assert (failed.data, failed.error) == (None, "ValueError: x")


def test_a_reply_from_another_client_or_unreadable_is_that_clients_failure():
    upload, _ = decode_reply(encode_reply(Upload(client=0, data=b"x"), []), client=1)
    assert upload.data is None and "claims to come from client 0" in upload.error
    upload, _ = decode_reply(RecordDict(), client=1)
    assert upload.client == 1 and upload.data is None and "unreadable" in upload.error
    with pytest.raises(FedlppError, match="malformed FedLPP train instruction"):
        decode_instruction(RecordDict())


def test_the_server_app_over_a_grid_gives_the_simulators_numbers_and_trace(tmp_path,
                                                                           task_identity):
    """Replies arrive in reverse order; the aggregate is still taken in the clients' order."""
    plain, plain_out = run_tiny(tmp_path, name="plain")
    out = tmp_path / "grid"
    result = run_on_grid(StandInGrid({101: 1, 100: 0}), load_config(None, TINY), out=out)
    assert _same_numbers(result, plain)
    assert json.loads((out / "result.json").read_text())["final"] == plain["final"]
    files = sorted(p.relative_to(plain_out) for p in (plain_out / "trace").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in (out / "trace").rglob("*") if p.is_file())
    assert any(f.name == "batches.json" for f in files)  # which records each step trained on
    for f in files:
        if f.suffix == ".safetensors":
            x, y = load_file(str(plain_out / f)), load_file(str(out / f))
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), f
        elif f.name == "manifest.json":  # hashes of files whose header order and timings vary
            x, y = json.loads((plain_out / f).read_text()), json.loads((out / f).read_text())
            assert sorted(x["files"]) == sorted(y["files"]) and x["rounds"] == y["rounds"]
        else:
            assert (plain_out / f).read_bytes() == (out / f).read_bytes(), f


def test_a_silent_or_broken_client_is_named_and_the_run_goes_on(tmp_path, task_identity):
    grid = StandInGrid({100: 0, 101: 1}, silent=[(101, 1)], broken=[(100, 2)])
    result = run_on_grid(grid, load_config(None, TINY), out=tmp_path / "run", round_timeout=5)
    assert result["status"] == "ok"
    (r1,), (r2,) = (r["rejected"] for r in result["rounds"])
    assert r1["client"] == 1 and "no reply within 5 s" in r1["reason"]
    assert r2["client"] == 0 and "Flower error: ClientApp raised: out of memory" in r2["reason"]
    assert [r["refused"] for r in result["rounds"]] == [None, None]  # the others' updates applied


def test_an_adversarial_client_on_flower_is_rejected_and_named(tmp_path, task_identity):
    sets = [*TINY, 'adversaries=[{behaviour = "garbage-bytes", clients = [1], rounds = [2]}]']
    plain, _ = run_tiny(tmp_path, sets[-1], name="plain")
    result = run_on_grid(StandInGrid({100: 0, 101: 1}), load_config(None, sets),
                         out=tmp_path / "grid")
    assert _same_numbers(result, plain)
    (bad,) = result["rounds"][1]["rejected"]
    assert bad["client"] == 1 and "malformed upload" in bad["reason"]


@pytest.mark.parametrize(("partitions", "message"), [
    ({100: 0, 101: 0}, "Flower nodes 100 and 101 both hold client 0's records"),
    ({100: 0, 101: 5}, r"no Flower node holds client\(s\) \[1\] \(partition-ids seen: \[0, 5\]"),
])
def test_nodes_that_do_not_cover_the_clients_are_refused(partitions, message, task_identity):
    with pytest.raises(FedlppError, match=message):
        discover(StandInGrid(partitions), num_clients=2, timeout=1)


def test_too_few_nodes_is_a_one_line_error(task_identity):
    with pytest.raises(FedlppError, match=r"only 1 Flower node\(s\) connected after 0.5 s; "
                                          "the run has 2 clients"):
        discover(StandInGrid({100: 0}), num_clients=2, timeout=0.5)


def test_a_defense_that_acts_in_local_training_is_refused_on_flower():
    cfg = load_config(None, [*TINY, 'defenses=[{name = "dp-sgd"}]'])
    with pytest.raises(FedlppError, match="defense 'dp-sgd' acts in the clients' local training"):
        check_engine(cfg)
    check_engine(load_config(None, [*TINY, 'defenses=[{name = "dp-fedavg"}]']))  # server side


def test_a_flower_simulation_gives_the_simulators_numbers(tmp_path):
    """The real thing: Flower's simulation runtime, each client a ClientApp on Ray."""
    from fedlpp.flower.simulation import run_flower_simulation

    plain, _ = run_tiny(tmp_path, name="plain")
    result = run_flower_simulation(load_config(None, TINY), out=tmp_path / "flower")
    assert _same_numbers(result, plain)
    assert json.loads((tmp_path / "flower" / "result.json").read_text())["status"] == "ok"


def test_a_malformed_node_answer_is_a_one_line_error():
    from fedlpp.flower.messages import node_partition

    with pytest.raises(FedlppError, match="malformed answer to the node query"):
        node_partition(RecordDict())
