"""Model-recovery attacks: every registered one end to end, interval maths, box-pgd's box,
trajectory beating as-is under stochastic rounding, threat-model enforcement, option errors.

The no-payload controls are tested in test_recovery_controls.py, trajectory against the
final-box baseline in test_recovery_trajectory.py."""

import math

import pytest
import torch
from conftest import run_tiny
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks.base import ATTACKS
from attacks.context import AttackContext, Observation
from attacks.recovery.box_pgd import BoxPGD, box_start
from attacks.recovery.collusion import Collusion
from attacks.recovery.intervals import clamp_into, midpoint, payload_boxes
from attacks.recovery.local_finetune import LocalFinetune
from attacks.recovery.trajectory import NOISE_GRID
from attacks.runner import build_attacks, run_attacks
from fedlpp.errors import FedlppError
from fedlpp.quant import build_quantizer

RECOVERY = [n for n in ATTACKS.names() if ATTACKS.get(n).kind == "recovery"]


@pytest.fixture(scope="module")
def nf_run(tmp_path_factory):
    """The tiny 2-client x 2-round run at 2-bit nf (the paper's setting)."""
    return run_tiny(tmp_path_factory.mktemp("nf"))[1]


@pytest.fixture(scope="module")
def nf_ctx(nf_run):
    return AttackContext(nf_run)


@pytest.fixture(scope="module")
def nf_results(nf_run, nf_ctx):
    """Every registered recovery attack, run once through the runner."""
    return {r["attack"]: r for r in run_attacks(nf_run, names=RECOVERY, quiet=True, ctx=nf_ctx)}


def client_view(ctx, client=0):
    return Observation("client", ctx, (client,))


def value(metric):
    """A reported number: results give ``{"value", "reason"}`` (older ones a bare number)."""
    return metric["value"] if isinstance(metric, dict) else metric


# --- interval maths (pure) ---------------------------------------------------------------------
def test_midpoint_and_clamp():
    box = (torch.tensor([-1.0, 2.0]), torch.tensor([1.0, 4.0]))
    assert midpoint(box).tolist() == [0.0, 3.0]
    assert clamp_into(torch.tensor([5.0, 0.0]), box).tolist() == [1.0, 2.0]


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["nf", "uniform", "stochastic"]), bits=st.integers(1, 8),
       block=st.sampled_from([1, 7, 64]), numel=st.integers(1, 300),
       spread=st.floats(1e-3, 1e3), seed=st.integers(0, 2**31 - 1))
def test_projection_never_leaves_the_payload_intervals(name, bits, block, numel, spread, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(numel, generator=gen) * spread
    packed = {"w": build_quantizer(name, bits=bits, block_size=block).quantize(x, seed=seed)}
    box = payload_boxes(packed)["w"]
    assert bool(((box[0] <= x) & (x <= box[1])).all())  # the master is in its own box
    wild = x + torch.randn(numel, generator=gen) * spread * 10  # a step far outside
    for y in (clamp_into(wild, box), *box_start({"w": wild}, {"w": box}, start="proxy").values(),
              *box_start({"w": wild}, {"w": box}, start="center").values()):
        assert bool(((box[0] <= y) & (y <= box[1])).all())


def test_quantizer_without_intervals_is_a_clear_error():
    packed = {"w": build_quantizer("bnb-int8").quantize(torch.randn(64))}
    with pytest.raises(FedlppError, match="quantizer 'bnb-int8' gives none") as err:
        payload_boxes(packed)
    assert "\n" not in str(err.value)


# --- every registered recovery attack, end to end ----------------------------------------------
def test_the_recovery_attacks_are_registered():
    assert {"as-is", "final-box", "local-finetune", "box-pgd", "trajectory",
            "collusion"} <= set(RECOVERY)


@pytest.mark.parametrize("name", RECOVERY)
def test_every_recovery_attack_runs_end_to_end(name, nf_results, nf_run):
    record = nf_results[name]
    assert record["status"] == "ok", record.get("error")
    metrics = record["metrics"]
    assert math.isfinite(value(metrics["param_rel_error"]))
    gain = value(metrics["recovered_gain"])  # null (with its reason) when the run gained nothing
    assert gain is None and metrics["recovered_gain"]["reason"] or math.isfinite(gain)
    assert metrics["round"] == 3  # every client got the final payload: the final master
    assert (nf_run / "attacks" / f"{name}.json").exists()


def test_box_pgd_recovered_tensors_stay_in_the_payload_intervals(nf_ctx):
    obs = client_view(nf_ctx)
    res = BoxPGD(BoxPGD.Config()).run(obs)
    boxes = payload_boxes(obs.payload(res.round))
    assert set(res.recovered) == set(boxes)
    proxy = obs.proxy(res.round)
    assert any(not torch.equal(res.recovered[n], proxy[n]) for n in proxy)  # it did train
    for name, (lo, hi) in boxes.items():
        assert bool(((lo <= res.recovered[name]) & (res.recovered[name] <= hi)).all()), name
    # without the projection the same training leaves the box: the check above has teeth
    free = LocalFinetune(LocalFinetune.Config()).run(obs).recovered
    assert any(bool(((free[n] < lo) | (free[n] > hi)).any()) for n, (lo, hi) in boxes.items())


def test_box_pgd_on_a_quantizer_without_intervals_fails_only_its_own_result(tmp_path):
    _, out = run_tiny(tmp_path, "quant.name=bnb-int8", "quant.bits=8", "fed.rounds=1")
    res = {r["attack"]: r for r in run_attacks(out, names=["box-pgd", "as-is"], quiet=True)}
    assert res["box-pgd"]["status"] == "failed" and "bnb-int8" in res["box-pgd"]["error"]
    assert res["as-is"]["status"] == "ok"


def test_as_is_is_exact_at_full_precision(tmp_path):
    _, out = run_tiny(tmp_path, "quant.name=none", "quant.bits=32")
    (record,) = run_attacks(out, names=["as-is"], quiet=True)
    assert value(record["metrics"]["param_rel_error"]) == 0.0


def test_trajectory_beats_as_is_under_stochastic_rounding(tmp_path):
    # filtering 9 fresh roundings (moved by the own-update movement) more than halves the
    # error of one rounding
    _, out = run_tiny(tmp_path, "quant.name=stochastic", "fed.rounds=8",
                      "eval.every=8")
    res = {r["attack"]: value(r["metrics"]["param_rel_error"])
           for r in run_attacks(out, names=["as-is", "trajectory"], quiet=True)}
    assert res["trajectory"] < 0.7 * res["as-is"], res


# --- threat models -----------------------------------------------------------------------------
def test_a_client_view_sees_its_own_update_but_no_other_and_no_master(nf_ctx):
    obs = client_view(nf_ctx)
    assert set(obs.update(1, 0))
    with pytest.raises(FedlppError, match="not client 1"):
        obs.update(1, 1)
    with pytest.raises(FedlppError, match="cannot see the masters"):
        obs.master(2)
    with pytest.raises(FedlppError, match="cannot see the central model"):
        obs.central_signals([0])


@pytest.mark.parametrize("name", ["local-finetune", "box-pgd", "trajectory", "final-box"])
def test_client_attacks_read_only_their_own_updates(name, nf_ctx, monkeypatch):
    # the trace itself refuses masters and other clients' updates: no back door via obs.ctx
    trace = nf_ctx.trace
    real_update = trace.update

    def own_update_only(rnd, client):
        assert client == 1, f"read the update of client {client}"
        return real_update(rnd, client)

    monkeypatch.setattr(trace, "master", lambda rnd: pytest.fail("read a master"))
    monkeypatch.setattr(trace, "update", own_update_only)
    cls = ATTACKS.get(name)
    options = {"steps": 1} if name in ("local-finetune", "box-pgd") else {}
    attack = cls(cls.Config(client=1, **options))
    assert attack.threat_model == "client" and attack.attackers() == (1,)
    assert attack.run(Observation("client", nf_ctx, attack.attackers())).recovered


def test_collusion_pools_the_colluders_views(nf_ctx):
    attack = Collusion(Collusion.Config(clients=2, strategy="trajectory"))
    assert attack.threat_model == "colluding" and attack.attackers() == (0, 1)
    res = attack.run(Observation(attack.threat_model, nf_ctx, attack.attackers()))
    # both updates known: the movement is exact, so the likelihood picks the smallest noise
    # and no payload surprises the filter
    assert res.extra["noise_fitted"] == min(NOISE_GRID)
    assert res.extra["surprise_fraction"] < 0.01
    assert res.extra["colluders"] == [0, 1]


# --- options ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, option, fragment", [
    ("local-finetune", "steps=0", "steps: 0"),
    ("local-finetune", "lr=-1.0", "lr: -1.0"),
    ("local-finetune", "batch_size=true", "batch_size: True"),
    ("box-pgd", 'start="middle"', "start: 'middle'"),
    ("box-pgd", "seed=1.5", "seed: 1.5"),
    ("trajectory", 'movement="all"', "movement: 'all'"),
    ("trajectory", 'noise="high"', "noise: 'high'"),
    ("trajectory", "noise=0", "noise: 0"),
    ("collusion", "clients=1", "clients: 1"),
    ("collusion", 'strategy="as-is"', "strategy: 'as-is'"),
    ("collusion", "options={client=1}", "options: "),
    ("collusion", "options={bogus=1}", "Unknown option 'bogus'"),
    ("collusion", 'options={noise="x"}', "noise: 'x'"),
])
def test_bad_options_are_one_line_errors(name, option, fragment):
    with pytest.raises(FedlppError) as err:
        build_attacks([name], [f"{name}.{option}"])
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg
    assert f"attack '{name}'" in msg
    if "Unknown" not in msg:
        assert "allowed" in msg or "expected" in msg
