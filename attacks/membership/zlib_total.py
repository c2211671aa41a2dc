"""zlib ratio on the total NLL: a variant of ``zlib`` (Carlini et al. 2021) that is not the
published definition.

Exact formula, per record (higher = member)::

    score = -sum_t NLL_t / len(zlib.compress(text.encode("utf-8")))

with ``NLL_t``, ``text`` and zlib as in ``zlib``. Numerator and denominator are then both code
lengths of the same text (nats vs bytes), so the ratio does not drift with the record's length
the way the log-perplexity over a length-growing byte count does. Refused on classification data
(task ``cls``), as ``zlib``.
"""

from __future__ import annotations

import numpy as np

from attacks.base import ATTACKS
from attacks.membership.zlib import ZlibAttack
from attacks.signals import SampleSignals


@ATTACKS.register("zlib-total")
class ZlibTotalAttack(ZlibAttack):
    """Score = -(total NLL of the target) / zlib-compressed bytes of the scored text."""

    summary = "membership: total NLL over zlib-compressed size of the text (variant of zlib)"

    def nll(self, target: SampleSignals) -> np.ndarray:
        """The numerator: per-record total NLL."""
        return np.array([-float(lp.sum()) for lp in target.token_logprobs])
