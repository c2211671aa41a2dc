"""The engine regression cases: tiny runs whose results were stored before the round engine was
rebuilt (``engine_results.json``), so a refactor that changes any number is caught.

``python tests/regression/cases.py --write`` stores the current results with the kernels that
made them (only when a change is *meant* to alter them; say so in the commit). Numbers are
compared exactly on the same kernels and within a stated tolerance elsewhere (``cpu_kernels.py``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
STORED = HERE / "engine_results.json"
ROOT = HERE.parent.parent

TINY = [
    "model.name=tiny-llama", "data.name=kjv-lm", "data.max_records=120", "data.seq_len=24",
    "fed.num_clients=2", "fed.rounds=2", "fed.local_steps=2", "fed.batch_size=4", "fed.lr=0.01",
    "eval.max_records=16", "quant.bits=2",
    "data.dedup=false",  # stored before repeated texts were dropped by default
    "data.val_fraction=0", "eval.select=last",  # and before the validation split existed
]

# name -> (config file or None, --set overrides on top of TINY or of the file)
CASES: dict[str, tuple[str | None, list[str]]] = {
    "tiny-nf2": (None, TINY),
    "tiny-full-scope": (None, [*TINY, "quant.scope=full"]),
    "tiny-cls": (None, [*TINY, "data.name=kjv-genre", "data.max_records=160"]),
    "tiny-fp32": (None, [*TINY, "quant.name=none", "quant.bits=32"]),
    "tiny-upload-nf4": (None, [*TINY, "quant.upload=nf", "quant.upload_bits=4"]),
    "tiny-stochastic": (None, [*TINY, "quant.name=stochastic", "quant.bits=3"]),
    "tiny-bnb-nf4": (None, [*TINY, "quant.name=bnb-nf4", "quant.bits=4"]),
    "tiny-sampled": (None, [*TINY, "fed.num_clients=3", "fed.clients_per_round=1", "fed.rounds=3"]),
    "tiny-replace": (None, [*TINY, "fed.aggregation=replace"]),
    "tiny-dirichlet-epochs": (None, [*TINY, "data.partition=dirichlet", "fed.local_steps=0",
                                     "fed.local_epochs=0.5", "fed.num_clients=3"]),
    "tiny-uniform3-block48": (None, [*TINY, "quant.name=uniform", "quant.bits=3",
                                     "quant.block_size=48"]),
    "tiny-full-block1000": (None, [*TINY, "quant.scope=full", "quant.block_size=1000"]),
    "configs/tiny.toml": ("configs/tiny.toml", ["data.dedup=false", "data.val_fraction=0",
                                               "eval.select=last"]),
}


def tensors_digest(path: Path) -> str:
    """A content hash of a safetensors file's tensors (names, dtypes, shapes, values)."""
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def tensors_summary(path: Path) -> dict[str, dict[str, float]]:
    """Per tensor of a safetensors file: its L2 norm and mean absolute value (float64), the
    master's fingerprint where kernels differ and the digest cannot match."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    return {name: {"norm": float(t.double().norm()), "mean_abs": float(t.double().abs().mean())}
            for name, t in sorted(tensors.items())}


def run_case(name: str, out: Path) -> dict:
    """Train case ``name`` into ``out``; return what must not change (+ byte counts)."""
    from fedlpp.config import load_config
    from fedlpp.run.simulator import run_federation

    path, sets = CASES[name]
    cfg = load_config(ROOT / path if path else None, sets)
    result = run_federation(cfg, out=out, quiet=True, echo=False)
    keep = ("round", "clients", "central", "proxy", "train_loss", "bytes_down", "bytes_up",
            "bytes_down_per_client")
    return {
        "rounds": [{k: r[k] for k in keep if k in r} for r in result["rounds"]],
        "final": result["final"],
        "comm": result["comm"],
        "final_master": tensors_digest(out / "trace" / "final_master.safetensors"),
        "final_master_summary": tensors_summary(out / "trace" / "final_master.safetensors"),
        "splits": hashlib.sha256((out / "trace" / "splits.json").read_bytes()).hexdigest()[:16],
    }


def main() -> None:
    if "--write" not in sys.argv:
        sys.exit("usage: python tests/regression/cases.py --write")
    from cpu_kernels import current_kernels

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CASES:
            results[name] = run_case(name, Path(tmp) / name.replace("/", "_"))
            print(name, "ok", flush=True)
    stored = {"stored_on": current_kernels(), "cases": results}
    STORED.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    print(f"wrote {STORED}")


if __name__ == "__main__":
    main()
