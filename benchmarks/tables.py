"""Markdown tables of a suite report: headline tables (primary attacks) and detail tables (every
attack), one of each per setting (model, data, scope, partition)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchmarks.stats import fmt, fmt_combined, fmt_seeds

TARGETS = ("central", "proxy", "update")


def _settings(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    by_setting: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_setting[(r["model"], r["data"], r["scope"], r["partition"])].append(r)
    return by_setting


def _names(rs: list[dict[str, Any]]) -> list[str]:
    """A row is named by the grid choices that differ within its table; a plain config key (a
    sweep such as data.max_records) shows as key=value, a labelled choice by its label."""
    varying = [k for k in dict.fromkeys(k for r in rs for k in r["group"])
               if len({str(r["group"].get(k)) for r in rs}) > 1]
    return [", ".join(f"{k}={r['group'][k]}" if "." in k else str(r["group"][k])
                      for k in varying if k in r["group"]) or r["bits"] for r in rs]


def _budget(rs: list[dict[str, Any]], names: list[str]) -> str:
    budgets: dict[str, list[str]] = defaultdict(list)  # rows that train differently
    for r, name in zip(rs, names, strict=True):
        local = (f"{r['local_steps']} local steps" if r["local_steps"]
                 else f"{r['config']['fed']['local_epochs']:g} local epoch(s)")
        budgets[f"{r['clients']} client{'s' if r['clients'] > 1 else ''}, {r['rounds']} "
                f"rounds x {local}"].append(name)
    budget, *others = budgets
    return budget + "".join(f" ({', '.join(budgets[b])}: {b})" for b in others)


def _reasons(found: list[dict[str, Any] | None]) -> list[str]:
    """One line per distinct reason a shown number is empty."""
    reasons = sorted({why for c in found if c for why in c["reasons"]})
    return [f"- –: {why}" for why in reasons]


def _utility(r: dict[str, Any], model: str) -> str:
    """A model's utility: mean over seeds [bootstrap interval]."""
    value = r["base"] if model == "base" else r[model][0]
    return fmt(value, r["utility"][model]["ci"])


def _utility_notes(rs: list[dict[str, Any]]) -> list[str]:
    """Why a utility has no interval; that one seed covers record noise only."""
    why = sorted({r["utility"]["central"]["why"] for r in rs if r["utility"]["central"]["why"]})
    ones = [r for r in rs if r["seeds"] == 1 and r["utility"]["central"]["ci"] is not None]
    return ([f"- utility: {w}" for w in why]
            + (["- utility of one-seed rows: the interval covers test-record noise only"]
               if ones else []))


def _leak(r: dict[str, Any], target: str, metric: str) -> dict[str, Any] | None:
    return (r[f"leak_{target}"] or {}).get(metric)


def markdown_tables(rows: list[dict[str, Any]]) -> list[str]:
    """Headline tables: utility, the primary recovery attack and the primary membership attack
    per target (with its control), one table per setting and a row per remaining grid choice."""
    lines: list[str] = []
    for (model, data, scope, partition), rs in _settings(rows).items():
        r0, names = rs[0], _names(rs)
        recovery = sorted({r["recovery_attack"] for r in rs if r["recovery_attack"] != "–"})
        mia = " / ".join("/".join(sorted({r[f"mia_{t}"] for r in rs} - {"–"})) or "–"
                         for t in TARGETS)
        lines += [f"### {data} on {model}: scope `{scope}`, partition `{partition}`", "",
                  f"{_budget(rs, names)}; utility = {r0['metric']} (base model: "
                  f"{_utility(r0, 'base')}); seeds per row: {sorted({r['seeds'] for r in rs})}; "
                  f"recovery: `{'/'.join(recovery) or '–'}`; membership central / proxy / "
                  f"update: `{mia}`", "",
                  "| variant | central | proxy | recovered | recovered gain | gain over control "
                  "| param rel err | AUC (control) central / proxy / update | AUC − control "
                  "central / proxy / update | bytes down / up per round | grad. fidelity "
                  "| converged | round |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        shown: list[dict[str, Any] | None] = []
        for r, variant in zip(rs, names, strict=True):
            gain = r["gain"] or {}
            auc = " / ".join(
                f"{fmt_combined(_leak(r, t, 'auc'), ci=False)} "
                f"({fmt_combined(_leak(r, t, 'control_auc'), ci=False)})"
                if _leak(r, t, "auc") else "–" for t in TARGETS)
            diff = " / ".join(fmt_combined(_leak(r, t, "auc_minus_control"), sign=True)
                              if _leak(r, t, "auc") else "–" for t in TARGETS)
            shown += [gain.get("recovered_gain"), gain.get("gain_over_control"),
                      *[_leak(r, t, "auc_minus_control") for t in TARGETS]]
            lines.append(
                f"| {variant} | {_utility(r, 'central')} | {_utility(r, 'proxy')} | "
                f"{fmt_seeds(r['spread']['recovered'])} | "
                f"{fmt_combined(gain['recovered_gain'], seeds=True) if gain else '–'} | "
                f"{fmt_combined(gain['gain_over_control']) if gain else '–'} | "
                f"{fmt_combined(gain['param_rel_error'], 3, ci=False) if gain else '–'} | "
                f"{auc} | {diff} | {r['bytes_down'][0]:,.0f} / {r['bytes_up'][0]:,.0f} | "
                f"{fmt_seeds(r['spread']['fidelity'])} | {r['converged']} | {r['round']} |")
        lines += [""] + _utility_notes(rs) + _reasons(shown) + [""]
    return lines


def detail_tables(rows: list[dict[str, Any]]) -> list[str]:
    """Every membership and every recovery attack, value [95 % CI] (k/n seeds where some are
    empty), one pair of tables per setting."""
    lines: list[str] = []
    for (model, data, scope, partition), rs in _settings(rows).items():
        names = _names(rs)
        lines += [f"### {data} on {model}: scope `{scope}`, partition `{partition}`", "",
                  "| variant | target | attack | AUC | control AUC | AUC − control | "
                  "TPR@1%FPR | TPR@0.1%FPR | advantage (held-out) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        shown: list[dict[str, Any] | None] = []
        for r, variant in zip(rs, names, strict=True):
            for t in TARGETS:
                for attack, m in r["membership_detail"][t].items():
                    cols = ["auc", "control_auc", "auc_minus_control", "tpr@1%fpr",
                            "tpr@0.1%fpr", "advantage"]
                    shown += [m[c] for c in cols]
                    cells = [fmt_combined(m[c], 3 if c.startswith("tpr") else 2,
                                          sign=c == "auc_minus_control") for c in cols]
                    lines.append(f"| {variant} | {t} | {attack} | {' | '.join(cells)} |")
        lines += [""] + _reasons(shown) + ["",
                  f"| variant | attack | recovered ({rs[0]['metric']}) | recovered gain | "
                  "control gain | gain over control | param rel err | param rel err (base) |",
                  "|---|---|---|---|---|---|---|---|"]
        shown = []
        for r, variant in zip(rs, names, strict=True):
            for attack, g in r["recovery_detail"].items():
                cols = ["recovered_gain", "control_gain", "gain_over_control", "param_rel_error",
                        "param_rel_error_base"]
                shown += [g[c] for c in cols]
                cells = [fmt_combined(g[c], 3 if c.startswith("param") else 2,
                                      seeds=c.endswith("gain")) for c in cols]
                lines.append(f"| {variant} | {attack} | {fmt_seeds(g['recovered'])} | "
                             f"{' | '.join(cells)} |")
        lines += [""] + _reasons(shown) + [""]
    return lines
