"""The paper's claims, checked on summary rows that have an fp32 baseline beside quantized rows.

Rows are compared within one setting: the same grid choices except the ``quant`` grid key.
Comparisons are paired by seed (one seed = the same records, splits and LoRA init in every row),
on the loss scale for perplexity (log perplexity), and a difference is "noise" when its 95 %
Student-t CI over the seeds contains 0. With fewer than 3 seeds there is no interval, and claims
(a) and (b) are reported as "not judged" (the points are still shown).
(a) central utility at 2-4 bits matches fp32 FedAvg-LoRA: the upper end of the CI of what it loses
    is at most ``MARGIN`` (10 %) of fp32's gain over the base model (an equivalence test: a loss
    that is real but negligible still holds, a noisy one that could be large does not);
(b) proxy utility is well below central: the proxy keeps < 90 % of the central gain over base
    and is worse than central beyond noise;
(c) downlink traffic is far below fp32 (<= 25 % of the fp32 bytes);
(d) the share of gap (b) that the suite's primary recovery attack closes (named in the suite before
    anything ran, ``as-is`` by default; reported, not judged).
"""

from __future__ import annotations

import math
import re
from typing import Any

from benchmarks.stats import mean_ci

LOW_BITS = (2, 3, 4)
MARGIN = 0.10  # (a): the share of fp32's gain over base that low bits may lose


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


def _paired(a: dict[str, Any], col_a: str, b: dict[str, Any], col_b: str) -> tuple[float, float | None]:
    """Mean and CI of ``a[col_a] - b[col_b]`` over the seeds both rows ran (log for perplexity)."""
    seeds = sorted(set(a["per_seed"]) & set(b["per_seed"]))
    return mean_ci([_log_if_ppl(a, a["per_seed"][s][col_a]) - _log_if_ppl(b, b["per_seed"][s][col_b])
                    for s in seeds])


def _worse_sign(row: dict[str, Any]) -> float:
    """+1 where a higher value is worse (perplexity), -1 where it is better (accuracy)."""
    return 1.0 if row["metric"] == "perplexity" else -1.0


def _worse(row: dict[str, Any], diff: tuple[float, float | None]) -> bool:
    """``diff`` (x - reference) says x is worse beyond noise (higher perplexity, lower accuracy)."""
    return _worse_sign(row) * diff[0] - (diff[1] or 0.0) > 0


def _lost_share(row: dict[str, Any], fp: dict[str, Any]) -> tuple[float, float | None] | None:
    """(a): the share of fp32's gain over base that ``row``'s central model loses, and the upper
    end of its CI (None without an interval); None when fp32 gained nothing."""
    sign = _worse_sign(row)
    gain = sign * (_log_if_ppl(fp, fp["base"]) - _log_if_ppl(fp, fp["central"][0]))
    if not gain > 0:
        return None
    diff = _paired(row, "central", fp, "central")
    upper = None if diff[1] is None else (sign * diff[0] + diff[1]) / gain
    return sign * diff[0] / gain, upper


def _fmt_diff(row: dict[str, Any], diff: tuple[float, float | None]) -> str:
    what = "log-ppl" if row["metric"] == "perplexity" else row["metric"]
    ci = f" ± {diff[1]:.3f}" if diff[1] is not None else " (no interval: < 3 seeds)"
    return f"{what} diff {diff[0]:+.3f}{ci}"


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
        lost = [(r, _lost_share(r, fp)) for r in low]
        a_ok = all(x is not None and x[1] is not None and x[1] <= MARGIN for _, x in lost)
        detail = "; ".join(
            f"{r['bits']} {r['central'][0]:.4g} vs fp32 {fp['central'][0]:.4g}, "
            + (f"loses {x[0]:.1%} of fp32's gain "
               + (f"(CI up to {x[1]:.1%})" if x[1] is not None else "(no interval: < 3 seeds)")
               if x else "fp32 gained nothing over base") for r, x in lost)
        unjudged = any(x is not None and x[1] is None for _, x in lost)
        verdict = "not judged" if unjudged else "held" if a_ok else "not held"
        lines.append(f"- (a) central at 2-4 bits matches fp32 (loses at most {MARGIN:.0%} of its "
                     f"gain over base): **{verdict}** ({detail})")
        keeps = [(r, _gain(r, r["proxy"][0]), _paired(r, "proxy", r, "central")) for r in low]
        b_ok = all(g < 0.9 and _worse(r, d) for r, g, d in keeps)
        b_verdict = ("not judged" if any(d[1] is None for _, _, d in keeps)
                     else "held" if b_ok else "not held")
        detail = "; ".join(f"{r['bits']} proxy {r['proxy'][0]:.4g} vs central "
                           f"{r['central'][0]:.4g} (keeps {g:.0%} of the gain, {_fmt_diff(r, d)})"
                           for r, g, d in keeps)
        lines.append(f"- (b) proxy well below central: **{b_verdict}** "
                     f"({detail})")
        ratios = [(r, r["bytes_down"][0] / fp["bytes_down"][0]) for r in low]
        c_ok = all(x <= 0.25 for _, x in ratios)
        detail = "; ".join(f"{r['bits']} {x:.1%}" for r, x in ratios)
        lines.append(f"- (c) downlink far below fp32: **{'held' if c_ok else 'not held'}** "
                     f"(bytes per round vs fp32: {detail})")
        closed = []
        for r in low:
            if r["recovery_attack"] == "–":
                continue
            diff = _paired(r, "proxy", r, "central")
            if diff[1] is None:
                closed.append(f"{r['bits']} not judged (no interval for the gap: < 3 seeds)")
                continue
            if not _worse(r, diff) or _gain(r, r["proxy"][0]) >= 1.0:
                closed.append(f"{r['bits']} no gap to close (proxy not worse than central "
                              "beyond noise)")
                continue
            gap = _log_if_ppl(r, r["central"][0]) - _log_if_ppl(r, r["proxy"][0])
            got = _log_if_ppl(r, r["recovered"][0]) - _log_if_ppl(r, r["proxy"][0])
            closed.append(f"{r['bits']} {got / gap:.0%} by {r['recovery_attack']}")
        lines.append(f"- (d) share of gap (b) closed by the primary recovery attack: "
                     f"{'; '.join(closed) or 'no recovery attack ran'}")
        lines.append("")
    return lines
