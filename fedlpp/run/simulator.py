"""The in-process simulator: the FedLPP round, read top to bottom, over a server object (built
by the training method) and a transport that gets each sampled client's upload for a broadcast
(here the method's client object in this process; :mod:`fedlpp.flower` sends the same bytes over
Flower). The trace, the console and the timer observe it.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from fedlpp.config import RunConfig
from fedlpp.defenses import Defense, HookFailed
from fedlpp.device import describe, model_device
from fedlpp.errors import FedlppError
from fedlpp.io import atomic_write_json
from fedlpp.meta import folder_digest, provenance
from fedlpp.methods import ClientPart, ServerPart
from fedlpp.methods.assemble import build_client, build_server
from fedlpp.protocol.records import RoundRecord, RunResult, Step, Upload
from fedlpp.run.context import RunContext, prepare_run
from fedlpp.run.evaluation import Evaluation
from fedlpp.run.observers import Console, Observer, Observers, Timer
from fedlpp.run.resolve import resolve
from fedlpp.run.trace import TraceWriter
from fedlpp.seeding import numpy_rng


class RunFailed(RuntimeError):
    """A run that started and then failed (not a bad input); ``result.json`` says why."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


class Training(Protocol):
    """Gets the uploads of round ``rnd``'s ``clients`` for the broadcast bytes ``payload``, in
    the order of ``clients``; ``on_step(client, step)`` sees each local step."""

    def __call__(self, clients: list[int], *, rnd: int, payload: bytes,
                 on_step: Callable[[int, Step], None]) -> Iterable[Upload]: ...


def in_process(client: ClientPart) -> Training:
    """Training by the method's client object in this process: its ``rounds`` when it has one
    (e.g. FedLPP's clients batched together), else one client after another (each upload is
    aggregated before the next client trains)."""
    rounds = getattr(client, "rounds", None)
    if rounds is not None:
        return rounds

    def train(clients: list[int], *, rnd: int, payload: bytes,
              on_step: Callable[[int, Step], None]) -> Iterable[Upload]:
        return (client.round(client=c, rnd=rnd, payload=payload,
                             on_step=functools.partial(on_step, c)) for c in clients)
    return train


def sample_clients(*, num_clients: int, per_round: int, seed: int, rnd: int) -> list[int]:
    """The clients of round ``rnd`` (all when ``per_round`` is 0), seeded, sorted."""
    if per_round in (0, num_clients):
        return list(range(num_clients))
    rng = numpy_rng(seed, rnd)
    return sorted(int(c) for c in rng.choice(num_clients, size=per_round, replace=False))


def run_federation(cfg: RunConfig, *, out: Path, quiet: bool = False, echo: bool = True,
                   ctx: RunContext | None = None,
                   transport: Callable[[RunContext], Training] | None = None) -> dict[str, Any]:
    """Run federated training as configured; write ``out/result.json`` and the trace.

    ``quiet`` hides the progress bar; ``echo`` prints one line per round; ``ctx`` is an already
    prepared run (``prepare_run(cfg)``, whose resolved ``ctx.cfg`` is then the one run), e.g. to
    attack it afterwards with the same model;
    ``transport`` makes the :class:`Training` from the prepared run (default: the method's
    client object in this process).
    Bad inputs raise FedlppError before anything is written; a failure once the run has started
    writes ``result.json`` with ``status: "failed"`` and raises :class:`RunFailed`.
    """
    timer = Timer()
    try:
        cfg = ctx.cfg if ctx is not None else resolve(cfg)  # what result.json records
        ctx = ctx or prepare_run(cfg)
        server, defenses = build_server(ctx)
        client = None if transport else build_client(ctx, defenses=defenses)
        train = transport(ctx) if transport else in_process(client)
    except FedlppError:
        raise  # a bad input: nothing was started
    except Exception as exc:  # noqa: BLE001 - e.g. a model file that cannot be read
        raise _failed(out, cfg, [], exc, timer, ctx) from exc
    trace = TraceWriter(out / "trace", payloads=cfg.trace.payloads, updates=cfg.trace.updates,
                        masters=cfg.trace.masters, rounds=cfg.fed.rounds)
    watch = Observers(timer, trace, Console(quiet=quiet, echo=echo))
    rounds: list[RoundRecord] = []
    try:
        evaluation = drive(ctx, server=server, train=train, watch=watch, rounds=rounds)
        result = RunResult(status="ok", config=cfg.to_dict(), rounds=rounds,
                           defenses=[{"name": d.name, **d.report()} for d in defenses],
                           meta={**_meta(timer, ctx), **_paths(client)}, **evaluation.outcome())
        watch.on_end(result, server)
    except Exception as exc:  # noqa: BLE001 - a started run that fails is recorded, then raised
        watch.on_end(RunResult(status="failed", config={}, rounds=rounds, meta={}), server)
        raise _failed(out, cfg, rounds, exc, timer, ctx, defenses=defenses) from exc
    atomic_write_json(out / "result.json", result.to_dict())
    return result.to_dict()


def drive(ctx: RunContext, *, server: ServerPart, train: Training, watch: Observer,
          rounds: list[RoundRecord]) -> Evaluation:
    """The rounds, top to bottom; each finished round is appended to ``rounds``. Returns the
    run's measurements (the untrained model, each evaluated round, the round it reports)."""
    cfg = ctx.cfg
    watch.on_start(ctx, server)
    watch.on_evaluate(0)
    evaluation = Evaluation(ctx, master=server.master)
    for rnd in range(1, cfg.fed.rounds + 1):
        # 1. sample this round's clients
        clients = sample_clients(num_clients=cfg.fed.num_clients, seed=cfg.seed, rnd=rnd,
                                 per_round=cfg.fed.clients_per_round)
        watch.on_round_start(rnd, clients)
        # 2. broadcast: the master quantized and packed
        sent = server.broadcast(rnd)
        watch.on_broadcast(rnd, sent)
        # 3. local training on each sampled client from exactly the bytes it received, and
        # 4. the server decodes, checks and aggregates each upload as it arrives (one at a
        #    time), then updates the master straight-through
        uploads = train(clients, rnd=rnd, payload=sent.data,
                        on_step=functools.partial(watch.on_step, rnd))
        verdicts, refused = server.aggregate(rnd, uploads,
                                             observe=lambda v, r=rnd: watch.on_verdict(r, v))
        # 5. the next broadcast, then the utility of the new master (central) and of that
        #    broadcast (proxy: exactly what a client receives next round); the validation
        #    loss of central decides which round the run reports
        upcoming = server.broadcast(rnd + 1)
        watch.on_evaluate(rnd)
        record = RoundRecord.of(rnd, clients=clients, sent=sent, verdicts=verdicts,
                                refused=refused,
                                aggregation=server.aggregation_report)
        if rnd % cfg.eval.every == 0 or rnd == cfg.fed.rounds:
            evaluation.measure(record, master=server.master, upcoming=upcoming)
        rounds.append(record)
        watch.on_round(record)
    return evaluation


def _paths(client: ClientPart | None) -> dict[str, Any]:
    """How each round's clients trained (batched or one after another, and why), when the
    client part says (FedLPP's does)."""
    paths = getattr(client, "paths", None)
    return {"local_training": {str(r): p for r, p in paths.items()}} if paths else {}


def _model_files(ctx: RunContext | None) -> dict[str, Any]:
    """An ``hf:`` model from a local folder is recorded by the content of its files, not only
    its path (the folder can change under the same name)."""
    name = ctx.cfg.model.name if ctx is not None else ""
    folder = Path(name[len("hf:"):]).expanduser() if name.startswith("hf:") else None
    return {"model_sha256": folder_digest(folder)} if folder is not None and folder.is_dir() else {}


def _meta(timer: Timer, ctx: RunContext | None) -> dict[str, Any]:
    where = describe(model_device(ctx.bundle.model)) if ctx is not None else {}
    return {**provenance(), **where, **_model_files(ctx), "seconds": time.perf_counter() - timer.t0,
            "timing": timer.summary(model_load_s=ctx.model_load_s if ctx else 0.0)}


def _reports(defenses: list[Defense]) -> list[dict[str, Any]]:
    """What each defense did before the run failed (one whose report raises says so)."""
    reports = []
    for d in defenses:
        try:
            reports.append({"name": d.name, **d.report()})
        except Exception as exc:  # noqa: BLE001 - the run's own error is the one to report
            reports.append({"name": d.name, "report_error": f"{type(exc).__name__}: {exc}"})
    return reports


def _failed(out: Path, cfg: RunConfig, rounds: list[RoundRecord], exc: Exception, timer: Timer,
            ctx: RunContext | None, defenses: list[Defense] = ()) -> RunFailed:
    """Record a failed run in ``out/result.json``: the rounds that finished, the defenses'
    reports, the round (and the plugin's hook) the error came from, its full traceback."""
    if isinstance(exc, HookFailed):  # the hook knows its round (e.g. the next one's broadcast)
        error, failed_in = str(exc), {"round": exc.rnd, "hook": exc.hook, "plugin": exc.plugin}
    else:
        error = " ".join(f"{type(exc).__name__}: {exc}".split())
        failed_in = {"round": len(rounds) + 1 if ctx is not None else None, "hook": None,
                     "plugin": None}
    result = RunResult(status="failed", config=cfg.to_dict(), rounds=rounds, error=error,
                       meta=_meta(timer, ctx), defenses=_reports(list(defenses)),
                       failed_in=failed_in, traceback="".join(traceback.format_exception(exc)))
    atomic_write_json(out / "result.json", result.to_dict())
    where = "in " if isinstance(exc, HookFailed) else (
        f"in round {len(rounds) + 1}: " if ctx is not None else "while preparing: ")
    return RunFailed(f"the run failed {where}{error}", result.to_dict())
