"""FedLPP: federated LoRA fine-tuning with a quantized broadcast, and its privacy benchmark.

From Python (what the ``fedlpp`` command does, as calls; :mod:`fedlpp.api`)::

    import fedlpp

    run = fedlpp.train("configs/tiny.toml", sets=["quant.bits=2"], out="runs/r1")
    results = fedlpp.attack(run.out, ["loss", "as-is"])
    report = fedlpp.bench.run("tiny", "runs/bench-tiny")

``train``, ``attack``, ``bench`` and ``RunResult`` are loaded on first use by this module's
``__getattr__`` (PEP 562), so ``import fedlpp.config`` (or any other module of the package) stays
light: it imports neither :mod:`fedlpp.api` nor ``attacks`` or ``benchmarks``.

On the stage map of ``tests/test_architecture.py`` this package's ``__init__`` is the bottom
floor, and its ``__getattr__`` is the one import in the house that reaches up (to
:mod:`fedlpp.api`, on the top floor): an explicit exception there, left out of the import graph,
because it runs only when a user asks for ``fedlpp.train`` and the others, never when a module
of the project imports another. That test checks that it imports ``fedlpp.api`` and nothing else.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["RunResult", "attack", "bench", "train"]


def __getattr__(name: str) -> Any:
    """``fedlpp.train``, ``fedlpp.attack``, ``fedlpp.bench``, ``fedlpp.RunResult``: loaded here,
    on first use, from :mod:`fedlpp.api`."""
    if name not in __all__:
        raise AttributeError(f"module 'fedlpp' has no attribute {name!r}")
    from fedlpp import api

    value = getattr(api, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
