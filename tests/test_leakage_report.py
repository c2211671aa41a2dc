"""The report's leakage numbers from hand-built cell JSONs: primary attacks fixed in advance,
gains as ratios of means over the seeds where they exist, nulls that say why."""

import math

import pytest

from benchmarks.attack_plan import primary_attacks
from benchmarks.report import summarize
from benchmarks.report_header import method_lines
from benchmarks.stats import combine, fmt_combined, ratio_of_means
from benchmarks.tables import detail_tables, markdown_tables


def est(value, ci=None, se=None, reason=None):
    return {"value": value, "ci": ci, "se": se, "reason": reason}


def mia(auc, control):
    return {"auc": est(auc, [auc - 0.1, auc + 0.1], 0.05), "control_auc": est(control),
            "auc_minus_control": est(auc - control, [auc - control - 0.1, auc - control + 0.1],
                                     0.05),
            "tpr@1%fpr": est(None, reason="needs >= 100 non-members, have 24"),
            "tpr@0.1%fpr": est(None, reason="needs >= 1000 non-members, have 24"),
            "advantage": est(0.0, [-0.2, 0.2], 0.1)}


def recovery(gain, central_gain, ppl):
    reason = None if gain is not None else "no significant central gain over base (...)"
    return {"utility": {"perplexity": ppl}, "central_gain": est(central_gain),
            "recovered_gain": est(gain, reason=reason), "control_gain": est(None, reason="none"),
            "gain_over_control": est(None, reason="none"),
            "param_rel_error": {"value": 0.5, "reason": None},
            "param_rel_error_base": {"value": None, "reason": "no private base weights"}}


def cell(seed, *, gain, central_gain, aucs, plan=None):
    attacks = [{"attack": "as-is", "kind": "recovery", "status": "ok", "config": {},
                "metrics": recovery(gain, central_gain, 50.0)}]
    attacks += [{"attack": name, "kind": "membership", "status": "ok",
                 "config": {"target": "central"}, "metrics": mia(a, 0.5)}
                for name, a in aucs.items()]
    final = {k: {"perplexity": v} for k, v in (("central", 48.0), ("proxy", 49.0), ("base", 80.0))}
    return {"status": "ok", "labels": {"quant": "nf-2", "seed": seed}, "attacks": attacks,
            "attack_plan": plan or {"targets": ["central"], "resamples": 200},
            "config": {"seed": seed, "model": {"name": "m"}, "data": {"name": "d",
                       "partition": "iid"}, "quant": {"scope": "adapter", "name": "nf", "bits": 2},
                       "fed": {"num_clients": 2, "rounds": 2, "local_steps": 2}},
            "train": {"final": final, "comm": {"bytes_down_per_round": 1.0,
                                               "bytes_up_per_round": 2.0}}, "fidelity": 0.9}


def test_primary_attacks_default_to_loss_and_as_is_and_say_so():
    assert primary_attacks({"targets": ["central", "update"]}) == (
        {"central": "loss", "update": "loss"}, "as-is",
        ["no primary membership attack named: `loss` for central, update",
         "no primary recovery attack named: `as-is`"])
    named = {"targets": ["central"], "primary": {"central": "reference"},
             "primary_recovery": "local-finetune"}
    assert primary_attacks(named) == ({"central": "reference"}, "local-finetune", [])


def test_combine_and_ratio_of_means_known_answers():
    one = combine([est(0.6, [0.5, 0.7], 0.05), est(None, reason="r")])
    assert (one["value"], one["ci"], one["k"], one["n"], one["reasons"]) == (0.6, [0.5, 0.7], 1, 2,
                                                                             ["r"])
    two = combine([est(0.6, se=0.03), est(0.8, se=0.04)])
    half = 1.959963984540054 * 0.05 / 2
    assert two["value"] == pytest.approx(0.7) and two["ci"] == pytest.approx([0.7 - half,
                                                                             0.7 + half])
    # numerators 0.5 * 2 + 1.0 * 1 over denominators 2 + 1; the undefined seed is left out
    ratio = ratio_of_means([est(0.5), est(1.0), est(None, reason="no gain")],
                           [est(2.0), est(1.0), est(0.001)])
    assert (ratio["value"], ratio["k"], ratio["n"]) == (pytest.approx(2 / 3), 2, 3)
    assert fmt_combined(ratio, seeds=True) == "0.67 (2/3)"
    assert fmt_combined(combine([0.25, math.nan])) == "0.25 (1/2)"  # old cells: bare numbers
    assert fmt_combined(None) == "–" and fmt_combined(combine([None])) == "–"


def test_headline_uses_the_primary_attack_not_the_best_one():
    plan = {"targets": ["central"], "primary": {"central": "loss"}, "resamples": 2000}
    cells = [cell(s, gain=g, central_gain=d, aucs={"loss": 0.55, "reference": 0.95}, plan=plan)
             for s, (g, d) in enumerate([(0.5, 2.0), (1.0, 1.0), (None, 0.001)])]
    (row,) = summarize({(("quant", "nf-2"),): cells})
    assert row["mia_central"] == "loss" and row["leak_central"]["auc"]["value"] == 0.55
    assert row["gain"]["recovered_gain"]["value"] == pytest.approx(2 / 3)
    assert (row["gain"]["recovered_gain"]["k"], row["gain"]["recovered_gain"]["n"]) == (2, 3)
    headline = "\n".join(markdown_tables([row]))
    assert "0.55 (0.50)" in headline and "0.95" not in headline
    assert "| 0.67 (2/3) |" in headline
    assert "- –: no significant central gain over base (...)" in headline
    detail = "\n".join(detail_tables([row]))
    assert "| nf-2 | central | reference | 0.95 [0.89, 1.00] |" in detail
    assert "- –: needs >= 100 non-members, have 24" in detail
    assert method_lines([row])[4].startswith("Bootstrap: 2000 resamples per estimate; utility ")


def test_report_says_when_primaries_are_defaults_and_resamples_are_few():
    (row,) = summarize({(("quant", "nf-2"),): [cell(0, gain=0.5, central_gain=1.0,
                                                    aucs={"loss": 0.6})]})
    lines = method_lines([row])
    assert lines[2] == ("Primary attacks: no primary membership attack named: `loss` for central; "
                        "no primary recovery attack named: `as-is` (defaults). Every attack: see "
                        "Detail.")
    assert "200 resamples per estimate (fewer than the default 1000" in lines[4]
