"""The report's defense table and frontier figure, from hand-built cells: the accountant's epsilon
over seeds is the largest, the auditor's bound the smallest, and undefended suites show neither."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402
from synthetic_cells import cell, lm_records  # noqa: E402

from benchmarks.defense_tables import defense_tables, describe_defense  # noqa: E402
from benchmarks.figures import frontier  # noqa: E402
from benchmarks.report import group_cells, summarize  # noqa: E402

DP = [{"name": "dp-sgd", "noise_multiplier": 1.0}]


def _membership(lb: float | None, control: float) -> dict:
    bound = {"value": lb, "reason": None if lb is not None else "too few records"}
    return {"status": "ok", "kind": "membership", "attack": "loss", "config": {"target": "central"},
            "metrics": {"auc": {"value": 0.6}, "auc_minus_control": {"value": 0.1, "ci": [0.0, 0.2]},
                        "epsilon_lb": bound, "control": {"epsilon_lb": {"value": control}}}}


def _cell(seed: int, setting: str, *, defenses=(), eps=None, lb=0.2, control=0.0):
    c = cell(seed, "nf-2", lm_records(seed, level=40.0, factors={"central": 1.0, "proxy": 1.02}))
    c["labels"] = {"setting": setting, "seed": seed}
    c["config"]["defenses"] = list(defenses)
    c["train"]["defenses"] = ([{"name": "dp-sgd", "delta": 1e-5, "guarantee": "record-level",
                                "epsilon": {"value": eps, "reason": None}, "clipped_share": 0.5}]
                              if defenses else [])
    c["attacks"] = [_membership(lb, control)]
    return c


def _rows(cells):
    return summarize(group_cells({"grid_keys": ["setting", "seed"]}, cells))


def test_the_defense_table_shows_the_largest_epsilon_and_the_smallest_bound_over_seeds():
    cells = [_cell(0, "none"), _cell(1, "none"),
             _cell(0, "dp", defenses=DP, eps=2.5, lb=0.4, control=0.1),
             _cell(1, "dp", defenses=DP, eps=2.7, lb=0.3, control=0.0)]
    text = "\n".join(defense_tables(_rows(cells), cells))
    dp_line = next(line for line in text.splitlines() if line.startswith("| dp |"))
    assert "2.70 (δ=1e-05)" in dp_line and "0.30 (0.00)" in dp_line and "| 0.50 |" in dp_line
    none_line = next(line for line in text.splitlines() if line.startswith("| none |"))
    assert "| none |" in none_line and "| – |" in none_line  # no accountant without DP


def test_an_undefined_bound_is_a_dash_with_its_reason():
    cells = [_cell(0, "dp", defenses=DP, eps=2.5, lb=None)]
    text = "\n".join(defense_tables(_rows(cells), cells))
    assert "ε lower bound –: too few records" in text


def test_undefended_suites_have_no_defense_table_or_frontier():
    cells = [_cell(0, "none")]
    assert defense_tables(_rows(cells), cells) == []
    assert frontier.figures(cells) == []


def test_the_frontier_has_one_point_per_defense_setting():
    cells = [_cell(0, "none"), _cell(0, "dp", defenses=DP, eps=2.5)]
    ((name, fig),) = frontier.figures(cells)
    assert name == "defense_frontier.png"
    left = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in left.collections) == 2
    matplotlib.pyplot.close(fig)


def test_describe_defense_names_rules_and_adversaries():
    config = {"defenses": [{"name": "dp-fedavg", "clip": 4.5}], "aggregator": {"name": "median"},
              "adversaries": [{"behaviour": "scaled", "clients": [3], "factor": 10.0}]}
    assert describe_defense(config) == ("dp-fedavg(clip=4.5) + aggregator median + "
                                        "adversary scaled(clients=[3], factor=10.0)")
