"""Robust aggregation rules: known answers on hand-built tensors, one-line option errors, and a
tiny federation where one client boosts its update: the robust rules keep the master near the
honest run, the mean does not."""

import math

import pytest
import torch
from conftest import run_tiny
from safetensors.torch import load_file

from fedlpp.aggregators import build_aggregator
from fedlpp.aggregators.robust import (
    coordinate_median,
    krum_scores,
    pairwise_sq_distances,
    trim_count,
    trimmed_mean,
)
from fedlpp.cli import main
from fedlpp.config import load_config
from fedlpp.errors import FedlppError
from fedlpp.run.resolve import resolve


def aggregate(table, updates, *, weights=None, broadcast=None, clients=None):
    """Build the rule from its config table, feed it ``updates``, return (result, rule)."""
    rule = build_aggregator(table)
    if broadcast is not None:
        rule.begin(broadcast=broadcast)
    weights = weights or [1] * len(updates)
    clients = clients or list(range(len(updates)))
    for update, weight, client in zip(updates, weights, clients, strict=True):
        rule.add(update, weight=weight, client=client)
    return rule.result(), rule


def vec(*values):
    return torch.tensor(values, dtype=torch.float32)


# --- median and trimmed mean ---------------------------------------------------------------------
def test_median_of_an_odd_count_is_the_middle_value_of_each_coordinate_ignoring_weights():
    ups = [{"w": vec(1, 5, -2), "b": vec(0)}, {"w": vec(3, 1, 0), "b": vec(4)},
           {"w": vec(2, 9, 7), "b": vec(-1)}]
    got, _ = aggregate({"name": "median"}, ups, weights=[100, 1, 1])
    assert torch.equal(got["w"], vec(2, 5, 0)) and torch.equal(got["b"], vec(0))


def test_median_of_an_even_count_is_the_mean_of_the_two_middle_values_not_the_lower_one():
    ups = [{"w": vec(1, 10)}, {"w": vec(2, 40)}, {"w": vec(4, 20)}, {"w": vec(100, 30)}]
    got, _ = aggregate({"name": "median"}, ups)
    assert torch.equal(got["w"], vec(3, 25))
    stacked = torch.stack([u["w"] for u in ups])
    assert not torch.equal(got["w"], stacked.median(dim=0).values)  # the lower middle: (2, 20)
    assert torch.equal(coordinate_median(stacked), vec(3, 25))


def test_trimmed_mean_drops_the_extremes_of_each_coordinate_and_averages_the_rest():
    ups = [{"w": vec(1, -50)}, {"w": vec(2, 0)}, {"w": vec(3, 1)}, {"w": vec(4, 2)},
           {"w": vec(100, 3)}]
    got, rule = aggregate({"name": "trimmed-mean", "beta": 0.2}, ups, weights=[1, 1, 1, 1, 50])
    assert torch.equal(got["w"], vec(3, 1))  # (2+3+4)/3 and (0+1+2)/3, unweighted
    assert rule.report() == {"trimmed_each_end": 1, "updates": 5}
    plain, _ = aggregate({"name": "trimmed-mean", "beta": 0.0}, ups, weights=[1, 1, 1, 1, 50])
    assert torch.allclose(plain["w"], vec(22, -8.8))  # beta 0: the unweighted mean


def test_the_trim_count_is_the_floor_of_beta_times_n_without_representation_error():
    assert trim_count(0.29, n=100) == 29  # 0.29 * 100 = 28.999999999999996 in floating point
    assert [trim_count(0.2, n=n) for n in (4, 5, 9, 10)] == [0, 1, 1, 2]
    with pytest.raises(ValueError, match="2\\*trim < n"):
        trimmed_mean(torch.zeros(4, 1), trim=2)


# --- norm bound ----------------------------------------------------------------------------------
def test_norm_bound_clips_only_the_large_change_over_all_tensors_and_leaves_small_ones_exact():
    sent = {"a": vec(1, 1), "b": vec(1)}
    small = {"a": vec(1.3, 1), "b": vec(1.4)}  # change (0.3, 0 | 0.4): norm 0.5
    large = {"a": vec(7, 1), "b": vec(9)}  # change (6, 0 | 8): norm 10 -> (0.6, 0 | 0.8)
    got, rule = aggregate({"name": "norm-bound", "bound": 1.0}, [small, large], weights=[3, 1],
                          broadcast=sent)
    assert torch.allclose(got["a"], vec(1 + (3 * 0.3 + 0.6) / 4, 1))
    assert torch.allclose(got["b"], vec(1 + (3 * 0.4 + 0.8) / 4))
    assert rule.report() == {"clipped": 1, "updates": 2, "largest_norm": pytest.approx(10.0)}
    alone, rule = aggregate({"name": "norm-bound", "bound": 1.0}, [small], broadcast=sent)
    assert all(torch.equal(alone[n], small[n]) for n in small)  # within the bound: untouched
    assert rule.report()["clipped"] == 0


def test_norm_bound_without_the_broadcast_is_an_error():
    with pytest.raises(ValueError, match="begin"):
        aggregate({"name": "norm-bound", "bound": 1.0}, [{"w": vec(1)}])


# --- krum ----------------------------------------------------------------------------------------
# one far update (client 10) and four honest ones; with f = 1 each score sums the 2 nearest others
KRUM_UPS = [{"w": vec(100, 100)}, {"w": vec(0, 0)}, {"w": vec(0.1, 0)}, {"w": vec(0.2, 0)},
            {"w": vec(0.35, 0)}]
KRUM_CLIENTS = [10, 11, 12, 13, 14]


def test_krum_scores_sum_the_squared_distances_to_the_n_minus_f_minus_2_nearest_others():
    rows = torch.stack([u["w"] for u in KRUM_UPS]).double()
    dist = pairwise_sq_distances(rows)
    assert torch.allclose(dist, torch.cdist(rows, rows) ** 2)
    scores = krum_scores(dist, byzantine=1)
    assert torch.allclose(scores[1:], torch.tensor([0.05, 0.02, 0.0325, 0.085], dtype=torch.float64),
                          atol=1e-6)
    assert scores[0] > 1e4


def test_krum_picks_the_most_central_honest_update_when_one_of_five_is_far_away():
    got, rule = aggregate({"name": "krum", "byzantine": 1}, KRUM_UPS, clients=KRUM_CLIENTS)
    assert torch.equal(got["w"], KRUM_UPS[2]["w"])
    assert rule.report() == {"selected": [12], "updates": 5}


def test_multi_krum_averages_the_best_scored_updates():
    got, rule = aggregate({"name": "krum", "byzantine": 1, "multi": 3}, KRUM_UPS,
                          weights=[1, 1, 1, 1, 9], clients=KRUM_CLIENTS)
    assert torch.allclose(got["w"], vec(0.1, 0))  # (0 + 0.1 + 0.2) / 3, unweighted
    assert rule.report()["selected"] == [11, 12, 13]


def test_krum_with_too_few_updates_names_n_f_and_the_requirement():
    with pytest.raises(ValueError) as info:
        aggregate({"name": "krum", "byzantine": 1}, KRUM_UPS[:4])
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in ("n=4", "f=1", "n > 2f+2", "at least 5"))
    with pytest.raises(ValueError, match="multi=6"):
        aggregate({"name": "krum", "byzantine": 1, "multi": 6}, KRUM_UPS)


# --- option errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("table, words", [
    ({"name": "trimmed-mean", "beta": 0.5}, ["aggregator.beta", "0.5", "0 <= beta < 0.5"]),
    ({"name": "trimmed-mean", "beta": -0.1}, ["aggregator.beta", "-0.1", "'trimmed-mean'"]),
    ({"name": "trimmed-mean", "beta": "x"}, ["aggregator.beta", "'x'", "float"]),
    ({"name": "krum", "byzantine": -1}, ["aggregator.byzantine", "-1", ">= 0"]),
    ({"name": "krum", "multi": 0}, ["aggregator.multi", "0", ">= 1"]),
    ({"name": "norm-bound", "bound": 0.0}, ["aggregator.bound", "0.0", "> 0"]),
    ({"name": "norm-bound"}, ["aggregator.bound", "None", "> 0"]),
    ({"name": "median", "beta": 0.1}, ["aggregator.beta", "Allowed here"]),
    ({"name": "meadian"}, ["aggregator.name", "Did you mean 'median'"]),
])
def test_bad_rule_options_are_one_line_errors_naming_the_value(table, words):
    with pytest.raises(FedlppError) as info:
        build_aggregator(table)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("sets, words", [
    (['aggregator={name="krum", byzantine=2}', "fed.num_clients=4"],
     ["aggregator.byzantine", "2", "4 clients per round", "2*byzantine+2 = 6", "byzantine <= 0"]),
    (['aggregator={name="krum", byzantine=0}', "fed.num_clients=2"],
     ["aggregator.byzantine", "0", "2 clients per round", "at least 3 clients per round"]),
    (['aggregator={name="krum", byzantine=1}', "fed.num_clients=9", "fed.clients_per_round=4"],
     ["aggregator.byzantine", "1", "4 clients per round", "2*byzantine+2 = 4"]),
    (['aggregator={name="krum", byzantine=0, multi=6}', "fed.num_clients=5"],
     ["aggregator.multi", "6", "1..5"]),
    (['aggregator={name="trimmed-mean", beta=0.7}'], ["aggregator.beta", "0.7"]),
])
def test_a_config_the_rule_cannot_serve_is_refused_at_load_in_one_line(tmp_path, capsys, sets,
                                                                       words):
    cfg = load_config(None, sets)  # parses: the rule is a plugin, checked when resolved
    with pytest.raises(FedlppError) as info:
        resolve(cfg)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)
    args = ["train", "--out", str(tmp_path / "out"), "--quiet"]
    assert main(args + [x for s in sets for x in ("--set", s)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_krum_loads_when_clients_per_round_satisfy_n_above_2f_plus_2():
    cfg = load_config(None, ['aggregator={name="krum", byzantine=1}', "fed.num_clients=5"])
    assert cfg.aggregator == {"name": "krum", "byzantine": 1}


def test_fedlpp_ls_aggregators_lists_every_rule(capsys):
    assert main(["ls", "aggregators"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert {"mean", "median", "trimmed-mean", "norm-bound", "krum"} <= set(names)


# --- end to end ----------------------------------------------------------------------------------
# 5 clients x 2 rounds on the tiny model; client 1 boosts its progress 50x (an honest change has
# an L2 norm of about 0.8 to 1.1 here, so norm-bound clips it at 1.0)
E2E = ["fed.num_clients=5", "eval.select=last", "trace.payloads=false", "trace.updates=false",
       "trace.masters=last"]
BOOSTED = 'adversaries=[{behaviour = "scaled", clients = [1], factor = 50.0}]'


def final_master(tmp_path, name, *extra):
    result, out = run_tiny(tmp_path, *E2E, *extra, name=name)
    assert result["status"] == "ok" and all(r["rejected"] == [] for r in result["rounds"])
    return load_file(str(out / "trace" / "final_master.safetensors"))


def distance(a, b):
    return math.sqrt(sum(float((a[n].double() - b[n].double()).pow(2).sum()) for n in a))


@pytest.fixture(scope="module")
def honest_and_mean(tmp_path_factory, one_thread):
    """The honest run's final master and how far the boosted client pulls the mean from it."""
    tmp = tmp_path_factory.mktemp("robust")
    honest = final_master(tmp, "honest")
    return honest, distance(final_master(tmp, "mean", BOOSTED), honest)


@pytest.mark.parametrize("rule", [
    '{name = "median"}',
    '{name = "trimmed-mean", beta = 0.2}',
    '{name = "norm-bound", bound = 1.0}',
    '{name = "krum", byzantine = 1}',
    '{name = "krum", byzantine = 1, multi = 3}',
])
def test_a_robust_rule_keeps_the_master_near_the_honest_run_when_one_client_boosts_its_update(
        tmp_path, honest_and_mean, rule):
    honest, mean_off = honest_and_mean
    assert mean_off > 5.0  # the boosted client moves the mean's master far
    off = distance(final_master(tmp_path, "robust", BOOSTED, f"aggregator={rule}"), honest)
    assert off < 0.15 * mean_off, (rule, off, mean_off)


def test_what_the_rule_did_each_round_is_in_the_round_records(tmp_path, one_thread):
    result, _ = run_tiny(tmp_path, *E2E, BOOSTED, 'aggregator={name = "norm-bound", bound = 1.0}')
    for record in result["rounds"]:
        assert record["aggregation"]["updates"] == 5 and record["aggregation"]["clipped"] >= 1
    plain, _ = run_tiny(tmp_path, *E2E, name="plain")  # the mean says nothing: no key at all
    assert all("aggregation" not in r for r in plain["rounds"])
