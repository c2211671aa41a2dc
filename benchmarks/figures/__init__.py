"""The report's figures, one per question a reader asks, each drawn from the cell JSONs.

=====================  ===================================================================
module                 question
=====================  ===================================================================
``learning``           does the proxy lag central as bits fall, and did training converge?
``recovery``           how much of the central model's gain does each recovery attack recover?
``privacy_utility``    does a more useful central model let a client recover more of its gain?
``model_privacy``      where does model privacy appear (central gain lost vs proxy gain kept)?
``membership``         how much does membership leak from each target?
``roc``                how well does each membership attack separate members at low FPR?
``frontier``           what does each defense cost in central utility, and what does it buy?
=====================  ===================================================================

Each module's ``figures(cells)`` returns ``(file name, figure)`` pairs; :func:`write_plots`
saves them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.figures import (
    frontier,
    learning,
    membership,
    model_privacy,
    privacy_utility,
    recovery,
    roc,
)
from benchmarks.figures.common import save

FAMILIES = (learning, recovery, privacy_utility, model_privacy, membership, roc, frontier)


def write_plots(rows: list[dict[str, Any]], cells: list[dict[str, Any]], out: Path) -> list[Path]:
    """Every figure of the report, from the suite's ok ``cells`` (``rows`` is unused: kept for
    the report's call); returns their paths."""
    del rows
    return [save(name, fig, out) for family in FAMILIES for name, fig in family.figures(cells)]
