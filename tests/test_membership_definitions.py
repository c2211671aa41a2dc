"""Membership attacks as the literature defines them: known answers of zlib (mean NLL) vs
zlib-total, reference difference vs ratio, LiRA's OUT-only fit and global-variance switch, the
shadows' procedure derived from the run, refusals and option errors."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import run_tiny

from attacks.context import AttackContext
from attacks.membership.lira import lira_scores, shadow_datasets
from attacks.membership.reference import calibrated
from attacks.runner import build_attacks, run_attacks
from attacks.signals import SampleSignals
from fedlpp.config import load_config
from fedlpp.data.base import Record
from fedlpp.data.encode import encode
from fedlpp.data.partition import Splits
from fedlpp.errors import FedlppError
from fedlpp.models.tiny_llama import byte_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def attack(name, *sets):
    (a,) = build_attacks([name], list(sets))
    return a


def signals(logprobs):
    lps = [np.asarray(x, dtype=np.float64) for x in logprobs]
    return SampleSignals(indices=np.arange(len(lps)), token_logprobs=lps,
                         token_mu=[np.zeros_like(x) for x in lps],
                         token_sigma=[np.ones_like(x) for x in lps])


def one_line_error(call, *words):
    with pytest.raises(FedlppError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


# --- zlib -------------------------------------------------------------------------------------
@pytest.fixture
def zlib_obs():
    texts = ["abc", "In the beginning God created the heaven and the earth."]
    tok = byte_tokenizer()
    ctx = SimpleNamespace(
        task="lm",
        encode=lambda idx: encode([Record(text=texts[i]) for i in idx], tokenizer=tok,
                                  task="lm", seq_len=23),  # <s> + 22 bytes: the verse is cut
        run=SimpleNamespace(bundle=SimpleNamespace(tokenizer=tok)))
    return SimpleNamespace(ctx=ctx)


def test_zlib_divides_the_mean_nll_and_zlib_total_the_total(zlib_obs):
    sig = signals([[-1.0, -2.0, -8.0], [-3.0] * 22])
    # zlib sizes: b"abc" -> 11 bytes, b"In the beginning God c" (the first 22 bytes) -> 30 bytes
    np.testing.assert_allclose(attack("zlib").score(sig, obs=zlib_obs, indices=[0, 1]),
                               [-(11.0 / 3) / 11, -3.0 / 30])
    np.testing.assert_allclose(attack("zlib-total").score(sig, obs=zlib_obs, indices=[0, 1]),
                               [-11.0 / 11, -66.0 / 30])


@pytest.mark.parametrize("name", ["zlib", "zlib-total"])
def test_zlib_refuses_classification_data(name):
    a = attack(name)
    obs = SimpleNamespace(ctx=SimpleNamespace(task="cls"))  # refused before anything is read
    one_line_error(lambda: a.run(obs), f"'{name}'", "task lm", "classification")


# --- reference ----------------------------------------------------------------------------------
@pytest.fixture
def reference_obs():
    by_model = {"base": signals([[-2.0, -4.0], [-3.0]]),  # losses 3, 3
                "round 1": signals([[-2.0, -2.0], [-2.0]]),  # losses 2, 2
                "round 2": signals([[-1.0, -2.0], [-5.0]])}  # losses 1.5, 5
    ctx = SimpleNamespace(initial={"w": "base"}, cache={},
                          trace=SimpleNamespace(participants=lambda r: [0, 1]),
                          signals=lambda tensors, indices: by_model[tensors["w"]])
    return SimpleNamespace(ctx=ctx, num_rounds=2, proxy=lambda rnd: {"w": f"round {rnd}"})


def test_reference_difference_and_ratio_known_answers(reference_obs):
    target = signals([[-1.0, -1.0], [-4.0]])  # losses 1, 4

    def score(*sets):
        return attack("reference", *sets).score(target, obs=reference_obs, indices=[0, 1])

    np.testing.assert_allclose(score(), [3.0 - 1.0, 3.0 - 4.0])  # default: difference
    np.testing.assert_allclose(score("form='ratio'"), [-1.0 / 3.0, -4.0 / 3.0])
    # update: calibrated by the broadcast the client started its last round from
    np.testing.assert_allclose(score("target=update", "form='difference'"), [0.5, 1.0])
    np.testing.assert_allclose(score("target=update", "form='ratio'"), [-1.0 / 1.5, -4.0 / 5.0])


def test_reference_of_the_proxy_in_scope_full_is_the_round_one_payload(reference_obs):
    """The client never holds the private base weights, only their broadcast; round 1's is the
    one no client had trained into yet (needs ``MembershipAttack.reference_signals`` to choose
    it)."""
    target = signals([[-1.0, -1.0], [-4.0]])  # losses 1, 4
    reference_obs.ctx.trace.config = load_config(None, ["quant.scope='full'"])
    got = attack("reference", "target=proxy").score(target, obs=reference_obs, indices=[0, 1])
    np.testing.assert_allclose(got, [2.0 - 1.0, 2.0 - 4.0])
    reference_obs.ctx.trace.config = load_config(None, [])  # scope adapter: the public base
    got = attack("reference", "target=proxy").score(target, obs=reference_obs, indices=[0, 1])
    np.testing.assert_allclose(got, [3.0 - 1.0, 3.0 - 4.0])


def test_reference_ratio_floors_a_zero_reference_loss():
    got = calibrated(target_loss=np.array([0.0, 2e-12]), reference_loss=np.zeros(2), form="ratio")
    np.testing.assert_allclose(got, [0.0, -2.0])


def test_calibrated_refuses_an_unknown_form():
    one_line_error(lambda: calibrated(target_loss=np.zeros(1), reference_loss=np.ones(1),
                                      form="product"), "'product'", "difference, ratio")


# --- LiRA: the score ------------------------------------------------------------------------------
def test_lira_global_sigma_pools_the_within_record_variance():
    # two shadows (< 32: global): mu = [2, 2]; squares [1, 1] and [0, 0] over 2 dof -> sigma 1
    np.testing.assert_allclose(lira_scores(target=[4.0, 2.5], shadows=[[1.0, 2.0], [3.0, 2.0]]),
                               [2.0, 0.5])
    # the same with per-record sigma: sqrt(2) for record 0; record 1's 0 falls back to global 1
    np.testing.assert_allclose(lira_scores(target=[4.0, 2.5], shadows=[[1.0, 2.0], [3.0, 2.0]],
                                           global_below=2), [math.sqrt(2.0), 0.5])
    # one shadow: no dof, the std of all its values (1); a constant, so it ranks as s - mu
    np.testing.assert_allclose(lira_scores(target=[2.0, 2.0], shadows=[[1.0, 3.0]]), [1.0, -1.0])


@pytest.mark.parametrize("m, per_record", [(30, False), (31, False), (32, True), (40, True)])
def test_lira_switches_to_per_record_variance_at_32_shadows(m, per_record):
    # record 0 spreads +-1 around 0, record 1 +-3 (odd m: one extra 0, keeping the mean 0)
    signs = np.array([(-1.0) ** j for j in range(m - m % 2)] + [0.0] * (m % 2))
    shadows = np.stack([signs, 3 * signs], axis=1)
    ss = (signs**2).sum()
    z = lira_scores(target=[1.0, 3.0], shadows=shadows)
    if per_record:
        sd = math.sqrt(ss / (m - 1))
        np.testing.assert_allclose(z, [1.0 / sd, 3.0 / (3 * sd)])
    else:
        pooled = math.sqrt(10 * ss / (2 * (m - 1)))
        np.testing.assert_allclose(z, [1.0 / pooled, 3.0 / pooled])


def test_lira_fits_each_record_on_its_out_shadows_only():
    shadows = [[0.0, 10.0], [2.0, 0.0], [4.0, 2.0]]
    out = [[True, False], [True, True], [True, True]]  # shadow 0 trained on record 1
    # record 0: mu 2, squares 4 + 0 + 4; record 1: mu 1 (not 4), squares 1 + 1; 2 + 1 dof
    sigma = math.sqrt(10.0 / 3.0)
    np.testing.assert_allclose(lira_scores(target=[3.0, 1.0], shadows=shadows, out=out),
                               [1.0 / sigma, 0.0])
    one_line_error(lambda: lira_scores(target=[0.0], shadows=[[1.0]], out=[[False]]),
                   "no OUT shadow", "shadows >= 2")


def test_shadow_datasets_come_in_disjoint_pairs_of_at_most_half_the_pool():
    pool = list(range(100, 111))  # 11 records
    sets = shadow_datasets(pool, shadows=5, size=8, seed=3)
    assert [len(s) for s in sets] == [5] * 5  # min(8, 11 // 2)
    for a, b in (sets[0:2], sets[2:4]):
        assert not set(a) & set(b)  # every record is OUT for one shadow of each pair at least
    assert all(set(s) <= set(pool) for s in sets)
    assert shadow_datasets(pool, shadows=5, size=8, seed=3) == sets
    assert [len(s) for s in shadow_datasets(pool, shadows=2, size=3, seed=0)] == [3, 3]
    one_line_error(lambda: shadow_datasets([7], shadows=2, size=1, seed=0), ">= 2 records", "1")


# --- LiRA: the shadows' procedure ---------------------------------------------------------------
def fake_run(*sets, rounds=3, participants=None):
    cfg = load_config(None, ["fed.num_clients=2", *sets])
    splits = Splits(test=[0, 1], members=[[2, 3, 4, 5], [6, 7]], nonmembers=[[8, 9], [10]])
    trace = SimpleNamespace(config=cfg, splits=splits,
                            participants=lambda r: (participants or {}).get(r, [0, 1]))
    return SimpleNamespace(num_rounds=rounds, ctx=SimpleNamespace(trace=trace))


def test_lira_shadows_repeat_the_targets_training():
    obs = fake_run("fed.local_steps=5")
    p = attack("lira").procedure(obs)  # central: every client's members, rounds x local steps
    assert (p.start, p.steps, p.records, p.view) == ("initial", 15, 6, "trained")
    p = attack("lira", "target=proxy").procedure(obs)
    assert (p.start, p.steps, p.records, p.view) == ("initial", 15, 6, "broadcast")
    p = attack("lira", "target=update", "client=1").procedure(
        fake_run("fed.local_steps=5", participants={3: [0]}))  # client 1 last took part in round 2
    assert (p.start, p.steps, p.records, p.view) == ("payload 2", 5, 2, "upload")
    assert attack("lira", "shadow_steps=7").procedure(obs).steps == 7


def test_lira_proxy_shadows_start_from_round_one_payload_when_the_base_is_private():
    p = attack("lira", "target=proxy").procedure(fake_run("quant.scope='full'"))
    assert p.start == "payload 1"
    assert attack("lira").procedure(fake_run("quant.scope='full'")).start == "initial"


def test_lira_steps_follow_local_epochs_when_local_steps_is_zero():
    obs = fake_run("fed.local_steps=0", "fed.local_epochs=2.0", "fed.batch_size=2", rounds=2)
    assert attack("lira").procedure(obs).steps == 2 * 3  # mean client: 3 records, 2 epochs of 2
    assert attack("lira", "target=update", "client=1").procedure(obs).steps == 2


def test_lira_shadow_pool_is_every_record_no_client_trained_on():
    assert attack("lira").shadow_pool(fake_run()) == [0, 1, 8, 9, 10]


@pytest.mark.parametrize("option, words", [
    ("global_variance_below=-1", ["global_variance_below", "-1", ">= 0"]),
    ("shadows=1.5", ["shadows", "1.5", "expected int"]),
    ("form='product'", ["form", "'product'", "'difference', 'ratio'"]),
])
def test_bad_options_are_one_line_errors(option, words):
    name = "reference" if option.startswith("form") else "lira"
    one_line_error(lambda: build_attacks([name], [option]), *words)


# --- LiRA end to end on a tiny run --------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_lira(tmp_path_factory):
    _, out = run_tiny(tmp_path_factory.mktemp("lira"))
    ctx = AttackContext(out)
    results = {t: run_attacks(out, names=["lira"], sets=[f"target={t}", "shadows=2"],
                              resamples=20, quiet=True, ctx=ctx)[0]
               for t in ("central", "proxy", "update")}
    return ctx, results


def test_lira_shares_shadows_only_between_targets_trained_alike(tiny_lira):
    _, res = tiny_lira
    assert all(r["status"] == "ok" for r in res.values()), [r.get("error") for r in res.values()]
    central, proxy, update = (res[t]["extra"] for t in ("central", "proxy", "update"))
    # tiny run: 2 clients x 24 members, 2 rounds x 2 local steps; pool = 12 test + 48 non-members
    # (12 more records are the validation split, which no attack uses)
    assert (central["shadow_start"], central["shadow_steps"], central["target_records"],
            central["shadow_records"]) == ("initial", 4, 48, 30)
    assert central["shadows_reused"] is False and central["shadow_train_s"] > 0
    assert proxy["shadows_reused"] is True and proxy["shadow_start"] == "initial"
    assert (update["shadow_start"], update["shadow_steps"], update["shadow_records"]) == \
        ("payload 2", 2, 24)
    assert update["shadows_reused"] is False and central["variance"] == "global"


def test_lira_shadows_never_train_on_a_member(tiny_lira):
    ctx, _ = tiny_lira
    members = {i for m in ctx.trace.splits.members for i in m}
    shadow_sets = [data for key, shadows in ctx.cache.items()
                   if key[0] == "lira-shadows" and len(key) == 6 for data, _ in shadows]
    assert len(shadow_sets) == 4  # 2 for central / proxy, 2 for update
    assert all(not members & set(data) for data in shadow_sets)
