"""Utility uncertainty: a paired bootstrap over seeds and test records, and claims judged only on
converged settings. Cells are built by hand (``synthetic_cells``)."""

import math

import numpy as np
import pytest
from synthetic_cells import cell, cls_records, lm_records, rows_of

from benchmarks.bootstrap import comparison_seeds, estimate, utility, utility_intervals
from benchmarks.claims import check_claims, lost_share, proxy_gap
from benchmarks.tables import markdown_tables


def claim(lines, letter):
    return next(line for line in lines if line.startswith(f"- ({letter})"))


def _log_diff(u):
    return (np.log(u["a:proxy"]) - np.log(u["a:central"])).mean(axis=1)


def _simulated_seed(rng, seed, n, delta):
    """One seed's records: proxy = central + delta nats per token, plus record noise."""
    count = rng.integers(8, 33, size=n).astype(float)
    loss = math.log(40 + 10 * seed) + rng.normal(0.0, 0.4, size=n)
    shift = delta + rng.normal(0.0, 0.1, size=n)
    ids = list(range(n))
    return {"ids": ids, "central": {"loss": (loss * count).tolist(), "count": count.tolist()},
            "proxy": {"loss": ((loss + shift) * count).tolist(), "count": count.tolist()}}


@pytest.mark.parametrize("seeds", [1, 3])
def test_the_interval_of_a_paired_difference_covers_the_truth_about_95_percent(seeds):
    delta, hits = 0.05, 0
    for sim in range(200):
        rng = np.random.default_rng(sim)
        cells = {s: _simulated_seed(rng, s, 80, delta) for s in range(seeds)}
        blocks, _, _ = comparison_seeds({"a": (cells, ["central", "proxy"])})
        _, ci, _ = estimate(blocks, _log_diff, metric="perplexity", resamples=400)
        hits += ci[0] <= delta <= ci[1]
    assert 0.88 <= hits / 200 <= 0.99


def test_pairing_makes_the_interval_of_a_difference_of_correlated_models_narrow():
    # proxy = central with a little record noise: the records' difficulty cancels when paired
    per_seed = {s: lm_records(s, level=40.0 + 10 * s, factors={"central": 1.0, "proxy": 1.05},
                              extra={"proxy": 0.02}) for s in range(2)}
    paired_blocks, _, note = comparison_seeds({"a": (per_seed, ["proxy"]),
                                               "b": (per_seed, ["central"])})
    assert "paired over test records" in note
    shuffled = {s: {**r, "ids": list(reversed(r["ids"]))} for s, r in per_seed.items()}
    unpaired_blocks, _, note = comparison_seeds({"a": (per_seed, ["proxy"]),
                                                 "b": (shuffled, ["central"])})
    assert "NOT paired over records for seed 0, 1" in note

    def diff(u):
        return (np.log(u["a:proxy"]) - np.log(u["b:central"])).mean(axis=1)

    _, paired, _ = estimate(paired_blocks, diff, metric="perplexity", resamples=500)
    _, unpaired, _ = estimate(unpaired_blocks, diff, metric="perplexity", resamples=500)
    assert paired[0] < math.log(1.05) < paired[1]
    assert (paired[1] - paired[0]) < 0.2 * (unpaired[1] - unpaired[0])


def test_utility_is_token_weighted_perplexity_and_mean_accuracy():
    records = {"loss": np.array([2.0, 10.0]), "count": np.array([1.0, 4.0])}
    assert utility(records, "perplexity")[0] == pytest.approx(math.exp(12.0 / 5.0))
    assert utility(records, "loss")[0] == pytest.approx(2.4)
    correct = {"loss": np.ones(4), "count": np.ones(4), "correct": np.array([1.0, 0, 1, 1])}
    assert utility(correct, "accuracy")[0] == pytest.approx(0.75)
    assert utility(correct, "accuracy", np.array([[0, 1, 1, 1]]))[0] == pytest.approx(0.25)


def _setting(seeds, *, conv=None, nf_factor=1.003, proxy=1.4, **kw):
    """fp32 and nf-2 cells per seed; nf-2's central and proxy perplexity as multiples of fp32's."""
    conv = conv or {}
    cells = []
    for s in seeds:
        level = 40.0 + 10 * s
        fp = lm_records(s, level=level, factors={"central": 1.0, "proxy": 1.0}, **kw)
        nf = lm_records(s, level=level, factors={"central": nf_factor, "proxy": nf_factor * proxy},
                        **kw)
        known = {"convergence": conv[s]} if s in conv else {}
        cells += [cell(s, "nf-2", nf), cell(s, "fp32", fp, **known)]
    return cells


def test_the_same_cells_give_identical_report_numbers():
    cells = _setting(range(3))
    first = check_claims(rows_of(cells)) + markdown_tables(rows_of(cells))
    assert first == check_claims(rows_of(cells)) + markdown_tables(rows_of(cells))
    assert "[" in next(line for line in first if line.startswith("| nf-2"))


def test_one_seed_still_gives_an_interval_and_says_it_covers_record_noise_only():
    rows = rows_of(_setting([0]))
    nf2 = next(r for r in rows if r["bits"] == "nf-2")
    lo, hi = nf2["utility"]["central"]["ci"]
    assert lo < nf2["central"][0] < hi
    lines = check_claims(rows)
    assert "**held**" in claim(lines, "a") and "**held**" in claim(lines, "b")
    assert "test-record noise only" in claim(lines, "a")
    table = "\n".join(markdown_tables(rows))
    assert "the interval covers test-record noise only" in table


def test_claims_on_an_unconverged_setting_are_not_judged():
    lines = check_claims(rows_of(_setting(range(2), conv={0: True, 1: False})))
    assert "Convergence: not converged (fp32 seed 1: not converged, test curve)." in lines
    for letter in "abd":
        assert claim(lines, letter).endswith("**not judged: not converged** (rows fp32 seed 1)")
    assert "**held**" in claim(lines, "c")  # bytes do not depend on training
    converged = check_claims(rows_of(_setting(range(2), conv={0: True, 1: True})))
    assert "Convergence: converged." in converged and "**held**" in claim(converged, "a")
    unknown = check_claims(rows_of(_setting(range(2))))
    assert "Convergence: convergence unknown." in unknown and "**held**" in claim(unknown, "a")


def test_main_table_shows_convergence_and_the_selected_round():
    cells = [cell(s, "fp32", lm_records(s, level=40.0, factors={"central": 1.0, "proxy": 1.0}),
                  convergence=s != 1, selection={"round": 4 + s, "by": "validation"})
             for s in range(2)]
    table = "\n".join(markdown_tables(rows_of(cells)))
    assert "| yes: seed 0; no: seed 1 | 4, 5 (validation) |" in table


def test_a_loss_paired_within_seeds_is_resolved_where_levels_differ_a_lot():
    large = rows_of(_setting(range(3), nf_factor=1.15))
    nf2, fp = (next(r for r in large if r["bits"] == b) for b in ("nf-2", "fp32"))
    lost, gain = lost_share(nf2, fp)
    assert gain["ci"][0] > 0 and lost["ci"][0] > 0.1
    assert "**not held**" in claim(check_claims(large), "a")


def test_classification_gap_uses_accuracy_and_an_insignificant_gain_is_not_judged():
    cells = []
    for s in range(2):
        recs = cls_records(s, p={"central": 0.30, "proxy": 0.30, "base": 0.30})
        recs["proxy"] = recs["central"]  # fp32: the proxy is the central model
        cells += [cell(s, "fp32", recs, metric="accuracy"),
                  cell(s, "nf-2", recs, metric="accuracy")]
    rows = rows_of(cells)
    assert rows[0]["metric"] == "accuracy"
    lines = check_claims(rows)
    assert "fp32's gain over base is not significant" in claim(lines, "a")
    assert "**not judged**" in claim(lines, "a")
    gap = proxy_gap(rows[0])
    assert gap["value"] == 0.0 and gap["ci"] == [0.0, 0.0]


def test_cells_without_records_render_without_an_interval():
    cells = [cell(0, "fp32", None, final={m: {"perplexity": 40.0, "loss": 3.7}
                                          for m in ("central", "proxy", "base")})]
    (row,) = rows_of(cells)
    assert row["utility"]["central"]["ci"] is None
    assert "lack per-record test results" in row["utility"]["central"]["why"]
    intervals = utility_intervals([None], metric="perplexity", resamples=10)
    assert intervals["proxy"]["ci"] is None
    table = "\n".join(markdown_tables([row]))
    assert "- utility: no interval: 1 of 1 cells lack per-record test results" in table


def test_an_interval_over_seeds_stays_inside_the_metrics_range():
    from benchmarks.stats import combine

    seeds = [{"value": 0.97, "ci": [0.93, 1.0], "se": 0.03, "reason": None},
             {"value": 0.95, "ci": [0.90, 1.0], "se": 0.03, "reason": None}]
    assert combine(seeds)["ci"][1] > 1.0  # a normal interval alone would leave [0, 1]
    lo, hi = combine(seeds, (0.0, 1.0))["ci"]
    assert hi == 1.0 and lo == pytest.approx(0.96 - 1.959964 * (0.0018 ** 0.5) / 2, abs=1e-4)
