"""Membership attacks: every registered one end to end on every target, known answers of each
score on hand-built signals, an over-fitted model that must leak, labels from the trained
batches, the control on the untrained model, bad options."""

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import run_tiny

from attacks.base import ATTACKS
from attacks.context import AttackContext, Observation
from attacks.runner import build_attacks, run_attacks
from attacks.signals import SampleSignals
from fedlpp.errors import FedlppError

MEMBERSHIP = [n for n in ATTACKS.names() if ATTACKS.get(n).kind == "membership"]
TARGETS = ["central", "proxy", "update"]
# 9 members per client, 100 steps at a high lr, a wide adapter: client 0's update memorises its
# members (loss AUC 1.0 for seeds 0-5 when tuned, 0.93-1.0 at 60 steps; > 0.9 asserted), ~1 s.
OVERFIT = ["data.max_records=40", "fed.rounds=1", "fed.local_steps=100", "fed.lr=0.03",
           "lora.r=32", "lora.alpha=64", "data.member_fraction=0.5"]


pytestmark = pytest.mark.usefixtures("one_thread")


def attack(name, *sets):
    (a,) = build_attacks([name], list(sets))
    return a


def signals(logprobs, mu=None, sigma=None):
    lps = [np.asarray(x, dtype=np.float64) for x in logprobs]
    mu = [np.asarray(x, float) for x in mu] if mu else [np.zeros_like(x) for x in lps]
    sigma = [np.asarray(x, float) for x in sigma] if sigma else [np.ones_like(x) for x in lps]
    return SampleSignals(indices=np.arange(len(lps)), token_logprobs=lps, token_mu=mu,
                         token_sigma=sigma)


# --- end to end: every registered membership attack x every target ------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-client x 2-round tiny run, its loaded context, and every attack's result per target
    (one shared context, so LiRA's shadows are trained for the first target only)."""
    _, out = run_tiny(tmp_path_factory.mktemp("mia"))
    ctx = AttackContext(out)
    results = {t: {r["attack"]: r for r in run_attacks(out, names=MEMBERSHIP, sets=[f"target={t}"],
                                                       resamples=50, quiet=True, ctx=ctx)}
               for t in TARGETS}
    return ctx, results


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", MEMBERSHIP)
def test_every_membership_attack_runs_on_every_target(tiny, name, target):
    ctx, results = tiny
    res = results[target][name]
    assert res["status"] == "ok", res.get("error")
    assert res["config"]["target"] == target
    assert 0.0 <= res["metrics"]["auc"]["value"] <= 1.0
    a = attack(name, f"target={target}")  # again, on the warm cache: the scores themselves
    out = a.run(Observation(a.threat_model, ctx, a.attackers()))
    assert out.scores.shape == out.labels.shape == out.indices.shape == out.control_scores.shape
    assert np.isfinite(out.scores).all() and out.scores.std() > 0
    assert np.isfinite(out.control_scores).all()


@pytest.fixture(scope="module")
def tiny_cls(tmp_path_factory):
    """The same on classification data: each attack's one-"token" (label) path, central target."""
    _, out = run_tiny(tmp_path_factory.mktemp("mia-cls"), "data.name=kjv-genre")
    return {r["attack"]: r for r in run_attacks(out, names=MEMBERSHIP, resamples=50, quiet=True)}


@pytest.mark.parametrize("name", MEMBERSHIP)
def test_every_membership_attack_runs_on_classification(tiny_cls, name):
    res = tiny_cls[name]
    if name.startswith("zlib"):  # a text-compression ratio means nothing for a label's loss
        assert res["status"] == "failed" and "task lm" in res["error"]
        return
    assert res["status"] == "ok", res.get("error")
    assert 0.0 <= res["metrics"]["auc"]["value"] <= 1.0


@pytest.mark.parametrize("target", TARGETS)
def test_members_are_exactly_the_records_the_target_was_trained_on(tiny, target):
    ctx, _ = tiny
    a = attack("loss", f"target={target}")
    out = a.run(Observation(a.threat_model, ctx, a.attackers()))
    members = set(out.indices[out.labels == 1].tolist())
    nonmembers = set(out.indices[out.labels == 0].tolist())
    trace = ctx.trace
    trained = set()
    for rnd in range(1, trace.num_rounds + 1):
        for c, entry in trace.batches(rnd).items():
            if target == "update" and (c != 0 or rnd != trace.num_rounds):
                continue
            if target == "proxy" and c == 0:  # the attacking client's own records
                continue
            trained |= {i for step in entry["steps"] for i in step}
    assert members == trained
    assert not nonmembers & {i for m in trace.splits.members for i in m}
    pool = [i for c in ((0,) if target == "update" else (0, 1) if target == "central" else (1,))
            for i in trace.splits.members[c]]
    cov = out.extra["coverage"]
    assert cov["pool"] == len(pool) and cov["trained"] == len(members) < len(pool)
    assert cov["share"] == len(members) / len(pool) and cov["mean_times"] >= 1


def test_the_control_scores_the_same_candidates_on_the_untrained_model(tiny):
    ctx, _ = tiny
    for target in TARGETS:
        a = attack("reference", f"target={target}")
        out = a.run(Observation(a.threat_model, ctx, a.attackers()))
        # the reference of central/proxy is the untrained base, of update the starting
        # broadcast: on the untrained model the reference attack scores exactly 0
        assert np.all(out.control_scores == 0.0) and out.scores.std() > 0
    a = attack("loss")
    out = a.run(Observation(a.threat_model, ctx, a.attackers()))
    base = ctx.signals(ctx.initial, out.indices.tolist())
    assert np.array_equal(out.control_scores, -base.loss)


def test_overfitted_update_leaks_membership(tmp_path):
    _, out = run_tiny(tmp_path, *OVERFIT)
    (res,) = run_attacks(out, names=["loss"], sets=["target=update"], resamples=200, quiet=True)
    assert res["status"] == "ok", res.get("error")
    assert res["metrics"]["auc"]["value"] > 0.9


# --- known answers --------------------------------------------------------------------------------
def test_min_k_known_answers():
    sig = signals([[-1, -2, -3, -4, -5], [-0.5], [], -np.arange(100.0)])
    np.testing.assert_allclose(attack("min-k").score(sig, obs=None, indices=[]),
                               [-5.0, -0.5, 0.0, -89.5])  # k=0.2: 1 of 5, at least 1, none
    np.testing.assert_allclose(attack("min-k", "k=0.4").score(sig, obs=None, indices=[]),
                               [-4.5, -0.5, 0.0, -79.5])  # 2 of 5; 40 of 100: -99..-60
    assert attack("min-k", "k=0.29").score(sig, obs=None, indices=[])[3] == -85.0  # 29, not 28
    np.testing.assert_allclose(attack("min-k", "k=1").score(sig, obs=None, indices=[]),
                               [-3.0, -0.5, 0.0, -49.5])


def test_min_k_plus_plus_known_answers():
    sig = signals([[-1.0, -2.0, -3.0], [-1.0], [-1.0]],
                  mu=[[-1.5, -1.5, -1.0], [-1.0], [-2.0]], sigma=[[0.5, 0.25, 1.0], [0.0], [0.0]])
    # z = [1, -2, -2], [0 (0/floor)], [1e6 (1/floor)]
    np.testing.assert_allclose(attack("min-k++", "k=0.34").score(sig, obs=None, indices=[]),
                               [-2.0, 0.0, 1e6])
    np.testing.assert_allclose(attack("min-k++", "k=1.0").score(sig, obs=None, indices=[]),
                               [-1.0, 0.0, 1e6])


def test_reference_known_answers():
    target = signals([[-1.0, -1.0], [-4.0]])
    by_model = {"base": signals([[-2.0, -4.0], [-3.0]]), "round 2": signals([[-1.0, -2.0], [-5.0]])}
    ctx = SimpleNamespace(initial={"w": "base"}, trace=SimpleNamespace(participants=lambda r: [0, 1]),
                          signals=lambda tensors, indices: by_model[tensors["w"]], cache={})
    obs = SimpleNamespace(ctx=ctx, num_rounds=2, proxy=lambda rnd: {"w": f"round {rnd}"})
    # central / proxy: the base model; update: the broadcast of the client's last round
    np.testing.assert_allclose(attack("reference").score(target, obs=obs, indices=[0, 1]),
                               [3.0 - 1.0, 3.0 - 4.0])
    np.testing.assert_allclose(
        attack("reference", "target=update").score(target, obs=obs, indices=[0, 1]),
        [1.5 - 1.0, 5.0 - 4.0])


# --- bad options ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, option, words", [
    ("min-k", "k=0", ["k", "0", "0 < k <= 1"]),
    ("min-k++", "k=1.5", ["k", "1.5", "0 < k <= 1"]),
    ("lira", "shadows=0", ["shadows", "0", ">= 1"]),
    ("lira", "shadow_steps=-1", ["shadow_steps", "-1", ">= 0"]),
    ("zlib", "target='x'", ["target", "'x'", "'central', 'proxy', 'update'"]),
])
def test_bad_options_are_one_line_errors(name, option, words):
    with pytest.raises(FedlppError) as err:
        build_attacks([name], [option])
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg
