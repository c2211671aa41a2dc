"""``inf``: +-infinity in place of some of the trained values."""

from __future__ import annotations

from fedlpp.adversaries.base import ADVERSARIES, OverwriteValues


@ADVERSARIES.register("inf")
class Inf(OverwriteValues):
    """Sends an update with infinite values (option ``fraction``, default 0.01)."""

    value = float("inf")
    random_sign = True
