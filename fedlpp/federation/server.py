"""The in-process FedLPP simulator: one round loop, read top to bottom.

The loop only calls the engine-agnostic pieces (``make_broadcast``, ``client_update``,
``validate_update`` / ``weighted_mean`` / ``apply_update``), which a Flower strategy reuses.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fedlpp.config import RunConfig
from fedlpp.evaluate import utility
from fedlpp.federation.aggregate import RunningMean, apply_update, validate_update
from fedlpp.federation.broadcast import derive_seed, encode_payload, make_broadcast
from fedlpp.federation.client import StepTimer, client_update, num_local_steps, pack_upload
from fedlpp.federation.setup import RunContext, prepare_run
from fedlpp.federation.trace import TraceWriter, atomic_write_json
from fedlpp.meta import provenance
from fedlpp.models import load_state
from fedlpp.store import shared_utility

log = logging.getLogger("fedlpp")


def sample_clients(*, num_clients: int, per_round: int, seed: int, rnd: int) -> list[int]:
    """The clients of round ``rnd`` (all when ``per_round`` is 0), seeded, sorted."""
    if per_round in (0, num_clients):
        return list(range(num_clients))
    rng = np.random.default_rng([seed, rnd])
    return sorted(int(c) for c in rng.choice(num_clients, size=per_round, replace=False))


def evaluate_with(ctx: RunContext, tensors: dict[str, torch.Tensor]) -> dict[str, float]:
    """Utility of the shared model with ``tensors`` (master or proxy) loaded into it (read from
    the run's store when another run already measured the same model on the same records)."""
    def compute() -> dict[str, float]:
        load_state(ctx.bundle.model, tensors)
        return utility(ctx.bundle.model, ctx.test_data, task=ctx.dataset.task,
                       batch_size=ctx.cfg.eval.batch_size)

    return shared_utility(ctx, tensors, compute)


def run_federation(cfg: RunConfig, *, out: Path, quiet: bool = False, echo: bool = True,
                   ctx: RunContext | None = None) -> dict[str, Any]:
    """Run FedLPP as configured, write ``out/result.json`` and the trace, return the result.

    ``quiet`` hides the progress bar; ``echo`` prints one line per round; ``ctx`` is an already
    prepared run (``prepare_run(cfg)``), e.g. to attack it afterwards with the same model.
    """
    t_start = time.perf_counter()
    ctx = ctx or prepare_run(cfg)
    fed, model = cfg.fed, ctx.bundle.model
    trace = TraceWriter(out / "trace", payloads=cfg.trace.payloads, updates=cfg.trace.updates,
                        masters=cfg.trace.masters)
    trace.splits(ctx.splits.to_json())

    # --- the full-precision master: private tensors in float32 (scope "full" adds the base) ---
    state = model.state_dict()
    master = {n: state[n].detach().float().clone() for n in ctx.trainable + ctx.static}
    reference = {n: state[n].detach() for n in ctx.trainable}  # expected shape/dtype of updates
    trace.private_base({n: master[n] for n in ctx.static})
    cache: dict = {}

    def broadcast(rnd: int):  # the payload of round `rnd`, from the master as it is now
        return make_broadcast(master, quantizer=ctx.quantizer, seed=derive_seed(cfg.seed, rnd),
                              cache=cache, static=frozenset(ctx.static))

    t_base = time.perf_counter()
    base = evaluate_with(ctx, master)  # round 0: no fine-tuning yet
    base_eval_s = time.perf_counter() - t_base
    upcoming = broadcast(1)
    setup_s = time.perf_counter() - t_start

    rounds: list[dict[str, Any]] = []
    timing: list[dict[str, float]] = []
    bar = tqdm(total=0, disable=quiet, desc=f"round 0/{fed.rounds}", unit="step", leave=False)
    for rnd in range(1, fed.rounds + 1):
        t_round = time.perf_counter()
        bar.set_description(f"round {rnd}/{fed.rounds}")
        # 1. sample this round's clients
        clients = sample_clients(num_clients=fed.num_clients, per_round=fed.clients_per_round,
                                 seed=cfg.seed, rnd=rnd)
        bar.total += sum(num_local_steps(fed, num_examples=len(ctx.splits.members[c]))
                         for c in clients)
        # 2. broadcast: the master quantized and packed (made at the end of the last round)
        sent = upcoming
        trace.payload(rnd, encode_payload(sent.packed))
        trace.master(rnd, {n: master[n] for n in ctx.trainable}, last=rnd == fed.rounds)
        # 3. local training on every sampled client, from exactly what it received. The
        #    received base weights (scope "full") are frozen, so they are loaded once per round
        #    into the shared model; each client then swaps in only the trainable tensors.
        load_state(model, {n: sent.proxy[n] for n in ctx.static})
        received = {n: sent.proxy[n] for n in ctx.trainable}
        timer, running, rejected, bytes_up = StepTimer(), RunningMean(), [], 0
        losses, examples = [], []
        for c in clients:
            upd = client_update(client=c, model=model, proxy=received, data=ctx.client_data[c],
                                fed=fed, seed=derive_seed(cfg.seed, rnd, c), timer=timer,
                                on_step=lambda _loss: bar.update(1))
            upd.tensors, upd.bytes_up = pack_upload(upd.tensors, quantizer=ctx.uploader,
                                                    seed=derive_seed(cfg.seed, rnd, c, 1))
            bytes_up += upd.bytes_up
            # 4a. validate each update; a bad one is rejected and its client named
            reason = validate_update(upd.tensors, reference=reference)
            trace.update(rnd, c, upd.tensors, num_examples=upd.num_examples,
                         accepted=reason is None, reason=reason)
            if reason is None:  # 4b. into the weighted mean; the update itself is dropped
                running.add(upd.tensors, weight=upd.num_examples)
                losses.append(upd.train_loss)
                examples.append(upd.num_examples)
            else:
                rejected.append({"client": c, "reason": reason})
                log.warning("round %d: rejected the update of client %d: %s", rnd, c, reason)
        # 4c. straight-through update of the master
        if running.count:
            master = apply_update(master, mean=running.mean(), broadcast=sent.proxy,
                                  server_lr=fed.server_lr, rule=fed.aggregation)
        # 5. utility of the new master (central) and of its broadcast, i.e. exactly what a
        #    client receives next round (proxy)
        upcoming = broadcast(rnd + 1)
        t_eval = time.perf_counter()
        row: dict[str, Any] = {"round": rnd, "clients": clients, "rejected": rejected}
        if rnd % cfg.eval.every == 0 or rnd == fed.rounds:
            row["central"] = evaluate_with(ctx, master)
            row["proxy"] = evaluate_with(ctx, upcoming.proxy)
        eval_s = time.perf_counter() - t_eval
        # 6. record
        row.update(bytes_down=sent.nbytes * len(clients), bytes_down_per_client=sent.nbytes,
                   bytes_up=bytes_up,
                   train_loss=float(np.average(losses, weights=examples)) if losses else None)
        rounds.append(row)
        timing.append({"round_s": time.perf_counter() - t_round, "train_s": timer.seconds,
                       "eval_s": eval_s})
        if echo:
            _print_round(row, task=ctx.dataset.task, write=bar.write if not quiet else print)
    bar.close()

    # --- final: the last master, its broadcast (what a client would hold), the base ---
    trace.final_master({n: master[n] for n in ctx.trainable})
    trace.final_payload(encode_payload(upcoming.packed))
    last = rounds[-1]
    result = {
        "status": "ok",
        "config": cfg.to_dict(),
        "rounds": rounds,
        "final": {"central": last["central"], "proxy": last["proxy"], "base": base},
        "comm": {"bytes_down_total": sum(r["bytes_down"] for r in rounds),
                 "bytes_up_total": sum(r["bytes_up"] for r in rounds)},
        "meta": {**provenance(), "seconds": time.perf_counter() - t_start,
                 "timing": {"setup_s": setup_s, "model_load_s": ctx.model_load_s,
                            "base_eval_s": base_eval_s, "rounds": timing}},
    }
    atomic_write_json(out / "result.json", result)
    return result


def _print_round(row: dict[str, Any], *, task: str, write) -> None:
    metric = "perplexity" if task == "lm" else "accuracy"
    if "central" in row:
        util = (f"central {metric} {row['central'][metric]:.4g} | "
                f"proxy {metric} {row['proxy'][metric]:.4g} | ")
    else:
        util = ""
    write(f"round {row['round']}: {util}down {row['bytes_down']:,} B | up {row['bytes_up']:,} B"
          + (f" | rejected {[r['client'] for r in row['rejected']]}" if row["rejected"] else ""))
