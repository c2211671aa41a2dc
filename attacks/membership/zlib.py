"""zlib ratio (Carlini et al., "Extracting Training Data from Large Language Models", USENIX
Security 2021): a text the model finds far easier than a generic compressor does was likely seen.

Exact formula, per record::

    score = -sum_t NLL_t / len(zlib.compress(text.encode("utf-8")))

with ``NLL_t = -log p(x_t | x_<t)`` in nats over the record's scored tokens (for ``cls``: the
label's NLL) and zlib at its default level. ``text`` is the record as the model saw it: its
encoded tokens decoded back without special tokens, so truncation to ``data.seq_len`` cuts both
sides alike. Carlini et al.'s code (and Shi et al.'s ``ppl/zlib``) divides the log-perplexity, i.e.
the *mean* NLL; the total makes both sides code lengths of the same text (nats vs bytes), so the
ratio does not drift with the record's length.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from attacks.base import ATTACKS
from attacks.context import Observation
from attacks.membership.base import MembershipAttack
from attacks.signals import SampleSignals


def zlib_ratio(*, total_nll: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """``-total_nll / zlib bytes`` per record (zlib output is never empty, so never / 0)."""
    sizes = np.array([len(zlib.compress(t.encode("utf-8"))) for t in texts], dtype=np.float64)
    return -np.asarray(total_nll, dtype=np.float64) / sizes


def scored_texts(obs: Observation, indices: list[int]) -> list[str]:
    """The records' text as encoded for the model (truncated), decoded from its tokens."""
    enc = obs.ctx.encode(indices)
    ids, keep = enc["input_ids"].numpy(), enc["attention_mask"].numpy().astype(bool)
    rows = [row[k] for row, k in zip(ids, keep, strict=True)]  # numpy: per-row torch masks cost ~20 us each
    return obs.ctx.run.bundle.tokenizer.batch_decode(rows, skip_special_tokens=True)


@ATTACKS.register("zlib")
class ZlibAttack(MembershipAttack):
    """Score = -(total NLL of the target) / zlib-compressed bytes of the scored text."""

    summary = "membership: total NLL over zlib-compressed size of the text (Carlini et al. 2021)"

    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        total_nll = np.array([-float(lp.sum()) for lp in target.token_logprobs])
        return zlib_ratio(total_nll=total_nll, texts=scored_texts(obs, indices))
