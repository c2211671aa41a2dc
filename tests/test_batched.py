"""Client-batched local training gives each client what it gets training alone.

Tolerance: batched GEMMs sum in another order, and Adam's normalised steps amplify last-bit
differences in small gradients, so a client's trained tensors agree with the sequential ones to
1e-3 of the client's own update (measured: up to 5e-5 on the tiny model, 6e-4 on SmolLM2), its
per-step losses to 1e-5; batch record ids and step counts are exact. Over a whole run (round 2
starts from masters that already differ in the last bits) uploads agree to 1e-4 of their norm.
"""

import pytest
import torch
from conftest import TINY

from fedlpp.config import load_config
from fedlpp.data.encode import pad_id
from fedlpp.federation.batched import (
    ClientJob,
    train_batched,
    trainable_linears,
    unbatchable_reason,
)
from fedlpp.federation.client import local_train, num_local_steps
from fedlpp.methods.assemble import build_client, build_server
from fedlpp.models import load_state, trainable_state
from fedlpp.run.context import prepare_run

UPDATE_TOL, LOSS_TOL = 1e-3, 1e-5
CASES = {
    "lm-adapter-nf2": [],
    "lm-full-nf2": ["quant.scope=full"],
    "lm-fp32": ["quant.name=none", "quant.bits=32"],
    "cls-adapter-nf2": ["data.name=kjv-genre", "data.max_records=160"],
    "cls-full-fp32": ["data.name=kjv-genre", "data.max_records=160", "quant.scope=full",
                      "quant.name=none", "quant.bits=32"],
}


def _start(ctx):
    """What a round-1 client starts from: the round's broadcast, decoded into the model."""
    server, defenses = build_server(ctx)
    client = build_client(ctx, defenses=defenses)
    client.local.receive(server.broadcast(1).data)
    return trainable_state(ctx.bundle.model)


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_clients_upload_what_each_trains_alone(case, one_thread):
    ctx = prepare_run(load_config(None, [*TINY, "fed.num_clients=3", "data.partition=dirichlet",
                                         *CASES[case]]))
    model, fed = ctx.bundle.model, ctx.cfg.fed
    assert unbatchable_reason(model) is None
    start = _start(ctx)
    sizes = [int(d["input_ids"].shape[0]) for d in ctx.client_data]
    assert len(set(sizes)) > 1, "unequal shards: some clients drop out of later steps"
    steps = [num_local_steps(fed, num_examples=n) + c for c, n in enumerate(sizes)]
    alone, alone_batches = [], []
    for c in range(3):
        load_state(model, start)
        seen: list[list[int]] = []
        losses = local_train(model=model, data=ctx.client_data[c], steps=steps[c],
                             batch_size=fed.batch_size, lr=fed.lr, seed=50 + c,
                             on_step=lambda s, seen=seen: seen.append(s.batch))
        alone.append((trainable_state(model), losses))
        alone_batches.append(seen)
    load_state(model, start)
    together_batches: list[list[list[int]]] = [[] for _ in range(3)]
    jobs = [ClientJob(data=ctx.client_data[c], steps=steps[c], seed=50 + c,
                      on_step=lambda s, c=c: together_batches[c].append(s.batch))
            for c in range(3)]
    together = train_batched(model=model, jobs=jobs, start=start, batch_size=fed.batch_size,
                             lr=fed.lr, weight_decay=fed.weight_decay, task=ctx.task,
                             pad_id=pad_id(ctx.bundle.tokenizer))
    assert together_batches == alone_batches
    for (a, la), (b, lb) in zip(alone, together, strict=True):
        assert list(a) == list(b) and len(la) == len(lb)
        assert max(abs(x - y) for x, y in zip(la, lb, strict=True)) < LOSS_TOL
        for name in a:
            moved = (a[name] - start[name]).norm()
            assert moved > 0, name
            assert (a[name] - b[name]).norm() <= UPDATE_TOL * moved, name


def test_the_model_is_left_as_it_was():
    ctx = prepare_run(load_config(None, TINY))
    model = ctx.bundle.model
    before = trainable_state(model)
    jobs = [ClientJob(data=ctx.client_data[c], steps=1, seed=c) for c in range(2)]
    train_batched(model=model, jobs=jobs, start=before, batch_size=4, lr=0.01, weight_decay=0.0,
                  task=ctx.task, pad_id=pad_id(ctx.bundle.tokenizer))
    after = trainable_state(model)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert all("forward" not in vars(m) for m in trainable_linears(model).values())


def test_dropout_in_training_is_refused_with_its_reason():
    ctx = prepare_run(load_config(None, [*TINY, "lora.dropout=0.1"]))
    assert "dropout" in unbatchable_reason(ctx.bundle.model)


RUN = ["fed.num_clients=3", "data.partition=dirichlet", "fed.local_steps=0", "fed.local_epochs=1"]


@pytest.mark.parametrize("extra", [[], ["data.name=kjv-genre", "data.max_records=160",
                                        "quant.scope=full"]], ids=["lm", "cls-full"])
def test_a_batched_run_uploads_what_the_sequential_run_uploads(tmp_path, one_thread, extra):
    from conftest import run_tiny
    from safetensors.torch import load_file

    on, out_on = run_tiny(tmp_path, *RUN, *extra, "system.batch_clients=on", name="on")
    off, out_off = run_tiny(tmp_path, *RUN, *extra, "system.batch_clients=off", name="off")
    assert on["meta"]["local_training"] == {"1": "batched", "2": "batched"}
    assert set(off["meta"]["local_training"].values()) == {"sequential: system.batch_clients=off"}
    for r_on, r_off in zip(on["rounds"], off["rounds"], strict=True):
        assert r_on["clients"] == r_off["clients"] and r_on["bytes_up"] == r_off["bytes_up"]
        assert r_on["train_loss"] == pytest.approx(r_off["train_loss"], abs=LOSS_TOL)
        rnd = f"round_{r_on['round']:04d}"
        assert (out_on / "trace" / rnd / "batches.json").read_bytes() == \
            (out_off / "trace" / rnd / "batches.json").read_bytes()  # the same record ids
        for upload in sorted((out_off / "trace" / rnd / "updates").iterdir()):
            a, b = load_file(upload), load_file(out_on / "trace" / rnd / "updates" / upload.name)
            assert list(a) == list(b)
            for name in a:  # round 2 starts from masters that already differ in the last bits
                assert (a[name] - b[name]).norm() <= 1e-4 * a[name].norm(), (rnd, name)
    assert on["final"]["central"]["loss"] == pytest.approx(off["final"]["central"]["loss"],
                                                           rel=1e-5)


def test_an_acting_adversary_makes_its_round_sequential(tmp_path, one_thread):
    from conftest import run_tiny

    result, _ = run_tiny(tmp_path, *RUN, "system.batch_clients=on",
                         'adversaries=[{behaviour = "sign-flip", clients = [1], rounds = [2]}]')
    assert result["meta"]["local_training"] == {
        "1": "batched", "2": "sequential: an adversarial client acts this round"}


def test_on_the_cpu_auto_trains_one_client_after_another(tmp_path, one_thread):
    from conftest import run_tiny

    result, _ = run_tiny(tmp_path, *RUN)
    assert set(result["meta"]["local_training"].values()) == {
        "sequential: system.batch_clients=auto batches on a CUDA device only"}


def test_lira_shadows_trained_batched_are_the_shadows_trained_one_by_one(tmp_path, one_thread):
    from conftest import run_tiny

    from attacks.context import AttackContext, Observation
    from attacks.runner import build_attacks

    _, out = run_tiny(tmp_path)
    ctx = AttackContext(out)
    (lira,) = build_attacks(["lira"], ["shadows=3", "shadow_steps=3"])
    obs = Observation(lira.threat_model, ctx, lira.attackers())
    shadows = {}
    for setting in ("off", "on"):
        ctx.run.cfg.system.batch_clients = setting
        ctx.cache.clear()
        assert lira.batch_shadows(obs) == (setting == "on")
        shadows[setting] = lira.trained_shadows(obs)
    start = lira.start_tensors(obs, lira.procedure(obs).start)
    for (records_a, a), (records_b, b) in zip(shadows["off"], shadows["on"], strict=True):
        assert records_a == records_b
        for name in ctx.run.trainable:
            moved = (a[name] - start[name]).norm()
            assert (a[name] - b[name]).norm() <= UPDATE_TOL * moved, name
