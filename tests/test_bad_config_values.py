"""Bad config values stop `fedlpp train` at the door: exit 2, one stderr line naming the key,
the value and what is allowed, and nothing written under --out.

One row per case, on the tiny model (conftest TINY). Most are refused when the config is parsed
(fedlpp.config); the rows marked ``prepare`` need the data or the model (shard sizes, the
model's positions, its largest private tensor) and are refused by prepare_run, still before
anything is written. ``before`` says what the same command did before these checks existed:
``ran`` (accepted and trained on), ``exit 1`` (a raw exception while preparing or in round 1),
``killed`` (by the kernel, out of memory), ``no stop`` (still running after 90 s on the tiny
model), ``wrote`` (exit 2, but after config.json was written and without naming the cause),
``wrong key`` (exit 2 naming ``quant.bits``) or ``ok`` (already refused like this).
"""

from __future__ import annotations

import json

import pytest
from conftest import TINY

from fedlpp.cli import main

DUPLICATES = "\n".join(json.dumps({"text": "the same verse"}) for _ in range(200)) + "\n"
# 60 good records first, so that before these checks a bad one was trained on
GOOD = "".join(json.dumps({"text": f"record number {i}", "y": str(i % 2)}) + "\n" for i in range(60))
GOOD_CSV = "text,label\n" + "".join(f"record number {i},{i % 2}\n" for i in range(60))

# id -> (extra --set values, files to create (name -> content), words the error must hold, before)
CASES: dict[str, tuple[list[str], dict[str, str], list[str], str]] = {
    # --- the accepted-and-run and exit-1 cases
    "lr-inf": (["fed.lr=inf"], {}, ["fed.lr", "inf", "<= 10"], "ran"),
    "lr-1e30": (["fed.lr=1e30"], {}, ["fed.lr", "1e+30", "<= 10"], "ran"),
    "server-lr-inf": (["fed.server_lr=inf"], {}, ["fed.server_lr", "inf", "<= 100"], "ran"),
    "alpha-inf": (["data.alpha=inf"], {}, ["data.alpha", "inf", "finite"], "ran"),
    "seq-len-100000": (["data.seq_len=100000"], {}, ["data.seq_len", "100000", "4..8192"], "ran"),
    "local-epochs-1e-9": (["fed.local_steps=0", "fed.local_epochs=1e-9"], {},
                          ["fed.local_epochs", "1e-09", "one step", "member records"], "ran"),
    "weight-decay-negative": (["fed.weight_decay=-0.01"], {},
                              ["fed.weight_decay", "-0.01", ">= 0"], "exit 1"),
    "seed-negative": (["seed=-1"], {}, ["seed", "-1", "0..4294967295"], "exit 1"),
    "seed-2**32": (["seed=4294967296"], {}, ["seed", "4294967296", "0..4294967295"], "ran"),
    "seed-huge": (["seed=99999999999999999999"], {}, ["seed", "99999999999999999999"], "exit 1"),
    "block-size-huge": (["quant.block_size=4294967296"], {},
                        ["quant.block_size", "4294967296", "1..16777216"], "killed"),
    "rounds-huge": (["fed.rounds=1000000000"], {}, ["fed.rounds", "1000000000", "1..100000"],
                    "no stop"),
    # --- non-finite floats
    "lr-nan": (["fed.lr=nan"], {}, ["fed.lr", "nan"], "ok"),
    "server-lr-nan": (["fed.server_lr=nan"], {}, ["fed.server_lr", "nan"], "ok"),
    "alpha-nan": (["data.alpha=nan"], {}, ["data.alpha", "nan"], "ok"),
    "weight-decay-inf": (["fed.weight_decay=inf"], {}, ["fed.weight_decay", "inf"], "ran"),
    "weight-decay-nan": (["fed.weight_decay=nan"], {}, ["fed.weight_decay", "nan"], "exit 1"),
    "max-update-norm-inf": (["fed.max_update_norm=inf"], {},
                            ["fed.max_update_norm", "inf", "0 = no bound"], "ran"),
    "local-epochs-inf": (["fed.local_steps=0", "fed.local_epochs=inf"], {},
                         ["fed.local_epochs", "inf"], "exit 1"),
    "lora-alpha-inf": (["lora.alpha=inf"], {}, ["lora.alpha", "inf"], "ran"),
    "converge-share-nan": (["eval.converge_share=nan"], {}, ["eval.converge_share", "nan"], "ok"),
    # --- values whose meaning bounds them
    "weight-decay-flips-weights": (["fed.weight_decay=200"], {},
                                   ["fed.weight_decay", "200.0", "fed.lr * weight_decay < 1"],
                                   "ran"),
    "lr-negative": (["fed.lr=-0.1"], {}, ["fed.lr", "-0.1"], "ok"),
    "quant-bits-huge": (["quant.bits=1000"], {}, ["quant.bits", "1000"], "ok"),
    "upload-bits-huge": (["quant.upload=nf", "quant.upload_bits=1000"], {},
                         ["quant.upload_bits", "1000", "1..32"], "wrong key"),
    "upload-bits-named": (["quant.upload=nf", "quant.upload_bits=9"], {},
                          ["quant.upload_bits", "9", "upload quantizer 'nf'", "1..8"],
                          "wrong key"),
    # --- counts within stated caps
    "local-steps-huge": (["fed.local_steps=100000000"], {},
                         ["fed.local_steps", "100000000", "0..1000000"], "no stop"),
    "local-epochs-huge": (["fed.local_steps=0", "fed.local_epochs=1e6"], {},
                          ["fed.local_epochs", "1000000.0", "<= 1000"], "no stop"),
    "num-clients-huge": (["fed.num_clients=1000000"], {}, ["fed.num_clients", "1000000"],
                         "wrote"),
    "batch-size-huge": (["fed.batch_size=100000000"], {}, ["fed.batch_size", "100000000"], "ran"),
    "eval-every-huge": (["eval.every=100000000"], {}, ["eval.every", "100000000"], "ran"),
    "eval-batch-size-huge": (["eval.batch_size=100000000"], {},
                             ["eval.batch_size", "100000000"], "ran"),
    "eval-max-records-huge": (["eval.max_records=1000000000000"], {},
                              ["eval.max_records", "1000000000000"], "ran"),
    "max-records-huge": (["data.max_records=1000000000000"], {},
                         ["data.max_records", "1000000000000"], "ran"),
    "converge-rounds-huge": (["eval.converge_rounds=100000000"], {},
                             ["eval.converge_rounds", "100000000"], "ran"),
    "lora-r-huge": (["lora.r=1000000"], {}, ["lora.r", "1000000", "1..4096"], "no stop"),
    "tiny-hidden-huge": (["model.tiny_hidden=1000000"], {}, ["model.tiny_hidden", "1000000"],
                         "exit 1"),
    "tiny-layers-huge": (["model.tiny_layers=100000"], {}, ["model.tiny_layers", "100000"],
                         "no stop"),
    # --- bounds that need the model or the data (prepare_run, before anything is written)
    "seq-len-over-model-positions": (["data.seq_len=4096"], {},
                                     ["data.seq_len", "4096", "2048", "tiny-llama"], "ran"),
    "block-size-over-largest-tensor": (["quant.block_size=1000000"], {},
                                       ["quant.block_size", "1000000", "largest private tensor"],
                                       "ran"),
    "local-epochs-below-one-step": (["fed.local_steps=0", "fed.local_epochs=0.01"], {},
                                    ["fed.local_epochs", "0.01", "one step"], "ran"),
    "val-fraction-rounds-to-zero": (["data.max_records=3", "fed.num_clients=1"], {},
                                    ["data.val_fraction", "0.1", "0 validation records",
                                     "eval.select=last"], "ran"),
    # --- data values
    "dedup-leaves-no-records": (["data.name=jsonl", "data.path={dir}/dup.jsonl"],
                                {"dup.jsonl": DUPLICATES},
                                ["fed.num_clients", "0 records", "data.dedup dropped 199"],
                                "wrote"),
    "kjv-genre-text-field": (["data.name=kjv-genre", "data.text_field=verse"], {},
                             ["data.text_field", "'verse'", "kjv-genre"], "ran"),
    "kjv-lm-label-field": (["data.label_field=genre"], {}, ["data.label_field", "'genre'"], "ran"),
    "kjv-lm-path": (["data.path=my.txt"], {}, ["data.path", "'my.txt'"], "ran"),
    "jsonl-text-number": (["data.name=jsonl", "data.path={dir}/n.jsonl"],
                          {"n.jsonl": GOOD + '\n{"text": 42}\n'},
                          ["n.jsonl", "line 62", "data.text_field", "int 42"], "ran"),
    "jsonl-text-object": (["data.name=jsonl", "data.path={dir}/o.jsonl"],
                          {"o.jsonl": '{"text": {"a": 1}}\n' + GOOD},
                          ["o.jsonl", "line 1", "data.text_field", "dict"], "ran"),
    "jsonl-label-list": (["data.name=jsonl", "data.path={dir}/l.jsonl", "data.label_field=y"],
                         {"l.jsonl": GOOD + '{"text": "b", "y": [1]}\n'},
                         ["l.jsonl", "line 61", "data.label_field", "list"], "ran"),
    "csv-unquoted-comma": (["data.name=csv", "data.path={dir}/c.csv"],
                           {"c.csv": GOOD_CSV + "cut here, and lost,1\n"},
                           ["c.csv", "row 61 (line 62)", "3 cells", "header names 2"], "ran"),
}


def _args(out, extra):
    args = ["train", "--out", str(out), "--quiet"]
    for s in [*TINY, *extra]:
        args += ["--set", s]
    return args


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_value_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys, one_thread):
    extra, files, words, _before = CASES[case]
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    out = tmp_path / "out"
    code = main(_args(out, [s.replace("{dir}", str(tmp_path)) for s in extra]))
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


def test_the_boundary_values_are_accepted():
    """The largest allowed values parse: the caps refuse only what is past them."""
    from fedlpp.config import MAX_BLOCK_SIZE, MAX_LR, MAX_SEQ_LEN, SEED_MAX, load_config

    cfg = load_config(None, [f"seed={SEED_MAX}", f"fed.lr={MAX_LR}", "fed.server_lr=100",
                             f"data.seq_len={MAX_SEQ_LEN}", f"quant.block_size={MAX_BLOCK_SIZE}",
                             "fed.rounds=100000", "fed.weight_decay=0.05"])
    assert cfg.seed == SEED_MAX and cfg.fed.lr == MAX_LR and cfg.quant.block_size == MAX_BLOCK_SIZE


def test_a_whole_tensor_block_and_epochs_for_one_step_still_prepare(one_thread):
    """65536 (a whole tensor of every LoRA matrix, as the paper suite uses) is allowed on a
    model whose tensors are smaller, and local_epochs giving exactly one step per client runs."""
    from fedlpp.config import load_config
    from fedlpp.run.context import prepare_run

    ctx = prepare_run(load_config(None, [*TINY, "quant.block_size=65536", "fed.local_steps=0",
                                         "fed.local_epochs=0.5", "fed.batch_size=4"]))
    assert ctx.cfg.quant.block_size == 65536
    assert min(len(m) for m in ctx.splits.members) * 0.5 >= 4


def test_what_the_data_checks_still_accept(tmp_path):
    """A trailing comma (an empty cell past the header) loses nothing and is accepted; a null
    JSON text is an empty record, skipped; numbers are fine as labels and groups."""
    from fedlpp.config import DataConfig
    from fedlpp.data import load_dataset

    (tmp_path / "t.csv").write_text("text,label\na,1,\nb,2,\n")
    ds = load_dataset(DataConfig(name="csv", path=str(tmp_path / "t.csv"), label_field="label"),
                      seed=0)
    assert [r.text for r in ds.records] == ["a", "b"] and ds.label_names == ["1", "2"]
    (tmp_path / "t.jsonl").write_text('{"text": null, "y": 1, "g": 7}\n'
                                      '{"text": "kept", "y": 2, "g": 7}\n')
    ds = load_dataset(DataConfig(name="jsonl", path=str(tmp_path / "t.jsonl"), label_field="y",
                                 group_field="g"), seed=0)
    assert [(r.text, r.group) for r in ds.records] == [("kept", "7")]


def test_the_dataset_says_how_many_repeats_dedup_dropped():
    from fedlpp.config import DataConfig
    from fedlpp.data import load_dataset

    assert load_dataset(DataConfig(max_records=0), seed=0).repeats_dropped == 31_102 - 30_834
    assert load_dataset(DataConfig(max_records=0, dedup=False), seed=0).repeats_dropped == 0
