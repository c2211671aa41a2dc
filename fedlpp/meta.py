"""Provenance saved beside every result: git sha, dirty flag, package versions, the installed
third-party plugins (distribution, version, and a content hash of an editable one's code), host,
time."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import platform
import subprocess
from importlib.metadata import Distribution, PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import Any

# the entry-point groups third-party plugins register in (one per registry)
PLUGIN_GROUPS = ("fedlpp.attacks", "fedlpp.defenses", "fedlpp.quantizers", "fedlpp.methods",
                 "fedlpp.aggregators", "fedlpp.adversaries", "fedlpp.models", "fedlpp.datasets")
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


def plugins() -> dict[str, dict[str, Any]]:
    """Every installed third-party plugin, ``<kind>:<name>`` -> its distribution, version and
    module; an editable install also gets a sha256 of its module's source files, since its code
    can change without its version changing."""
    found: dict[str, dict[str, Any]] = {}
    for group in PLUGIN_GROUPS:
        for ep in entry_points(group=group):
            dist = ep.dist
            entry: dict[str, Any] = {"distribution": dist.name if dist else None,
                                     "version": dist.version if dist else None,
                                     "module": ep.module}
            if dist is not None and _editable(dist):
                entry["source_sha256"] = source_digest(ep.module)
            found[f"{group.split('.', 1)[1]}:{ep.name}"] = entry
    return found


def _editable(dist: Distribution) -> bool:
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except (OSError, ValueError):
        return False
    return bool(info.get("dir_info", {}).get("editable"))


def source_digest(module: str) -> str | None:
    """sha256 over the names and bytes of ``module``'s ``.py`` files (a package: all of them,
    sorted); None when it cannot be found."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    if spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        files = sorted(root.rglob("*.py"))
    else:
        root, files = Path(spec.origin).parent, [Path(spec.origin)]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def folder_digest(folder: str | Path) -> str:
    """sha256 over the relative names and bytes of every file below ``folder`` (sorted): what an
    ``hf:`` model folder held when a run used it."""
    root = Path(folder)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


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
        "plugins": plugins(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
