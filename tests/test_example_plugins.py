"""The example recovery attack (`examples/fedlpp-example-recovery`, `mean-of-last`) and broadcast
defense (`examples/fedlpp-example-broadcast-defense`, `secret-mask`): discovered through their
entry points, their options checked, the defense changes the broadcast and not the master, and
the attack runs on a tiny run with the recovery metrics."""

import json

import pytest
import torch
from conftest import TINY, assert_train_refused, run_tiny

from attacks.base import ATTACKS
from fedlpp.cli import main
from fedlpp.defenses import DEFENSES
from fedlpp.run.trace_reader import TraceReader

pytestmark = pytest.mark.usefixtures("one_thread")

INSTALL = "run `make install`: the example {} is not installed"
MASK = 'defenses=[{name = "secret-mask", rank = 2, scale = 0.5}]'


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny run without a defense and the same run with ``secret-mask``."""
    tmp = tmp_path_factory.mktemp("example-plugins")
    _, plain = run_tiny(tmp, name="plain")
    result, masked = run_tiny(tmp, MASK, name="masked")
    return plain, masked, result


def test_both_examples_are_discovered_and_listed(capsys):
    assert "mean-of-last" in ATTACKS.names(), INSTALL.format("recovery attack")
    assert ATTACKS.get("mean-of-last").__module__ == "fedlpp_example_recovery"
    assert "secret-mask" in DEFENSES.names(), INSTALL.format("broadcast defense")
    assert DEFENSES.get("secret-mask").__module__ == "fedlpp_example_broadcast_defense"
    assert main(["ls", "attacks"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "mean-of-last" in x)
    assert "recovery" in line and "fedlpp_example_recovery" in line
    assert main(["ls", "defenses"]) == 0
    assert "  secret-mask " in capsys.readouterr().out


def test_the_mask_is_low_rank_seeded_and_sized_and_leaves_other_tensors_alone():
    defense = DEFENSES.build("secret-mask", rank=2, scale=0.5)
    defense.bind(seed=7, fed=None)
    tensors = {"w": torch.randn(40, 30), "bias": torch.randn(30), "base": torch.randn(8, 8),
               "zero": torch.zeros(5, 6)}
    out = defense.before_broadcast(1, tensors, static=frozenset({"base"}))
    mask = out["w"] - tensors["w"]
    assert int(torch.linalg.matrix_rank(mask.double(), rtol=1e-4)) == 2  # float32 rounding aside
    rms = float(mask.pow(2).mean().sqrt()) / float(tensors["w"].pow(2).mean().sqrt())
    assert abs(rms - 0.5) < 1e-4
    for name in ("bias", "base", "zero"):  # 1-D, static, all zeros
        assert torch.equal(out[name], tensors[name]), name
    again = defense.before_broadcast(1, tensors, static=frozenset({"base"}))
    assert torch.equal(again["w"], out["w"])  # the same seed and round: the same mask
    assert not torch.equal(defense.before_broadcast(2, tensors, static=frozenset())["w"], out["w"])
    assert defense.report()["masked_broadcasts"] == 3


def test_the_mask_changes_the_broadcast_and_not_the_masters_start(runs):
    plain, masked, result = runs
    assert result["status"] == "ok" and len(result["rounds"]) == 2
    (report,) = result["defenses"]
    assert report["name"] == "secret-mask" and report["masked_broadcasts"] == 3
    assert report["masked_tensors"] > 0
    a, b = TraceReader(plain), TraceReader(masked)
    start_a, start_b = a.master(1), b.master(1)
    assert start_a.keys() == start_b.keys()
    assert all(torch.equal(start_a[n], start_b[n]) for n in start_a)  # the same starting point
    assert a.payload_bytes(1) != b.payload_bytes(1)  # but another broadcast of it


def test_mean_of_last_writes_recovery_metrics(runs, capsys):
    _, masked, _ = runs
    assert main(["attack", str(masked), "--attack", "mean-of-last", "--set", "k=2",
                 "--resamples", "20", "--quiet"]) == 0
    capsys.readouterr()
    saved = json.loads((masked / "attacks" / "mean-of-last+k=2.json").read_text())
    assert saved["status"] == "ok" and saved["threat_model"] == "client"
    assert saved["attackers"] == [0] and saved["config"]["k"] == 2
    metrics = saved["metrics"]
    assert metrics["round"] == 3  # the final delivered broadcast of a 2-round run
    assert metrics["recovered_gain"]["value"] is not None
    assert metrics["param_rel_error"]["value"] >= 0
    assert metrics["control_gain"]["value"] is None  # no control: it trains nothing
    assert saved["extra"]["averaged_rounds"] == [2, 3]


@pytest.mark.parametrize("args, words", [
    (["--attack", "mean-of-last", "--set", "k=0"], ["Invalid k: 0", ">= 1"]),
    (["--attack", "mean-of-last", "--set", "k=1.5"], ["k", "1.5", "int"]),
    (["--attack", "mean-of-last", "--set", "kk=2"], ["kk", "k"]),
])
def test_a_bad_attack_option_is_a_one_line_exit_2(runs, capsys, args, words):
    plain, _, _ = runs
    assert main(["attack", str(plain), *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


@pytest.mark.parametrize("table, words", [
    ('{name = "secret-mask", rank = 0}', ["defenses[0]", "rank", ">= 1"]),
    ('{name = "secret-mask", scale = -0.1}', ["defenses[0]", "scale", "-0.1", "> 0"]),
    ('{name = "secret-mask", scale = nan}', ["defenses[0]", "scale", "nan", "> 0"]),
])
def test_a_bad_defense_option_is_a_one_line_exit_2(tmp_path, capsys, table, words):
    assert_train_refused(tmp_path, capsys, [*TINY, f"defenses=[{table}]"], words)
