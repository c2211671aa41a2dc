"""Converged before judged: which rows of a report may carry a claim.

Each cell records ``train.convergence`` (``{"converged": true | false | null, "reason": ...}``)
and ``train.selection`` (``{"round": int, "by": "validation" | "last"}``: the round its final
models come from). A setting (every grid choice but the bit width and the training method) of
one seed is converged when its fp32 FedLPP cell is: claims about trained models are judged only
when every seed of their setting is. Cells written before convergence was recorded have no
``convergence``: their convergence is *unknown*, and the claims are judged with that said.
"""

from __future__ import annotations

from typing import Any

SETTING_FREE = ("quant", "seed", "method", "fed.method")  # grid keys a setting does not fix


def setting_key(row: dict[str, Any]) -> tuple:
    """The setting of a summary row: its grid choices except bits, seed and method."""
    return tuple(sorted((k, str(v)) for k, v in row["group"].items() if k not in SETTING_FREE))


def _is_reference(row: dict[str, Any]) -> bool:
    """The row that decides its setting's convergence: fp32, trained by FedLPP."""
    method = row.get("config", {}).get("fed", {}).get("method", "fedlpp")
    return row["bits"] == "fp32" and method == "fedlpp"


def reference_rows(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Setting -> its fp32 FedLPP row."""
    return {setting_key(r): r for r in rows if _is_reference(r)}


def gate(row: dict[str, Any], references: dict[tuple, dict[str, Any]],
         seeds: list[Any]) -> tuple[list[str], str]:
    """(rows that block the claims on ``row``'s setting over ``seeds``, a note for the report).

    A row blocks when the fp32 FedLPP cell of its seed has ``converged`` other than true (false,
    or null: the curve could not tell); cells that do not record convergence (older reports)
    block nothing and the note says "convergence unknown".
    """
    ref = references.get(setting_key(row))
    if ref is None:
        return [], "convergence unknown (no fp32 FedLPP row in this setting)"
    unknown, blocking, why = [], [], []
    for seed in seeds:
        found = ref["per_seed"].get(seed, {}).get("convergence")
        if found is None:
            unknown.append(seed)
        elif found.get("converged") is not True:
            blocking.append(f"{ref['bits']} seed {seed}")
            what = "not established" if found.get("converged") is None else "not converged"
            why.append(f"{blocking[-1]}: {what}"
                       + (f", {found['reason']}" if found.get("reason") else ""))
    if blocking:
        return blocking, f"not converged ({'; '.join(why)})"
    if unknown:
        return [], ("convergence unknown" + ("" if len(unknown) == len(seeds) else
                                             f" (seeds {', '.join(map(str, unknown))})"))
    return [], "converged"


def converged_cell(per_seed: dict[Any, dict[str, Any]]) -> str:
    """The main table's "converged" column for one row: over its seeds."""
    words = {True: "yes", False: "no", None: "not established", "missing": "unknown"}
    states = {s: (r.get("convergence") or {}).get("converged", "missing")
              if r.get("convergence") is not None else "missing" for s, r in per_seed.items()}
    if len(set(states.values())) == 1:
        return words[next(iter(states.values()))]
    by_state: dict[str, list[str]] = {}
    for seed, state in states.items():
        by_state.setdefault(words[state], []).append(str(seed))
    return "; ".join(f"{w}: seed {', '.join(s)}" for w, s in by_state.items())


def selected_round(per_seed: dict[Any, dict[str, Any]], rounds: int) -> str:
    """The main table's "round" column: the round each seed's final models come from."""
    picks = [r.get("selection") for r in per_seed.values()]
    if not any(picks):
        return f"{rounds} (last; not recorded)"
    shown = ", ".join(str(p["round"]) if p else "?" for p in picks)
    by = sorted({p.get("by", "?") for p in picks if p})
    return f"{shown} ({'/'.join(by)})"
