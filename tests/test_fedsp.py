"""FedSP (fed.method=fedsp): the auxiliary model's shared layers, its distillation, a run that
trains and sends the prompts alone, reproducibility, attacks on its trace, bad inputs."""

import copy
import json
from dataclasses import dataclass

import pytest
import torch
from conftest import TINY, run_tiny
from torch import nn

from attacks.runner import run_attacks
from fedlpp.config import DataConfig, ModelConfig, load_config
from fedlpp.data import load_dataset
from fedlpp.data.encode import encode
from fedlpp.errors import FedlppError
from fedlpp.evaluate import utility
from fedlpp.methods import METHODS
from fedlpp.methods.fedsp import FedSP
from fedlpp.methods.fedsp_aux import aux_weight_names, build_aux, distill, hidden_mse
from fedlpp.methods.fedsp_model import PROMPTS, USE_AUX
from fedlpp.models import MODELS, load_state
from fedlpp.models.tiny_llama import byte_tokenizer
from fedlpp.run.context import prepare_run
from fedlpp.run.simulator import run_federation
from fedlpp.run.trace_reader import TraceReader
from fedlpp.typed import options as options_of

FEDSP = ["fed.method=fedsp", "quant.name=none", "quant.bits=32"]


@dataclass
class PromptsOnly(FedSP.Config):
    aux_steps: int = 0  # no local tuning of the auxiliary weights


class FedSPPromptsOnly(FedSP):
    """FedSP whose clients tune the prompts alone (their auxiliary model stays as distilled)."""

    Config = PromptsOnly


if "test-fedsp-prompts-only" not in METHODS.names():
    METHODS.register("test-fedsp-prompts-only")(FedSPPromptsOnly)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_base(layers=3):
    base, _, _ = MODELS.get("tiny-llama")(ModelConfig(tiny_layers=layers), task="lm",
                                          num_labels=None)
    return base.requires_grad_(False)


def verses(n, seq_len=24):
    """The first ``n`` records of the tiny runs' KJV draw, encoded for the byte tokenizer."""
    records = load_dataset(DataConfig(max_records=200), seed=0).records[:n]
    return encode(records, tokenizer=byte_tokenizer(), task="lm", seq_len=seq_len)


# --- the auxiliary model ----------------------------------------------------------------------
def test_auxiliary_layers_share_one_weight_set_and_carry_their_own_index():
    base = tiny_base(layers=3)
    aux = build_aux(base, layer=0)
    layers = aux.model.layers
    assert [layer.self_attn.layer_idx for layer in layers] == [0, 1, 2]
    for name, param in layers[0].named_parameters():
        for other in layers[1:]:
            assert other.get_parameter(name).data_ptr() == param.data_ptr()
    # one layer's weights, not three; the base keeps its own three layers, untouched
    per_layer = sum(p.numel() for p in base.model.layers[0].parameters())
    base_count = sum(p.numel() for p in base.parameters())
    assert sum(p.numel() for p in aux.parameters()) == base_count - 2 * per_layer
    assert [layer.self_attn.layer_idx for layer in base.model.layers] == [0, 1, 2]
    own_q = layers[0].self_attn.q_proj.weight
    assert own_q.data_ptr() != base.model.layers[0].self_attn.q_proj.weight.data_ptr()
    # the shared weights compute what three independent copies of layer 0 compute
    twin = copy.deepcopy(aux)
    twin.model.layers = nn.ModuleList(copy.deepcopy(layers[0]) for _ in range(3))
    for i, layer in enumerate(twin.model.layers):
        layer.self_attn.layer_idx = i
    batch = verses(4)
    with torch.no_grad():
        assert torch.equal(aux(**batch).logits, twin(**batch).logits)
    # the auxiliary model's own weights: the shared layer and the final norm, no embeddings
    own = aux_weight_names(aux)
    assert own and all(n.startswith(("model.layers.0.", "model.norm.")) for n in own)


def test_distillation_lowers_the_hidden_state_error_to_the_full_model():
    base = tiny_base(layers=3)
    aux = build_aux(base)
    for name, param in aux.named_parameters():
        param.requires_grad_(name in set(aux_weight_names(aux)))
    train, held = verses(48), verses(64)
    held = {k: v[48:] for k, v in held.items()}
    before = float(hidden_mse(aux, base, held).detach())
    losses = distill(aux, teacher=base, data=train, steps=25, batch_size=8, lr=3e-3, seed=0)
    after = float(hidden_mse(aux, base, held).detach())
    assert len(losses) == 25 and after < 0.9 * before
    again = build_aux(base)
    for name, param in again.named_parameters():
        param.requires_grad_(name in set(aux_weight_names(again)))
    repeat = distill(again, teacher=base, data=train, steps=25, batch_size=8, lr=3e-3, seed=0)
    assert repeat == losses  # seeded


# --- a run --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fedsp_run(tmp_path_factory):
    """A 2-client x 2-round fedsp run on the tiny model."""
    return run_tiny(tmp_path_factory.mktemp("fedsp"), *FEDSP)


def test_only_prompts_travel_and_bytes_are_the_prompt_payload(fedsp_run):
    result, out = fedsp_run
    trace = TraceReader(out)
    prompts = trace.payload(1)[PROMPTS]
    numel = prompts.shape[0] * prompts.shape[1]
    # 8 prompts x 2 layers x (key + value) x 64 dims, float32
    assert tuple(prompts.shape) == (8, 2 * 2 * 64) and set(trace.payload(1)) == {PROMPTS}
    for rnd in result["rounds"]:
        assert rnd["bytes_down_per_client"] == 4 * numel
        assert rnd["bytes_down"] == 2 * 4 * numel
        assert rnd["bytes_up"] == 2 * (32 + 4 * numel)  # upload header + the prompts
        assert not rnd["rejected"]
    update, _ = trace.update(1, 0)
    assert set(update) == {PROMPTS}  # no base or auxiliary weights leave a client
    assert set(trace.master(1)) == {PROMPTS, USE_AUX}
    assert not torch.equal(trace.master(2)[PROMPTS], trace.master(1)[PROMPTS])
    final = result["final"]
    assert {"central", "proxy", "base"} <= set(final) and "perplexity" in final["central"]


def test_a_run_trains(fedsp_run):
    """Each client's loss (its tuned auxiliary model with the prompts) falls round by round."""
    result, _ = fedsp_run
    losses = [r["train_loss"] for r in result["rounds"]]
    assert losses[-1] < losses[0]


def test_prompts_trained_on_the_auxiliary_model_lower_the_central_loss(tmp_path):
    """With one layer, and clients that leave it as distilled, the auxiliary model is the full
    model: what the prompts learn must show in central, on the clients' training records and
    on the test records. (Clients that also tune their auxiliary weights at this learning rate
    fit the prompts to their own model, and central barely moves.)"""
    sets = [*TINY, "fed.method=test-fedsp-prompts-only", "quant.name=none", "quant.bits=32",
            "model.tiny_layers=1", "fed.rounds=3", "fed.local_steps=4", "fed.lr=0.05"]
    ctx = prepare_run(load_config(None, sets))
    result = run_federation(ctx.cfg, out=tmp_path / "run", quiet=True, echo=False, ctx=ctx)
    trace = TraceReader(tmp_path / "run")

    def member_loss(tensors):
        load_state(ctx.bundle.model, tensors)
        return sum(utility(ctx.bundle.model, data, task="lm", batch_size=16)["loss"]
                   for data in ctx.client_data) / len(ctx.client_data)

    released = trace.master(trace.num_rounds + 1)
    assert released[USE_AUX].item() == 0  # the full model reads the released prompts
    assert member_loss(released) < member_loss(ctx.initial) - 0.1
    assert result["final"]["central"]["loss"] < result["final"]["base"]["loss"]


def test_same_seed_gives_identical_numbers(fedsp_run, tmp_path):
    first, _ = fedsp_run
    again, _ = run_tiny(tmp_path, *FEDSP)
    assert json.dumps(again["rounds"]) == json.dumps(first["rounds"])
    assert again["final"] == first["final"]


# --- attacks on a fedsp trace --------------------------------------------------------------------
def test_membership_on_central_runs_and_the_rest_is_not_applicable(fedsp_run):
    _, out = fedsp_run
    results = run_attacks(out, names=["loss", "as-is"], resamples=20, quiet=True)
    by_name = {r["attack"]: r for r in results}
    assert by_name["loss"]["status"] == "ok"
    assert 0.0 <= by_name["loss"]["metrics"]["auc"]["value"] <= 1.0
    assert by_name["as-is"]["status"] == "not_applicable"
    assert "fed.method=fedsp" in by_name["as-is"]["error"]
    (proxy,) = run_attacks(out, names=["loss"], sets=["target=proxy"], resamples=20, quiet=True)
    assert proxy["status"] == "not_applicable" and "membership on central" in proxy["error"]


# --- bad inputs ---------------------------------------------------------------------------------
def one_line_error(tmp_path, *sets):
    out = tmp_path / "bad"
    with pytest.raises(FedlppError) as err:
        run_federation(load_config(None, [*TINY, *sets]), out=out, quiet=True, echo=False)
    assert "\n" not in str(err.value) and not (out / "result.json").exists()
    return str(err.value)


@pytest.mark.parametrize(("sets", "words"), [
    (["quant.scope=full"], ["quant.scope", "'full'", "fed.method=fedsp", "allowed"]),
    (["data.name=kjv-genre"], ["fed.method", "'fedsp'", "classification", "allowed"]),
])
def test_bad_inputs_are_one_line_errors(tmp_path, sets, words):
    message = one_line_error(tmp_path, *FEDSP, *sets)
    assert all(w in message for w in words), message


def test_no_text_left_for_the_server_is_a_one_line_error(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(f"line number {i} of a small file" for i in range(40)))
    message = one_line_error(tmp_path, *FEDSP, "data.name=text", f"data.path={str(lines)!r}",
                             "data.max_records=0")
    assert "data.max_records" in message and "fed.method=fedsp" in message


@pytest.mark.parametrize("options", [{"virtual_tokens": 0}, {"distill_steps": -1},
                                     {"prompt_init": "zeros"}, {"distill_lr": 0.0}])
def test_bad_fedsp_options_are_one_line_errors(options):
    with pytest.raises(FedlppError) as err:  # built as every plugin's options are: typed
        options_of(FedSP.Config, options, where="training method 'fedsp'")
    assert "\n" not in str(err.value) and next(iter(options)) in str(err.value)
