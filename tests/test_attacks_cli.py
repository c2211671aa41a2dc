"""`fedlpp attack`: result files, plugin discovery, failure isolation, threat-model views."""

import json

import pytest
from conftest import run_tiny

from attacks.base import ATTACKS
from attacks.context import AttackContext, Observation
from attacks.membership.loss import LossAttack
from attacks.runner import run_attacks
from fedlpp.cli import main
from fedlpp.errors import FedlppError


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    _, out = run_tiny(tmp_path_factory.mktemp("attack"))
    return out


def test_attack_command_writes_one_json_per_attack(tiny_run, capsys):
    assert main(["attack", str(tiny_run), "--attack", "loss", "--attack", "as-is",
                 "--resamples", "50", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "auc" in out and "recovered_gain" in out
    loss = json.loads((tiny_run / "attacks" / "loss@central.json").read_text())
    assert loss["status"] == "ok" and loss["threat_model"] == "outsider"
    assert loss["config"]["target"] == "central"
    metrics = loss["metrics"]
    for key in ("auc", "control_auc"):
        assert 0.0 <= metrics[key]["value"] <= 1.0
        lo, hi = metrics[key]["ci"]
        assert lo <= hi
    lo, hi = metrics["advantage"]["ci"]
    assert -1.0 <= lo <= hi <= 1.0
    for key in ("tpr@1%fpr", "tpr@0.1%fpr"):  # too few non-members to resolve these FPRs
        assert metrics[key]["value"] is None and "non-members" in metrics[key]["reason"]
    assert {"fpr", "tpr"} <= set(loss["metrics"]["roc"])
    assert {"git_sha", "versions", "seconds"} <= set(loss["meta"])
    as_is = json.loads((tiny_run / "attacks" / "as-is.json").read_text())
    assert as_is["threat_model"] == "client" and as_is["attackers"] == [0]
    assert as_is["metrics"]["round"] == 3  # the final delivered broadcast of a 2-round run


def test_example_plugin_is_discovered_and_runs(tiny_run, capsys):
    assert "entropy" in ATTACKS.names(), "run `make install`: the example plugin is not installed"
    assert ATTACKS.get("entropy").__module__ == "fedlpp_example_attack"
    assert main(["ls", "attacks"]) == 0
    assert "fedlpp_example_attack" in capsys.readouterr().out
    (res,) = run_attacks(tiny_run, names=["entropy"], resamples=20, quiet=True)
    assert res["status"] == "ok"


def test_a_raising_plugin_fails_only_its_own_result(tiny_run):
    @ATTACKS.register("test-boom")
    class Boom(LossAttack):
        def score(self, target, *, obs, indices):
            raise RuntimeError("kaboom")

    try:
        boom, loss = run_attacks(tiny_run, names=["test-boom", "loss"], resamples=20, quiet=True)
    finally:
        ATTACKS._items.pop("test-boom")
    assert boom["status"] == "failed" and "kaboom" in boom["error"]
    assert loss["status"] == "ok"
    saved = json.loads((tiny_run / "attacks" / "test-boom@central.json").read_text())
    assert saved["status"] == "failed"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--attack", "los"], ["Unknown attack 'los'", "Did you mean 'loss'"]),
        (["--attack", "loss", "--set", "steps=3"], ["steps"]),
        (["--attack", "loss", "--set", "target=everyone"], ["target", "'everyone'"]),
        (["--attack", "loss", "--resamples", "0"], ["--resamples", "0"]),
    ],
)
def test_bad_attack_input_is_one_line_exit_2(tiny_run, capsys, args, words):
    assert main(["attack", str(tiny_run), *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for w in words:
        assert w in err, (w, err)


def test_attack_on_a_directory_without_a_run(tmp_path, capsys):
    assert main(["attack", str(tmp_path), "--attack", "loss", "--quiet"]) == 2
    assert "result.json is missing" in capsys.readouterr().err


def test_views_enforce_threat_models(tiny_run):
    ctx = AttackContext(tiny_run)
    client = Observation("client", ctx, (0,))
    assert client.update(1, 0)  # its own update
    with pytest.raises(FedlppError, match="not client 1"):
        client.update(1, 1)
    with pytest.raises(FedlppError, match="cannot see the masters"):
        client.master(1)
    with pytest.raises(FedlppError, match="cannot see the central model"):
        client.central_signals([0])
    outsider = Observation("outsider", ctx)
    with pytest.raises(FedlppError, match="cannot see payloads"):
        outsider.payload_rounds()
    with pytest.raises(FedlppError, match="cannot see client data"):
        outsider.own_records()
    server = Observation("server", ctx)
    assert server.master(1) and server.update(2, 1)
    with pytest.raises(FedlppError, match="Invalid attacker client 5"):
        Observation("client", ctx, (5,))


def test_missing_trace_parts_name_the_config_key(tmp_path):
    _, out = run_tiny(tmp_path, "trace.updates=false", "trace.masters=last")
    ctx = AttackContext(out)
    with pytest.raises(FedlppError, match="trace.updates=true"):
        Observation("server", ctx).update(1, 0)
    with pytest.raises(FedlppError, match="trace.masters=all"):
        Observation("server", ctx).master(1)
