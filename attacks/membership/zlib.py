"""zlib ratio (Carlini et al., "Extracting Training Data from Large Language Models", USENIX
Security 2021, its "zlib" metric; ``ppl/zlib`` in Shi et al., "Detecting Pretraining Data from
Large Language Models", ICLR 2024): a text the model finds far easier than a generic compressor
does was likely seen.

Exact formula, per record (higher = member)::

    score = -(1/T) sum_t NLL_t / len(zlib.compress(text.encode("utf-8")))

with ``NLL_t = -log p(x_t | x_<t)`` in nats over the record's ``T`` scored tokens, i.e. the
log-perplexity (mean NLL) over zlib's byte count at its default level, exactly the ratio of
Carlini et al.'s code (``log(ppl) / zlib``, lower = memorised) and Shi et al.'s
(``mean log-likelihood / zlib``). A record with no scored token scores 0.0. ``text`` is the
record as the model saw it: its encoded tokens decoded back without special tokens, so truncation
to ``data.seq_len`` cuts both sides alike. The total-NLL variant is ``zlib-total``.

Refused on classification data (task ``cls``): there the model scores the label, not the text,
so the two sides of the ratio would measure different things.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from attacks.base import ATTACKS, AttackResult
from attacks.context import Observation
from attacks.membership.base import MembershipAttack
from attacks.signals import SampleSignals
from fedlpp.errors import FedlppError


def zlib_sizes(texts: Sequence[str]) -> np.ndarray:
    """zlib-compressed bytes of each text, UTF-8, default level (never 0: zlib adds a header)."""
    return np.array([len(zlib.compress(t.encode("utf-8"))) for t in texts], dtype=np.float64)


def zlib_ratio(*, nll: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """``-nll / zlib bytes`` per record (``nll``: the mean NLL for ``zlib``, the total for
    ``zlib-total``)."""
    return -np.asarray(nll, dtype=np.float64) / zlib_sizes(texts)


def scored_texts(obs: Observation, indices: list[int]) -> list[str]:
    """The records' text as encoded for the model (truncated), decoded from its tokens."""
    enc = obs.ctx.encode(indices)
    ids, keep = enc["input_ids"].numpy(), enc["attention_mask"].numpy().astype(bool)
    rows = [row[k] for row, k in zip(ids, keep, strict=True)]  # numpy: per-row torch masks cost ~20 us each
    return obs.ctx.run.bundle.tokenizer.batch_decode(rows, skip_special_tokens=True)


@ATTACKS.register("zlib")
class ZlibAttack(MembershipAttack):
    """Score = -(mean NLL of the target) / zlib-compressed bytes of the scored text."""

    summary = ("membership: log-perplexity over zlib-compressed size of the text "
               "(Carlini et al. 2021)")

    def nll(self, target: SampleSignals) -> np.ndarray:
        """The numerator: per-record mean NLL (the log-perplexity)."""
        return target.loss

    def run(self, obs: Observation) -> AttackResult:
        if obs.ctx.task == "cls":
            raise FedlppError(f"Attack '{self.registered_name}' needs language-model data "
                              "(task lm): on classification data the model scores the label, "
                              "not the text that zlib compresses")
        return super().run(obs)

    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        return zlib_ratio(nll=self.nll(target), texts=scored_texts(obs, indices))
