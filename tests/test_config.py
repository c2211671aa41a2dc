"""Config loading: defaults -> TOML -> --set, with one-line errors for bad keys and values."""

import subprocess
import sys

import pytest

from fedlpp.config import RunConfig, load_config
from fedlpp.errors import FedlppError
from fedlpp.run.resolve import resolve


def test_defaults_file_and_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('seed = 3\n[quant]\nbits = 3\n[lora]\ntargets = ["q_proj"]\n')
    cfg = load_config(f, ["quant.bits=4", "fed.lr=1", "model.name=hf:some/path"])
    assert isinstance(cfg, RunConfig)
    assert cfg.seed == 3 and cfg.quant.bits == 4 and cfg.lora.targets == ["q_proj"]
    assert cfg.fed.lr == 1.0 and isinstance(cfg.fed.lr, float)
    assert cfg.model.name == "hf:some/path"
    assert cfg.fed.rounds == RunConfig().fed.rounds


@pytest.mark.parametrize(
    "override, words",
    [
        ("quant.bitz=3", ["quant.bitz", "quant.bits"]),
        ("fed.rounds=many", ["fed.rounds", "'many'", "int"]),
        ("fed.num_clients=0", ["fed.num_clients", "0", "1..10000"]),
        ("quant.block_size=0", ["quant.block_size", "0", "1..16777216"]),
        ("quant.scope=half", ["quant.scope", "'half'", "'adapter'", "'full'"]),
        ("data.partition=random", ["data.partition", "'random'", "'iid'"]),
        ("fed.clients_per_round=9", ["fed.clients_per_round", "9"]),
        ("fed=3", ["fed", "section"]),
        ("nokey", ["key=value"]),
        ("lora.r=true", ["lora.r", "True"]),
    ],
)
def test_bad_overrides_are_one_line_errors(override, words):
    with pytest.raises(FedlppError) as info:
        load_config(None, [override])
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_and_invalid_file(tmp_path):
    with pytest.raises(FedlppError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1")
    with pytest.raises(FedlppError, match="not valid TOML"):
        load_config(bad)


def test_registry_suggests_and_rejects_duplicates():
    from fedlpp.registry import Registry

    reg = Registry("widget")

    @reg.register("alpha")
    class Alpha:
        pass

    with pytest.raises(FedlppError, match="Did you mean 'alpha'"):
        reg.get("alpah")
    with pytest.raises(FedlppError, match="registered twice"):
        reg.register("alpha")(Alpha)


def test_a_config_naming_a_plugin_that_is_not_installed_can_still_be_read():
    """Parsing checks types and ranges only: a trace made with a third-party defense that is
    not installed here can be read; building the run (resolve) names the missing plugin."""
    cfg = load_config(None, ['defenses=[{name = "not-installed-here", strength = 3}]'])
    assert cfg.defenses == [{"name": "not-installed-here", "strength": 3}]
    with pytest.raises(FedlppError, match=r"defenses\[0\]\.name: Unknown defense 'not-installed-here'"):
        resolve(cfg)


def test_reading_a_config_loads_no_plugin_and_no_engine():
    code = ("import sys; from fedlpp.config import load_config; "
            "load_config(None, ['defenses=[{name = \"dp-sgd\"}]']); "
            "print(sorted(m for m in sys.modules if m.startswith('fedlpp')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert eval(out.stdout) == ["fedlpp", "fedlpp.config", "fedlpp.device", "fedlpp.errors",
                                "fedlpp.io", "fedlpp.typed"]


def test_resolve_returns_a_new_config_and_leaves_its_input_alone():
    cfg = load_config(None, ["quant.name=bnb-nf4"])
    resolved = resolve(cfg)
    assert (cfg.quant.bits, cfg.quant.block_size, cfg.quant.upload_bits) == (None, None, None)
    assert (resolved.quant.bits, resolved.quant.block_size, resolved.quant.upload_bits) == (4, 64, 32)
    assert resolve(resolved) == resolved  # idempotent: a trace's resolved config resolves to itself
