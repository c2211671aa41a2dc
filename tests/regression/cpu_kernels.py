"""Which CPU kernels produced a set of stored numbers, and how to compare against them.

Float results of training differ in the last bits between torch's kernel families (AVX2 vs
AVX-512, ``torch.backends.cpu.get_cpu_capability()``) and the difference grows over rounds. A
stored number is therefore compared **exactly** where this machine's kernels are the ones that
stored it, and **within** :data:`REL_TOL` (relative) elsewhere. What does not depend on float
kernels (splits, sampled clients, byte counts, rejected clients) is always compared exactly.

The mode each regression test ran in is collected in :data:`MODES` and printed at the end of the
test run (``conftest.py``), so a tolerance-mode pass is never mistaken for an exact one.
"""

from __future__ import annotations

import math
from typing import Any

REL_TOL = 1e-4  # relative, on losses, perplexities and master-tensor summaries of tiny runs
# real-model cells train for hundreds of steps, which amplifies last-bit differences: between
# AVX2 and AVX-512 kernels the MiniLM classification cell's final loss moved by 1.7e-3
# relative (1.7983 vs 1.7952), the SmolLM2 cells by less than 1e-4
REL_TOL_REAL = 1e-2
# accuracy counts records, so it moves in steps of 1/n: there the MiniLM cell's proxy accuracy
# moved by 2 of its 120 test records (0.3833 -> 0.3667); allow 3 records' worth
ACCURACY_TOL_REAL = 3 / 120
MODES: dict[str, str] = {}  # stored-results file -> the mode its tests ran in


def current_kernels() -> dict[str, str]:
    """This machine's torch CPU kernel family and CPU model, as stored beside results."""
    import torch

    from fedlpp.meta import cpu_kernels

    cpu = cpu_kernels()
    return {"cpu_capability": cpu["torch_capability"], "cpu_model": cpu["model"],
            "torch": torch.__version__.split("+")[0]}


def comparison_mode(stored_on: dict[str, str], *, source: str, rel: float = REL_TOL) -> str:
    """``"exact"`` when this machine's kernels (family and torch version) stored the numbers,
    else ``"tolerance"`` (floats within ``rel``); recorded in :data:`MODES` under ``source``."""
    here = current_kernels()
    same = all(here[k] == stored_on.get(k) for k in ("cpu_capability", "torch"))
    mode = "exact" if same else "tolerance"
    MODES[source] = (f"{mode}: stored on {stored_on.get('cpu_capability')} kernels "
                     f"({stored_on.get('cpu_model')}, torch {stored_on.get('torch')}); "
                     f"this CPU uses {here['cpu_capability']} ({here['cpu_model']}, "
                     f"torch {here['torch']})"
                     + ("" if same else f"; floats compared within relative {rel:g}"))
    return mode


def assert_close(new: Any, old: Any, *, mode: str, where: str = "", rel: float = REL_TOL,
                 accuracy: float = 0.0) -> None:
    """``new == old`` in ``exact`` mode; in ``tolerance`` mode the same structure (keys, list
    lengths, ints, strings, bools exactly) with every float within ``rel`` relative, and a
    value named ``accuracy`` within ``accuracy`` absolute (when > 0: it moves in whole records)."""
    if mode == "exact" or isinstance(old, bool) or old is None or isinstance(old, str):
        assert new == old, f"{where}: {new!r} != {old!r}"
    elif isinstance(old, dict):
        assert isinstance(new, dict) and sorted(new) == sorted(old), \
            f"{where}: keys {sorted(new) if isinstance(new, dict) else new!r} != {sorted(old)}"
        for k in old:
            assert_close(new[k], old[k], mode=mode, where=f"{where}.{k}", rel=rel, accuracy=accuracy)
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), f"{where}: {new!r} != {old!r}"
        for i, (n, o) in enumerate(zip(new, old, strict=True)):
            assert_close(n, o, mode=mode, where=f"{where}[{i}]", rel=rel, accuracy=accuracy)
    elif isinstance(old, int) and isinstance(new, int):
        assert new == old, f"{where}: {new!r} != {old!r}"
    elif accuracy > 0 and where.endswith(".accuracy"):
        assert isinstance(new, int | float) and abs(new - old) <= accuracy, \
            f"{where}: {new!r} differs from the stored {old!r} by more than {accuracy:g}"
    else:
        assert isinstance(new, int | float) and math.isclose(new, old, rel_tol=rel), \
            f"{where}: {new!r} differs from the stored {old!r} by more than {rel:g} relative"
