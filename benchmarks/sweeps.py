"""Sweep tables: a plain config key varied by a grid of its own, beside the main matrix's row.

A grid key with a dot (``data.max_records``, not a labelled choice such as ``quant``) that only
some rows carry is a sweep. Its rows, plus the row that matches every other grid choice (the
main matrix's cell at the config's own value of the key), form one table ordered by the key:
utility, what each recovery attack recovers, and the primary membership attack's leakage over
its control. The paper suite's client
data-size sweep asks whether ``local-finetune`` closes the privacy gap when clients hold more data.
"""

from __future__ import annotations

from typing import Any

from benchmarks.stats import fmt, fmt_combined

TARGETS = ("central", "proxy", "update")


def _value(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _sweep_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The rows carrying ``key`` and the rows matching them on every other grid choice."""
    swept = [r for r in rows if key in r["group"]]
    others = {tuple(sorted((k, v) for k, v in r["group"].items() if k != key)) for r in swept}
    main = [r for r in rows if key not in r["group"]
            and tuple(sorted(r["group"].items())) in others]
    return sorted(swept + main, key=lambda r: _value(r["config"], key))


def sweep_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Config keys that only some rows carry: each a sweep."""
    return list(dict.fromkeys(k for r in rows for k in r["group"]
                              if "." in k and not all(k in x["group"] for x in rows)))


def sweep_tables(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: one table per sweep key (none when the suite has no sweep)."""
    lines: list[str] = []
    for key in sweep_keys(rows):
        rs = _sweep_rows(rows, key)
        attacks = list(dict.fromkeys(a for r in rs for a in r["recovery_detail"]))
        r0 = rs[0]
        fixed = ", ".join(f"{k}={v}" for k, v in r0["group"].items() if k != key)
        lines += [f"### Sweep of `{key}` ({r0['data']} on {r0['model']}: {fixed})", "",
                  f"utility = {r0['metric']} (mean over seeds [95 % bootstrap interval over seeds "
                  "and test records]); recovered gain per "
                  "recovery attack (1.0 = the whole central gain over base recovered; a ratio of "
                  "means over the seeds where it is defined, k/n); membership: the suite's primary "
                  "attack per target, AUC − its control on the untrained model.", "",
                  f"| {key} | seeds | central | proxy | "
                  + " | ".join(f"gain {a}" for a in attacks)
                  + " | AUC − control central / proxy / update |",
                  "|" + "---|" * (5 + len(attacks))]
        for r in rs:
            gains = [fmt_combined(r["recovery_detail"].get(a, {}).get("recovered_gain"),
                                  seeds=True) for a in attacks]
            leak = [fmt_combined((r.get(f"leak_{t}") or {}).get("auc_minus_control"), sign=True)
                    for t in TARGETS]
            central, proxy = (fmt(r[m][0], r["utility"][m]["ci"]) for m in ("central", "proxy"))
            lines.append(f"| {_value(r['config'], key)} | {r['seeds']} | {central} | {proxy} | "
                         + " | ".join(gains) + " | " + " / ".join(leak) + " |")
        lines.append("")
    return lines
