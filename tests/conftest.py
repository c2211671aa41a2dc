"""Shared fixtures: tiny runs on CPU, never a download."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # offline: no usage reports from Flower

TINY = [
    "model.name=tiny-llama", "data.name=kjv-lm", "data.max_records=120", "data.seq_len=24",
    "fed.num_clients=2", "fed.rounds=2", "fed.local_steps=2", "fed.batch_size=4", "fed.lr=0.01",
    "eval.max_records=16", "quant.bits=2",
]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where torch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch sees none)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-model tests (restored afterwards): tiny models
    gain nothing from threads, and on a busy machine spinning threads slow them 10-20x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_sets():
    """--set overrides for a 2-client x 2-round run on a tiny model (seconds)."""
    return list(TINY)


def assert_train_refused(tmp_path, capsys, sets, words):
    """``fedlpp train`` with ``--set`` for each of ``sets`` exits 2 with one stderr line holding
    every one of ``words``, and writes no result."""
    from fedlpp.cli import main

    out = tmp_path / "out"
    args = [x for s in sets for x in ("--set", s)]
    assert main(["train", "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not (out / "result.json").exists()


def run_tiny(tmp_path, *extra, name="run"):
    """Run the tiny federation with ``extra`` overrides; returns (result, out dir)."""
    from fedlpp.config import load_config
    from fedlpp.run.simulator import run_federation

    cfg = load_config(None, TINY + list(extra))
    out = tmp_path / name
    return run_federation(cfg, out=out, quiet=True), out


def pytest_terminal_summary(terminalreporter):
    """Say how stored regression numbers were compared (exactly, or within a tolerance because
    this CPU's kernels differ from the ones that stored them): never a silent difference."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "regression"))
    from cpu_kernels import MODES

    for source, mode in sorted(MODES.items()):
        terminalreporter.write_line(f"regression numbers ({source}) compared {mode}")
