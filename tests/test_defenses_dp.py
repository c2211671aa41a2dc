"""DP defenses: DP-SGD equals plain training without noise, per-record gradients are per
sequence, the reported epsilons are opacus' own, DP-FedAvg clips and noises as stated."""

import math

import pytest
import torch
from conftest import TINY, run_tiny
from opacus import GradSampleModule
from opacus.accountants import PRVAccountant, RDPAccountant

from fedlpp.config import load_config
from fedlpp.defenses.dp_fedavg import clip_update
from fedlpp.defenses.dp_train import dp_local_train, poisson_batches, sequence_losses
from fedlpp.errors import FedlppError
from fedlpp.federation.client import local_train
from fedlpp.models import load_state, trainable_state
from fedlpp.run.context import prepare_run
from fedlpp.run.resolve import resolve

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    """A tiny model and one client's records (every record 24 tokens, no padding)."""
    ctx = prepare_run(load_config(None, TINY))
    return ctx.bundle.model, ctx.client_data[0]


def _train(model, start, fn, **kw):
    load_state(model, {n: t.clone() for n, t in start.items()})
    fn(model=model, steps=4, batch_size=4, lr=0.01, seed=3, **kw)
    return trainable_state(model)


def test_dp_sgd_without_noise_and_with_a_huge_clip_equals_plain_training(tiny):
    model, data = tiny
    assert bool(data["attention_mask"].all())  # equal lengths: token mean = mean of records' means
    start = {n: t.clone() for n, t in trainable_state(model).items()}
    plain = _train(model, start, local_train, data=data)
    private = _train(model, start, dp_local_train, data=data, noise_multiplier=0.0,
                     max_grad_norm=1e9, poisson=False)
    moved = max(float((plain[n] - start[n]).abs().max()) for n in start)
    assert moved > 1e-3
    for name in start:
        torch.testing.assert_close(private[name], plain[name], atol=1e-6, rtol=1e-5)
    # the opacus hooks are gone: the shared model trains as before afterwards
    assert _train(model, start, local_train, data=data).keys() == plain.keys()
    assert not any(hasattr(p, "grad_sample") and p.grad_sample is not None
                   for p in model.parameters())


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # LoRA inputs need no grad
def test_each_records_gradient_ignores_the_other_records_padding(tiny):
    model, data = tiny
    batch = {k: v[:2].clone() for k, v in data.items()}
    padded = {k: v.clone() for k, v in batch.items()}  # record 1 cut to 10 tokens
    padded["attention_mask"][1, 10:] = 0
    padded["labels"][1, 10:] = -100

    def grad_samples(b):
        wrapped = GradSampleModule(model, batch_first=True, loss_reduction="mean", strict=False)
        try:
            sequence_losses(wrapped, b).mean().backward()
            params = [p for p in model.parameters() if p.requires_grad]
            out = [p.grad_sample.clone() for p in params]
            for p in params:
                p.grad = None
            return out
        finally:
            wrapped.to_standard_module()

    full, cut = grad_samples(batch), grad_samples(padded)
    for g_full, g_cut in zip(full, cut, strict=True):
        torch.testing.assert_close(g_cut[0], g_full[0], atol=1e-6, rtol=1e-5)
    assert any(float((g_cut[1] - g_full[1]).abs().max()) > 1e-6 for g_full, g_cut in zip(full, cut, strict=True))
    # and record 0's per-sample gradient is the gradient of its own loss alone
    params = [p for p in model.parameters() if p.requires_grad]
    alone = torch.autograd.grad(sequence_losses(model, {k: v[:1] for k, v in batch.items()}).sum(),
                                params)
    for g, a in zip(full, alone, strict=True):
        torch.testing.assert_close(g[0], a, atol=1e-6, rtol=1e-5)


def test_poisson_batches_sample_each_record_at_the_rate_and_may_be_empty():
    gen = torch.Generator().manual_seed(0)
    sizes = [len(b) for b in poisson_batches(40, rate=0.1, steps=4000, generator=gen)]
    assert abs(sum(sizes) / len(sizes) - 4.0) < 0.1
    assert 0 in sizes and max(sizes) > 8


def test_dp_sgd_reports_opacus_epsilon_for_its_noise_rate_and_steps(tmp_path):
    result, _ = run_tiny(tmp_path, 'defenses=[{name = "dp-sgd", noise_multiplier = 0.8, '
                                   'max_grad_norm = 0.5, delta = 1e-4}]')
    (report,) = result["defenses"]
    for client in ("0", "1"):
        seen = report["clients"][client]
        assert seen["rounds"] == 2 and seen["steps"] == 4  # 2 rounds x fed.local_steps=2
        acc = RDPAccountant()
        acc.history = [(0.8, seen["sample_rate"], 4)]
        assert seen["epsilon"]["value"] == pytest.approx(acc.get_epsilon(delta=1e-4), rel=1e-12)
    assert report["epsilon"]["value"] == max(report["clients"][c]["epsilon"]["value"] for c in "01")
    assert 0 <= report["clipped_share"] <= 1 and report["sampling"] == "poisson"


def test_dp_sgd_noise_changes_the_model_and_the_same_seed_repeats_it(tmp_path):
    plain, _ = run_tiny(tmp_path, name="plain")
    sets = 'defenses=[{name = "dp-sgd", noise_multiplier = 2.0, max_grad_norm = 1.0}]'
    a, _ = run_tiny(tmp_path, sets, name="a")
    b, _ = run_tiny(tmp_path, sets, name="b")
    assert a["final"]["central"] == b["final"]["central"]
    assert a["final"]["central"] != plain["final"]["central"]


def test_zero_noise_has_no_epsilon_and_says_why(tmp_path):
    result, _ = run_tiny(tmp_path, 'defenses=[{name = "dp-sgd", noise_multiplier = 0}]')
    eps = result["defenses"][0]["epsilon"]
    assert eps["value"] is None and "no differential-privacy guarantee" in eps["reason"]


@pytest.mark.parametrize("table, needle", [
    ('{name = "dp-sgd", noise_multiplier = -1}', "Invalid noise_multiplier: -1"),
    ('{name = "dp-sgd", max_grad_norm = 0}', "Invalid max_grad_norm: 0"),
    ('{name = "dp-sgd", delta = 1.5}', "Invalid delta: 1.5"),
    ('{name = "dp-sgd", accountant = "gdpx"}', "Invalid accountant: 'gdpx'"),
    ('{name = "dp-fedavg", clip = -2}', "Invalid clip: -2"),
    ('{name = "noise-before-quantize", scale = 0}', "Invalid scale: 0"),
    ('{name = "dp-sgd", sigma = 1}', "sigma"),
])
def test_bad_dp_options_are_one_line_errors(table, needle):
    with pytest.raises(FedlppError) as info:
        resolve(load_config(None, [f"defenses=[{table}]"]))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_clip_update_bounds_the_joint_difference_and_keeps_small_ones_exact():
    broadcast = {"a": torch.zeros(3), "b": torch.ones(2)}
    big = {"a": torch.tensor([3.0, 0.0, 0.0]), "b": torch.tensor([1.0, 5.0])}  # norm 5
    clipped, norm = clip_update(big, broadcast=broadcast, bound=1.0)
    assert norm == pytest.approx(5.0)
    assert torch.allclose(clipped["a"], torch.tensor([0.6, 0.0, 0.0]))
    assert torch.allclose(clipped["b"], torch.tensor([1.0, 1.8]))
    small, _ = clip_update(big, broadcast=broadcast, bound=10.0)
    assert all(torch.equal(small[n], big[n]) for n in big)


def test_dp_fedavg_noise_std_and_epsilon_are_as_stated(tmp_path):
    result, _ = run_tiny(tmp_path, "fed.num_clients=4", "fed.clients_per_round=2",
                         'defenses=[{name = "dp-fedavg", clip = 0.05, noise_multiplier = 1.5, '
                         'accountant = "prv"}]')
    (report,) = result["defenses"]
    assert report["noisy_rounds"] == 2
    # z * S * max(w) / sum(w) over each round's 2 clients (weights = their member counts; equal
    # weights would give Flower's z * S / m), averaged over the rounds
    sizes = [len(c) for c in prepare_run(load_config(None, [*TINY, "fed.num_clients=4"])).splits.members]
    stds = [1.5 * 0.05 * max(sizes[c] for c in r["clients"]) / sum(sizes[c] for c in r["clients"])
            for r in result["rounds"]]
    assert all(len(r["clients"]) == 2 for r in result["rounds"])
    assert report["noise_std"] == pytest.approx(sum(stds) / len(stds), rel=1e-12)
    acc = PRVAccountant()
    acc.history = [(1.5, 0.5, 2)]
    assert report["epsilon"]["value"] == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-9)
    assert report["clipped_share"] == 1.0 and report["median_update_norm"] > 0.05


def test_dp_fedavg_without_noise_and_with_a_huge_clip_changes_nothing(tmp_path):
    plain, _ = run_tiny(tmp_path, name="plain")
    same, _ = run_tiny(tmp_path, 'defenses=[{name = "dp-fedavg", clip = 1e9, noise_multiplier = 0}]',
                       name="same")
    assert same["final"]["central"]["loss"] == pytest.approx(plain["final"]["central"]["loss"],
                                                             abs=1e-6)
    assert same["defenses"][0]["epsilon"]["value"] is None


def test_dp_fedavg_noise_has_the_stated_scale():
    from fedlpp.defenses import build_defenses

    (d,) = build_defenses([{"name": "dp-fedavg", "clip": 2.0, "noise_multiplier": 1.0}])
    mean = {"w": torch.zeros(200_000)}
    noisy = d.after_aggregate(1, mean, broadcast=mean, weights={0: 10, 1: 30})
    # one client can move the weighted mean by clip * 30 / 40
    assert float(noisy["w"].std()) == pytest.approx(2.0 * 30 / 40, rel=0.01)
    assert math.isfinite(d.report()["epsilon"]["value"])


def test_the_cli_prints_the_accountants_epsilon_beside_the_auditors_bound(tmp_path, capsys):
    from fedlpp.cli import main

    out = tmp_path / "dp"
    sets = [a for item in TINY for a in ("--set", item)]
    assert main(["train", "--out", str(out), "--quiet", *sets, "--set",
                 'defenses=[{name = "dp-sgd", noise_multiplier = 1.0}]']) == 0
    assert '"epsilon"' in capsys.readouterr().out
    assert main(["attack", str(out), "--attack", "loss", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "accountant       dp-sgd     epsilon" in text and "delta 1e-05" in text
    assert "epsilon_lb" in text


def test_dp_sgd_without_noise_trains_a_classifier_as_plain_training_does(tmp_path):
    plain, _ = run_tiny(tmp_path, "data.name=kjv-genre", name="plain")
    same, _ = run_tiny(tmp_path, "data.name=kjv-genre", 'defenses=[{name = "dp-sgd", '
                       'noise_multiplier = 0, max_grad_norm = 1e9, poisson = false}]', name="dp")
    assert same["final"]["central"]["loss"] == pytest.approx(plain["final"]["central"]["loss"],
                                                             abs=1e-5)
    assert same["final"]["central"]["accuracy"] == plain["final"]["central"]["accuracy"]


def test_empty_poisson_batches_add_no_loss_and_all_empty_gives_the_records_loss(tiny):
    model, data = tiny
    start = {n: t.clone() for n, t in trainable_state(model).items()}
    steps = []
    load_state(model, {n: t.clone() for n, t in start.items()})
    losses = dp_local_train(model=model, data=data, steps=6, batch_size=1, lr=0.01, seed=0,
                            noise_multiplier=1.0, max_grad_norm=1.0, poisson=True,
                            on_step=steps.append)
    assert len(steps) == 6 and any(not s.batch for s in steps) and any(s.batch for s in steps)
    assert losses == [s.loss for s in steps if s.batch]
    # a rate so small that no record is ever drawn: the loss is that of all the records
    small = {k: v[:4] for k, v in data.items()}
    load_state(model, {n: t.clone() for n, t in start.items()})
    (only,) = dp_local_train(model=model, data=small, steps=1, batch_size=0, lr=0.01, seed=0,
                             noise_multiplier=1.0, max_grad_norm=1.0, poisson=True)
    with torch.no_grad():
        assert only == pytest.approx(float(sequence_losses(model, small).mean()), rel=1e-6)


def test_lira_audits_a_dp_sgd_run_its_shadows_trained_under_dp_sgd(tmp_path, one_thread):
    """LiRA's shadows train as the target's clients did, inside DP-SGD (it used to crash)."""
    import json

    from conftest import run_tiny

    from fedlpp.cli import main

    _, out = run_tiny(tmp_path, 'defenses=[{name = "dp-sgd", noise_multiplier = 1.0}]')
    assert main(["attack", str(out), "--attack", "lira", "--set", "shadows=2",
                 "--resamples", "50"]) == 0
    record = json.loads((out / "attacks" / "lira@central+shadows=2.json").read_text())
    assert record["status"] == "ok", record.get("error")
