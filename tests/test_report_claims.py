"""Claims paired by seed and test record, and sweep tables, on summary rows."""

from synthetic_cells import cell, lm_records, rows_of

from benchmarks.claims import check_claims
from benchmarks.sweeps import sweep_tables

BASE_PPL = 80.0


def row(label, central, proxy, *, group=None, max_records=400, gains=None, bytes_down=1000.0):
    """A perplexity summary row built by hand (no per-record results: no utility interval)."""
    per_seed = {s: {"central": c, "proxy": p, "base": BASE_PPL,
                    **{f"gain:{a}": g[s] for a, g in (gains or {}).items()}}
                for s, (c, p) in enumerate(zip(central, proxy, strict=True))}
    n = len(central)
    recovery = {a: {"recovered_gain": {"value": sum(g) / len(g), "ci": None, "k": n, "n": n,
                                       "reasons": []}} for a, g in (gains or {}).items()}
    leak = {"auc_minus_control": {"value": 0.1, "ci": [0.02, 0.18], "k": n, "n": n,
                                  "reasons": []}}
    no_ci = {"value": None, "ci": None, "seeds": n, "why": "no interval: built by hand"}
    return {"group": {"quant": label, **(group or {})}, "bits": label, "metric": "perplexity",
            "model": "m", "data": "d", "base": BASE_PPL, "seeds": n,
            "central": (sum(central) / n, None), "proxy": (sum(proxy) / n, None),
            "utility": {m: no_ci for m in ("central", "proxy", "base")},
            "recovered": (sum(proxy) / n, None), "bytes_down": (bytes_down, None),
            "recovery_attack": "as-is", "per_seed": per_seed,
            "recovery_detail": recovery, "leak_central": leak, "leak_proxy": leak,
            "leak_update": None, "config": {"data": {"max_records": max_records}}}


def claim(lines, letter):
    return next(line for line in lines if line.startswith(f"- ({letter})"))


# seeds differ a lot in level (different records), little within a seed
LEVELS = [40.0, 50.0, 60.0]


def setting(nf_central, nf_proxy):
    """fp32 and nf-2 cells of three seeds; nf-2's perplexities as multiples of fp32's, per seed
    (the same records: nf-2's record losses are fp32's shifted)."""
    cells = []
    for s, level in enumerate(LEVELS):
        cells.append(cell(s, "fp32", lm_records(s, level=level,
                                                factors={"central": 1.0, "proxy": 1.0})))
        cells.append(cell(s, "nf-2", lm_records(
            s, level=level, factors={"central": nf_central[s], "proxy": nf_proxy[s]})))
    return rows_of(cells)


def test_a_small_consistent_loss_holds_and_a_large_one_does_not():
    # log(80/40..60) ~ 0.29-0.69 gained; nf-2 loses ~1 % of the log-ppl gain on every seed
    held = check_claims(setting([1.003] * 3, [1.003] * 3))
    assert "**held**" in claim(held, "a") and "paired over test records" in claim(held, "a")
    large = setting([1.15] * 3, [1.15] * 3)
    assert "**not held**" in claim(check_claims(large), "a")
    # unpaired, the seeds' levels (40..60 ppl) would swamp a 15 % loss
    nf2 = next(r for r in large if r["bits"] == "nf-2")
    assert nf2["utility"]["central"]["ci"][1] - nf2["utility"]["central"]["ci"][0] > 10


def test_b_needs_the_proxy_worse_beyond_noise_on_paired_seeds():
    lines = check_claims(setting([1.0] * 3, [1.4] * 3))  # keeps well under 90 % of the gain
    assert "**held**" in claim(lines, "b") and "**held**" in claim(lines, "c")
    assert "no recovery attack ran" in claim(lines, "d")
    mixed = setting([1.0] * 3, [1.4, 0.7, 1.4])
    # the seeds disagree: the interval allows both no gap and a large one
    assert "**not resolved**" in claim(check_claims(mixed), "b")


def test_sweep_table_orders_the_swept_rows_around_the_main_row():
    full = {"quant.scope": "full"}
    gains = {"local-finetune": [0.1, 0.2, 0.3]}
    rows = [row("nf-4", LEVELS, LEVELS, group=full, max_records=400, gains=gains),
            row("nf-4", LEVELS, LEVELS, group={**full, "data.max_records": 1600},
                max_records=1600, gains=gains),
            row("nf-4", LEVELS, LEVELS, group={**full, "data.max_records": 200},
                max_records=200, gains=gains),
            row("nf-4", LEVELS, LEVELS, group={"quant.scope": "adapter"})]  # another setting
    lines = sweep_tables(rows)
    assert lines[0].startswith("### Sweep of `data.max_records`")
    table = [line for line in lines if line.startswith("| ") and not line.startswith("| data")]
    assert [line.split(" | ")[0] for line in table] == ["| 200", "| 400", "| 1600"]
    assert "gain local-finetune" in lines[4] and "0.20 (3/3)" in table[0]
    assert "+0.10 [+0.02, +0.18] / +0.10 [+0.02, +0.18] / –" in table[0]
    assert "| 50.000 | 50.000 |" in table[0]  # no records: the mean without an interval
    assert sweep_tables(rows[:1]) == []


def test_cells_without_per_record_results_leave_the_claims_not_judged():
    cells = [cell(s, q, None, final={m: {"perplexity": 40.0 + s, "loss": 3.7}
                                     for m in ("central", "proxy", "base")})
             for s in range(2) for q in ("fp32", "nf-2")]
    lines = check_claims(rows_of(cells))
    assert "**not judged**" in claim(lines, "a")
    assert "4 of 4 cells lack per-record test results" in claim(lines, "a")
    assert "**not judged**" in claim(lines, "b")


def test_d_says_none_when_the_recovered_model_is_worse_than_the_proxy():
    rows = setting([1.0] * 3, [1.4] * 3)
    nf2 = next(r for r in rows if r["bits"] == "nf-2")
    nf2["recovery_attack"] = "local-finetune"
    nf2["recovered"] = (nf2["proxy"][0] * 1.5, None)
    worse = claim(check_claims(rows), "d")
    assert "none by local-finetune: the recovered model is worse than the proxy" in worse
    assert "%" not in worse  # no share of the gap is computed from it
    # halfway between proxy and central on the log scale: half the gap
    nf2["recovered"] = ((nf2["proxy"][0] * nf2["central"][0]) ** 0.5, None)
    assert "50% by local-finetune" in claim(check_claims(rows), "d")


def test_a_is_not_resolved_when_its_interval_straddles_the_margin():
    # nf-2 loses ~0 on average but +-25 % of the gain from seed to seed: the sample cannot tell
    noisy = setting([1.12, 0.89, 1.0], [1.12, 0.89, 1.0])
    assert "**not resolved**" in claim(check_claims(noisy), "a")


def test_b_is_not_held_when_even_the_worst_gap_keeps_the_gain():
    lines = check_claims(setting([1.0] * 3, [1.001] * 3))  # worse beyond noise, but negligibly
    assert "**not held**" in claim(lines, "b")


def test_b_and_d_are_not_judged_when_central_gained_nothing():
    rows = setting([80 / lv for lv in LEVELS], [2.0] * 3)  # central = base, the proxy far worse
    for r in rows:
        r["recovery_attack"], r["recovered"] = "as-is", r["proxy"]
    lines = check_claims(rows)
    assert "**not judged**" in claim(lines, "b") and "no gain over base" in claim(lines, "b")
    assert "nf-2 not judged (central has no gain over base to recover)" in claim(lines, "d")
