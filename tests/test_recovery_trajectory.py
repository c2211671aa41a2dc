"""Trajectory against its trivial baseline: the filter maths (known answers), that a moved
zero-width box is never exact, and that on a 4-client run with skewed data it beats the
midpoint of the last payload's box (``final-box``) for every attacking client."""

import math

import pytest
import torch
from conftest import run_tiny
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm, truncnorm

from attacks.context import AttackContext, Observation
from attacks.recovery.final_box import FinalBox
from attacks.recovery.intervals import (
    Step,
    filter_boxes,
    midpoint,
    observe,
    payload_boxes,
    restrict,
)
from attacks.recovery.trajectory import Trajectory
from attacks.runner import run_attacks

f64 = torch.float64


def t(*values):
    return torch.tensor(values, dtype=f64)


# --- the filter's maths (pure) -----------------------------------------------------------------
@pytest.mark.parametrize("mean, var, lo, hi", [
    (0.0, 1.0, -1.0, 1.0), (0.0, 1.0, 0.0, 10.0), (0.3, 0.25, -0.2, 0.1),
    (0.0, 1.0, 4.0, 5.0), (0.0, 1.0, -5.0, -4.0),  # tails: mirrored onto the lower one
    (2.0, 1e-6, 1.999, 1.9995),
])
def test_restrict_gives_the_truncated_gaussians_moments(mean, var, lo, hi):
    sd = math.sqrt(var)
    ref = truncnorm((lo - mean) / sd, (hi - mean) / sd, loc=mean, scale=sd)
    (m, v), loglik = restrict((t(mean), t(var)), (t(lo), t(hi)))
    assert m.item() == pytest.approx(ref.mean(), rel=1e-6, abs=1e-9)
    assert v.item() == pytest.approx(ref.var(), rel=1e-4, abs=1e-9)
    log_mass = math.log(norm.cdf(hi, mean, sd) - norm.cdf(lo, mean, sd)) if lo < 0 else \
        math.log(norm.sf(lo, mean, sd) - norm.sf(hi, mean, sd))
    assert loglik.item() == pytest.approx(log_mass - math.log(hi - lo), rel=1e-6)


def test_restrict_pins_zero_width_boxes_and_resets_where_the_belief_was_wrong():
    (m, v), loglik = restrict((t(0.0, 0.0, 0.0), t(1.0, 1.0, 1.0)),
                              (t(0.5, 8.0, 40.0), t(0.5, 9.0, 41.0)))
    assert m.tolist() == [0.5, 8.5, 40.5]  # exact; and too little mass: the box alone
    assert v.tolist() == [0.0, pytest.approx(1 / 12), pytest.approx(1 / 12)]
    assert loglik[1].item() == pytest.approx(math.log(norm.sf(8) - norm.sf(9)), rel=1e-6)
    assert loglik[0].item() == pytest.approx(-0.125 - math.log(2 * math.pi) / 2)  # a density


@settings(max_examples=60, deadline=None)
@given(mean=st.floats(-50, 50), sd=st.floats(1e-4, 1e3), lo=st.floats(-10, 10),
       width=st.floats(0, 20))
def test_restrict_always_lands_in_the_box_with_at_most_the_uniforms_variance(mean, sd, lo, width):
    (m, v), loglik = restrict((t(mean), t(sd * sd)), (t(lo), t(lo + width)))
    assert lo <= m.item() <= lo + width and 0 <= v.item() <= width * width / 12 + 1e-12
    assert math.isfinite(loglik.item())


def test_observe_is_the_kalman_update():
    (m, v), loglik = observe((t(0.0), t(1.0)), t(2.0), t(1.0))
    assert (m.item(), v.item()) == (1.0, 0.5)
    assert loglik.item() == pytest.approx(-1.0 - math.log(2.0) / 2 - math.log(2 * math.pi) / 2)


def box_step(lo, hi, move=None):
    step = Step(boxes={"w": (t(lo), t(hi))}, proxy={"w": t((lo + hi) / 2)})
    if move is not None:
        step.move, step.unit = {"w": t(move)}, {"w": abs(move)}
    return step


def test_a_zero_width_box_moved_by_an_estimate_is_not_exact():
    # round 1 pins B = 0 exactly; the estimated movement 1.0 does not pin round 2's B at 1.0
    steps = [box_step(0.0, 0.0), box_step(0.0, 4.0, move=1.0)]
    beliefs, _, _ = filter_boxes(steps, noise=0.5, stochastic=False)
    mean, var = beliefs["w"]
    assert 0.0 < mean.item() < 4.0 and var.item() > 0.1
    # the noise the data fits best is chosen by likelihood: a box far from the estimate is
    # likelier under more noise
    far = [box_step(0.0, 0.0), box_step(3.0, 3.5, move=1.0)]
    assert (filter_boxes(far, noise=4.0, stochastic=False)[1]
            > filter_boxes(far, noise=0.25, stochastic=False)[1])


def test_filter_with_a_sure_movement_narrows_to_the_boxes_intersection():
    steps = [box_step(0.0, 1.0), box_step(1.0, 2.0, move=0.5)]  # moved: [0.5, 1.5] & [1, 2]
    mean, var = filter_boxes(steps, noise=0.01, stochastic=False)[0]["w"]
    assert 1.0 < mean.item() < 1.5 and var.item() < 1 / 12


# --- against final-box on a heterogeneous federation -------------------------------------------
def rel_errors(recovered, master):
    """Relative Frobenius error of the raw tensors and of each layer's B @ A."""
    def ratio(pairs):
        num = sum(float(((r - m) ** 2).sum()) for r, m in pairs)
        return math.sqrt(num / sum(float((m**2).sum()) for _, m in pairs))

    rec = {n: x.to(f64) for n, x in recovered.items()}
    mas = {n: x.to(f64) for n, x in master.items()}
    products = [(rec[b] @ rec[a], mas[b] @ mas[a])
                for a in mas if "lora_A" in a for b in [a.replace("lora_A", "lora_B")]]
    return {"tensors": ratio([(rec[n], mas[n]) for n in mas]), "BA": ratio(products),
            "B": ratio([(rec[n], mas[n]) for n in mas if "lora_B" in n])}


@pytest.fixture(scope="module")
def skewed_ctx(tmp_path_factory):
    """4 clients with Dirichlet(0.3) topic skew (unequal shard sizes too), 5 rounds, 2-bit nf."""
    _, out = run_tiny(tmp_path_factory.mktemp("skewed"), "fed.num_clients=4", "fed.rounds=5",
                      "eval.every=5", "data.partition=dirichlet", "data.alpha=0.3",
                      "data.max_records=240")
    return AttackContext(out)


@pytest.mark.parametrize("client", range(4))
def test_trajectory_beats_the_final_box_midpoint_on_a_heterogeneous_federation(client, skewed_ctx):
    obs = Observation("client", skewed_ctx, (client,))
    traj = Trajectory(Trajectory.Config(client=client)).run(obs)
    base = FinalBox(FinalBox.Config(client=client)).run(obs)
    assert traj.round == base.round == skewed_ctx.trace.num_rounds + 1
    master = skewed_ctx.trace.master(traj.round)
    ours, trivial = rel_errors(traj.recovered, master), rel_errors(base.recovered, master)
    for what in ("tensors", "B", "BA"):
        assert ours[what] <= trivial[what], (what, ours, trivial)
    assert traj.extra["surprise_fraction"] < 0.01  # the fitted noise is calibrated
    # the estimate stays inside the last box, and is deterministic
    for name, (lo, hi) in payload_boxes(obs.payload(traj.round)).items():
        assert bool(((lo <= traj.recovered[name]) & (traj.recovered[name] <= hi)).all())
    again = Trajectory(Trajectory.Config(client=client)).run(obs).recovered
    assert all(torch.equal(again[n], traj.recovered[n]) for n in again)


def test_final_box_is_the_last_payloads_midpoint_and_exact_at_full_precision(tmp_path,
                                                                           skewed_ctx):
    obs = Observation("client", skewed_ctx, (2,))
    res = FinalBox(FinalBox.Config(client=2)).run(obs)
    boxes = payload_boxes(obs.payload(res.round))
    assert all(torch.equal(res.recovered[n], midpoint(b)) for n, b in boxes.items())
    assert res.control is None and res.extra["mean_box_width"] > 0
    _, out = run_tiny(tmp_path, "quant.name=none", "quant.bits=32", "fed.rounds=1")
    (record,) = run_attacks(out, names=["final-box"], quiet=True)
    error = record["metrics"]["param_rel_error"]
    assert (error["value"] if isinstance(error, dict) else error) == 0.0
