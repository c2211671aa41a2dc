"""``system.device``: checked in one line, recorded with each result, part of a result's identity
only off the CPU (so CPU cells and stored results keep their ids), and on a GPU the same run."""

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_tiny

from benchmarks.attack_plan import AttackPlan
from benchmarks.matrix import cell_id, load_suite
from fedlpp.config import load_config
from fedlpp.device import device_id, resolve_device
from fedlpp.errors import FedlppError

PAPER_CELLS = Path(__file__).resolve().parent.parent / "reports" / "paper" / "cells"


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "CPU", ""])
def test_a_bad_device_name_is_a_one_line_error(bad):
    with pytest.raises(FedlppError, match=rf"Invalid system.device: '{bad}' \(allowed: auto, "
                                          r"cpu, cuda, cuda:N\)"):
        load_config(None, [*TINY, f"system.device={bad}"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_where_there_is_none_is_refused_before_anything_runs(tmp_path):
    cfg = load_config(None, [*TINY, "system.device=cuda"])  # a config may name it anywhere
    with pytest.raises(FedlppError, match="system.device = 'cuda', but torch sees no CUDA"):
        resolve_device(cfg.system.device)
    with pytest.raises(FedlppError, match="no CUDA"):
        run_tiny(tmp_path, "system.device=cuda")
    assert not (tmp_path / "run" / "result.json").exists()


def test_the_cpu_adds_nothing_to_a_cells_id_and_cuda_does():
    plan = AttackPlan()
    ids = {d: cell_id(load_config(None, [*TINY, f"system.device={d}"]), plan)
           for d in ("cpu", "auto", "cuda", "cuda:1")}
    assert ids["cpu"] != ids["cuda"] != ids["cuda:1"]
    assert (ids["auto"] == ids["cpu"]) == (device_id("auto") is None)


@pytest.mark.skipif(not PAPER_CELLS.is_dir(), reason="no published paper cells")
def test_published_cells_keep_their_ids():
    """Every published cell of the paper suite is still one the suite plans (resume skips it)."""
    planned = {c.id for c in load_suite("paper").cells}
    published = {f.stem for f in PAPER_CELLS.glob("*.json")}
    assert published and published <= planned


def test_a_result_records_where_it_ran(tmp_path):
    result, out = run_tiny(tmp_path, "system.device=cpu")
    assert (result["meta"]["device"], result["meta"]["device_name"]) == ("cpu", None)
    assert json.loads((out / "result.json").read_text())["config"]["system"] == {
        "device": "cpu", "batch_clients": "auto", "max_batch_records": 256}


@pytest.mark.cuda
def test_a_gpu_run_is_the_cpu_run_up_to_float_rounding(tmp_path):
    cpu, _ = run_tiny(tmp_path, "system.device=cpu", name="cpu")
    gpu, _ = run_tiny(tmp_path, "system.device=cuda", name="gpu")
    assert gpu["status"] == "ok" and gpu["meta"]["device"].startswith("cuda")
    assert gpu["meta"]["device_name"]
    for target in ("central", "proxy", "base"):
        assert gpu["final"][target]["loss"] == pytest.approx(cpu["final"][target]["loss"],
                                                             rel=1e-3)
    assert [r["bytes_up"] for r in gpu["rounds"]] == [r["bytes_up"] for r in cpu["rounds"]]
