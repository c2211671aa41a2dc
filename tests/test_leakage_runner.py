"""Leakage results end to end on tiny runs: controls beside every number, nulls with reasons,
per-record utility that adds up to the run's own utility."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import run_tiny

from attacks.base import AttackResult
from attacks.context import AttackContext
from attacks.runner import run_attacks, score_membership
from fedlpp.defenses import DEFENSES, Defense

MEMBERSHIP_KEYS = {"auc", "control_auc", "auc_minus_control", "tpr@1%fpr", "tpr@0.1%fpr",
                   "advantage", "epsilon_lb", "control", "num_members", "num_nonmembers",
                   "min_fpr", "resamples", "roc"}
RECOVERY_KEYS = {"utility", "control_utility", "gain_metric", "central_gain", "recovered_gain",
                 "control_gain", "gain_over_control", "param_rel_error", "param_rel_error_base",
                 "round", "num_records", "resamples", "central", "proxy", "base"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("leakage")
    return {scope: run_tiny(root, f"quant.scope={scope}", name=scope)[1]
            for scope in ("adapter", "full")}


@pytest.mark.parametrize("task", ["lm", "cls"])
def test_record_utility_adds_up_to_the_runs_utility(runs, tmp_path, task):
    out = runs["adapter"] if task == "lm" else run_tiny(tmp_path, "data.name=kjv-genre",
                                                        "fed.rounds=1")[1]
    ctx = AttackContext(out)
    central = ctx.trace.master(ctx.trace.num_rounds + 1)
    records, util = ctx.record_utility(central), ctx.utility(central)
    assert len(records["count"]) == len(ctx.run.test_data["input_ids"])
    assert records["loss"].sum() / records["count"].sum() == pytest.approx(util["loss"], rel=1e-5)
    if task == "cls":
        assert records["correct"].mean() == pytest.approx(util["accuracy"])
    assert ctx.utility(central) == util  # the run's measurement is untouched


def test_results_carry_controls_and_json_has_no_nan(runs):
    results = {r["attack"]: r for r in run_attacks(runs["adapter"], names=["as-is", "loss"],
                                                   resamples=100, quiet=True)}
    assert all(r["status"] == "ok" for r in results.values()), results
    loss, as_is = results["loss"]["metrics"], results["as-is"]["metrics"]
    assert set(loss) == MEMBERSHIP_KEYS and set(as_is) == RECOVERY_KEYS
    for name in ("auc", "control_auc", "auc_minus_control"):
        assert set(loss[name]) == {"value", "ci", "se", "reason"}, name
    assert loss["tpr@1%fpr"]["value"] is None and "non-members" in loss["tpr@1%fpr"]["reason"]
    assert loss["epsilon_lb"]["value"] >= 0 and loss["epsilon_lb"]["delta"] == 1e-5
    assert loss["epsilon_lb"]["delta_source"] == "default (no defense has a delta)"
    assert loss["control"]["epsilon_lb"]["value"] >= 0
    assert as_is["param_rel_error_base"] == {
        "value": None, "reason": "no private base weights (scope 'adapter')"}
    assert as_is["control_gain"]["value"] is None and as_is["control_gain"]["reason"]
    for name in ("as-is", "loss"):
        json.dumps(json.loads((runs["adapter"] / "attacks" / f"{name}{'@central' * (name == 'loss')}"
                              ".json").read_text()), allow_nan=False)


def test_scope_full_reports_the_base_weights_error_apart(runs):
    (as_is,) = run_attacks(runs["full"], names=["as-is"], resamples=20, quiet=True)
    errors = {k: as_is["metrics"][k]["value"] for k in ("param_rel_error", "param_rel_error_base")}
    assert all(v is not None and 0 < v < 1 for v in errors.values()), errors


def test_score_membership_without_control_scores_says_why():
    rng = np.random.default_rng(0)
    res = AttackResult(scores=rng.random(40), labels=np.r_[np.ones(20), np.zeros(20)])
    out = score_membership(res, resamples=50, seed=0)
    assert out["control_auc"]["value"] is None
    assert "no control scores" in out["auc_minus_control"]["reason"]
    assert out["auc"]["value"] is not None and out["auc"]["se"] is not None


@dataclass
class _AccountedConfig:
    delta: float = 1e-3


class _Accounted(Defense):
    """A defense with a DP accountant's ``delta`` option (and no effect)."""

    Config = _AccountedConfig


class _NoDelta(Defense):
    """A defense without a delta."""


if "test-accounted" not in DEFENSES.names():
    DEFENSES.register("test-accounted")(_Accounted)
    DEFENSES.register("test-no-delta")(_NoDelta)


@pytest.mark.parametrize("defenses, delta, source", [
    ([], 1e-5, "default (no defense has a delta)"),
    ([{"name": "test-no-delta"}], 1e-5, "default (no defense has a delta)"),
    ([{"name": "test-no-delta"}, {"name": "test-accounted"}], 1e-3,
     "defenses[1] (test-accounted)"),  # the option's default
    ([{"name": "test-accounted", "delta": 1e-6}], 1e-6, "defenses[0] (test-accounted)"),
])
def test_score_membership_audits_epsilon_at_the_delta_of_the_runs_defense(defenses, delta,
                                                                          source):
    rng = np.random.default_rng(0)
    res = AttackResult(scores=rng.random(40), labels=np.r_[np.ones(20), np.zeros(20)])
    out = score_membership(res, resamples=20, seed=0, defenses=defenses)
    assert (out["epsilon_lb"]["delta"], out["epsilon_lb"]["delta_source"]) == (delta, source)
    assert out["control"]["epsilon_lb"]["value"] is None  # no control scores, says why
    assert "no control scores" in out["control"]["epsilon_lb"]["reason"]
