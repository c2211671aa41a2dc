"""Damaged, garbled or foreign files are refused at the door, never read as if they were good.

Every case is one row: a tiny run (or a published suite's cell files) is copied, one file is
damaged, and the command must end with exit 2, one line on stderr naming the file and what is
wrong, and nothing new on disk (no ``attacks/*.json`` for a refused attack, no rebuilt report).

"Resealed" rows also rewrite the trace manifest's entry for the damaged file, as if the damage
had been there when the run wrote it: they reach the checks behind the checksums (parsing, the
layout the run's config implies, the selected round).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import run_tiny
from safetensors.torch import load_file, save_file

from fedlpp.cli import main

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "reports" / "quick"
ATTACK = ["--attack", "as-is", "--resamples", "20", "--quiet"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    """A 2-client x 2-round run, every trace part recorded (payloads, updates, all masters)."""
    return run_tiny(tmp_path_factory.mktemp("damaged"))[1]


@pytest.fixture(scope="module")
def tiny_full(tmp_path_factory, one_thread):
    """The same run in scope ``full`` (the trace holds the private base weights)."""
    return run_tiny(tmp_path_factory.mktemp("damaged-full"), "quant.scope=full")[1]


# --- damaging a copy -----------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def reseal(run: Path, rel: str) -> None:
    """Record ``trace/rel`` as it now is in the manifest (size and sha256)."""
    path = run / "trace" / "manifest.json"
    manifest = json.loads(path.read_text())
    data = (run / "trace" / rel).read_bytes()
    manifest["files"][rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    path.write_text(json.dumps(manifest))


def header(data: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def with_header(head: dict, body: bytes, *, size: int = 0) -> bytes:
    """A safetensors file of ``head`` and ``body``; the header padded to ``size`` bytes where it
    fits (the file keeps its size), else to a multiple of 8."""
    text = json.dumps(head, separators=(",", ":")).encode()
    text += b" " * (size - len(text) if len(text) <= size else -len(text) % 8)
    return len(text).to_bytes(8, "little") + text + body


def craft(rel: str, edit: Callable[[dict], None], *, sealed: bool = True) -> Callable[[Path], None]:
    """Rewrite the safetensors header of ``trace/rel`` with ``edit`` (file size kept where the
    edit keeps the header's length)."""
    def damage(run: Path) -> None:
        path = run / "trace" / rel
        data = path.read_bytes()
        head, body = header(data)
        edit(head)
        path.write_bytes(with_header(head, body, size=int.from_bytes(data[:8], "little")))
        if sealed:
            reseal(run, rel)
    return damage


def first_tensor(head: dict) -> dict:
    return head[sorted(k for k in head if k != "__metadata__")[0]]


def swap_shape(head: dict) -> None:
    t = first_tensor(head)
    t["shape"] = t["shape"][::-1]


def to_int32(head: dict) -> None:
    first_tensor(head)["dtype"] = "I32"


def block_size(head: dict) -> None:
    meta = head["__metadata__"]
    name = sorted(meta)[0]
    packed = json.loads(meta[name])
    packed["block_size"] = 2**34
    meta[name] = json.dumps(packed)


def final_round(value: str) -> Callable[[dict], None]:
    def edit(head: dict) -> None:
        head["__metadata__"]["round"] = value
    return edit


def drop_tensor(rel: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / "trace" / rel
        tensors = load_file(str(path))
        tensors.pop(sorted(tensors)[0])
        head, _ = header(path.read_bytes())
        save_file(tensors, str(path), metadata=head.get("__metadata__"))
        reseal(run, rel)
    return damage


def drop_payload_tensor(rel: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / "trace" / rel
        head, body = header(path.read_bytes())
        name = sorted(k for k in head if k != "__metadata__")[0]
        start, end = head.pop(name)["data_offsets"]
        head["__metadata__"].pop(name)
        for t in (v for k, v in head.items() if k != "__metadata__"):
            a, b = t["data_offsets"]
            if a >= end:
                t["data_offsets"] = [a - (end - start), b - (end - start)]
        path.write_bytes(with_header(head, body[:start] + body[end:]))
        reseal(run, rel)
    return damage


def delete(rel: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return damage


def truncate(rel: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / rel
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return damage


def flip(rel: str, offset: int = -1) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / rel
        data = bytearray(path.read_bytes())
        data[offset] ^= 0x01
        path.write_bytes(bytes(data))
    return damage


def write(rel: str, data: bytes, *, sealed: bool = False) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        (run / rel).write_bytes(data)
        if sealed:
            reseal(run, rel.removeprefix("trace/"))
    return damage


def edit_json(rel: str, edit: Callable[[dict], object], *,
              sealed: bool = False) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / rel
        value = json.loads(path.read_text())
        value = edit(value) or value
        path.write_text(json.dumps(value))
        if sealed:
            reseal(run, rel.removeprefix("trace/"))
    return damage


def make_folder(rel: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        (run / rel).unlink()
        (run / rel).mkdir()
    return damage


def selection(value: object) -> Callable[[dict], None]:
    def edit(result: dict) -> None:
        result["selection"]["round"] = value
    return edit


def manifest_entry(rel: str, entry: object | None) -> Callable[[dict], None]:
    def edit(manifest: dict) -> None:
        if entry is None:
            manifest["files"].pop(rel)
        else:
            manifest["files"][rel] = entry
    return edit


def bits(value: int) -> Callable[[dict], None]:
    def edit(result: dict) -> None:
        result["config"]["quant"]["bits"] = value
    return edit


def splits_edit(value: dict) -> None:
    value["members"].pop()
    value["nonmembers"].pop()


OUTSIDE = {"bytes": 10, "sha256": "0" * 64}

# id, damage, words stderr's one line must hold
ATTACK_CASES = [
    # the cases
    ("final-payload-deleted", delete("trace/final_payload.safetensors"),
     ["final_payload.safetensors", "missing"]),
    ("master-truncated", truncate("trace/round_0002/master.safetensors"),
     ["round_0002/master.safetensors", "bytes"]),
    ("payload-byte-flipped", flip("trace/round_0001/payload.safetensors"),
     ["round_0001/payload.safetensors", "sha256"]),
    ("batches-deleted", delete("trace/round_0001/batches.json"),
     ["round_0001/batches.json", "missing"]),
    ("header-shape", craft("final_master.safetensors", swap_shape),
     ["final_master.safetensors", "shape"]),
    ("header-dtype", craft("round_0001/master.safetensors", to_int32),
     ["round_0001/master.safetensors", "dtype I32"]),
    ("header-shape-not-resealed", craft("round_0002/master.safetensors", swap_shape, sealed=False),
     ["round_0002/master.safetensors", "sha256"]),
    ("payload-header-block-size", craft("final_payload.safetensors", block_size),
     ["final_payload.safetensors", "one per block of 17,179,869,184"]),
    ("master-tensor-dropped", drop_tensor("final_master.safetensors"),
     ["final_master.safetensors", "lacks"]),
    ("selected-round-bogus", edit_json("result.json", selection(7)),
     ["result.json", "round 7"]),
    # and the ones found on the way
    ("selected-round-not-the-traced-one", edit_json("result.json", selection(1)),
     ["result.json", "round 1", "round 2"]),
    ("selected-round-not-an-integer", edit_json("result.json", selection("2")),
     ["result.json", "selection"]),
    ("final-master-of-another-round", craft("final_master.safetensors", final_round("1")),
     ["final_master.safetensors", "round 1"]),
    ("payload-tensor-dropped", drop_payload_tensor("round_0002/payload.safetensors"),
     ["round_0002/payload.safetensors", "lacks"]),
    ("payload-garbage", write("trace/round_0001/payload.safetensors", b"\x00" * 64, sealed=True),
     ["round_0001/payload.safetensors", "cannot be decoded"]),
    ("update-byte-flipped", flip("trace/round_0002/updates/client_0001.safetensors", 200),
     ["round_0002/updates/client_0001.safetensors", "sha256"]),
    ("update-header-shape", craft("round_0001/updates/client_0000.safetensors", swap_shape),
     ["round_0001/updates/client_0000.safetensors", "shape"]),
    ("update-garbage", write("trace/round_0001/updates/client_0000.safetensors", b"junk",
                             sealed=True),
     ["round_0001/updates/client_0000.safetensors", "safetensors"]),
    ("config-edited", edit_json("result.json", bits(3)), ["result.json", "config"]),
    ("result-edited", edit_json("result.json", lambda r: r["rounds"][0].update(clients=[1])),
     ["result.json", "changed after the run"]),
    ("result-not-utf8", write("result.json", b'{"status": "\x92ok"}'),
     ["result.json", "UTF-8"]),
    ("result-garbled", truncate("result.json"), ["result.json", "not valid JSON"]),
    ("result-a-list", write("result.json", b"[]"), ["result.json", "a JSON object"]),
    ("result-without-rounds", edit_json("result.json", lambda r: r.pop("rounds") and None),
     ["result.json", "rounds"]),
    ("result-a-folder", make_folder("result.json"), ["result.json", "folder"]),
    ("splits-missing", delete("trace/splits.json"), ["splits.json", "missing"]),
    ("splits-garbled", write("trace/splits.json", b'{"test": [1, 2', sealed=True),
     ["splits.json", "not valid JSON"]),
    ("splits-not-utf8", write("trace/splits.json", b"\xff\xfe{}", sealed=True),
     ["splits.json", "UTF-8"]),
    ("splits-of-another-federation", edit_json("trace/splits.json", splits_edit, sealed=True),
     ["splits.json", "1 client", "2"]),
    ("batches-garbled", write("trace/round_0002/batches.json", b"{", sealed=True),
     ["round_0002/batches.json", "not valid JSON"]),
    ("batches-wrong-structure", write("trace/round_0002/batches.json",
                                      b'{"0": {"steps": "abc"}}', sealed=True),
     ["round_0002/batches.json", "accepted"]),
    ("manifest-deleted", delete("trace/manifest.json"), ["manifest.json", "train the run again"]),
    ("manifest-garbled", write("trace/manifest.json", b"{\"files\": "),
     ["manifest.json", "not valid JSON"]),
    ("manifest-lists-a-file-outside", edit_json("trace/manifest.json",
                                                manifest_entry("../result.json", OUTSIDE)),
     ["../result.json", "outside"]),
    ("manifest-drops-a-payload", edit_json("trace/manifest.json",
                                           manifest_entry("round_0001/payload.safetensors", None)),
     ["round_0001/payload.safetensors", "not listed"]),
    ("manifest-bad-entry", edit_json("trace/manifest.json",
                                     manifest_entry("splits.json", {"bytes": "x"})),
     ["manifest.json", "splits.json"]),
    ("trace-deleted", delete("trace"), ["trace", "train the run again"]),
]


@pytest.mark.parametrize("damage, words", [c[1:] for c in ATTACK_CASES],
                         ids=[c[0] for c in ATTACK_CASES])
def test_a_damaged_run_is_refused_before_any_attack(tiny, tmp_path, capsys, damage, words):
    refused_unchanged(tiny, tmp_path / "run", capsys, damage, words)


def refused_unchanged(source, run, capsys, damage, words):
    """``damage`` a copy of ``source``: the attack exits 2 with one line holding ``words``,
    and nothing in the copy changes (no attacks/ folder)."""
    shutil.copytree(source, run)
    damage(run)
    before = snapshot(run)
    assert main(["attack", str(run), *ATTACK]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    assert snapshot(run) == before and not (run / "attacks").exists()


FULL_CASES = [
    ("private-base-deleted", delete("trace/private_base.safetensors"),
     ["private_base.safetensors", "missing"]),
    ("private-base-tensor-dropped", drop_tensor("private_base.safetensors"),
     ["private_base.safetensors", "lacks"]),
    ("private-base-unlisted", edit_json("trace/manifest.json",
                                        manifest_entry("private_base.safetensors", None)),
     ["private_base.safetensors", "not listed"]),
]


@pytest.mark.parametrize("damage, words", [c[1:] for c in FULL_CASES],
                         ids=[c[0] for c in FULL_CASES])
def test_a_damaged_full_scope_run_is_refused(tiny_full, tmp_path, capsys, damage, words):
    refused_unchanged(tiny_full, tmp_path / "run", capsys, damage, words)


def test_an_intact_copy_is_attacked(tiny, tmp_path, capsys):
    """The check refuses damage, not copies: an intact copy verifies and is attacked."""
    run = tmp_path / "run"
    shutil.copytree(tiny, run)
    assert main(["attack", str(run), *ATTACK]) == 0
    assert (run / "attacks" / "as-is.json").is_file()


def test_the_manifest_records_every_trace_file(tiny):
    manifest = json.loads((tiny / "trace" / "manifest.json").read_text())
    files = sorted(str(p.relative_to(tiny / "trace")) for p in (tiny / "trace").rglob("*")
                   if p.is_file() and p.name != "manifest.json")
    assert sorted(manifest["files"]) == files
    for rel, entry in manifest["files"].items():
        data = (tiny / "trace" / rel).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert manifest["rounds"] == 2 and manifest["selected_round"] == 2


# --- bench report: cell files --------------------------------------------------------------------
def _cell_ids() -> list[str]:
    return [c["id"] for c in json.loads((QUICK / "suite.json").read_text())["cells"]]


CELL = f"cells/{_cell_ids()[0]}.json"
OTHER = f"cells/{_cell_ids()[1]}.json"


def foreign_cell(run_result: bytes) -> Callable[[Path], None]:
    return write(CELL, run_result)


def copy_cell(src: str, dst: str) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        shutil.copy(out / src, out / dst)
    return damage


def drop(key: str) -> Callable[[dict], None]:
    def edit(value: dict) -> None:
        value.pop(key)
    return edit


def drop_train_final(cell: dict) -> None:
    cell["train"].pop("final")


REPORT_CASES = [
    ("cell-not-utf8", write(CELL, b'{"id": "\x92"}'), [CELL, "UTF-8"]),
    ("cell-garbled", truncate(CELL), [CELL, "not valid JSON"]),
    ("cell-a-list", write(CELL, b"[1, 2]"), [CELL, "a JSON object"]),
    ("cell-foreign-run-result", write(CELL, b'{"status": "ok", "config": {}, "rounds": []}'),
     [CELL, "labels"]),
    ("cell-of-another-id", copy_cell(OTHER, CELL), [CELL, "id"]),
    ("cell-without-labels", edit_json(CELL, drop("labels")), [CELL, "labels"]),
    ("cell-ok-without-train", edit_json(CELL, drop("train")), [CELL, "train"]),
    ("cell-train-without-final", edit_json(CELL, drop_train_final), [CELL, "train.final"]),
    ("cell-attacks-not-a-list", edit_json(CELL, lambda c: c.update(attacks=3)),
     [CELL, "attacks"]),
    ("cell-a-folder", make_folder(CELL), [CELL, "folder"]),
    ("suite-garbled", truncate("suite.json"), ["suite.json", "not valid JSON"]),
    ("suite-not-utf8", write("suite.json", b"\xff{}"), ["suite.json", "UTF-8"]),
    ("suite-without-cells", edit_json("suite.json", drop("cells")), ["suite.json", "cells"]),
    ("suite-cell-without-id", edit_json("suite.json", lambda s: s["cells"][0].pop("id") and None),
     ["suite.json", "id"]),
]


@pytest.mark.parametrize("damage, words", [c[1:] for c in REPORT_CASES],
                         ids=[c[0] for c in REPORT_CASES])
def test_a_damaged_cell_or_suite_file_is_refused_by_bench_report(tmp_path, capsys, damage,
                                                                   words):
    out = tmp_path / "quick"
    shutil.copytree(QUICK, out)
    damage(out)
    before = snapshot(out)
    assert main(["bench", "report", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    assert snapshot(out) == before


@pytest.mark.parametrize("name", ["quick", "paper", "defenses"])
def test_published_cells_pass_the_checks(name):
    from benchmarks.cell_files import load_cells

    suite, cells = load_cells(ROOT / "reports" / name)
    assert len(cells) == len(suite["cells"])


# --- reads that recompute or resume instead of failing -------------------------------------------
def test_a_corrupt_cell_file_is_run_again_on_resume(tmp_path):
    from benchmarks.runner import finished

    cells = tmp_path / "cells"
    cells.mkdir()
    for name, data in [("a", b"\x92"), ("b", b"{"), ("c", b"[]"), ("d", b'"ok"'),
                       ("e", b'{"id": "e", "status": "failed"}'),
                       ("h", b'{"id": "another", "status": "ok"}')]:
        (cells / f"{name}.json").write_bytes(data)
        assert not finished(tmp_path, name)
    (cells / "f").mkdir()
    (cells / "f.json").mkdir()
    assert not finished(tmp_path, "f") and not finished(tmp_path, "missing")
    (cells / "g.json").write_text('{"id": "g", "status": "ok"}')
    assert finished(tmp_path, "g")


def test_an_unreadable_store_entry_is_computed_again(tmp_path):
    import numpy as np

    from fedlpp.store import ResultStore, shared_result

    store = ResultStore(tmp_path)
    data = {"x": torch.zeros(2)}
    calls = []

    def compute():
        calls.append(1)
        return {"v": 1}

    assert shared_result(store, "k", model="m", data=data, compute=compute) == {"v": 1}
    (entry,) = (tmp_path / "k").glob("*.json")
    for garbage in (b"\x92\x93", b"{", b""):
        entry.write_bytes(garbage)
        assert shared_result(store, "k", model="m", data=data, compute=compute) == {"v": 1}
    assert len(calls) == 4
    arrays = {"a": np.arange(3.0)}

    def make():
        calls.append(2)
        return arrays

    def load(a):
        return {"a": a["a"]}

    got = shared_result(store, "arr", model="m", data=data, compute=make, dump=dict, load=load)
    (entry,) = (tmp_path / "arr").glob("*.safetensors")
    for garbage in (b"junk", b"\x00" * 16):
        entry.write_bytes(garbage)
        got = shared_result(store, "arr", model="m", data=data, compute=make, dump=dict, load=load)
        assert np.array_equal(got["a"], arrays["a"])
    # an entry of another shape (it parses but lacks what the reader needs) is computed again
    save_file({"b": torch.zeros(1)}, str(entry))
    got = shared_result(store, "arr", model="m", data=data, compute=make, dump=dict, load=load)
    assert np.array_equal(got["a"], arrays["a"]) and calls.count(2) == 4
