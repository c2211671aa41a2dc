"""The paper's claims, checked on summary rows that have an fp32 baseline beside quantized rows.

Rows are compared within one setting: the same grid choices except the ``quant`` grid key.
Every utility comparison is a paired bootstrap (:mod:`benchmarks.bootstrap`) over the seeds both
rows ran and, within each seed, the test records (the same records for every model of one seed:
the differences are paired); perplexity is compared on the log scale (the loss). A difference is
"noise" when its 95 % percentile interval contains 0. With one seed the interval covers
test-record noise only, and the claim says so. Claims about trained models ((a), (b), (d)) are
judged only on converged settings (:mod:`benchmarks.convergence`).
(a) central utility at 2-4 bits matches fp32 FedAvg-LoRA: held when the upper end of the CI of
    what it loses is at most ``MARGIN`` (10 %) of fp32's gain over the base model (an
    equivalence test: a loss that is real but negligible still holds), not held when the lower
    end exceeds it, and "not resolved" when the interval straddles the margin (the sample cannot
    tell); not judged when fp32's own gain over base is not significant (a ratio with a
    denominator that may be 0);
(b) proxy utility is well below central: held when the proxy keeps < 90 % of the central gain
    over base and is worse than central beyond noise; not held when even the worst gap the
    interval allows keeps >= 90 % of the gain; otherwise "not resolved";
(c) downlink traffic is far below fp32 (<= 25 % of the fp32 bytes);
(d) the share of gap (b) that the suite's primary recovery attack closes (named in the suite before
    anything ran, ``as-is`` by default; reported, not judged).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from benchmarks.attack_plan import DEFAULT_RESAMPLES
from benchmarks.bootstrap import comparison_seeds, estimate, log_if
from benchmarks.convergence import gate, reference_rows

LOW_BITS = (2, 3, 4)
MARGIN = 0.10  # (a): the share of fp32's gain over base that low bits may lose
KEEP = 0.9  # (b): the proxy keeps less than this share of the central gain
CLAIMS = {
    "a": f"central at 2-4 bits matches fp32 (loses at most {MARGIN:.0%} of its gain over base)",
    "b": "proxy well below central",
    "c": "downlink far below fp32",
    "d": "share of gap (b) closed by the primary recovery attack",
}


def _bits(row: dict[str, Any]) -> int | None:
    """The bit width of a quantized variant label such as ``nf-2``; None for fp32 and others."""
    match = re.fullmatch(r".*-(\d+)", row["bits"])
    return int(match.group(1)) if match else None


def _sign(row: dict[str, Any]) -> float:
    """+1 where a higher value is worse (perplexity), -1 where it is better (accuracy)."""
    return 1.0 if row["metric"] == "perplexity" else -1.0


def _records(row: dict[str, Any]) -> dict[Any, Any]:
    return {s: r.get("records") for s, r in row["per_seed"].items()}


def _compare(parts: dict[str, tuple[dict[str, Any], list[str]]], statistic) -> dict[str, Any]:
    """A statistic of the parts' per-seed utilities (arms ``part:model``, arrays (R, S)) with its
    bootstrap interval: ``{"value", "ci", "samples", "seeds", "note"}``; no interval (``ci``
    None, ``note`` saying why) when cells lack per-record results."""
    row = next(iter(parts.values()))[0]
    seeds, common, note = comparison_seeds({k: (_records(r), m) for k, (r, m) in parts.items()})
    if seeds is None:
        return {"value": None, "ci": None, "samples": None, "seeds": common, "note": note}
    value, ci, samples = estimate(seeds, statistic, metric=row["metric"],
                                  resamples=row.get("resamples") or DEFAULT_RESAMPLES)
    return {"value": value, "ci": ci, "samples": samples, "seeds": common, "note": note}


def _mean(f, arrays) -> np.ndarray:
    return f(arrays).mean(axis=1)


def lost_share(row: dict[str, Any], fp: dict[str, Any]) -> tuple[dict, dict]:
    """(a): the share of fp32's gain over base that ``row``'s central model loses, and fp32's
    gain itself (sign-adjusted: positive = better), both paired over seeds and records."""
    f, sign = log_if(row["metric"]), _sign(row)

    def gain(u):
        return sign * (_mean(f, u["fp:base"]) - _mean(f, u["fp:central"]))

    def lost(u):
        g = gain(u)
        # a replicate where fp32 gained nothing cannot show a small loss: the worst case
        with np.errstate(divide="ignore", invalid="ignore"):
            share = sign * (_mean(f, u["q:central"]) - _mean(f, u["fp:central"])) / g
        return np.where(g > 0, share, np.inf)

    parts = {"q": (row, ["central"]), "fp": (fp, ["central", "base"])}
    return _compare(parts, lost), _compare(parts, gain)


def proxy_gap(row: dict[str, Any]) -> dict[str, Any]:
    """(b): proxy minus central (log perplexity or accuracy), paired over seeds and records."""
    f = log_if(row["metric"])
    return _compare({"r": (row, ["proxy", "central"])},
                    lambda u: _mean(f, u["r:proxy"]) - _mean(f, u["r:central"]))


def _worse(row: dict[str, Any], diff: dict[str, Any]) -> bool:
    """``diff`` (x - reference) says x is worse beyond noise (higher perplexity, lower accuracy)."""
    return diff["ci"] is not None and min(_sign(row) * e for e in diff["ci"]) > 0


def _central_gain(row: dict[str, Any]) -> float:
    """Central's gain over base, positive = better (log scale for perplexity)."""
    f = log_if(row["metric"])
    return _sign(row) * (f(row["base"]) - f(row["central"][0]))


def _kept_at_worst(row: dict[str, Any], gap: dict[str, Any]) -> float:
    """The share of the central gain (which must be > 0) the proxy keeps at the worse end of
    ``gap``'s interval."""
    return 1.0 - max(_sign(row) * e for e in gap["ci"]) / _central_gain(row)


def _kept(row: dict[str, Any], value: float) -> float:
    """The share of the central gain over base that ``value`` keeps (log scale for perplexity)."""
    f = log_if(row["metric"])
    base, central = f(row["base"]), f(row["central"][0])
    return float((f(value) - base) / (central - base)) if central != base else float("nan")


def _ci_text(c: dict[str, Any], spec: str) -> str:
    """``95 % CI [lo, hi]; how it was drawn``, or why there is none."""
    if c["ci"] is None:
        return c["note"]
    return f"95 % CI [{c['ci'][0]:{spec}}, {c['ci'][1]:{spec}}]; {c['note']}"


def _claim_a(low: list[dict], fp: dict) -> str:
    verdicts, detail = [], []
    for r in low:
        lost, gain = lost_share(r, fp)
        head = f"{r['bits']} {r['central'][0]:.4g} vs fp32 {fp['central'][0]:.4g}"
        if gain["ci"] is None:
            verdicts.append("not judged")
            detail.append(f"{head} ({gain['note']})")
        elif gain["ci"][0] <= 0:
            verdicts.append("not judged")
            detail.append(f"{head}, fp32's gain over base is not significant "
                          f"({_ci_text(gain, '+.3f')})")
        else:
            verdicts.append("held" if lost["ci"][1] <= MARGIN
                            else "not held" if lost["ci"][0] > MARGIN else "not resolved")
            detail.append(f"{head}, loses {lost['value']:.1%} of fp32's gain "
                          f"({_ci_text(lost, '.1%')})")
    verdict = _overall(verdicts)
    return f"- (a) {CLAIMS['a']}: **{verdict}** ({'; '.join(detail)})"


def _overall(verdicts: list[str]) -> str:
    """A claim over several rows: not judged if any row is, held only if every row holds, not
    held if any row does not, otherwise not resolved (some row's interval cannot tell)."""
    if "not judged" in verdicts:
        return "not judged"
    if all(v == "held" for v in verdicts):
        return "held"
    return "not held" if "not held" in verdicts else "not resolved"


def _claim_b(low: list[dict]) -> str:
    what = "log-ppl" if low[0]["metric"] == "perplexity" else low[0]["metric"]
    verdicts, detail = [], []
    for r in low:
        gap, kept = proxy_gap(r), _kept(r, r["proxy"][0])
        if not _central_gain(r) > 0:
            verdicts.append("not judged")  # a share of no gain means nothing
            detail.append(f"{r['bits']} proxy {r['proxy'][0]:.4g} vs central {r['central'][0]:.4g}"
                          f" (central has no gain over base {r['base']:.4g} to keep)")
            continue
        verdicts.append("not judged" if gap["ci"] is None
                        else "held" if kept < KEEP and _worse(r, gap)
                        else "not held" if _kept_at_worst(r, gap) >= KEEP else "not resolved")
        diff = (f"{what} diff {gap['value']:+.3f}, {_ci_text(gap, '+.3f')}"
                if gap["value"] is not None else gap["note"])
        detail.append(f"{r['bits']} proxy {r['proxy'][0]:.4g} vs central {r['central'][0]:.4g} "
                      f"(keeps {kept:.0%} of the gain; {diff})")
    verdict = _overall(verdicts)
    return f"- (b) {CLAIMS['b']}: **{verdict}** ({'; '.join(detail)})"


def _claim_d(low: list[dict]) -> str:
    f, closed = log_if(low[0]["metric"]), []
    for r in low:
        if r["recovery_attack"] == "–":
            continue
        gap = proxy_gap(r)
        if not _central_gain(r) > 0:
            closed.append(f"{r['bits']} not judged (central has no gain over base to recover)")
        elif gap["ci"] is None:
            closed.append(f"{r['bits']} not judged (the gap has {gap['note']})")
        elif not _worse(r, gap) or _kept(r, r["proxy"][0]) >= 1.0:
            closed.append(f"{r['bits']} no gap to close (proxy not worse than central beyond noise)")
        else:
            got = f(r["recovered"][0]) - f(r["proxy"][0])
            share = got / (f(r["central"][0]) - f(r["proxy"][0]))
            if share < 0:  # a share of a small gap would read as e.g. -3562 %
                closed.append(f"{r['bits']} none by {r['recovery_attack']}: the recovered model "
                              f"is worse than the proxy it starts from ({r['recovered'][0]:.4g} "
                              f"vs {r['proxy'][0]:.4g})")
                continue
            closed.append(f"{r['bits']} {share:.0%} by {r['recovery_attack']} (the recovered "
                          "model's utility is a mean over seeds: no interval)")
    return f"- (d) {CLAIMS['d']}: " + ("; ".join(closed) or "no recovery attack ran")


def _unconverged(letter: str, blocking: list[str]) -> str:
    return (f"- ({letter}) {CLAIMS[letter]}: **not judged: not converged** (rows "
            f"{', '.join(blocking)})")


def check_claims(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: one block per setting that has an fp32 baseline."""
    settings: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        key = tuple(sorted((k, v) for k, v in r["group"].items() if k != "quant"))
        settings.setdefault(key, []).append(r)
    references = reference_rows(rows)
    lines: list[str] = []
    for key, rs in settings.items():
        base = [r for r in rs if r["bits"] == "fp32"]
        low = [r for r in rs if _bits(r) in LOW_BITS]
        if not base or not low:
            continue
        fp = base[0]
        name = ", ".join(f"{k}={v}" for k, v in key) or "all cells"
        blocking, note = gate(fp, references, sorted(fp["per_seed"]))
        lines += [f"### Claims, {name} ({fp['data']} on {fp['model']}, {fp['metric']})", "",
                  f"Convergence: {note}.", ""]
        lines.append(_unconverged("a", blocking) if blocking else _claim_a(low, fp))
        lines.append(_unconverged("b", blocking) if blocking else _claim_b(low))
        ratios = [(r, r["bytes_down"][0] / fp["bytes_down"][0]) for r in low]
        c_ok = all(x <= 0.25 for _, x in ratios)
        detail = "; ".join(f"{r['bits']} {x:.1%}" for r, x in ratios)
        lines.append(f"- (c) {CLAIMS['c']}: **{'held' if c_ok else 'not held'}** "
                     f"(bytes per round vs fp32: {detail}; does not depend on training)")
        lines.append(_unconverged("d", blocking) if blocking else _claim_d(low))
        lines.append("")
    return lines
