"""The no-payload control of every fine-tuning recovery attack: the same budget, seed and data
from the public starting point (scope ``adapter``: the LoRA init on the public base; scope
``full``: that init on the first payload's quantized base), deterministic, and absent where an
attack trains nothing."""

import pytest
import torch
from conftest import run_tiny

from attacks.context import AttackContext, Observation
from attacks.recovery.as_is import AsIs
from attacks.recovery.base import public_start
from attacks.recovery.box_pgd import BoxPGD
from attacks.recovery.collusion import Collusion
from attacks.recovery.final_box import FinalBox
from attacks.recovery.local_finetune import LocalFinetune
from attacks.recovery.trajectory import Trajectory

FINETUNING = [LocalFinetune, BoxPGD]


@pytest.fixture(scope="module")
def adapter_ctx(tmp_path_factory):
    return AttackContext(run_tiny(tmp_path_factory.mktemp("adapter"))[1])


@pytest.fixture(scope="module")
def full_ctx(tmp_path_factory):
    return AttackContext(run_tiny(tmp_path_factory.mktemp("full"), "quant.scope=full",
                                  "fed.rounds=1")[1])


def same(a, b):
    return set(a) == set(b) and all(torch.equal(a[n], b[n]) for n in a)


def test_in_scope_adapter_the_public_start_is_the_lora_init(adapter_ctx):
    start, described = public_start(Observation("client", adapter_ctx, (0,)))
    assert same(start, adapter_ctx.initial) and "public base" in described


@pytest.mark.parametrize("cls", FINETUNING)
def test_the_control_trains_the_same_budget_from_the_public_start(cls, adapter_ctx):
    obs = Observation("client", adapter_ctx, (0,))
    res = cls(cls.Config(steps=3)).run(obs)
    assert set(res.control) == set(res.recovered) == set(adapter_ctx.initial)
    assert not same(res.control, adapter_ctx.initial)  # it trained
    assert not same(res.control, res.recovered)  # from elsewhere than the payload
    assert res.extra["control_start"] == "LoRA init on the public base"
    again = cls(cls.Config(steps=3)).run(obs)  # same seed: the same tensors
    assert same(again.control, res.control) and same(again.recovered, res.recovered)
    other_seed = cls(cls.Config(steps=3, seed=1)).run(obs)
    assert not same(other_seed.control, res.control)


def test_box_pgds_control_has_no_box_it_is_local_finetunes(adapter_ctx):
    obs = Observation("client", adapter_ctx, (1,))
    box = BoxPGD(BoxPGD.Config(client=1, steps=2, start="center")).run(obs)
    free = LocalFinetune(LocalFinetune.Config(client=1, steps=2)).run(obs)
    assert same(box.control, free.control)


def test_collusion_passes_its_strategys_control_through(adapter_ctx):
    attack = Collusion(Collusion.Config(strategy="local-finetune", options={"steps": 2}))
    pooled = Observation("colluding", adapter_ctx, attack.attackers())
    res = attack.run(pooled)
    assert res.control is not None and set(res.control) == set(res.recovered)
    # trained on the pooled records: differs from one colluder's own control
    alone = LocalFinetune(LocalFinetune.Config(steps=2)).run(Observation("client", adapter_ctx, (0,)))
    assert not same(res.control, alone.control)


@pytest.mark.parametrize("cls", [AsIs, FinalBox, Trajectory])
def test_attacks_that_train_nothing_have_no_control(cls, adapter_ctx):
    assert cls(cls.Config()).run(Observation("client", adapter_ctx, (0,))).control is None


def test_in_scope_full_the_control_starts_on_the_first_payloads_base(full_ctx):
    obs = Observation("client", full_ctx, (0,))
    start, described = public_start(obs)
    static = full_ctx.run.static
    assert static and set(start) == set(full_ctx.initial) | set(static)
    payload = full_ctx.dequantize(obs.payload(1))
    assert all(torch.equal(start[n], payload[n]) for n in static)  # quantized, not private
    assert not all(torch.equal(start[n], full_ctx.private_base[n]) for n in static)
    assert all(torch.equal(start[n], full_ctx.initial[n]) for n in full_ctx.initial)
    assert described == "LoRA init on the base weights of the payload of round 1"
    res = LocalFinetune(LocalFinetune.Config(steps=2)).run(obs)
    assert set(res.control) == set(start)
    assert all(torch.equal(res.control[n], start[n]) for n in static)  # the base is not trained
    assert not all(torch.equal(res.control[n], start[n]) for n in full_ctx.initial)
