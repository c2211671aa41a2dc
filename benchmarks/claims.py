"""The paper's claims, checked on summary rows that have an fp32 baseline beside quantized rows.

Rows are compared within one setting: the same grid choices except the ``quant`` grid key.
(a) central utility at 2-4 bits is within noise of fp32 FedAvg-LoRA (95 % CIs overlap);
(b) proxy utility is well below central (the proxy keeps < 90 % of the central gain over base);
(c) downlink traffic is far below fp32 (<= 25 % of the fp32 bytes);
(d) the share of gap (b) that the best recovery attack closes (reported, not judged).
"""

from __future__ import annotations

import math
import re
from typing import Any

LOW_BITS = (2, 3, 4)


def _log_if_ppl(row: dict[str, Any], value: float) -> float:
    # perplexity gains are compared in log space (i.e. on the loss)
    return math.log(value) if row["metric"] == "perplexity" else value


def _gain(row: dict[str, Any], value: float) -> float:
    base, central = _log_if_ppl(row, row["base"]), _log_if_ppl(row, row["central"][0])
    return (_log_if_ppl(row, value) - base) / (central - base) if central != base else math.nan


def _bits(row: dict[str, Any]) -> int | None:
    """The bit width of a quantized variant label such as ``nf-2``; None for fp32 and others."""
    match = re.fullmatch(r".*-(\d+)", row["bits"])
    return int(match.group(1)) if match else None


def _overlap(a: tuple[float, float | None], b: tuple[float, float | None]) -> bool:
    return abs(a[0] - b[0]) <= (a[1] or 0.0) + (b[1] or 0.0)


def check_claims(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: one block per setting that has an fp32 baseline."""
    settings: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        key = tuple(sorted((k, v) for k, v in r["group"].items() if k != "quant"))
        settings.setdefault(key, []).append(r)
    lines: list[str] = []
    for key, rs in settings.items():
        base = [r for r in rs if r["bits"] == "fp32"]
        low = [r for r in rs if _bits(r) in LOW_BITS]
        if not base or not low:
            continue
        fp = base[0]
        name = ", ".join(f"{k}={v}" for k, v in key) or "all cells"
        lines += [f"### Claims, {name} ({fp['data']} on {fp['model']}, {fp['metric']})", ""]
        a_ok = all(_overlap(r["central"], fp["central"]) for r in low)
        detail = "; ".join(f"{r['bits']} {r['central'][0]:.4g} vs fp32 {fp['central'][0]:.4g}"
                           for r in low)
        lines.append(f"- (a) central at 2-4 bits within noise of fp32: "
                     f"**{'held' if a_ok else 'not held'}** ({detail})")
        keeps = [(r, _gain(r, r["proxy"][0])) for r in low]
        b_ok = all(g < 0.9 and not _overlap(r["proxy"], r["central"]) for r, g in keeps)
        detail = "; ".join(f"{r['bits']} proxy {r['proxy'][0]:.4g} vs central "
                           f"{r['central'][0]:.4g} (keeps {g:.0%} of the gain)" for r, g in keeps)
        lines.append(f"- (b) proxy well below central: **{'held' if b_ok else 'not held'}** "
                     f"({detail})")
        ratios = [(r, r["bytes_down"][0] / fp["bytes_down"][0]) for r in low]
        c_ok = all(x <= 0.25 for _, x in ratios)
        detail = "; ".join(f"{r['bits']} {x:.1%}" for r, x in ratios)
        lines.append(f"- (c) downlink far below fp32: **{'held' if c_ok else 'not held'}** "
                     f"(bytes per round vs fp32: {detail})")
        closed = []
        for r in low:
            if r["best_attack"] == "–":
                continue
            if _overlap(r["proxy"], r["central"]) or _gain(r, r["proxy"][0]) >= 1.0:
                closed.append(f"{r['bits']} no gap to close (proxy within noise of central)")
                continue
            gap = _log_if_ppl(r, r["central"][0]) - _log_if_ppl(r, r["proxy"][0])
            got = _log_if_ppl(r, r["recovered"][0]) - _log_if_ppl(r, r["proxy"][0])
            closed.append(f"{r['bits']} {got / gap:.0%} by {r['best_attack']}")
        lines.append(f"- (d) share of gap (b) closed by the best recovery attack: "
                     f"{'; '.join(closed) or 'no recovery attack ran'}")
        lines.append("")
    return lines
