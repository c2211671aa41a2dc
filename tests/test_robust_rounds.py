"""Rounds that a robust aggregation rule cannot serve, and crafted payload headers.

1. A round whose rejected uploads leave fewer accepted updates than the rule needs (Krum's
   n > 2f+2, Multi-Krum's n >= multi) does not update the master: the round's ``refused`` names
   the rule, the accepted count and what it needed, and the run goes on. A trimmed mean that
   rejections shrink to floor(beta*n) = 0 says so in the round's ``aggregation``. One row per
   adversary x rule, on the tiny model (5 clients, 2 rounds).
2. Every field of a payload file's header, crafted, is a one-line error naming the field, found
   before anything is allocated (checked under an address-space limit in a subprocess); so is
   every field of an upload's fixed header.
3. ``hf:`` loading never runs a folder's own code: a model that needs it is a one-line error.
"""

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import run_tiny
from safetensors.torch import load_file

from fedlpp.aggregators import build_aggregator
from fedlpp.errors import FedlppError
from fedlpp.protocol.wire import (
    HEADER,
    Layout,
    WireError,
    decode_payload,
    decode_upload,
    encode_payload,
    encode_upload,
    reseal,
)
from fedlpp.quant import PackedTensor, build_quantizer
from fedlpp.quant.base import MAX_BLOCK_SIZE
from fedlpp.quant.pack import unpack_bits

pytestmark = pytest.mark.usefixtures("one_thread")

KRUM = 'aggregator={name="krum", byzantine=1}'
MULTI = 'aggregator={name="krum", byzantine=0, multi=5}'
MULTI3 = 'aggregator={name="krum", byzantine=1, multi=3}'
TRIM = 'aggregator={name="trimmed-mean", beta=0.2}'
NEED5 = "aggregation rule 'krum' needs at least 5 accepted updates"
BYZ = "byzantine=1: n > 2*byzantine+2 = 4"


def _adversary(behaviour, clients=(1,), rounds=(), **options):
    items = [f'behaviour = "{behaviour}"', f"clients = {list(clients)}", f"rounds = {list(rounds)}",
             *(f"{k} = {json.dumps(v)}" for k, v in options.items())]
    return f"adversaries=[{{{', '.join(items)}}}]"


# id, rule, adversary (None = honest), rounds refused, fragments of the refusal's reason
ROUNDS = [
    ("krum-honest", KRUM, None, [], []),
    ("krum-nan-round2", KRUM, _adversary("nan", rounds=[2]), [2], [NEED5, BYZ, "got 4 of 5"]),
    ("krum-nan", KRUM, _adversary("nan"), [1, 2], [NEED5, BYZ]),
    ("krum-inf", KRUM, _adversary("inf"), [1, 2], [NEED5]),
    ("krum-huge", KRUM, _adversary("huge", value=3e38), [1, 2], [NEED5]),
    ("krum-garbage", KRUM, _adversary("garbage-bytes"), [1, 2], [NEED5]),
    ("krum-garbage-body", KRUM, _adversary("garbage-bytes", keep_header=True), [1, 2], [NEED5]),
    ("krum-truncated", KRUM, _adversary("truncated"), [1, 2], [NEED5]),
    ("krum-wrong-shape", KRUM, _adversary("wrong-shape"), [1, 2], [NEED5]),
    ("krum-inflated-count", KRUM, _adversary("inflated-count", factor=1000.0), [1, 2], [NEED5]),
    ("krum-sign-flip-accepted", KRUM, _adversary("sign-flip"), [], []),
    ("multi-krum-nan", MULTI, _adversary("nan"), [1, 2],
     ["needs at least 5 accepted updates (multi=5 averages the 5 best-scored updates)",
      "got 4 of 5"]),
    ("multi-krum-truncated-round2", MULTI, _adversary("truncated", rounds=[2]), [2], ["multi=5"]),
    ("multi3-krum-nan-round2", MULTI3, _adversary("nan", rounds=[2]), [2], [NEED5, BYZ]),
    ("multi3-krum-two-bad", MULTI3, _adversary("inf", clients=[1, 3]), [1, 2],
     [NEED5, "got 3 of 5"]),
    ("trimmed-mean-honest", TRIM, None, [], []),
    ("trimmed-mean-two-bad", TRIM, _adversary("nan", clients=[1, 2]), [], []),
    ("trimmed-mean-one-bad-round2", TRIM, _adversary("truncated", rounds=[2]), [], []),
    ("median-all-bad", 'aggregator={name="median"}', _adversary("nan", clients=[0, 1, 2, 3, 4]),
     [], []),
    ("mean-nan", 'aggregator={name="mean"}', _adversary("nan"), [], []),
]


@pytest.mark.parametrize("rule, adversary, refused, words", [r[1:] for r in ROUNDS],
                         ids=[r[0] for r in ROUNDS])
def test_a_round_the_rule_cannot_serve_is_refused_and_the_run_goes_on(tmp_path, rule, adversary,
                                                                      refused, words):
    sets = ["fed.num_clients=5", rule] + ([adversary] if adversary else [])
    result, out = run_tiny(tmp_path, *sets)
    assert result["status"] == "ok", result.get("error")
    rounds = result["rounds"]
    assert [r["round"] for r in rounds if r["refused"]] == refused
    curve = [result["start"]["central"]] + [r["central"] for r in rounds]
    for r in rounds:
        if r["refused"]:
            why = r["refused"]
            assert all(w in why["reason"] for w in words), why["reason"]
            assert "\n" not in why["reason"]
            assert why["rule"] == "krum" and why["accepted"] < why["needed"]
            assert why["accepted"] == 5 - len(r["rejected"])
            assert why["clients"] == sorted(x["client"] for x in r["rejected"])
            assert r.get("aggregation") is None
            assert curve[r["round"]] == curve[r["round"] - 1]  # the master was not updated
    master = load_file(str(out / "trace" / "final_master.safetensors"))
    assert master and all(bool(torch.isfinite(t).all()) for t in master.values())
    assert all(math.isfinite(result["final"][w]["loss"]) for w in ("central", "proxy"))


def test_a_trimmed_mean_shrunk_to_no_trim_says_so_in_its_round(tmp_path):
    result, _ = run_tiny(tmp_path, "fed.num_clients=5", TRIM,
                         _adversary("nan", clients=[1, 2], rounds=[2]))
    first, second = (r["aggregation"] for r in result["rounds"])
    assert first == {"trimmed_each_end": 1, "updates": 5}  # floor(0.2*5) = 1: no note
    assert second["trimmed_each_end"] == 0 and second["updates"] == 3
    assert second["untrimmed"] == ("floor(beta*n) = floor(0.2*3) = 0: nothing trimmed, the "
                                   "plain mean of the 3 accepted updates")


def test_the_rules_say_what_they_need():
    assert build_aggregator({"name": "mean"}).needs() == (1, "at least one update")
    assert build_aggregator({"name": "krum", "byzantine": 2}).needs()[0] == 7
    assert build_aggregator({"name": "krum", "byzantine": 1, "multi": 6}).needs()[0] == 6


# --- crafted payload headers ------------------------------------------------------------------

def _payload(quantizer="nf", bits=2):
    g = torch.Generator().manual_seed(0)
    q = build_quantizer(quantizer, bits=bits)
    tensors = {"a.lora_A.weight": torch.randn(8, 64, generator=g),
               "a.lora_B.weight": torch.randn(64, 8, generator=g),
               "head.bias": torch.randn(7, generator=g)}
    packed = {n: q.quantize(t, seed=0) for n, t in tensors.items()}
    return encode_payload(packed), Layout.of(tensors, quantizer=q)


def _split(data):
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header, body, *, like=None):
    """A payload file from a header and body; padded with spaces to ``like``'s header length
    when shorter (the file's size unchanged)."""
    text = json.dumps(header).encode()
    if like is not None:
        n = int.from_bytes(like[:8], "little")
        text = text.ljust(n) if len(text) <= n else text
    return len(text).to_bytes(8, "little") + text + body


def _meta_edit(name="a.lora_A.weight", **changes):
    def edit(data):
        header, body = _split(data)
        meta = json.loads(header["__metadata__"][name])
        for k, v in changes.items():
            if v is DROP:
                meta.pop(k)
            else:
                meta[k] = v
        header["__metadata__"][name] = json.dumps(meta)
        return _join(header, body, like=data)
    return edit


def _entry_edit(name="a.lora_A.weight", **changes):
    def edit(data):
        header, body = _split(data)
        header[name].update(changes)
        return _join(header, body, like=data)
    return edit


def _raw_meta(name, text):
    def edit(data):
        header, body = _split(data)
        header["__metadata__"][name] = text
        return _join(header, body, like=data)
    return edit


def _whole_header(fn):
    def edit(data):
        header, body = _split(data)
        return _join(fn(header), body, like=data)
    return edit


DROP = object()
BIG = 2**34
A = "a.lora_A.weight"  # 512 values: 8 blocks of 64, 128 code bytes at 2 bits


def _big_block_same_size(data):
    """block_size 2**34 with one scale, the freed 28 scale bytes moved to the codes: the
    file's size, the total length and the codes' lower bound all still agree."""
    return _meta_edit(A, block_size=BIG, n_scales=1, codes_nbytes=128 + 28)(data)


# id, edit of the payload file, layout given, fragments of the one-line error
HEADERS = [
    ("block_size-2**34", _meta_edit(A, block_size=BIG), False,
     ["'a.lora_A.weight'", "n_scales: 8", "one per block of 17,179,869,184"]),
    ("block_size-2**34-consistent", _big_block_same_size, False,
     ["block_size: 17179869184", f"at most {MAX_BLOCK_SIZE:,}"]),
    ("block_size-2**34-layout", _big_block_same_size, True,
     ["block_size: 17179869184", "the run's layout: 64"]),
    ("block_size-0", _meta_edit(A, block_size=0), False, ["block_size: 0", ">= 1"]),
    ("block_size-text", _meta_edit(A, block_size="64"), False, ["block_size: '64'"]),
    ("bits-0", _meta_edit(A, bits=0), False, ["bits: 0", "1..8, 16, 32"]),
    ("bits-huge", _meta_edit(A, bits=2**40), False, ["bits: 1099511627776"]),
    ("bits-bool", _meta_edit(A, bits=True), False, ["bits: True"]),
    ("bits-other", _meta_edit(A, bits=4), False, ["too short for 512 values of 4 bits"]),
    ("shape-huge", _meta_edit(A, shape=[BIG]), False,
     ["too short for 17179869184 values", "at least 4294967296 bytes"]),
    ("shape-negative", _meta_edit(A, shape=[-8, -64]), False, ["shape: [-8, -64]"]),
    ("shape-text", _meta_edit(A, shape="8x64"), False, ["shape: '8x64'"]),
    ("shape-other", _meta_edit(A, shape=[4, 64]), False, ["n_scales: 8", "256 values"]),
    ("shape-layout", _meta_edit(A, shape=[64, 8]), True, ["shape: [64, 8]", "[8, 64]"]),
    ("dtype", _meta_edit(A, dtype="int64"), False, ["dtype: 'int64'"]),
    ("quantizer-empty", _meta_edit(A, quantizer=""), False, ["quantizer: ''"]),
    ("quantizer-layout", _meta_edit(A, quantizer="uniform"), True,
     ["quantizer: 'uniform'", "'nf'"]),
    ("codes_nbytes-huge", _meta_edit(A, codes_nbytes=BIG), False,
     ["does not match its metadata", "codes_nbytes 17179869184"]),
    ("codes_nbytes-negative", _meta_edit(A, codes_nbytes=-4, n_scales=41), False,
     ["codes_nbytes: -4"]),
    ("n_scales-shifted-to-codes", _meta_edit(A, codes_nbytes=132, n_scales=7), False,
     ["n_scales: 7", "allowed: 8"]),
    ("n_scales-negative", _meta_edit(A, n_scales=-1), False, ["n_scales: -1"]),
    ("n_scales-huge", _meta_edit(A, n_scales=BIG), False, ["does not match its metadata"]),
    ("n_scales-null", _meta_edit(A, n_scales=None), False, ["does not match its metadata"]),
    ("extra", _meta_edit(A, extra=[1]), False, ["extra: [1]"]),
    ("extra-layout", _meta_edit(A, extra={"grid": "x"}), True, ["extra: {'grid': 'x'}"]),
    ("meta-lacks-bits", _meta_edit(A, bits=DROP), False, ["lacks bits"]),
    ("meta-not-json", _raw_meta(A, "{not json"), False, ["'a.lora_A.weight'", "not JSON"]),
    ("meta-list", _raw_meta(A, "[1, 2]"), False, ["JSON list, expected an object"]),
    ("meta-without-tensor", _raw_meta("ghost", "{}"), False, ["['ghost'] without a tensor"]),
    ("tensor-without-meta", _whole_header(lambda h: {**h, "__metadata__": {
        k: v for k, v in h["__metadata__"].items() if k != A}}), False,
     ["tensors ['a.lora_A.weight'] without metadata"]),
    ("no-__metadata__", _whole_header(lambda h: {k: v for k, v in h.items()
                                                 if k != "__metadata__"}), False,
     ["no __metadata__"]),
    ("tensor-count-layout", _whole_header(lambda h: {
        k: v for k, v in h.items() if k != "head.bias"} | {"__metadata__": {
            k: v for k, v in h["__metadata__"].items() if k != "head.bias"}}), True,
     ["holds 2 tensors, the run's layout 3", "missing ['head.bias']"]),
    ("entry-dtype", _entry_edit(A, dtype="F32"), False, ["dtype: 'F32'", "U8"]),
    ("entry-shape-huge", _entry_edit(A, shape=[BIG]), False, ["shape: [17179869184]"]),
    ("entry-shape-2d", _entry_edit(A, shape=[2, 80]), False, ["shape: [2, 80]"]),
    ("entry-offsets-huge", _entry_edit(A, data_offsets=[0, BIG]), False,
     ["data_offsets: [0, 17179869184]"]),
    ("entry-offsets-reversed", _entry_edit(A, data_offsets=[160, 0]), False,
     ["data_offsets: [160, 0]"]),
    ("entry-not-object", _whole_header(lambda h: {**h, A: 5}), False, ["entry: 5"]),
    ("header-length-huge", lambda d: (2**60).to_bytes(8, "little") + d[8:], False,
     ["header length 1,152,921,504,606,846,976 exceeds"]),
    ("header-not-json", lambda d: d[:8] + b"\xff" + d[9:], False, ["header is not JSON"]),
    ("header-list", lambda d: _join([1], _split(d)[1], like=d), False,
     ["JSON list, expected an object"]),
    ("short-file", lambda d: d[:5], False, ["5 bytes is shorter than the 8-byte"]),
    ("empty-file", lambda d: b"", False, ["0 bytes"]),
]

PROBE = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, "tests")
    import torch
    torch.set_num_threads(1)
    import test_robust_rounds as t
    from fedlpp.protocol.wire import decode_payload
    from fedlpp.quant import quantizer_for
    data, layout = t._payload()
    crafted = [(i, edit(data), with_layout) for i, edit, with_layout, _ in t.HEADERS]
    for p in decode_payload(data, layout=layout).values():  # warm up before the limit
        quantizer_for(p).dequantize(p)
    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    limit = vm + 2**30  # 1 GiB above what is mapped now: 32 GiB would fail loudly
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = {}
    for i, blob, with_layout in crafted:
        try:  # as an attack reads a payload: decode, then dequantize what decoded
            for p in decode_payload(blob, layout=layout if with_layout else None).values():
                quantizer_for(p).dequantize(p)
            out[i] = ["ok", ""]
        except BaseException as exc:
            out[i] = [type(exc).__name__, str(exc)]
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def crafted_results():
    """Every crafted header decoded in one subprocess under an address-space limit."""
    pytest.importorskip("resource")
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/status")
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=300, check=False, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case, words", [(h[0], h[3]) for h in HEADERS], ids=[h[0] for h in HEADERS])
def test_a_crafted_payload_header_is_a_one_line_error_before_any_allocation(crafted_results, case,
                                                                            words):
    kind, text = crafted_results[case]
    assert kind == "WireError", (kind, text)  # not MemoryError / RuntimeError: nothing big made
    assert "\n" not in text and all(w in text for w in words), text


@pytest.mark.parametrize("quantizer, bits", [("nf", 2), ("none", 32), ("bnb-nf4", 4),
                                             ("uniform", 3)])
def test_honest_payloads_decode_with_and_without_their_layout(quantizer, bits):
    if quantizer.startswith("bnb"):
        pytest.importorskip("bitsandbytes")
    data, layout = _payload(quantizer, bits)
    plain = decode_payload(data)
    assert plain.keys() == decode_payload(data, layout=layout).keys() == set(layout.names)
    assert all(plain[n] == p for n, p in decode_payload(data, layout=layout).items())


def test_a_whole_tensor_block_larger_than_the_tensor_still_decodes():
    # the paper suite's "whole-tensor" blocks: 65,536 values per block, tensors of 4,608
    q = build_quantizer("nf", bits=2, block_size=65536)
    tensors = {"lora_A": torch.randn(8, 576)}
    data = encode_payload({n: q.quantize(t, seed=0) for n, t in tensors.items()})
    got = decode_payload(data, layout=Layout.of(tensors, quantizer=q))
    assert got["lora_A"].block_size == 65536 and got["lora_A"].scales.numel() == 1
    assert decode_payload(data)["lora_A"] == got["lora_A"]


def test_packed_tensor_from_bytes_caps_the_block_of_a_small_tensor():
    q = build_quantizer("nf", bits=2)
    packed = q.quantize(torch.randn(8, 64), seed=0)
    meta = {**packed.meta(), "block_size": BIG, "n_scales": 1, "codes_nbytes": 128 + 28}
    with pytest.raises(FedlppError, match="block_size: 17179869184") as info:
        PackedTensor.from_bytes(packed.to_bytes(), meta=meta)
    assert "\n" not in str(info.value)
    with pytest.raises(FedlppError, match="n_scales: 1"):
        PackedTensor.from_bytes(packed.to_bytes(), meta={**packed.meta(), "n_scales": 1,
                                                          "codes_nbytes": 128 + 28})
    small = q.quantize(torch.randn(7), seed=0)  # 2 code bytes, one block of 64 (16 bytes whole)
    with pytest.raises(FedlppError, match=r"codes_nbytes: 20 \(allowed: 2..16"):
        PackedTensor.from_bytes(bytes(24), meta={**small.meta(), "codes_nbytes": 20})
    assert PackedTensor.from_bytes(small.to_bytes(), meta=small.meta()) == small


def test_unpack_bits_refuses_a_negative_count():
    with pytest.raises(FedlppError, match="number of codes to unpack: -1"):
        unpack_bits(torch.zeros(4, dtype=torch.uint8), 2, -1)


# --- upload header fields (the fixed 32-byte header) -------------------------------------------

def _upload():
    q = build_quantizer("none")
    tensors = {"w": torch.randn(4, 8), "b": torch.randn(3)}
    layout = Layout.of(tensors, quantizer=q)
    packed = {n: q.quantize(t) for n, t in tensors.items()}
    return encode_upload(packed, layout=layout, num_examples=10, train_loss=1.0), layout


def _header_field(index, value):
    def edit(message):
        fields = list(HEADER.unpack_from(message))
        fields[index] = value
        return reseal(HEADER.pack(*fields) + message[HEADER.size:])
    return edit


UPLOADS = [
    ("magic", _header_field(0, b"XXXX"), "not an upload message"),
    ("version", _header_field(1, 7), "format version 7"),
    ("reserved", _header_field(2, 5), "field reserved: 5 (expected 0)"),
    ("fingerprint", _header_field(3, 1), "another model layout"),
    ("body-short", lambda m: reseal(m[:-4]), "truncated or padded"),
    ("body-long", lambda m: reseal(m + b"\0" * 4), "truncated or padded"),
    ("crc", lambda m: m[:-1] + bytes([m[-1] ^ 1]), "checksum"),
    ("header-short", lambda m: m[:HEADER.size - 1], "shorter than the 32-byte"),
]


@pytest.mark.parametrize("edit, words", [u[1:] for u in UPLOADS], ids=[u[0] for u in UPLOADS])
def test_a_crafted_upload_header_is_a_one_line_error(edit, words):
    message, layout = _upload()
    with pytest.raises(WireError) as info:
        decode_upload(edit(message), layout=layout)
    assert words in str(info.value) and "\n" not in str(info.value)


# --- the model loader never runs a folder's own code ------------------------------------------

EVIL = """import pathlib
pathlib.Path({marker!r}).write_text("the folder's code ran")
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
class EvilConfig(LlamaConfig):
    model_type = "evil"
class EvilForCausalLM(LlamaForCausalLM):
    config_class = EvilConfig
class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


def _custom_code_folder(folder, *, where):
    """A saved tiny model whose config (or tokenizer config) names a class in evil_code.py,
    a file that leaves a marker when imported."""
    from fedlpp.config import ModelConfig
    from fedlpp.models.core import MODELS

    tiny = ModelConfig(name="tiny-llama", tiny_hidden=32, tiny_layers=2)
    base, tok, _ = MODELS.get("tiny-llama")(tiny, task="lm", num_labels=None)
    base.save_pretrained(folder)
    tok.save_pretrained(folder)
    marker = folder.parent / "MARKER"
    (folder / "evil_code.py").write_text(EVIL.format(marker=str(marker)))
    name = "config.json" if where == "config" else "tokenizer_config.json"
    cfg = json.loads((folder / name).read_text())
    if where == "config":
        cfg.update(model_type="evil", architectures=["EvilForCausalLM"],
                   auto_map={"AutoConfig": "evil_code.EvilConfig",
                             "AutoModelForCausalLM": "evil_code.EvilForCausalLM",
                             "AutoModelForSequenceClassification": "evil_code.EvilForCausalLM"})
    else:
        cfg.update(tokenizer_class="EvilTokenizer",
                   auto_map={"AutoTokenizer": [None, "evil_code.EvilTokenizer"]})
    (folder / name).write_text(json.dumps(cfg))
    return marker


@pytest.mark.parametrize("where", ["config", "tokenizer"])
@pytest.mark.parametrize("task", ["lm", "cls"])
def test_a_model_that_needs_its_own_code_is_a_one_line_error_and_never_runs_it(tmp_path, where,
                                                                               task):
    from fedlpp.config import LoraConfig, ModelConfig
    from fedlpp.models import load_model

    folder = tmp_path / "model"
    folder.mkdir()
    marker = _custom_code_folder(folder, where=where)
    with pytest.raises(FedlppError) as info:
        load_model(ModelConfig(name=f"hf:{folder}"), LoraConfig(), task=task,
                   num_labels=2 if task == "cls" else None, seed=0)
    text = str(info.value)
    assert "\n" not in text and "needs its own Python code" in text and str(folder) in text
    assert not marker.exists()
