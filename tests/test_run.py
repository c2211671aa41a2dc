"""End-to-end FedLPP runs on a tiny model: results, trace, determinism, FedAvg equivalence."""

import json
import math

import pytest
import torch
from conftest import run_tiny
from safetensors.torch import load_file

from fedlpp.config import load_config
from fedlpp.protocol.wire import decode_payload
from fedlpp.run.resolve import quantizer_from


def _metrics(result):
    return {k: result[k] for k in ("rounds", "final", "comm")}


def test_two_clients_two_rounds_end_to_end(tmp_path):
    result, out = run_tiny(tmp_path)
    assert result["status"] == "ok"
    on_disk = json.loads((out / "result.json").read_text())
    assert _metrics(on_disk) == json.loads(json.dumps(_metrics(result)))
    assert [r["round"] for r in result["rounds"]] == [1, 2]
    for row in result["rounds"]:
        for who in ("central", "proxy"):
            assert set(row[who]) == {"loss", "perplexity"}
        assert row["bytes_down"] > 0 and row["bytes_up"] > 0 and row["train_loss"] > 0
    assert set(result["final"]) == {"central", "proxy", "base"}
    assert result["comm"]["bytes_down_total"] == sum(r["bytes_down"] for r in result["rounds"])
    assert result["config"]["quant"]["bits"] == 2  # resolved into the saved config
    meta = result["meta"]
    assert {"git_sha", "git_dirty", "versions", "seconds"} <= set(meta)
    # training helped the central model on held-out text
    assert result["final"]["central"]["loss"] < result["final"]["base"]["loss"]

    trace = out / "trace"
    splits = json.loads((trace / "splits.json").read_text())
    assert len(splits["members"]) == 2 and len(splits["nonmembers"]) == 2
    for rnd in (1, 2):
        assert (trace / f"round_{rnd:04d}" / "payload.safetensors").exists()
        assert len(list((trace / f"round_{rnd:04d}" / "updates").glob("*.safetensors"))) == 2
    assert (trace / "final_master.safetensors").exists()
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.pt"))


def test_payload_on_disk_is_what_was_counted_and_dequantizes_to_the_proxy(tmp_path):
    result, out = run_tiny(tmp_path)
    cfg = load_config(None, [])  # nf, 2 bits, block 64 by default
    q = quantizer_from(cfg.quant)
    data = (out / "trace" / "round_0002" / "payload.safetensors").read_bytes()
    packed = decode_payload(data)
    assert sum(p.nbytes for p in packed.values()) == result["rounds"][1]["bytes_down_per_client"]
    master = load_file(str(out / "trace" / "round_0002" / "master.safetensors"))
    assert set(master) == set(packed)
    for name, p in packed.items():
        proxy = q.dequantize(p)
        assert proxy.shape == master[name].shape
        # 2-bit NF: the proxy is close to, but not, the master
        assert torch.allclose(proxy, master[name], atol=master[name].abs().max().item() + 1e-6)


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    a, _ = run_tiny(tmp_path, name="a")
    b, _ = run_tiny(tmp_path, name="b")
    assert _metrics(a) == _metrics(b)
    c, _ = run_tiny(tmp_path, "seed=1", name="c")
    assert _metrics(c) != _metrics(a)


def test_none_quantizer_with_straight_through_is_plain_fedavg(tmp_path):
    result, out = run_tiny(tmp_path, "quant.name=none", "quant.bits=32")
    trace = out / "trace"
    final = load_file(str(trace / "final_master.safetensors"))
    updates, weights = [], []
    for f in sorted((trace / "round_0002" / "updates").glob("*.safetensors")):
        updates.append(load_file(str(f)))
        with open(f, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        weights.append(int(header["__metadata__"]["num_examples"]))
    for name in final:
        fedavg = sum(w * u[name] for w, u in zip(weights, updates, strict=True)) / sum(weights)
        assert torch.allclose(final[name], fedavg, atol=1e-6), name
    # fp32 broadcast: the proxy is the central model
    assert result["final"]["proxy"] == result["final"]["central"]


def test_straight_through_moves_master_by_client_progress(tmp_path):
    _, out = run_tiny(tmp_path, "fed.clients_per_round=1", "fed.num_clients=2")
    trace = out / "trace"
    q = quantizer_from(load_config(None, []).quant)
    before = load_file(str(trace / "round_0002" / "master.safetensors"))
    proxy = {n: q.dequantize(p) for n, p in
             decode_payload((trace / "round_0002" / "payload.safetensors").read_bytes()).items()}
    (upd_file,) = (trace / "round_0002" / "updates").glob("*.safetensors")
    update = load_file(str(upd_file))
    after = load_file(str(trace / "final_master.safetensors"))
    for name in after:
        expected = before[name] + (update[name] - proxy[name])
        assert torch.allclose(after[name], expected, atol=1e-6), name


def test_bad_update_is_rejected_and_named(tmp_path):
    result, _ = run_tiny(tmp_path, 'adversaries=[{behaviour = "nan", clients = [1]}]')
    for row in result["rounds"]:
        assert [r["client"] for r in row["rejected"]] == [1]
        assert "non-finite" in row["rejected"][0]["reason"]
        assert row["refused"] is None
    assert math.isfinite(result["final"]["central"]["loss"])


def test_full_scope_broadcasts_base_weights_too(tmp_path):
    adapter, _ = run_tiny(tmp_path, name="adapter")
    full, out = run_tiny(tmp_path, "quant.scope=full", name="full")
    assert full["rounds"][0]["bytes_down_per_client"] > 10 * adapter["rounds"][0]["bytes_down_per_client"]
    assert (out / "trace" / "private_base.safetensors").exists()
    # clients receive the base weights quantized: present in the payload, not equal to the master
    base = load_file(str(out / "trace" / "private_base.safetensors"))
    packed = decode_payload((out / "trace" / "final_payload.safetensors").read_bytes())
    assert base and set(base) <= set(packed)
    assert all(name.endswith(".weight") and "lora_" not in name for name in base)
    q = quantizer_from(load_config(None, []).quant)
    for name, weight in base.items():
        proxy = q.dequantize(packed[name])
        assert not torch.equal(proxy, weight)
        assert (proxy - weight).abs().max() <= weight.abs().max()


def test_classification_run_reports_accuracy(tmp_path):
    result, _ = run_tiny(tmp_path, "data.name=kjv-genre", "data.max_records=160")
    for who in ("central", "proxy", "base"):
        assert set(result["final"][who]) == {"loss", "accuracy"}
        assert 0.0 <= result["final"][who]["accuracy"] <= 1.0


@pytest.mark.parametrize("quant", ["uniform", "stochastic", "bnb-nf4", "bnb-int8"])
def test_other_quantizers_run(tmp_path, quant):
    sets = [f"quant.name={quant}"] + (["quant.bits=4"] if quant == "bnb-nf4" else [])
    sets += ["quant.bits=8"] if quant == "bnb-int8" else []
    result, _ = run_tiny(tmp_path, *sets, "fed.rounds=1")
    assert result["status"] == "ok"
