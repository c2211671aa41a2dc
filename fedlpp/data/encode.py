"""Records -> padded tensors for training and evaluation, with any Hugging Face tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fedlpp.data.base import Record
from fedlpp.errors import FedlppError

IGNORE_INDEX = -100  # label value the Hugging Face losses skip


def pad_id(tokenizer: Any) -> int:
    """The id used for padding: the tokenizer's pad token, else its eos token, else 0.

    The tokenizer is not modified (no ``tokenizer.pad_token = eos``), so sharing it between
    callers has no hidden side effect. Padding positions are masked by ``attention_mask`` and
    ignored by the labels, so with eos (or 0) as filler a real eos in the text still counts.
    """
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def encode(records: Sequence[Record], *, tokenizer: Any, task: str,
           seq_len: int) -> dict[str, torch.Tensor]:
    """Tokenize, truncate to ``seq_len`` and right-pad to the longest row of the batch.

    Special tokens are whatever the tokenizer adds by itself (``add_special_tokens=True``):
    Llama-style tokenizers prepend BOS, BERT ones wrap in CLS/SEP, GPT-2 adds nothing. Nothing
    else is added, so a model sees the same inputs here as from its own tokenizer call.

    Args:
        records: the examples (``label`` must be set for ``"cls"``).
        tokenizer: a ``transformers`` tokenizer (``PreTrainedTokenizerBase``).
        task: ``"lm"`` or ``"cls"``.
        seq_len: maximum tokens per row, special tokens included.

    Returns:
        ``input_ids`` and ``attention_mask``: long ``[n, L]`` with ``L <= seq_len`` (at least 1);
        ``labels``: for ``"lm"`` the input ids with ``-100`` on padding (the model shifts them),
        for ``"cls"`` a long ``[n]`` tensor of class ids.

    Raises:
        FedlppError: unknown task, or a ``"cls"`` record without a label.
    """
    if task not in ("lm", "cls"):
        raise FedlppError(f"Invalid task: {task!r} (allowed: 'lm', 'cls')")
    if task == "cls":
        missing = [i for i, r in enumerate(records) if r.label is None]
        if missing:
            raise FedlppError(f"record {missing[0]} has no label, but the task is classification")
    # Padding by hand rather than padding=True: it needs no pad token set on the tokenizer.
    rows = tokenizer([r.text for r in records], add_special_tokens=True, truncation=True,
                     max_length=seq_len)["input_ids"]
    width = max(1, max((len(row) for row in rows), default=0))
    input_ids = torch.full((len(rows), width), pad_id(tokenizer), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    if task == "lm":
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    else:
        labels = torch.tensor([int(r.label) for r in records], dtype=torch.long)  # type: ignore[arg-type]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
