"""``tiny-llama``: a small Llama built from config with a byte-level tokenizer; no files, no download.

Its weights are a fixed seeded random init (not pretrained): the same on every machine and in every
process, which is what a public base W0 needs. This is the model all tests use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fedlpp.config import ModelConfig
from fedlpp.models.core import MODELS, Loaded, Task, torch_dtype

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "<s>", "</s>")  # ids 0, 1, 2; byte b is id 3 + b
INIT_SEED = 0  # fixed, so every server / client process builds the identical base model


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, the alphabet of the ByteLevel pre-tokenizer."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def byte_tokenizer(*, model_max_length: int = 2048) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: 256 byte tokens plus ``<pad>``, ``<s>`` (prepended) and ``</s>``.

    Every UTF-8 text round-trips exactly and nothing is ever unknown, so no vocabulary file is needed.

    Args:
        model_max_length: the length ``truncation=True`` cuts to.

    Returns:
        A ``PreTrainedTokenizerFast`` with bos / eos / pad set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({ch: len(SPECIALS) + b for b, ch in _bytes_to_unicode().items()})
    # BPE without merges = one token per byte character
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    tok.add_special_tokens(list(SPECIALS))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", model_max_length=model_max_length)


@MODELS.register("tiny-llama")
def load_tiny_llama(cfg: ModelConfig, *, task: Task, num_labels: int | None) -> Loaded:
    """A ``cfg.tiny_layers``-layer Llama of width ``cfg.tiny_hidden`` (4 heads, MLP 2x wide).

    Args:
        cfg: ``tiny_hidden``, ``tiny_layers`` and ``dtype`` are used.
        task: ``"lm"`` -> ``LlamaForCausalLM``; ``"cls"`` -> ``LlamaForSequenceClassification``.
        num_labels: classes for ``"cls"``.

    Returns:
        (model in eval mode, byte tokenizer, default LoRA targets ``["q_proj", "v_proj"]``).
    """
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    tokenizer = byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.tiny_hidden, intermediate_size=2 * cfg.tiny_hidden,
        num_hidden_layers=cfg.tiny_layers, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=tokenizer.model_max_length, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, num_labels=num_labels or 2,
    )
    cls = LlamaForCausalLM if task == "lm" else LlamaForSequenceClassification
    # fork_rng: a fixed init without disturbing the caller's random stream
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        model = cls(config)
    return model.to(torch_dtype(cfg)).eval(), tokenizer, ["q_proj", "v_proj"]
