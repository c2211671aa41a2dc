"""This project's own ``attacks`` and ``benchmarks``, never a user's folder of that name.

The command's and the API's ``attacks`` and ``benchmarks`` are always this project's, the folders
beside ``fedlpp/``: a user's own ``attacks/`` or ``benchmarks/`` folder in the working directory
(first on ``sys.path`` under ``python -m fedlpp.cli``) is never imported. Importing
:mod:`fedlpp.cli` puts :class:`OwnPackages` first on ``sys.meta_path``; it finds those two names
beside ``fedlpp/`` and nowhere else, so ``sys.path`` stays as it was and the user's other modules
in the working directory (a plugin module, say) still import. This was chosen over taking the
working directory off ``sys.path`` (that would hide those modules too) and over refusing to run
beside such a folder (``attacks/`` is a natural name for a folder of one's own attacks). A spawned
worker of ``fedlpp bench run --jobs N`` imports :mod:`fedlpp.cli` first too (its main module).
Where a module of either name is already imported from elsewhere (a Python session that imported
its own), the command and the API stop with one line naming that folder (:func:`own_packages`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path

from fedlpp.errors import FedlppError

HOME = Path(__file__).resolve().parent.parent  # the folder that holds fedlpp/, attacks/, benchmarks/
OWN = ("attacks", "benchmarks")  # the project's other top-level packages


class OwnPackages(importlib.abc.MetaPathFinder):
    """Finds :data:`OWN` in :data:`HOME` only (and nothing else), whatever ``sys.path`` holds."""

    def find_spec(self, name: str, path=None, target=None):  # noqa: ANN001, ANN201 - the protocol
        if name not in OWN:
            return None
        return importlib.machinery.PathFinder.find_spec(name, [str(HOME)])


def install_own_packages() -> None:
    """Put :class:`OwnPackages` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, OwnPackages) for f in sys.meta_path):
        sys.meta_path.insert(0, OwnPackages())


def own_packages() -> None:
    """:func:`install_own_packages`, and a one-line error if ``attacks`` or ``benchmarks`` is
    already imported from a folder that is not beside ``fedlpp/`` (e.g. a user's own)."""
    install_own_packages()
    for name in OWN:
        module = sys.modules.get(name)
        if module is None:
            continue
        where = list(getattr(module, "__path__", None) or [getattr(module, "__file__", None)])
        if not any(w and Path(w).resolve() == HOME / name for w in where):
            shown = ", ".join(str(w) for w in where if w) or "an unknown place"
            raise FedlppError(f"a module named {name!r} is already imported from {shown}, not "
                              f"fedlpp's ({HOME / name}): rename that folder, or use fedlpp "
                              f"before importing it")
