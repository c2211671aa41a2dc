"""Claims paired by seed, and sweep tables, on summary rows built by hand."""

import math

from benchmarks.claims import check_claims
from benchmarks.stats import mean_ci
from benchmarks.sweeps import sweep_tables

BASE_PPL = 80.0


def row(label, central, proxy, *, group=None, max_records=400, gains=None, bytes_down=1000.0):
    """A perplexity summary row with one value per seed for central and proxy."""
    per_seed = {s: {"central": c, "proxy": p, "base": BASE_PPL,
                    **{f"gain:{a}": g[s] for a, g in (gains or {}).items()},
                    "auc_central": 0.6, "auc_proxy": 0.55, "auc_update": 0.7}
                for s, (c, p) in enumerate(zip(central, proxy, strict=True))}
    n = len(central)
    recovery = {a: {"recovered_gain": {"value": sum(g) / len(g), "ci": None, "k": n, "n": n,
                                       "reasons": []}} for a, g in (gains or {}).items()}
    leak = {"auc_minus_control": {"value": 0.1, "ci": [0.02, 0.18], "k": n, "n": n,
                                  "reasons": []}}
    return {"group": {"quant": label, **(group or {})}, "bits": label, "metric": "perplexity",
            "model": "m", "data": "d", "base": BASE_PPL, "seeds": n,
            "central": mean_ci(central), "proxy": mean_ci(proxy), "recovered": mean_ci(proxy),
            "bytes_down": (bytes_down, None), "recovery_attack": "as-is", "per_seed": per_seed,
            "recovery_detail": recovery, "leak_central": leak, "leak_proxy": leak,
            "leak_update": None, "config": {"data": {"max_records": max_records}}}


def claim(lines, letter):
    return next(line for line in lines if line.startswith(f"- ({letter})"))


# seeds differ a lot in level (different records), little within a seed
FP32 = [40.0, 50.0, 60.0]


def test_a_small_consistent_loss_holds_and_a_large_one_does_not():
    # log(80/40..60) ~ 0.29-0.69 gained; nf-2 loses ~1 % of the log-ppl gain on every seed
    small = [x * 1.003 for x in FP32]
    large = [x * 1.15 for x in FP32]
    fp32 = row("fp32", FP32, FP32, bytes_down=32000.0)
    held = check_claims([row("nf-2", small, small), fp32])
    assert "**held**" in claim(held, "a")
    assert "**not held**" in claim(check_claims([row("nf-2", large, large), fp32]), "a")
    # unpaired CIs (± ~25 ppl) would call the large loss "within noise"
    assert math.isclose(mean_ci(large)[0] - mean_ci(FP32)[0], 7.5, rel_tol=1e-9)


def test_b_needs_the_proxy_worse_beyond_noise_on_paired_seeds():
    fp32 = row("fp32", FP32, FP32, bytes_down=32000.0)
    worse = row("nf-2", FP32, [x * 1.4 for x in FP32])  # keeps well under 90 % of the gain
    lines = check_claims([worse, fp32])
    assert "**held**" in claim(lines, "b") and "**held**" in claim(lines, "c")
    assert "by as-is" in claim(lines, "d")
    mixed = row("nf-2", FP32, [FP32[0] * 1.4, FP32[1] * 0.7, FP32[2] * 1.4])
    assert "**not held**" in claim(check_claims([mixed, fp32]), "b")


def test_sweep_table_orders_the_swept_rows_around_the_main_row():
    full = {"quant.scope": "full"}
    gains = {"local-finetune": [0.1, 0.2, 0.3]}
    rows = [row("nf-4", FP32, FP32, group=full, max_records=400, gains=gains),
            row("nf-4", FP32, FP32, group={**full, "data.max_records": 1600}, max_records=1600,
                gains=gains),
            row("nf-4", FP32, FP32, group={**full, "data.max_records": 200}, max_records=200,
                gains=gains),
            row("nf-4", FP32, FP32, group={"quant.scope": "adapter"})]  # another setting
    lines = sweep_tables(rows)
    assert lines[0].startswith("### Sweep of `data.max_records`")
    table = [line for line in lines if line.startswith("| ") and not line.startswith("| data")]
    assert [line.split(" | ")[0] for line in table] == ["| 200", "| 400", "| 1600"]
    assert "gain local-finetune" in lines[4] and "0.20 (3/3)" in table[0]
    assert "+0.10 [+0.02, +0.18] / +0.10 [+0.02, +0.18] / –" in table[0]
    assert sweep_tables(rows[:1]) == []


def test_two_seeds_give_no_interval_and_the_claims_are_not_judged():
    fp32 = row("fp32", FP32[:2], FP32[:2], bytes_down=32000.0)
    nf2 = row("nf-2", [x * 1.003 for x in FP32[:2]], [x * 1.4 for x in FP32[:2]])
    assert mean_ci(FP32[:2]) == (45.0, None)
    lines = check_claims([nf2, fp32])
    assert "**not judged**" in claim(lines, "a") and "no interval: < 3 seeds" in claim(lines, "a")
    assert "**not judged**" in claim(lines, "b")
