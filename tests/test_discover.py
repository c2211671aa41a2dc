"""What a user can find out from the command: a plugin's options (`fedlpp ls KIND NAME`) and
the resolved config as TOML (`fedlpp config show`), which `fedlpp train --config` reads back."""

import dataclasses
import math
import tomllib

import pytest

from attacks.base import ATTACKS
from fedlpp import tomlwrite
from fedlpp.cli import main
from fedlpp.config import load_config
from fedlpp.describe import field_notes, options_class, registries
from fedlpp.run.resolve import resolve

KINDS = {**registries(), "attacks": ATTACKS}


def test_ls_scaled_shows_factor_with_type_default_and_docs(capsys):
    assert main(["ls", "adversaries", "scaled"]) == 0
    out = capsys.readouterr().out
    factor = next(line for line in out.splitlines() if line.strip().startswith("factor"))
    assert factor.split()[:3] == ["factor", "float", "10.0"]
    assert "Boosts its update's progress by a factor." in out  # the class docstring
    assert "how much the client's progress is scaled" in out  # its Config's docstring
    assert 'behaviour = "scaled"' in out  # where it is set
    assert "the defaults alone are refused" in out and "clients" in out  # clients is required


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_ls_describes_every_plugin_of_every_registry(kind, capsys):
    registry = KINDS[kind]
    assert registry.names()
    for name in registry.names():
        assert main(["ls", kind, name]) == 0, (kind, name)
        out = capsys.readouterr().out
        assert out.startswith(f"{kind} {name}  [")
        config = options_class(kind, registry.get(name))
        for f in dataclasses.fields(config) if config else ():
            assert any(line.split()[:1] == [f.name] for line in out.splitlines()), (name, f.name)


def test_ls_kind_shows_each_plugins_options_and_defaults(capsys):
    assert main(["ls", "adversaries"]) == 0
    out = capsys.readouterr().out
    assert "options: clients = [], rounds = [], factor = 10.0" in out
    assert "fedlpp ls KIND NAME" in out
    assert main(["ls", "attacks"]) == 0
    assert "k = 0.2" in capsys.readouterr().out  # min-k's option


def test_ls_prefix_plugin_and_data_fields(capsys):
    assert main(["ls", "datasets", "hf:imdb"]) == 0
    out = capsys.readouterr().out
    assert "served by hf:" in out and "[data] keys:" in out
    for key in ("path", "text_field", "label_field", "group_field", "partition", "val_fraction"):
        assert f"\n  {key} " in out
    assert "file for text / jsonl / csv" in out  # the comment beside data.path


def test_ls_unknown_plugin_is_one_line_with_a_suggestion(capsys):
    assert main(["ls", "attacks", "mink"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'min-k'?" in err and len(err.strip().splitlines()) == 1


def test_field_notes_read_the_comments_beside_and_above_a_field():
    from fedlpp.config import DataConfig, FedConfig

    notes = field_notes(DataConfig)
    assert notes["alpha"] == "dirichlet concentration"
    assert notes["dedup"].startswith("drop records whose text repeats")  # the lines above it
    assert "seq_len" not in notes or notes["seq_len"] == ""
    assert "L2 distance" in field_notes(FedConfig)["max_update_norm"]


SETS = [
    [],
    ["quant.name=none", "seed=7", "fed.lr=0.01"],
    ["quant.name=stochastic", "quant.grid=uniform", "quant.upload=nf", "lora.targets=['q_proj']",
     "system.device=cpu"],
    ['aggregator={name="trimmed-mean", beta=0.25}',
     'defenses=[{name="dp-sgd", noise_multiplier=0.5}, {name="noise-before-quantize", '
     'scale=1}]', 'adversaries=[{behaviour="scaled", clients=[1], factor=3.0}]',
     'data.path=a "quoted" path\\with\tbackslash', "data.name=text", "eval.select=last"],
]


@pytest.mark.parametrize("sets", SETS)
def test_config_show_reads_back_to_the_resolved_config(sets, tmp_path, capsys):
    args = [x for s in sets for x in ("--set", s)]
    assert main(["config", "show", *args]) == 0
    shown = capsys.readouterr().out
    path = tmp_path / "shown.toml"
    path.write_text(shown)
    resolved = resolve(load_config(None, sets))
    assert load_config(path) == resolved
    assert resolved.quant.bits is not None  # the quantizer's defaults are filled in
    # and it is a fixed point: showing the shown file gives the same config
    assert main(["config", "show", "--config", str(path)]) == 0
    again = tmp_path / "again.toml"
    again.write_text(capsys.readouterr().out)
    assert load_config(again) == resolved


def test_config_show_with_a_file_and_overrides(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[fed]\nrounds = 9\n[quant]\nname = "uniform"\n')
    assert main(["config", "show", "--config", str(cfg), "--set", "fed.num_clients=3"]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    assert shown["fed"]["rounds"] == 9 and shown["fed"]["num_clients"] == 3
    assert shown["quant"]["name"] == "uniform" and shown["quant"]["bits"] == 2


@pytest.mark.parametrize("sets, words", [
    (["fed.rnds=2"], "Unknown config key 'fed.rnds'"),
    (['defenses=[{name="dp-sdg"}]'], "Did you mean 'dp-sgd'"),
])
def test_config_show_refuses_a_bad_config_in_one_line(sets, words, capsys):
    args = [x for s in sets for x in ("--set", s)]
    assert main(["config", "show", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_toml_writer_round_trips_what_a_config_holds():
    data = {
        "plain": 1, "neg": -3, "f": 1e-5, "big": 3e38, "t": True, "empty": [],
        "s": 'quote " backslash \\ tab \t newline \n bell \x07 del \x7f é 😀',
        "key with space": "x", "list": [1, 2.5, "a", [True]],
        "unset": None,
        "table": {"a": 1, "inner": {"b": [1, 2]}, "inline": [{"x": 1}, {"y": "z"}]},
        "arr": [{"name": "a", "opt": {"deep": 1}}, {"name": "b", "list": [{"k": 1}]}],
        "inf": math.inf, "minf": -math.inf,
    }
    back = tomllib.loads(tomlwrite.dumps(data))
    expected = {k: v for k, v in data.items() if k != "unset"}
    assert back == expected
    assert math.isnan(tomllib.loads(tomlwrite.dumps({"n": math.nan}))["n"])
    assert "# unset: unset" in tomlwrite.dumps(data)


def _readme_block(after: str) -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    return text.split(after, 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_readme_suite_and_data_examples_load(tmp_path):
    from benchmarks.matrix import load_suite

    suite = tmp_path / "mine.toml"
    suite.write_text(_readme_block("### The suite file"))
    loaded = load_suite(suite)
    assert loaded.name == "mine" and len(loaded.cells) == 2 * 2 * 2 * 3
    assert loaded.cells[0].labels == {"seed": 0, "fed.lr": 0.001, "quant": "nf-2",
                                      "setting": "none"}
    data = tmp_path / "data.toml"
    data.write_text(_readme_block("For your own data"))
    assert load_config(data).data.partition == "natural"


def test_the_readme_documents_every_data_field():
    from pathlib import Path

    from fedlpp.config import DataConfig

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text.split("### Data\n", 1)[1].split("\n## ", 1)[0]
    for f in dataclasses.fields(DataConfig):
        assert f"| `data.{f.name}` |" in section, f.name


# --- fedlpp new attack|defense NAME: a ready plugin package ---------------------------------

NEW = [("attack", "my-score", "fedlpp_my_score", "fedlpp.attacks", ATTACKS),
       ("defense", "clip-change", "fedlpp_clip_change", "fedlpp.defenses", KINDS["defenses"])]


@pytest.mark.parametrize("kind, name, package, group, registry", NEW)
def test_new_writes_a_package_whose_plugin_registers_and_is_listed(
        kind, name, package, group, registry, tmp_path, monkeypatch, capsys):
    import ast
    import importlib
    import sys

    out = tmp_path / f"fedlpp-{name}"
    assert main(["new", kind, name, "--out", str(out)]) == 0
    assert f"wrote {out / 'pyproject.toml'}" in capsys.readouterr().out
    project = tomllib.loads((out / "pyproject.toml").read_text())
    assert project["project"]["entry-points"][group] == {name: package}
    assert project["tool"]["setuptools"]["packages"] == [package]
    for path in out.rglob("*.py"):
        ast.parse(path.read_text(), filename=str(path))
    assert f"fedlpp ls {kind}s {name}" in (out / "README.md").read_text()
    registry.names()  # the registry's own discovery first, then a copy the test may change
    monkeypatch.setattr(registry, "_items", dict(registry._items))
    monkeypatch.syspath_prepend(str(out))
    try:
        module = importlib.import_module(package)  # what loading its entry point does
        assert registry.get(name).__module__ == module.__name__
        assert main(["ls", f"{kind}s"]) == 0
        assert f"  {name} " in capsys.readouterr().out
        assert main(["ls", f"{kind}s", name]) == 0
        assert f"{kind}s {name}  [plugin: {package}]" in capsys.readouterr().out
    finally:
        sys.modules.pop(package, None)


@pytest.mark.parametrize("kind, name, package, group, registry", NEW)
def test_the_generated_test_passes_under_pytest(kind, name, package, group, registry, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "pkg"
    assert main(["new", kind, name, "--out", str(out)]) == 0
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests"], cwd=out, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


@pytest.mark.parametrize("args, words", [
    (["new", "attack", "loss"], "an attack named 'loss' is already registered"),
    (["new", "defense", "My_Defense"], "Invalid NAME: 'My_Defense'"),
    (["new", "model", "x"], "invalid choice: 'model'"),
])
def test_new_refuses_a_taken_or_bad_name_in_one_line(args, words, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_new_never_writes_into_a_folder_that_holds_files(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    assert main(["new", "defense", "clip-change", "--out", str(tmp_path)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_a_plugin_whose_annotation_does_not_resolve_is_still_described():
    from fedlpp.describe import option_rows

    @dataclasses.dataclass
    class Odd:
        """``x``: an option typed by a name its module never defines."""

        x: "Undefined" = 1  # noqa: F821 - the point of the test
        y: float = 0.5  # a note

    rows = option_rows(Odd)
    assert rows[0][:3] == ("x", "Undefined", "1")
    assert rows[1] == ("y", "float", "0.5", "a note")


def test_an_installed_package_is_found_through_its_entry_point(tmp_path):
    """pip builds the generated packages (into a folder, not this environment) and a fresh
    `fedlpp` process with that folder on its path lists both plugins: their entry points work."""
    import os
    import subprocess
    import sys

    pytest.importorskip("setuptools")
    for kind, name, *_ in NEW:
        assert main(["new", kind, name, "--out", str(tmp_path / name)]) == 0
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--no-build-isolation", "--no-index", "--target", str(target),
                          *(str(tmp_path / name) for _, name, *_ in NEW)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    calls = "; ".join(f"main(['ls', '{kind}s', '{name}'])" for kind, name, *_ in NEW)
    shown = subprocess.run([sys.executable, "-c", f"from fedlpp.cli import main; {calls}"],
                           capture_output=True, text=True, timeout=300, env=env, cwd=target)
    assert shown.returncode == 0, shown.stderr
    for kind, name, package, *_ in NEW:
        assert f"{kind}s {name}  [plugin: {package}]" in shown.stdout, shown.stdout
