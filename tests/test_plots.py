"""The report's figures, drawn from small synthetic cells: one per question, old cells skipped
cleanly, off-scale gains pinned and labelled, the ROC's resolution limit drawn at 1/n."""

import math

import matplotlib.pyplot as plt
import pytest

from benchmarks.figures import learning, membership, model_privacy, privacy_utility, recovery, roc
from benchmarks.figures.common import GAIN_LIMITS
from benchmarks.plots import write_plots

TARGETS = ("central", "proxy", "update")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def lm(ppl):
    return {"loss": math.log(ppl), "perplexity": ppl}


def estimate(value, reason=None, ci=None):
    return {"value": value, "ci": ci, "se": None, "reason": reason}


def roc_points(n):
    fpr = [i / n for i in range(n + 1)]
    return {"fpr": [0.0, *fpr], "tpr": [0.0, 0.2, *[min(1.0, f + 0.2) for f in fpr[1:]]]}


def membership_result(target, nonmembers, leak):
    return {"attack": "loss", "kind": "membership", "status": "ok",
            "config": {"target": target},
            "metrics": {"auc": estimate(0.5 + leak), "control_auc": estimate(0.5),
                        "auc_minus_control": estimate(leak, ci=[leak - 0.1, leak + 0.1]),
                        "control": {"roc": {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}},
                        "num_members": nonmembers, "num_nonmembers": nonmembers,
                        "min_fpr": 1 / nonmembers, "roc": roc_points(nonmembers)}}


def recovery_result(name, recovered_gain, central_gain=0.5, control=None):
    no_control = estimate(None, "the attack has no no-payload control")
    return {"attack": name, "kind": "recovery", "status": "ok", "config": {},
            "metrics": {"recovered_gain": recovered_gain, "central_gain": estimate(central_gain),
                        "control_gain": estimate(control) if control is not None else no_control,
                        "gain_over_control": no_control if control is None else estimate(
                            recovered_gain["value"] - control), "gain_metric": "loss"}}


def cell(quant="nf-2", bits=2, seed=0, *, central=40.0, proxy=60.0, base=80.0,
         recovered_gain=0.8, nonmembers=20, block_size=64, leak=0.1):
    """One cell of the current schema (LM task): learning curve, selection, convergence."""
    rounds = [{"round": r, "central": lm(base - (base - central) * r / 4),
               "proxy": lm(base - (base - proxy) * r / 4), "train_loss": 4.0 - r / 10,
               "validation": {"central": lm(base - r), "proxy": lm(base - r / 2)}}
              for r in range(1, 5)]
    gain = recovered_gain if isinstance(recovered_gain, dict) else estimate(recovered_gain)
    return {
        "id": f"{quant}-{seed}", "status": "ok",
        "labels": {"task": "lm", "partition": "iid", "quant.scope": "adapter", "quant": quant,
                   "seed": seed},
        "config": {"seed": seed, "data": {"name": "kjv-lm"},
                   "quant": {"name": "none" if quant == "fp32" else "nf", "bits": bits,
                             "scope": "adapter", "block_size": block_size},
                   "lora": {"r": 8, "alpha": 16.0}},
        "attack_plan": {"targets": list(TARGETS), "primary": dict.fromkeys(TARGETS, "loss"),
                        "primary_recovery": "local-finetune"},
        "train": {"final": {"central": lm(central), "proxy": lm(proxy), "base": lm(base)},
                  "rounds": rounds,
                  "start": {"central": lm(base), "validation": {"central": lm(base)}},
                  "selection": {"round": 3, "by": "validation", "metric": "loss"},
                  "convergence": {"converged": seed == 0, "reason": "validation loss flat",
                                  "last_rounds": 2, "share": 0.1, "improvement_share": 0.01}},
        "attacks": [recovery_result("as-is", gain),
                    recovery_result("local-finetune", gain, control=0.3),
                    *[membership_result(t, nonmembers, leak) for t in TARGETS]],
    }


def old(c):
    """The same cell as written before learning curves were stored."""
    c["train"] = {"final": c["train"]["final"],
                  "rounds": [{"round": 4, **{k: c["train"]["rounds"][-1][k]
                                             for k in ("central", "proxy", "train_loss")}}]}
    return c


def suite(**kw):
    return [cell(q, b, s, **kw) for q, b in (("nf-1", 1), ("nf-2", 2), ("fp32", 32))
            for s in (0, 1)]


def texts(fig):
    """Every text on a figure (titles, captions, point labels), whitespace collapsed."""
    found = [t.get_text() for ax in fig.axes for t in ax.texts] + [
        t.get_text() for t in fig.texts]
    return " ".join(" ".join(found).split())


def points(ax):
    return [tuple(p) for c in ax.collections for p in c.get_offsets()]


def test_every_figure_is_drawn_from_cells_of_the_current_schema(tmp_path):
    paths = write_plots([], suite(), tmp_path)
    assert [p.name for p in paths] == [
        "learning_curves_lm_iid_scope_adapter.png", "recovery_kjv-lm.png",
        "privacy_utility.png", "model_privacy.png", "membership_kjv-lm.png", "roc_loss.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert not plt.get_fignums()  # every figure closed once written


def test_old_cells_skip_the_learning_curves_and_membership_figures_cleanly(tmp_path):
    cells = [old(c) for c in suite()]
    for c in cells:  # before controls: bare recovered gains, no AUC − control
        for a in c["attacks"]:
            a["metrics"] = {k: v for k, v in a["metrics"].items()
                            if k not in ("auc_minus_control", "control_gain",
                                         "gain_over_control", "control")}
            if a["kind"] == "recovery":
                a["metrics"]["recovered_gain"] = a["metrics"]["recovered_gain"]["value"]
    names = [p.name for p in write_plots([], cells, tmp_path)]
    assert not any(n.startswith(("learning_curves", "membership")) for n in names)
    assert {"recovery_kjv-lm.png", "privacy_utility.png", "roc_loss.png"} <= set(names)


def test_learning_curves_show_start_fp32_reference_and_selected_round():
    [(name, fig)] = learning.figures(suite())
    panels = {ax.get_title().split("\n")[0]: ax for ax in fig.axes if ax.get_visible()}
    assert list(panels) == ["nf-1", "nf-2", "fp32"]
    ax = panels["nf-2"]
    labels = [line.get_label() for line in ax.lines]
    assert "fp32 run's central" in labels and "fp32 run's central" not in [
        line.get_label() for line in panels["fp32"].lines]
    assert (0.0, 80.0) in points(ax)  # the untrained model at round 0
    assert any(list(line.get_xdata()) == [3, 3] for line in ax.lines)  # the selected round
    assert "converged 1/2" in ax.get_title() and "+1.0% of gain (> 10%)" in ax.get_title()
    assert ax.get_yscale() == "log"


def test_off_scale_recovered_gains_are_pinned_to_the_edge_and_labelled():
    cells = suite()
    for c in cells:
        if c["labels"]["quant"] == "nf-1":
            for a in c["attacks"]:
                if a["kind"] == "recovery":
                    a["metrics"]["recovered_gain"] = estimate(-3869.0)
    [(_, fig)] = privacy_utility.figures(cells)
    ax = fig.axes[0]
    assert ax.get_ylim() == GAIN_LIMITS
    assert all(GAIN_LIMITS[0] <= y <= GAIN_LIMITS[1] for _, y in points(ax))
    assert (pytest.approx(40.0), GAIN_LIMITS[0]) in points(ax)
    assert "nf-1: -3,869" in texts(fig) and "clipped to [-0.5, 1.5]" in texts(fig)
    [(_, fig)] = recovery.figures(cells)
    assert all(ax.get_ylim() == GAIN_LIMITS for ax in fig.axes if ax.get_visible())
    assert "-3,869" in texts(fig) and "2 point(s) beyond" in texts(fig)


def test_undefined_recovered_gains_are_listed_under_the_figure():
    cells = suite()
    why = "no significant central gain"
    for c in cells:
        if c["labels"]["quant"] == "nf-1":
            for metric in ("recovered_gain", "gain_over_control"):
                c["attacks"][1]["metrics"][metric] = estimate(None, why)
    [(_, fig)] = recovery.figures(cells)
    caption = texts(fig)
    assert "Recovered gain undefined (1 point(s)): lm, iid, scope=adapter · nf-1: " \
           f"local-finetune ({why})" in caption
    assert "Gain over no-payload control undefined (1 point(s))" in caption
    assert "No no-payload control (gain over control): as-is." in caption
    [(_, fig)] = privacy_utility.figures(cells)
    assert f"nf-1: {why}" in texts(fig)


def test_roc_marks_the_lowest_resolvable_fpr_at_one_over_nonmembers():
    [(name, fig)] = roc.figures(suite(nonmembers=20))
    assert name == "roc_loss.png"
    for ax in fig.axes:
        assert any(list(line.get_xdata()) == [0.05, 0.05] for line in ax.lines)
        assert ax.get_xlim()[0] < 0.05 and ax.get_xscale() == "log"
        assert ax.patches  # the unresolved region is shaded
        dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert [line.get_label() for line in dashed] == [
            "control (same attack, untrained model)"]  # one shared control curve
        assert "1/20 non-members" in " ".join(t.get_text() for t in ax.get_legend().texts)


def test_membership_leakage_is_auc_minus_control_per_target_with_ci():
    [(name, fig)] = membership.figures(suite(leak=0.2))
    assert name == "membership_kjv-lm.png"
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["nf-1", "nf-2", "fp32"]
    ys = [y for line in ax.lines if line.get_marker() == "o" for y in line.get_ydata()]
    assert len(ys) == 9 and all(y == pytest.approx(0.2) for y in ys)


def test_model_privacy_places_settings_by_gain_kept_and_lost_and_counts_skipped():
    cells = [cell("fp32", 32, s, central=40.0, proxy=40.0) for s in (0, 1)]
    cells += [cell("nf-2", 2, s, central=50.0, proxy=70.0) for s in (0, 1)]
    cells += [cell("nf-1", 1, 0, central=90.0, proxy=90.0)]  # central worse than base: skipped
    cells += [cell("nf-4", 4, 0, central=45.0, proxy=80.0, block_size=128)]
    [(_, fig)] = model_privacy.figures(cells)
    ax = fig.axes[0]
    fp32_gain = math.log(80 / 40)
    nf2 = (1 - math.log(80 / 50) / fp32_gain, math.log(80 / 70) / math.log(80 / 50))
    assert any(p == pytest.approx(nf2) for p in points(ax))
    assert any(p == pytest.approx((1 - math.log(80 / 45) / fp32_gain, 0.0)) for p in points(ax))
    assert ax.xaxis_inverted()  # lower right: central keeps its gain, the proxy none
    caption = texts(fig)
    assert "1 cell(s) skipped: central gain not > 0" in caption
    assert "block=128" in caption and "block=64" in caption  # what varies names the points
