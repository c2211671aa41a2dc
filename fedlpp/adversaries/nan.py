"""``nan``: NaN in place of some of the trained values (a diverged or malicious client)."""

from __future__ import annotations

from fedlpp.adversaries.base import ADVERSARIES, OverwriteValues


@ADVERSARIES.register("nan")
class Nan(OverwriteValues):
    """Sends an update with NaN values (option ``fraction``, default 0.01)."""

    value = float("nan")
