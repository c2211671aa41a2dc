"""Provenance names every installed third-party plugin, and an editable one by its code."""

import sys

from fedlpp.meta import plugins, provenance, source_digest


def test_every_installed_example_plugin_is_named_with_its_version_and_code():
    found = plugins()
    entropy = found["attacks:entropy"]
    assert (entropy["distribution"], entropy["version"], entropy["module"]) == (
        "fedlpp-example-attack", "0.1.0", "fedlpp_example_attack")
    assert len(entropy["source_sha256"]) == 64  # installed editable: its code is hashed
    assert "defenses:max-change" in found
    assert provenance()["plugins"] == found


def test_the_source_digest_follows_the_code_not_the_version(tmp_path, monkeypatch):
    package = tmp_path / "my_plugin_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = source_digest("my_plugin_pkg")
    (package / "__init__.py").write_text("X = 2\n")
    assert source_digest("my_plugin_pkg") != before
    (package / "__init__.py").write_text("X = 1\n")
    assert source_digest("my_plugin_pkg") == before
    assert "my_plugin_pkg" not in sys.modules  # found, never imported
    assert source_digest("no_such_module_here") is None


def test_a_run_on_an_hf_folder_records_the_folders_content(tmp_path, one_thread):
    from conftest import run_tiny

    from fedlpp.config import ModelConfig
    from fedlpp.meta import folder_digest
    from fedlpp.models import MODELS

    folder = tmp_path / "model"
    base, tok, _ = MODELS.get("tiny-llama")(ModelConfig(), task="lm", num_labels=None)
    base.save_pretrained(folder)
    tok.save_pretrained(folder)
    result, _ = run_tiny(tmp_path, f"model.name='hf:{folder}'", "fed.rounds=1")
    assert result["meta"]["model_sha256"] == folder_digest(folder)
    (folder / "extra.txt").write_text("changed")
    assert folder_digest(folder) != result["meta"]["model_sha256"]
    plain, _ = run_tiny(tmp_path, "fed.rounds=1", name="plain")
    assert "model_sha256" not in plain["meta"]  # a built-in model is named by its config
