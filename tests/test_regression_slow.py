"""Published suite cells, trained again by the current engine on the real pretrained models,
give the published numbers (slow: minutes). Byte counts differ only as the engine meant: each
upload carries its 32-byte header, and the padding codes of partial blocks are not sent."""

import json
from pathlib import Path

import pytest
import torch

from fedlpp.config import RunConfig, from_dict
from fedlpp.federation.simulator import run_federation
from fedlpp.federation.wire import HEADER

REPORTS = Path(__file__).resolve().parent.parent / "reports"


def published(suite: str, labels: dict) -> dict:
    for path in sorted((REPORTS / suite / "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        if cell["labels"] == labels and cell["status"] == "ok":
            return cell
    raise LookupError(f"no published {suite} cell with labels {labels}")


@pytest.mark.slow
@pytest.mark.parametrize("suite, labels, padded", [
    # SmolLM2-135M, scope adapter: every LoRA tensor is whole 64-value blocks
    ("quick", {"quant": "nf-2", "seed": 0}, False),
    # MiniLM, 8 classes: the classifier's 8-value bias is a partial block
    ("paper", {"partition": "iid", "quant": "nf-2", "quant.scope": "adapter", "seed": 0,
               "task": "cls"}, True),
])
def test_a_published_cell_trains_to_the_published_numbers(tmp_path, suite, labels, padded):
    torch.set_num_threads(1)  # as the suite's workers ran
    cell = published(suite, labels)
    cfg = from_dict(RunConfig, cell["config"])
    result = run_federation(cfg, out=tmp_path / "run", quiet=True, echo=False)
    old = cell["train"]
    assert result["final"] == old["final"]
    for new_row, old_row in zip(result["rounds"], old["rounds"], strict=True):
        assert {k: new_row.get(k) for k in old_row} == old_row
    rounds, clients = len(result["rounds"]), cfg.fed.num_clients
    assert result["comm"]["bytes_up_total"] == (old["comm"]["bytes_up_total"]
                                                + HEADER.size * clients * rounds)
    per_client = result["rounds"][-1]["bytes_down_per_client"]
    if padded:
        assert per_client < old["comm"]["bytes_down_per_client"]
    else:
        assert per_client == old["comm"]["bytes_down_per_client"]
