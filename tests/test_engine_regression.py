"""The round engine gives the numbers the old round loop gave (stored before it was rebuilt, see
tests/regression/cases.py): utility, losses, masters and splits; the only byte changes are the
ones the engine was meant to make.

Floats are compared exactly on the kernels that stored them and within a relative tolerance on
other kernels (``regression/cpu_kernels.py``; the mode that ran is printed at the end of the
test run); splits, clients and byte counts are compared exactly everywhere."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "regression"))

from cases import CASES, STORED, run_case  # noqa: E402
from cpu_kernels import assert_close, comparison_mode  # noqa: E402

from fedlpp.protocol.wire import HEADER  # noqa: E402

STORED_FILE = json.loads(STORED.read_text())
STORED_RESULTS = STORED_FILE["cases"]
MODE = comparison_mode(STORED_FILE["stored_on"], source="tests/regression/engine_results.json")
# block sizes that do not divide some tensor: the old payload sent padding codes
PADDED = {"tiny-uniform3-block48", "tiny-full-block1000"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_results_equal_the_stored_results_of_the_old_round_loop(tmp_path, name):
    old = STORED_RESULTS[name]
    new = json.loads(json.dumps(run_case(name, tmp_path / "run")))
    assert new["splits"] == old["splits"]
    assert_close(new["final"], old["final"], mode=MODE, where="final")
    if MODE == "exact":  # bit for bit: the digest of every master tensor's bytes
        assert new["final_master"] == old["final_master"]
    assert_close(new["final_master_summary"], old["final_master_summary"], mode=MODE,
                 where="final_master")
    assert len(new["rounds"]) == len(old["rounds"])
    for n, o in zip(new["rounds"], old["rounds"], strict=True):
        assert n["round"] == o["round"] and n["clients"] == o["clients"]
        for key in ("central", "proxy", "train_loss"):
            assert_close(n.get(key), o.get(key), mode=MODE, where=f"round {n['round']}.{key}")
        # every upload now carries its header (example count, loss, checksum, layout)
        assert n["bytes_up"] == o["bytes_up"] + HEADER.size * len(n["clients"])
        if name in PADDED:  # the padding codes are no longer sent
            assert n["bytes_down_per_client"] < o["bytes_down_per_client"]
        else:
            assert n["bytes_down_per_client"] == o["bytes_down_per_client"]
        assert n["bytes_down"] == n["bytes_down_per_client"] * len(n["clients"])


def test_the_stored_results_say_which_kernels_made_them():
    stored_on = STORED_FILE["stored_on"]
    assert stored_on["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX")
    assert stored_on["cpu_model"] and stored_on["torch"]


def test_the_tolerance_mode_catches_a_real_change():
    """What tolerance mode accepts (float noise) and refuses (a changed number or structure)."""
    old = STORED_RESULTS["tiny-nf2"]["final"]
    noisy = {w: {k: v * (1 + 1e-6) for k, v in m.items()} for w, m in old.items()}
    assert_close(noisy, old, mode="tolerance")
    moved = {w: {k: v * (1 + 1e-3) for k, v in m.items()} for w, m in old.items()}
    with pytest.raises(AssertionError, match="relative"):
        assert_close(moved, old, mode="tolerance")
    with pytest.raises(AssertionError):
        assert_close(noisy, old, mode="exact")
    with pytest.raises(AssertionError):
        assert_close([1, 2], [1, 3], mode="tolerance")  # ints (clients, bytes) are exact
    # accuracy moves in whole records: an absolute tolerance when one is given
    assert_close({"accuracy": 0.3667}, {"accuracy": 0.3833}, mode="tolerance", accuracy=0.025)
    with pytest.raises(AssertionError):
        assert_close({"accuracy": 0.3667}, {"accuracy": 0.3833}, mode="tolerance")


def test_the_stored_results_are_real_training_runs():
    for name, res in STORED_RESULTS.items():
        final = res["final"]
        assert all(math.isfinite(final[w]["loss"]) for w in ("central", "proxy", "base")), name
        assert final["central"]["loss"] != final["base"]["loss"], name
