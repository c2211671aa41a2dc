"""Known-answer tests of the model-leakage metrics: gain ratios with their significance rule, and
the parameter error on each LoRA layer's delta W."""

import json
import math

import numpy as np
import pytest
import torch

from attacks.model_metrics import gain_metrics, param_rel_error, utility_of


def lm(losses, counts=None):
    """Per-record utilities of an LM: summed loss per record and its tokens."""
    losses = np.asarray(losses, dtype=np.float64)
    return {"loss": losses, "count": np.ones_like(losses) if counts is None else
            np.asarray(counts, dtype=np.float64)}


def test_utility_of_is_token_weighted_loss_and_accuracy():
    records = lm([2.0, 9.0], counts=[1, 3])
    assert utility_of(records, key="loss")[0] == pytest.approx(11 / 4)
    rows = np.array([[0, 0], [1, 1]])
    assert utility_of(records, key="loss", rows=rows).tolist() == [2.0, 3.0]
    cls = {"loss": np.zeros(4), "count": np.ones(4), "correct": np.array([1.0, 0, 1, 1])}
    assert utility_of(cls, key="accuracy")[0] == 0.75
    with pytest.raises(ValueError, match="Unknown gain metric 'perplexity'"):
        utility_of(records, key="perplexity")


def test_gains_known_answers_with_every_record_alike():
    n = 40  # identical records: every resample gives the same numbers, so the CIs are points
    out = gain_metrics(base=lm([2.0] * n), central=lm([1.0] * n), recovered=lm([1.5] * n),
                       control=lm([1.75] * n), key="loss", higher_is_better=False, resamples=200)
    assert out["central_gain"]["value"] == 1.0 and out["central_gain"]["ci"] == [1.0, 1.0]
    assert out["recovered_gain"] == {"value": 0.5, "ci": [0.5, 0.5], "se": None, "reason": None}
    assert out["control_gain"]["value"] == 0.25
    assert out["gain_over_control"]["value"] == 0.25  # what the payload itself gave
    json.dumps(out, allow_nan=False)


def test_accuracy_gains_point_up():
    ones, zeros = np.ones(30), np.zeros(30)
    rec = {"loss": zeros, "count": ones}
    out = gain_metrics(base={**rec, "correct": np.r_[ones[:10], zeros[:20]]},
                       central={**rec, "correct": np.r_[ones[:25], zeros[:5]]},
                       recovered={**rec, "correct": np.r_[ones[:15], zeros[:15]]},
                       key="accuracy", higher_is_better=True, resamples=500)
    assert out["central_gain"]["value"] == pytest.approx(0.5)
    assert out["recovered_gain"]["value"] == pytest.approx(1 / 3)
    lo, hi = out["recovered_gain"]["ci"]
    assert lo <= 1 / 3 <= hi
    assert out["control_gain"]["reason"] == "no no-payload control"


@pytest.mark.parametrize("central", [[2.0, 2.0, 2.0, 2.0], [2.5, 2.5, 2.5, 2.5],
                                     [1.0, 3.0, 1.5, 2.6]])
def test_no_significant_central_gain_makes_every_ratio_null(central):
    # equal to base, worse than base, or better on average with a CI that contains 0
    out = gain_metrics(base=lm([2.0] * 4), central=lm(central), recovered=lm([1.0] * 4),
                       control=lm([1.0] * 4), key="loss", higher_is_better=False, resamples=500)
    assert out["central_gain"]["value"] is not None
    for name in ("recovered_gain", "control_gain", "gain_over_control"):
        assert out[name]["value"] is None and out[name]["ci"] is None
        assert out[name]["reason"].startswith("no significant central gain over base (loss gain")
    json.dumps(out, allow_nan=False)


def test_a_tiny_noisy_central_gain_never_gives_a_huge_ratio():
    # the old ratio: (U(R) - U(base)) / 0.0001 on a gain that is noise -> thousands
    rng = np.random.default_rng(0)
    base = lm(rng.normal(3.0, 0.5, 64))
    central = lm(base["loss"] - 0.0001 + rng.normal(0, 0.05, 64))
    out = gain_metrics(base=base, central=central, recovered=lm(base["loss"] + 0.8),
                       key="loss", higher_is_better=False, resamples=1000)
    assert out["recovered_gain"]["value"] is None


def test_non_finite_utility_is_null_and_different_record_counts_are_an_error():
    out = gain_metrics(base=lm([2.0, 2.0]), central=lm([1.0, 1.0]),
                       recovered=lm([math.inf, 1.0]), key="loss", higher_is_better=False)
    assert out["recovered_gain"]["reason"] == "utility of recovered is not finite"
    with pytest.raises(ValueError, match="different numbers of records"):
        gain_metrics(base=lm([2.0]), central=lm([1.0, 1.0]), recovered=lm([1.0]), key="loss",
                     higher_is_better=False)


# --- parameter error ------------------------------------------------------------------------
A, B = "layer.q_proj.lora_A.default.weight", "layer.q_proj.lora_B.default.weight"
HEAD = "classifier.modules_to_save.default.weight"


def test_param_rel_error_is_measured_on_delta_w_not_on_the_factors():
    # A is large and seeded (it barely moves), B small: delta W = (alpha/r) B A = 2 * [[1, 0], [0, 0]]
    master = {A: torch.tensor([[10.0, 0.0]]), B: torch.tensor([[0.1], [0.0]])}
    half = {A: master[A].clone(), B: torch.tensor([[0.05], [0.0]])}
    assert param_rel_error(recovered=half, master=master, lora_scale=2.0) == pytest.approx(0.5)
    # the concatenated-factor norm would call this a 0.05 / 10 = 0.5 % error
    assert param_rel_error(recovered=master, master=master, lora_scale=2.0) == 0.0
    # the same delta W from other factors is no error at all
    same = {A: torch.tensor([[1.0, 0.0]]), B: torch.tensor([[1.0], [0.0]])}
    assert param_rel_error(recovered=same, master=master, lora_scale=2.0) < 1e-7  # 0.1 in fp32


def test_heads_count_directly_and_everything_is_one_relative_error():
    master = {A: torch.tensor([[1.0, 0.0]]), B: torch.tensor([[1.0], [0.0]]),
              HEAD: torch.tensor([[3.0, 4.0]])}
    recovered = {A: master[A], B: torch.tensor([[0.5], [0.0]], dtype=torch.bfloat16),
                 HEAD: torch.tensor([[3.0, 0.0]])}
    # delta W: master 2, recovered 1 -> diff^2 1, norm^2 4; head: diff^2 16, norm^2 25
    assert param_rel_error(recovered=recovered, master=master, lora_scale=2.0) == \
        pytest.approx(math.sqrt(17 / 29))
    base = {"layer.k_proj.weight": torch.tensor([[3.0, 4.0]])}
    assert param_rel_error(recovered={"layer.k_proj.weight": torch.tensor([[3.0, 5.0]])},
                           master=base, lora_scale=2.0) == pytest.approx(0.2)


def test_param_rel_error_undefined_and_bad_inputs():
    zero = {A: torch.ones(1, 2), B: torch.zeros(2, 1)}  # LoRA init: delta W = 0
    assert param_rel_error(recovered=zero, master=zero, lora_scale=2.0) is None
    with pytest.raises(ValueError, match=r"missing from recovered \['" + B):
        param_rel_error(recovered={A: zero[A]}, master=zero, lora_scale=2.0)
    with pytest.raises(ValueError, match="has no 'layer.q_proj.lora_B"):
        param_rel_error(recovered={A: zero[A]}, master={A: zero[A]}, lora_scale=2.0)
    with pytest.raises(ValueError, match="has no lora_A"):
        param_rel_error(recovered={B: zero[B]}, master={B: zero[B]}, lora_scale=2.0)
    with pytest.raises(ValueError, match=f"shape of '{A}'"):
        param_rel_error(recovered={A: torch.ones(1, 3), B: zero[B]}, master=zero, lora_scale=2.0)
