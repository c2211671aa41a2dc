"""fedlpp.data: loaders, seeded subsampling, partitions, splits and encoding (all offline, fast)."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from fedlpp.config import DataConfig
from fedlpp.data import DATASETS, Record, TextDataset, load_dataset
from fedlpp.data.encode import encode
from fedlpp.data.hf import load_hf
from fedlpp.data.kjv_genre import GENRES
from fedlpp.data.kjv_lm import read_verses
from fedlpp.data.partition import Splits, dataset_fingerprint, make_splits, partition
from fedlpp.errors import FedlppError

# ----------------------------------------------------------------------------- KJV loaders


def test_kjv_lm_loads_deterministic():
    read_verses.cache_clear()
    ds = load_dataset(DataConfig(name="kjv-lm", max_records=0, dedup=False), seed=0)
    assert ds.task == "lm" and ds.label_names is None and len(ds.records) == 31_102
    first = ds.records[0]
    assert first == Record("In the beginning God created the heaven and the earth.", None, "Genesis")
    assert ds.records[-1].group == "Revelation"
    assert not any("[" in r.text or "]" in r.text for r in ds.records)  # italics markers dropped
    assert len({r.group for r in ds.records}) == 66
    again = load_dataset(DataConfig(name="kjv-lm", max_records=0, dedup=False), seed=0)
    assert again.records == ds.records


def test_kjv_genre_labels_known_counts():
    ds = load_dataset(DataConfig(name="kjv-genre", max_records=0, dedup=False), seed=0)
    assert ds.task == "cls" and ds.label_names == GENRES
    counts = collections.Counter(ds.label_names[r.label] for r in ds.records)
    assert counts == {"law": 5852, "history": 7018, "wisdom": 4785, "major_prophets": 4440,
                      "minor_prophets": 1050, "gospels_acts": 4786, "epistles": 2767,
                      "apocalyptic": 404}
    genre_of_book = collections.defaultdict(set)
    for r in ds.records:
        genre_of_book[r.group].add(ds.label_names[r.label])
    assert all(len(g) == 1 for g in genre_of_book.values())  # a book has one genre
    assert genre_of_book["Psalms"] == {"wisdom"} and genre_of_book["Daniel"] == {"major_prophets"}
    assert genre_of_book["Acts"] == {"gospels_acts"} and genre_of_book["Jude"] == {"epistles"}


def test_max_records_is_seeded_and_keeps_order():
    full = load_dataset(DataConfig(name="kjv-lm", max_records=0), seed=0).records
    a = load_dataset(DataConfig(name="kjv-lm", max_records=300), seed=7).records
    b = load_dataset(DataConfig(name="kjv-lm", max_records=300), seed=7).records
    c = load_dataset(DataConfig(name="kjv-lm", max_records=300), seed=8).records
    assert a == b and a != c and len(a) == 300
    rest = iter(full)
    assert all(any(r == f for f in rest) for r in a)  # a subsequence: full-data order kept
    assert len(load_dataset(DataConfig(name="kjv-lm", max_records=10**6), seed=0).records) == 30_834


def test_unknown_dataset_suggests_a_name():
    with pytest.raises(FedlppError, match="Did you mean 'kjv-lm'"):
        load_dataset(DataConfig(name="kjv-lmm"), seed=0)

# ----------------------------------------------------------------------------- partition


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "natural"])
def test_partition_assigns_every_index_once(scheme):
    keys = [f"g{i % 13}" for i in range(400)]
    shards = partition(keys=keys, num_clients=5, scheme=scheme, alpha=0.3, seed=1)
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(400)) and all(shards)
    assert shards == partition(keys=keys, num_clients=5, scheme=scheme, alpha=0.3, seed=1)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 80), clients=st.integers(1, 8), kinds=st.integers(1, 6),
       scheme=st.sampled_from(["iid", "dirichlet"]), alpha=st.floats(0.01, 100), seed=st.integers(0, 99))
def test_partition_cover_property(n, clients, kinds, scheme, alpha, seed):
    keys = [i % kinds for i in range(n)]
    shards = partition(keys=keys, num_clients=clients, scheme=scheme, alpha=alpha, seed=seed)
    assert len(shards) == clients
    assert sorted(i for s in shards for i in s) == list(range(n))
    if n >= clients:
        assert all(shards)


def test_iid_is_near_equal():
    sizes = [len(s) for s in partition(keys=[0] * 103, num_clients=4, scheme="iid", alpha=1, seed=0)]
    assert sorted(sizes) == [25, 26, 26, 26]


def _label_skew(alpha: float) -> float:
    """Mean total-variation distance between each client's label mix and the global one."""
    keys = [i % 10 for i in range(2000)]
    tvs = []
    for seed in range(3):
        for shard in partition(keys=keys, num_clients=5, scheme="dirichlet", alpha=alpha, seed=seed):
            mix = np.bincount([keys[i] for i in shard], minlength=10) / len(shard)
            tvs.append(0.5 * np.abs(mix - 0.1).sum())
    return float(np.mean(tvs))


def test_dirichlet_small_alpha_is_skewed():
    assert _label_skew(0.05) > 0.5
    assert _label_skew(1000.0) < 0.05


def test_dirichlet_gives_every_client_a_record():
    shards = partition(keys=[0] * 12, num_clients=10, scheme="dirichlet", alpha=0.001, seed=3)
    assert all(shards) and sum(map(len, shards)) == 12


def test_natural_keeps_groups_whole_and_balanced():
    keys = ["a"] * 50 + ["b"] * 40 + ["c"] * 30 + ["d"] * 20 + ["e"] * 10 + ["f"] * 10
    shards = partition(keys=keys, num_clients=3, scheme="natural", alpha=1, seed=0)
    groups = [{keys[i] for i in s} for s in shards]
    for g in "abcdef":
        assert sum(g in held for held in groups) == 1  # a group lives on one client
    assert sorted(len(s) for s in shards) == [50, 50, 60]


def test_natural_needs_a_group_per_client():
    with pytest.raises(FedlppError, match=r"data\.partition=natural.*2 group\(s\) for 3 clients"):
        partition(keys=["a", "b", "a"], num_clients=3, scheme="natural", alpha=1, seed=0)


def test_unknown_scheme():
    with pytest.raises(FedlppError, match="data.partition: 'zipf'"):
        partition(keys=[0, 1], num_clients=1, scheme="zipf", alpha=1, seed=0)

# ----------------------------------------------------------------------------- splits


def _small(name: str = "kjv-genre", n: int = 600, **kw) -> tuple[TextDataset, DataConfig]:
    cfg = DataConfig(name=name, max_records=n, **kw)
    return load_dataset(cfg, seed=0), cfg


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "natural"])
def test_splits_are_disjoint_and_cover(scheme):
    ds, cfg = _small(partition=scheme, member_fraction=0.5, test_fraction=0.1)
    s = make_splits(ds, cfg=cfg, num_clients=4, seed=0)
    parts = [s.test, s.validation, *s.members, *s.nonmembers]
    flat = [i for p in parts for i in p]
    assert sorted(flat) == list(range(len(ds.records)))
    assert len(s.test) == 60 and len(s.validation) == 60
    assert s.num_clients == 4 and all(s.members)
    assert s.test != sorted(s.test)  # random order: a prefix is a uniform sample
    for m, nm in zip(s.members, s.nonmembers, strict=True):
        assert abs(len(m) - len(nm)) <= 1  # member_fraction 0.5
    if scheme == "natural":
        owner = {}
        for c, (m, nm) in enumerate(zip(s.members, s.nonmembers, strict=True)):
            for i in m + nm:
                assert owner.setdefault(ds.records[i].group, c) == c
    assert s == make_splits(ds, cfg=cfg, num_clients=4, seed=0)
    assert s != make_splits(ds, cfg=cfg, num_clients=4, seed=1)


def test_splits_json_round_trip_and_fingerprint():
    ds, cfg = _small()
    s = make_splits(ds, cfg=cfg, num_clients=3, seed=2)
    back = Splits.from_json(json.loads(json.dumps(s.to_json())))
    assert back == s and back.fingerprint == dataset_fingerprint(ds)
    back.check(ds)
    other, _ = _small(n=601)
    with pytest.raises(FedlppError, match="other data"):
        back.check(other)
    with pytest.raises(FedlppError, match="Invalid data splits JSON"):
        Splits.from_json({"test": [1]})


def test_too_many_clients_names_the_keys():
    ds, cfg = _small(n=50, test_fraction=0.1)
    with pytest.raises(FedlppError) as err:
        make_splits(ds, cfg=cfg, num_clients=50, seed=0)
    msg = str(err.value)
    for part in ("fed.num_clients=50", "40 records", "data.max_records=50", "data.test_fraction=0.1",
                 "data.val_fraction=0.1"):
        assert part in msg


def test_every_client_gets_a_member_with_one_record_each():
    ds, cfg = _small(n=11, test_fraction=0.05, member_fraction=0.1, val_fraction=0.0)
    s = make_splits(ds, cfg=cfg, num_clients=10, seed=0)
    assert [len(m) for m in s.members] == [1] * 10 and len(s.test) == 1

# ----------------------------------------------------------------------------- user files


def test_text_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("first line\n\n   \nsecond line\n", encoding="utf-8")
    ds = load_dataset(DataConfig(name="text", path=str(path)), seed=0)
    assert ds.task == "lm" and [r.text for r in ds.records] == ["first line", "second line"]
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(FedlppError, match="gave no records"):
        load_dataset(DataConfig(name="text", path=str(tmp_path / "blank.txt")), seed=0)


def test_jsonl_with_labels(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"body": "x y", "y": "spam"}, {"body": "z", "y": "ham"}, {"body": "w", "y": "spam"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_dataset(DataConfig(name="jsonl", path=str(path), text_field="body", label_field="y"), seed=0)
    assert ds.task == "cls" and ds.label_names == ["ham", "spam"]
    assert [r.label for r in ds.records] == [1, 0, 1]
    lm = load_dataset(DataConfig(name="jsonl", path=str(path), text_field="body"), seed=0)
    assert lm.task == "lm" and lm.records[0] == Record("x y")


def test_csv_numeric_labels_sort_numerically(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"hello, world",10\nbye,2\nagain,2\n', encoding="utf-8")
    ds = load_dataset(DataConfig(name="csv", path=str(path), label_field="label"), seed=0)
    assert ds.label_names == ["2", "10"] and [r.label for r in ds.records] == [1, 0, 0]
    assert ds.records[0].text == "hello, world"


@pytest.mark.parametrize("name", ["text", "jsonl", "csv"])
def test_missing_file_names_data_path(name, tmp_path):
    missing = str(tmp_path / "nope.dat")
    with pytest.raises(FedlppError, match="data.path") as err:
        load_dataset(DataConfig(name=name, path=missing), seed=0)
    assert missing in str(err.value)


@pytest.mark.parametrize("name,content", [("jsonl", '{"body": "a", "y": 1}\n'), ("csv", "body,y\na,1\n")])
def test_missing_field_lists_columns(name, content, tmp_path):
    path = tmp_path / f"d.{name}"
    path.write_text(content)
    with pytest.raises(FedlppError, match=r"data\.text_field='text'.*columns: body, y"):
        load_dataset(DataConfig(name=name, path=str(path)), seed=0)
    with pytest.raises(FedlppError, match=r"data\.label_field='label'"):
        load_dataset(DataConfig(name=name, path=str(path), text_field="body", label_field="label"), seed=0)


def test_hf_prefix_offline_error(monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # never touch the network
    assert DATASETS.get("hf:someone/some-set") is load_hf
    with pytest.raises(FedlppError, match="could not be loaded offline.*jsonl") as err:
        load_dataset(DataConfig(name="hf:someone/some-set"), seed=0)
    assert "\n" not in str(err.value)


def test_hf_prefix_local_folder(monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "a b", "label": "x"}\n{"text": "c", "label": "w"}\n')
    ds = load_dataset(DataConfig(name=f"hf:{folder}", label_field="label"), seed=0)
    assert ds.label_names == ["w", "x"] and [r.label for r in ds.records] == [1, 0]

# ----------------------------------------------------------------------------- encode


def _tokenizer(*, pad: bool = True, bos: bool = False) -> PreTrainedTokenizerFast:
    words = "the a cat dog sat on mat ran".split()
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[BOS]", "[EOS]", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    specials = {"pad_token": "[PAD]"} if pad else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", **specials)


RECS = [Record("the cat sat on the mat", 1), Record("a dog ran", 0), Record("cat", 1)]


def test_encode_lm_pads_and_masks():
    out = encode(RECS, tokenizer=_tokenizer(), task="lm", seq_len=16)
    assert out["input_ids"].shape == out["attention_mask"].shape == out["labels"].shape == (3, 6)
    assert out["input_ids"].dtype == out["attention_mask"].dtype == torch.long
    assert out["attention_mask"].sum(1).tolist() == [6, 3, 1]
    assert out["input_ids"][1, 3:].tolist() == [0, 0, 0]  # [PAD]
    assert out["labels"][1].tolist() == [5, 7, 11, -100, -100, -100]
    assert torch.equal(out["labels"][0], out["input_ids"][0])


def test_encode_truncates_and_keeps_tokenizer_specials():
    out = encode(RECS, tokenizer=_tokenizer(bos=True), task="lm", seq_len=4)
    assert out["input_ids"].shape == (3, 4)
    assert out["input_ids"][:, 0].tolist() == [2, 2, 2]  # the tokenizer's own BOS


def test_encode_without_pad_token_uses_eos_and_leaves_tokenizer_alone():
    tok = _tokenizer(pad=False)
    assert tok.pad_token is None
    out = encode(RECS, tokenizer=tok, task="lm", seq_len=16)
    assert out["input_ids"][2, 1:].tolist() == [3] * 5  # [EOS] as filler
    assert (out["labels"][2, 1:] == -100).all()
    assert tok.pad_token is None


def test_encode_cls_labels():
    out = encode(RECS, tokenizer=_tokenizer(), task="cls", seq_len=8)
    assert out["labels"].tolist() == [1, 0, 1] and out["labels"].dtype == torch.long
    with pytest.raises(FedlppError, match="no label"):
        encode([Record("cat")], tokenizer=_tokenizer(), task="cls", seq_len=8)
    with pytest.raises(FedlppError, match="Invalid task"):
        encode(RECS, tokenizer=_tokenizer(), task="seq2seq", seq_len=8)


def test_repeated_texts_are_dropped_before_drawing_unless_asked_not_to():
    from fedlpp.config import DataConfig
    from fedlpp.data import load_dataset, unique_texts
    from fedlpp.data.base import Record

    records = [Record("a b"), Record("c"), Record(" a  b "), Record("c", label=1), Record("d")]
    assert [r.text for r in unique_texts(records)] == ["a b", "c", "d"]
    full = load_dataset(DataConfig(name="kjv-lm", max_records=0), seed=0)
    texts = [" ".join(r.text.split()) for r in full.records]
    assert len(set(texts)) == len(texts) == 30834  # KJV: 31,102 verses, 268 repeats
    kept = load_dataset(DataConfig(name="kjv-lm", max_records=0, dedup=False), seed=0)
    assert len(kept.records) == 31102
