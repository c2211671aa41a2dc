"""Provenance saved beside every result: git sha, dirty flag, package versions, host, time."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = ("fedlpp-bench", "torch", "transformers", "peft", "bitsandbytes", "opacus",
            "scikit-learn", "numpy", "safetensors")


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_kernels() -> dict[str, Any]:
    """The CPU and the vector instructions torch's kernels use on it: float results can differ
    in the last bits between CPUs whose kernels differ (e.g. AVX2 vs AVX-512)."""
    model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):
        capability = None
    return {"model": model, "torch_capability": capability}


def provenance() -> dict[str, Any]:
    """What produced a result, so anyone can tell whether they can repeat it."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    # published results under reports/ are not code: writing them does not make a run "dirty"
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports")
    return {
        "cpu": cpu_kernels(),
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
