"""Pure aggregation maths on hand-built tensors."""

import pytest
import torch

from fedlpp.federation.master_update import apply_update, weighted_mean
from fedlpp.federation.validate import validate_update


def test_weighted_mean_known_answer():
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([[0.0]])}
    b = {"w": torch.tensor([3.0, 6.0]), "b": torch.tensor([[4.0]])}
    m = weighted_mean([a, b], weights=[1, 3])
    assert torch.equal(m["w"], torch.tensor([2.5, 5.0]))
    assert torch.equal(m["b"], torch.tensor([[3.0]]))


def test_weighted_mean_rejects_bad_weights():
    with pytest.raises(ValueError):
        weighted_mean([{"w": torch.zeros(1)}], weights=[0])
    with pytest.raises(ValueError):
        weighted_mean([], weights=[])


def test_straight_through_keeps_quantization_error_out_of_master():
    master = {"w": torch.tensor([0.30, -0.70])}
    broadcast = {"w": torch.tensor([0.25, -0.75])}  # what clients received (quantized)
    mean = {"w": torch.tensor([0.35, -0.65])}  # clients moved +0.1 from what they received
    new = apply_update(master, mean=mean, broadcast=broadcast, server_lr=1.0,
                       rule="straight_through")
    assert torch.allclose(new["w"], torch.tensor([0.40, -0.60]))
    half = apply_update(master, mean=mean, broadcast=broadcast, server_lr=0.5,
                        rule="straight_through")
    assert torch.allclose(half["w"], torch.tensor([0.35, -0.65]))
    replaced = apply_update(master, mean=mean, broadcast=broadcast, server_lr=1.0, rule="replace")
    assert torch.equal(replaced["w"], mean["w"])


def test_apply_update_keeps_tensors_not_in_mean():
    master = {"w": torch.ones(2), "base": torch.full((2,), 7.0)}
    new = apply_update(master, mean={"w": torch.zeros(2)}, broadcast={"w": torch.ones(2)},
                       server_lr=1.0, rule="straight_through")
    assert torch.equal(new["base"], master["base"])
    assert torch.equal(new["w"], torch.zeros(2))
    with pytest.raises(ValueError, match="Unknown aggregation rule"):
        apply_update(master, mean={}, broadcast={}, server_lr=1.0, rule="median")


@pytest.mark.parametrize(
    "bad, reason",
    [
        ({"w": torch.zeros(3)}, "shape"),
        ({"w": torch.zeros(2, dtype=torch.float64)}, "dtype"),
        ({"w": torch.tensor([0.0, float("nan")])}, "non-finite"),
        ({"w": torch.tensor([0.0, float("inf")])}, "non-finite"),
        ({"v": torch.zeros(2)}, "names"),
        ({"w": torch.zeros(2), "extra": torch.zeros(1)}, "names"),
        ({"w": [0.0, 0.0]}, "not a tensor"),
    ],
)
def test_validate_update_rejects(bad, reason):
    assert reason in validate_update(bad, reference={"w": torch.zeros(2)})


def test_validate_update_accepts():
    assert validate_update({"w": torch.ones(2)}, reference={"w": torch.zeros(2)}) is None
