"""The example third-party defense (`examples/fedlpp-example-defense`): discovered through its
entry point, its option checked, and in a tiny run it rejects a boosted update and names the
client while the honest client trains the master."""

import json
import math

import pytest
import torch
from conftest import TINY, assert_train_refused, run_tiny

from fedlpp.cli import main
from fedlpp.config import load_config
from fedlpp.defenses import DEFENSES, Rejected
from fedlpp.errors import FedlppError
from fedlpp.run.resolve import resolve

pytestmark = pytest.mark.usefixtures("one_thread")

INSTALL = "run `make install`: the example defense is not installed"


def test_the_example_defense_is_discovered_and_listed(capsys):
    assert "max-change" in DEFENSES.names(), INSTALL
    assert DEFENSES.get("max-change").__module__ == "fedlpp_example_defense"
    assert main(["ls", "defenses"]) == 0
    assert "  max-change " in capsys.readouterr().out


def test_a_value_moved_beyond_the_limit_is_rejected_and_counted():
    defense = DEFENSES.build("max-change", limit=0.5)
    sent = {"a": torch.zeros(3), "b": torch.ones(2, 2)}
    at_limit = {"a": torch.tensor([0.5, -0.5, 0.0]), "b": torch.ones(2, 2)}
    assert defense.on_update(1, 0, at_limit, broadcast=sent) is at_limit
    beyond = {"a": torch.zeros(3), "b": torch.tensor([[1.0, 1.0], [1.0, 0.25]])}
    with pytest.raises(Rejected) as caught:
        defense.on_update(1, 1, beyond, broadcast=sent)
    assert str(caught.value) == "max-change: a value of b moved 0.75 from the broadcast (limit 0.5)"
    assert defense.report() == {"checked": 2, "rejected": 1, "rejected_clients": [1]}


@pytest.mark.parametrize("table, words", [
    ('{name = "max-change", limit = 0}', ["defenses[0]", "limit", "0.0", "> 0"]),
    ('{name = "max-change", limit = -1.5}', ["defenses[0]", "limit", "-1.5", "> 0"]),
    ('{name = "max-change", limit = nan}', ["defenses[0]", "limit", "nan", "> 0"]),
    ('{name = "max-change", limit = "x"}', ["defenses[0].limit", "'x'", "float"]),
    ('{name = "max-change", limt = 1.0}', ["defenses[0].limt", "defenses[0].limit"]),
    ('{name = "max-chang"}', ["defenses[0].name", "Did you mean 'max-change'"]),
])
def test_a_bad_option_is_a_one_line_error(tmp_path, capsys, table, words):
    with pytest.raises(FedlppError):
        resolve(load_config(None, [*TINY, f"defenses=[{table}]"]))
    assert_train_refused(tmp_path, capsys, [*TINY, f"defenses=[{table}]"], words)


def test_a_boosted_update_is_rejected_and_named_while_the_honest_client_trains(tmp_path):
    # client 1 multiplies its progress by 10,000: honest values move ~0.02 per round, its ~200
    result, out = run_tiny(tmp_path, 'defenses=[{name = "max-change", limit = 1.0}]',
                           'adversaries=[{behaviour = "scaled", clients = [1], factor = 1e4}]')
    assert result["status"] == "ok" and len(result["rounds"]) == 2
    for row in result["rounds"]:
        assert [r["client"] for r in row["rejected"]] == [1], row["rejected"]
        reason = row["rejected"][0]["reason"]
        assert reason.startswith("rejected by a defense: max-change: a value of "), reason
        assert reason.endswith("from the broadcast (limit 1)"), reason
        assert row["refused"] is None and row["train_loss"] is not None  # client 0 was applied
    final = result["final"]
    assert all(math.isfinite(final[w]["loss"]) for w in ("central", "proxy"))
    assert final["central"]["loss"] < final["base"]["loss"]
    report = [{"name": "max-change", "checked": 4, "rejected": 2, "rejected_clients": [1]}]
    assert result["defenses"] == report
    assert json.loads((out / "result.json").read_text())["defenses"] == report
