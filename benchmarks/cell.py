"""One cell of a suite: train, attack, measure gradient fidelity -> one JSON, written atomically."""

from __future__ import annotations

import dataclasses
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.attack_plan import AttackPlan
from benchmarks.matrix import Cell
from fedlpp.io import atomic_write_json
from fedlpp.meta import provenance


def cell_path(out: Path, cell_id: str) -> Path:
    return out / "cells" / f"{cell_id}.json"


def store_dir(out: Path) -> Path:
    """Where a suite's cells share evaluations and signals; removed when the suite finishes."""
    return out / "cache"


def _fidelity(ctx) -> float | None:
    """Gradient fidelity of the reported round's broadcast vs its master, on test records
    (FedLPP's claim; None for a method whose clients hold another model, e.g. FedSP)."""
    from fedlpp.evaluate import gradient_fidelity

    trace = ctx.trace
    if trace.config.fed.method != "fedlpp":
        return None
    central = {**ctx.private_base, **trace.master(trace.num_rounds + 1)}
    proxy = ctx.dequantize(trace.payload(trace.num_rounds + 1))
    return gradient_fidelity(ctx.model, central=central, proxy=proxy, data=ctx.run.test_data,
                             batch_size=trace.config.fed.batch_size)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    rounds = result["rounds"]
    return {
        "final": result["final"],
        "comm": {**result["comm"],
                 "bytes_down_per_round": result["comm"]["bytes_down_total"] / len(rounds),
                 "bytes_up_per_round": result["comm"]["bytes_up_total"] / len(rounds),
                 "bytes_down_per_client": rounds[-1]["bytes_down_per_client"]},
        "rounds": [{k: r.get(k) for k in ("round", "central", "proxy", "train_loss", "validation",
                                          "rejected", "aggregation")}
                   for r in rounds],
        **{k: result.get(k) for k in ("start", "selection", "convergence", "final_records",
                                      "defenses")},
    }


def attack_batches(plan: AttackPlan) -> list[tuple[list[str], list[str]]]:
    """(names, --set options) per call: recovery attacks once, membership ones per target."""
    from attacks.base import ATTACKS
    names = ATTACKS.names() if "all" in plan.names else plan.names
    recovery = [n for n in names if ATTACKS.get(n).kind == "recovery"]
    membership = [n for n in names if ATTACKS.get(n).kind == "membership"]


    def applicable(group: list[str]) -> list[str]:
        # the suite was validated with every option against every attack; here each batch gets
        # the options some attack of it has (plain key) or that name one of its attacks
        keys = {f.name for n in group for f in dataclasses.fields(ATTACKS.get(n).Config)}
        return [s for s in plan.set
                if s.split("=", 1)[0] in keys or s.split(".", 1)[0] in group]

    batches = [(recovery, applicable(recovery))] if recovery else []
    batches += [(membership, [*applicable(membership), f"target={t}"])
                for t in plan.targets if membership]
    return batches


def run_cell(cell: Cell, *, out: Path, keep_runs: bool = False,
             share: bool = True) -> dict[str, Any]:
    """Run ``cell`` and write ``out/cells/<id>.json``; a failure is recorded, never raised.

    ``share``: read and write the suite's store of evaluations and signals (off only to measure
    what it saves).
    """
    from attacks.context import AttackContext
    from attacks.runner import run_attacks
    from fedlpp.run.context import prepare_run
    from fedlpp.run.simulator import run_federation
    from fedlpp.store import ResultStore

    t0 = time.perf_counter()
    # what another cell already measured on the same model and records (the base model of one
    # seed, evaluated and scored) comes from the suite's store
    store = ResultStore(store_dir(out)) if share else None
    run_dir = out / "runs" / cell.id
    record: dict[str, Any] = {"id": cell.id, "labels": cell.labels,
                              "config": cell.config.to_dict(),
                              "attack_plan": dataclasses.asdict(cell.attacks)}
    try:
        if run_dir.exists():  # a run killed half-way: start it again from scratch
            shutil.rmtree(run_dir)
        prepared = prepare_run(cell.config)  # one model load for training and attacks
        prepared.store = store
        result = run_federation(cell.config, out=run_dir, quiet=True, echo=False, ctx=prepared)
        ctx = AttackContext(run_dir, run=prepared)
        attacks = []
        for names, sets in attack_batches(cell.attacks):
            attacks += run_attacks(run_dir, names=names, sets=sets,
                                   resamples=cell.attacks.resamples, quiet=True, ctx=ctx)
        record.update(status="ok", train=_summary(result), fidelity=_fidelity(ctx),
                      attacks=[{**{k: a.get(k) for k in ("attack", "kind", "threat_model",
                                                         "config", "status", "metrics", "error")},
                                "seconds": a["meta"]["seconds"],
                                **({"extra": a["extra"]} if "extra" in a else {}),
                                **({"traceback": a["traceback"]} if "traceback" in a else {})}
                               for a in attacks])
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded and the suite goes on
        record.update(status="failed", error=" ".join(f"{type(exc).__name__}: {exc}".split()),
                      traceback=traceback.format_exc())  # in full, with the error's cause
    record["meta"] = {**provenance(), "seconds": time.perf_counter() - t0,
                      "from_store": store.hits if store else 0}
    atomic_write_json(cell_path(out, cell.id), record)
    if not keep_runs and run_dir.exists():
        shutil.rmtree(run_dir)  # traces are large; the cell JSON holds what the report needs
    return record
