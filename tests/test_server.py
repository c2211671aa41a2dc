"""The server object on hand-built uploads: what it rejects and why, that the master never
becomes non-finite, the extension points, and a fuzz of 1,000 malicious uploads."""

import math

import numpy as np
import pytest
import torch

from fedlpp.adversaries import build_adversaries
from fedlpp.aggregators import AGGREGATORS, Aggregator
from fedlpp.config import FedConfig
from fedlpp.defenses import DEFENSES, Defense, Rejected
from fedlpp.federation.client import encode_update
from fedlpp.federation.master_update import overflow_culprits
from fedlpp.federation.server import FedLPPServer
from fedlpp.federation.validate import FLOAT32_MAX, delta_norm
from fedlpp.protocol.records import LocalUpdate, Upload
from fedlpp.quant import build_quantizer

ENROLLED = [10 + c for c in range(10)]


def make_server(*, uploader="none", bits=None, max_norm=0.0, server_lr=1.0, defenses=(),
                aggregator=None):
    g = torch.Generator().manual_seed(0)
    master = {"l.lora_A.weight": torch.randn(8, 32, generator=g) * 0.1,
              "l.lora_B.weight": torch.randn(32, 8, generator=g) * 0.1}
    up = build_quantizer(uploader, **({"bits": bits} if bits else {}))
    fed = FedConfig(max_update_norm=max_norm, num_clients=10)
    fed.server_lr = server_lr  # set past the config's range check: the overflow tests need 1e38
    return FedLPPServer(master=master, reference={n: t.clone() for n, t in master.items()},
                        static=[], quantizer=build_quantizer("nf", bits=2), uploader=up,
                        enrolled=ENROLLED, fed=fed,
                        aggregator=aggregator or {"name": "mean"}, defenses=defenses, seed=0)


def honest(server, rnd, client, *, scale=0.01):
    g = torch.Generator().manual_seed(1000 * rnd + client)
    proxy = server.broadcast(rnd).proxy
    return LocalUpdate(tensors={n: proxy[n] + scale * torch.randn(proxy[n].shape, generator=g)
                                for n in server.reference},
                       num_examples=ENROLLED[client], train_loss=1.5)


def send(server, rnd, client, update=None, adversary=None, seed=0):
    update = update or honest(server, rnd, client)
    received = {n: server.broadcast(rnd).proxy[n] for n in server.reference}
    if adversary is not None:
        update = adversary.tamper_update(update, received=received,
                                         rng=torch.Generator().manual_seed(seed))
    try:  # as the client step does: a client that cannot encode its update sends nothing
        message = encode_update(update, quantizer=server.uploader, seed=seed)
    except Exception as exc:  # noqa: BLE001
        return Upload(client=client, data=None, error=f"{type(exc).__name__}: {exc}")
    if adversary is not None:
        message = adversary.tamper_message(message, rng=np.random.default_rng(seed))
    return Upload(client=client, data=message)


def adversary(behaviour, **options):
    (a,) = build_adversaries([{"behaviour": behaviour, "clients": [0], **options}],
                             num_clients=10)
    return a


def expected_master(server_before, accepted, broadcast, lr=1.0):
    total = sum(w for _, w in accepted)
    return {n: server_before[n] + lr * (sum(w * t[n] for t, w in accepted) / total - broadcast[n])
            for n in server_before}


# --- single checks -------------------------------------------------------------------------------
@pytest.mark.parametrize("behaviour, options, words", [
    ("nan", {}, "non-finite values"),
    ("inf", {"fraction": 1.0}, "non-finite values"),
    ("huge", {}, "cannot be aggregated in float32"),
    ("inflated-count", {}, "claims 10,000 training examples, enrolled with 10"),
    ("wrong-shape", {"rows": -1}, "another model layout"),
    ("truncated", {"keep": 0.9}, "malformed upload"),
    ("garbage-bytes", {}, "not an upload message"),
    ("garbage-bytes", {"keep_header": True}, ""),
])
def test_a_bad_upload_is_rejected_with_its_reason_and_the_honest_ones_are_applied(
        behaviour, options, words):
    server = make_server()
    before = dict(server.master)
    sent = server.broadcast(1).proxy
    bad = send(server, 1, 0, adversary=adversary(behaviour, **options))
    good = [honest(server, 1, c) for c in (1, 2)]
    verdicts, refused = server.aggregate(1, [bad, *(send(server, 1, c, u) for c, u in
                                                    zip((1, 2), good, strict=True))])
    assert refused is None
    assert [v.accepted for v in verdicts] == [False, True, True]
    assert verdicts[0].client == 0 and words in verdicts[0].reason
    want = expected_master(before, [(u.tensors, u.num_examples) for u in good], sent)
    for n, t in want.items():
        assert torch.allclose(server.master[n], t, atol=1e-6)


def test_an_update_beyond_the_norm_bound_is_rejected_and_sign_flip_is_not_detectable():
    server = make_server(max_norm=1.0)
    verdicts, _ = server.aggregate(1, [send(server, 1, 0, adversary=adversary("scaled", factor=1e3)),
                                       send(server, 1, 1, adversary=adversary("sign-flip")),
                                       send(server, 1, 2)])
    assert "exceeds fed.max_update_norm=1" in verdicts[0].reason
    # a sign-flipped update is finite and as large as an honest one: validation cannot tell it
    # apart (robust aggregation rules are the defense against it)
    assert verdicts[1].accepted and verdicts[2].accepted


def test_a_client_that_failed_is_named_and_a_round_where_every_client_failed_raises():
    server = make_server()
    verdicts, _ = server.aggregate(1, [Upload(client=3, data=None, error="OSError: gone"),
                                       send(server, 1, 1)])
    assert verdicts[0].reason == "client failed: OSError: gone" and verdicts[1].accepted
    with pytest.raises(RuntimeError, match="every client of round 2 failed"):
        server.aggregate(2, [Upload(client=3, data=None, error="OSError: gone")])


def test_a_second_upload_from_the_same_client_in_a_round_is_rejected():
    server = make_server()
    verdicts, _ = server.aggregate(1, [send(server, 1, 1), send(server, 1, 1), send(server, 1, 2)])
    assert [v.accepted for v in verdicts] == [True, False, True]
    assert verdicts[1].reason == "a second upload in round 1"


def test_an_aggregate_that_would_overflow_the_master_is_refused_and_its_clients_named():
    server = make_server(server_lr=1e38)
    before = {n: t.clone() for n, t in server.master.items()}
    big = honest(server, 1, 0, scale=50.0)  # finite, within the value limit, but lr x 50 overflows
    verdicts, refused = server.aggregate(1, [send(server, 1, 0, big), send(server, 1, 1)])
    assert all(v.accepted for v in verdicts)
    assert refused is not None and "non-finite" in refused["reason"]
    assert refused["clients"] == [0, 1] or refused["clients"] == [0]
    assert all(torch.equal(server.master[n], before[n]) for n in before)
    assert all(bool(torch.isfinite(t).all()) for t in server.master.values())


def test_overflow_culprits_names_the_fewest_largest_contributors():
    weights = {0: 10.0, 1: 10.0, 2: 10.0}
    reach = {0: 10.0 * 1e38, 1: 10.0 * 0.1, 2: 10.0 * 0.2}
    # the mean moves by up to 3.3e37; times server_lr 10 the master overflows
    assert overflow_culprits(reach, weights=weights, master_abs=1.0, server_lr=10.0) == [0]
    both = {0: 10.0 * 1e38, 1: 10.0 * 2e38, 2: 10.0}
    assert overflow_culprits(both, weights=weights, master_abs=1.0, server_lr=10.0) == [0, 1]
    # each fits alone: the combination overflows, everyone is named
    small = {0: 1.0, 1: 1.0}
    assert overflow_culprits(small, weights={0: 1.0, 1: 1.0}, master_abs=FLOAT32_MAX,
                             server_lr=1.0) == [0, 1]


def test_delta_norm_does_not_overflow_for_float32_extremes():
    x = {"a": torch.full((4,), 3e38)}
    assert math.isclose(delta_norm(x, broadcast={"a": torch.zeros(4)}), 6e38, rel_tol=1e-6)


# --- extension points ----------------------------------------------------------------------------
class Recorder(Defense):
    """Records every server-side hook; rejects client 2; shifts the broadcast."""

    calls: list = []

    def before_broadcast(self, rnd, tensors, *, static):
        self.calls.append(("before_broadcast", rnd))
        return {n: t + 1.0 for n, t in tensors.items()}

    def on_update(self, rnd, client, tensors, *, broadcast):
        self.calls.append(("on_update", rnd, client))
        if client == 2:
            raise Rejected("client 2 is not trusted")
        return tensors

    def after_aggregate(self, rnd, mean, *, broadcast, weights):
        self.calls.append(("after_aggregate", rnd, dict(weights)))
        return {n: broadcast[n] + 0.5 * (m - broadcast[n]) for n, m in mean.items()}

    def report(self):
        return {"calls": len(self.calls)}


class First(Aggregator):
    """Keeps the first update only."""

    def add(self, tensors, *, weight, client):
        if not self.count:
            self.first = dict(tensors)
        self.count += 1

    def result(self):
        return self.first


if "test-recorder" not in DEFENSES.names():
    DEFENSES.register("test-recorder")(Recorder)
    AGGREGATORS.register("test-first")(First)


def test_defense_hooks_run_at_their_points_of_the_round():
    Recorder.calls.clear()
    server = make_server(defenses=[Recorder()])
    before = dict(server.master)
    sent = server.broadcast(1).proxy
    # the broadcast was made from the shifted tensors; the master itself did not move
    assert float((sent["l.lora_A.weight"] - before["l.lora_A.weight"]).mean()) > 0.5
    ups = [honest(server, 1, c) for c in (0, 1, 2)]
    verdicts, _ = server.aggregate(1, [send(server, 1, c, u) for c, u in enumerate(ups)])
    assert [v.accepted for v in verdicts] == [True, True, False]
    assert verdicts[2].reason == "rejected by a defense: client 2 is not trusted"
    assert Recorder.calls == [("before_broadcast", 1), ("on_update", 1, 0), ("on_update", 1, 1),
                              ("on_update", 1, 2), ("after_aggregate", 1, {0: 10, 1: 11})]
    mean = {n: (ups[0].tensors[n] * 10 + ups[1].tensors[n] * 11) / 21 for n in before}
    for n in before:  # after_aggregate halved the step
        assert torch.allclose(server.master[n], before[n] + 0.5 * (mean[n] - sent[n]), atol=1e-6)


def test_the_aggregation_rule_comes_from_the_registry():
    server = make_server(aggregator={"name": "test-first"})
    before, sent = dict(server.master), server.broadcast(1).proxy
    ups = [honest(server, 1, c) for c in (0, 1)]
    server.aggregate(1, [send(server, 1, c, u) for c, u in enumerate(ups)])
    for n in before:
        assert torch.allclose(server.master[n], before[n] + ups[0].tensors[n] - sent[n], atol=1e-6)


# --- fuzz ----------------------------------------------------------------------------------------
BEHAVIOURS = ["nan", "inf", "huge", "sign-flip", "scaled", "garbage-bytes", "truncated",
              "wrong-shape", "inflated-count"]


def random_behaviour(rng):
    name = BEHAVIOURS[rng.integers(len(BEHAVIOURS))]
    options = {
        "nan": lambda: {"fraction": float(rng.uniform(1e-3, 1))},
        "inf": lambda: {"fraction": float(rng.uniform(1e-3, 1))},
        "huge": lambda: {"value": float(10 ** rng.uniform(20, 38.5)),
                         "fraction": float(rng.uniform(1e-3, 1))},
        "sign-flip": lambda: {},
        "scaled": lambda: {"factor": float(rng.choice([-1, 1]) * 10 ** rng.uniform(0, 6))},
        "garbage-bytes": lambda: {"nbytes": int(rng.integers(0, 6000)),
                                  "keep_header": bool(rng.integers(2))},
        "truncated": lambda: {"keep": float(rng.uniform(0, 0.999))},
        "wrong-shape": lambda: {"rows": int(rng.choice([-4, -3, -2, -1, 1, 2, 3, 4]))},
        "inflated-count": lambda: {"factor": float(rng.choice([rng.uniform(0.01, 0.5),
                                                               rng.uniform(2, 1e6)]))},
    }[name]()
    return name, adversary(name, **options)


@pytest.mark.parametrize("uploader, bits", [("none", None), ("nf", 4)])
def test_fuzz_1000_malicious_uploads_never_reach_the_master(uploader, bits):
    rng = np.random.default_rng(7)
    bound = 1.0  # honest updates move by ~0.01 per value, a norm of ~0.2
    server = make_server(uploader=uploader, bits=bits, max_norm=bound)
    malicious = applied_honest = 0
    for rnd in range(1, 201):
        before = {n: t.clone() for n, t in server.master.items()}
        sent = {n: server.broadcast(rnd).proxy[n] for n in server.reference}
        clients = rng.permutation(10)
        bad = {int(c): random_behaviour(rng) for c in clients[:5]}
        uploads = [send(server, rnd, int(c), adversary=bad.get(int(c), (None, None))[1],
                        seed=int(rng.integers(2**31))) for c in range(10)]
        accepted: list = []

        def keep(v, accepted=accepted):
            if v.accepted:
                accepted.append(({n: t.clone() for n, t in v.tensors.items()}, v.num_examples))

        verdicts, refused = server.aggregate(rnd, uploads, observe=keep)
        assert refused is None
        assert all(bool(torch.isfinite(t).all()) for t in server.master.values())
        for v in verdicts:
            if v.client not in bad:
                assert v.accepted, (rnd, v.client, v.reason)
                applied_honest += 1
                continue
            malicious += 1
            name = bad[v.client][0]
            if name == "sign-flip" or (name == "scaled" and v.accepted):
                # finite, in bounds: only robust aggregation can judge these
                assert v.accepted or "norm" in v.reason
                continue
            assert not v.accepted, (rnd, name, v.client)
            assert v.reason and "\n" not in v.reason  # named (v.client) with a one-line reason
        want = expected_master(before, accepted, sent)
        for n, t in want.items():  # what was accepted is exactly what moved the master
            assert torch.allclose(server.master[n], t, atol=1e-5, rtol=1e-5)
    assert malicious == 1000 and applied_honest == 1000
