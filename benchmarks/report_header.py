"""The report's opening: failed cells and attacks, how to regenerate it, the cell counts and
code version, the kernels that computed it, and what its columns and intervals are."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchmarks.attack_plan import DEFAULT_RESAMPLES
from benchmarks.bootstrap import BOOT_SEED


def header_lines(suite: dict[str, Any], cells: list[dict[str, Any]], *,
                 command: str | None = None) -> list[str]:
    """Title, failures (if any), description, the command that regenerates the report, counts
    of ok / failed / not-run cells and failed attacks, the code's git shas, the kernels line."""
    ok = [c for c in cells if c["status"] == "ok"]
    failed = [c for c in cells if c["status"] != "ok"]
    shas = sorted({c["meta"]["git_sha"] or "unknown" for c in cells})
    dirty = any(c["meta"]["git_dirty"] for c in cells)
    broken = len(failed_attacks(cells))
    return [f"# {suite['name']} suite", "", *failure_lines(cells), suite["description"], "",
            f"Regenerate: `{command or suite.get('command') or 'fedlpp bench run ' + suite['file']}`"
            " (it also writes "
            "this report; `fedlpp bench report DIR` rebuilds it from the cell files).", "",
            f"{len(ok)} of {len(suite['cells'])} cells ok, {len(failed)} failed, "
            f"{len(suite['cells']) - len(cells)} not run"
            f"{f'; {broken} attacks failed in ok cells' if broken else ''}. "
            f"Code: {', '.join(s[:10] for s in shas)}{' (uncommitted changes)' if dirty else ''}. "
            "Each cell's resolved config and provenance are in `cells/<id>.json`.", "",
            kernels_line(cells), ""]


def method_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What the headline columns are, which attacks are primary, and the bootstrap used."""
    notes = sorted({n for r in rows for n in r["primary_notes"]})
    resamples = sorted({r["resamples"] for r in rows if r["resamples"]})
    few = [n for n in resamples if n < DEFAULT_RESAMPLES]
    return [
        "Columns: central = the server's full-precision master; proxy = the final broadcast "
        "clients hold; recovered = the suite's primary recovery attack; recovered gain = "
        "(U(R) - U(base)) / (U(central) - U(base)) as a ratio of means over the seeds where it "
        "is defined (k/n: seeds with a significant central gain); gain over control = the same "
        "for R minus its no-payload control; AUC (control) = the primary membership attack's "
        "AUC and its AUC on the untrained model (same records); AUC − control = the leakage "
        "attributable to training (paired bootstrap). Utility (central, proxy, base): mean over "
        "seeds [95 % percentile interval of a bootstrap that resamples the seeds and, within "
        "each drawn seed, its test records; one seed: test-record noise only]; recovered and "
        "grad. fidelity have no per-record results: mean (seeds min–max); leakage: mean over "
        "seeds [95 % CI from the records' bootstrap standard errors]; one seed: its own "
        "interval. fidelity = cosine of LoRA gradients on the proxy vs the central model. "
        "converged / round: each cell's convergence verdict and the round its final models "
        "come from.", "",
        "Primary attacks: " + ("; ".join(notes) + " (defaults)" if notes else
                               "as named in the suite") + ". Every attack: see Detail.", "",
        f"Bootstrap: {', '.join(map(str, resamples)) or '?'} resamples per estimate"
        + (f" (fewer than the default {DEFAULT_RESAMPLES}: interval ends are coarse)"
           if few else "") + f"; utility and claims: percentile intervals, draws seeded "
        f"({BOOT_SEED}), paired over test records between the models of one seed.", ""]


def kernels_line(cells: list[dict[str, Any]]) -> str:
    """Which CPUs and torch kernels computed the cells: training floats differ in the last bits
    between kernel families (AVX2 vs AVX-512), so a rerun elsewhere matches within a tolerance
    (the README gives the measured one), not bit for bit."""
    kinds: dict[str, int] = {}
    for c in cells:
        cpu = c.get("meta", {}).get("cpu") or {}
        where = f"{cpu.get('model') or 'unknown CPU'}, torch {cpu.get('torch_capability')} kernels"
        kinds[where] = kinds.get(where, 0) + 1
    return ("Computed on: " + "; ".join(f"{w} ({n} cells)" for w, n in sorted(kinds.items()))
            + ". A rerun on other kernels matches within a tolerance, not bit for bit (README, "
            "\"Reproducing a published number\").")


def failed_attacks(cells: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(cell, attack) for every attack that failed in a cell that is otherwise ok."""
    return [(c, a) for c in cells if c["status"] == "ok" for a in c["attacks"]
            if a["status"] == "failed"]


def failure_lines(cells: list[dict[str, Any]]) -> list[str]:
    """The report's first section when anything failed: each failed cell and each failed
    attack with its one-line error (the full traceback is in the cell file); none otherwise."""
    def one_line(text: Any) -> str:
        return " ".join(str(text or "no error recorded").split())

    lines = [f"- cell `{c['id']}` {c['labels']}: {one_line(c.get('error'))}"
             for c in cells if c["status"] != "ok"]
    same: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)  # one line per error
    for c, a in failed_attacks(cells):
        target = a["config"].get("target")
        same[(f"{a['attack']}@{target}" if target else a["attack"], one_line(a.get("error")))] \
            .append(c)
    for (name, error), where in same.items():
        at = (f"cell `{where[0]['id']}` {where[0]['labels']}" if len(where) == 1 else
              f"{len(where)} cells (" + ", ".join(f"`{c['id']}`" for c in where) + ")")
        lines.append(f"- attack `{name}` in {at}: {error}")
    if not lines:
        return []
    return ["## Failed cells and attacks", "", *lines, "",
            "Their numbers are left out of every table below; the full tracebacks are in "
            "`cells/<id>.json` (`traceback`).", ""]
