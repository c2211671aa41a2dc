"""The Flower ``ServerApp``: the simulator's round (``fedlpp.run.simulator.drive``) over a
Flower grid. The server object is the method's own (fp32 master, quantized broadcasts, upload
validation, aggregation rule, defenses); only the transport differs: each sampled client's train
message carries the packed broadcast, and its reply the packed upload, as Flower records.
Evaluation, round selection, ``result.json`` and the trace are written here, by the driver, so
every attack runs on a Flower run as on a simulated one.

Replies are aggregated in the sampled clients' order, whatever order they arrive in, so the sums
(and the numbers) are those of the in-process simulator. A client that fails, sends something
malformed, or does not answer within ``round_timeout`` is rejected and named; the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedlpp.config import RunConfig, load_config
from fedlpp.defenses import Defense, build_defenses
from fedlpp.errors import FedlppError
from fedlpp.flower.messages import (
    QUERY,
    TRAIN,
    Instruction,
    decode_reply,
    encode_instruction,
    node_partition,
)
from fedlpp.protocol.records import Step, Upload
from fedlpp.run.context import RunContext

CONNECT_TIMEOUT_S = 120.0  # how long the server waits for every client's node to connect
ROUND_TIMEOUT_S = 3600.0  # how long it waits for a round's replies


def check_engine(cfg: RunConfig) -> None:
    """Refuse what the Flower engine cannot run faithfully (one line, before anything starts)."""
    for d in build_defenses(cfg.defenses):
        if type(d).around_training is not Defense.around_training:
            raise FedlppError(
                f"defense {d.name!r} acts in the clients' local training, and with "
                "--engine flower its state (e.g. a privacy accountant) would stay on the client "
                "nodes: run it with --engine simulator (Flower supports defenses that act on "
                "the server)")


def discover(grid: Grid, *, num_clients: int, timeout: float = CONNECT_TIMEOUT_S) -> dict[int, int]:
    """Client index -> Flower node id, asked of each connected node (its ``partition-id``)."""
    deadline = time.monotonic() + timeout
    while len(ids := list(grid.get_node_ids())) < num_clients:
        if time.monotonic() > deadline:
            raise FedlppError(f"only {len(ids)} Flower node(s) connected after {timeout:g} s; "
                              f"the run has {num_clients} clients (one node each)")
        time.sleep(0.5)
    asks = [Message(RecordDict(), dst_node_id=n, message_type=QUERY) for n in ids]
    nodes: dict[int, int] = {}
    replies = grid.send_and_receive(asks, timeout=timeout)
    for reply in sorted(replies, key=lambda r: r.metadata.src_node_id):
        node = reply.metadata.src_node_id
        if reply.has_error():
            raise FedlppError(f"Flower node {node} did not say which client it is: "
                              f"{reply.error.reason}")
        partition = node_partition(reply.content)
        if partition in nodes:
            raise FedlppError(f"Flower nodes {nodes[partition]} and {node} both hold client "
                              f"{partition}'s records (partition-id must differ per node)")
        nodes[partition] = node
    missing = [c for c in range(num_clients) if c not in nodes]
    if missing:
        raise FedlppError(f"no Flower node holds client(s) {missing} (partition-ids seen: "
                          f"{sorted(nodes)}; allowed: 0..{num_clients - 1}, one node each)")
    return {c: nodes[c] for c in range(num_clients)}


class GridTraining:
    """A round's local training over a Flower grid (see :class:`~fedlpp.run.simulator.Training`)."""

    def __init__(self, grid: Grid, *, config: dict[str, Any], nodes: dict[int, int],
                 timeout: float = ROUND_TIMEOUT_S) -> None:
        self.grid, self.config, self.nodes, self.timeout = grid, config, nodes, timeout

    def __call__(self, clients: list[int], *, rnd: int, payload: bytes,
                 on_step: Callable[[int, Step], None]) -> Iterator[Upload]:
        asks = [Message(encode_instruction(Instruction(config=self.config, client=c, rnd=rnd,
                                                       payload=payload)),
                        dst_node_id=self.nodes[c], message_type=TRAIN, group_id=str(rnd))
                for c in clients]
        replies = {r.metadata.src_node_id: r
                   for r in self.grid.send_and_receive(asks, timeout=self.timeout)}
        for c in clients:  # the sampled order: the aggregate's sums are the simulator's
            upload, steps = self._read(replies.get(self.nodes[c]), client=c)
            for s in steps:
                on_step(c, s)
            yield upload

    def _read(self, reply: Message | None, *, client: int) -> tuple[Upload, list[Step]]:
        if reply is None:
            return Upload(client=client, data=None,
                          error=f"no reply within {self.timeout:g} s"), []
        if reply.has_error():
            reason = " ".join(str(reply.error.reason).split())[:300]
            return Upload(client=client, data=None, error=f"Flower error: {reason}"), []
        return decode_reply(reply.content, client=client)


def run_on_grid(grid: Grid, cfg: RunConfig, *, out: Path, quiet: bool = True,
                connect_timeout: float = CONNECT_TIMEOUT_S,
                round_timeout: float = ROUND_TIMEOUT_S) -> dict[str, Any]:
    """Run ``cfg`` with its clients on ``grid``'s nodes; writes ``out/result.json`` and the trace."""
    from fedlpp.run.simulator import run_federation

    check_engine(cfg)

    def transport(ctx: RunContext) -> GridTraining:
        nodes = discover(grid, num_clients=cfg.fed.num_clients, timeout=connect_timeout)
        return GridTraining(grid, config=ctx.cfg.to_dict(), nodes=nodes, timeout=round_timeout)

    return run_federation(cfg, out=out, quiet=quiet, echo=not quiet, transport=transport)


def server_app(cfg: RunConfig, *, out: Path, quiet: bool = True,
               outcome: dict[str, Any] | None = None, **timeouts: float) -> ServerApp:
    """A ServerApp that runs ``cfg``; ``outcome["result"]`` receives its result (a Flower
    simulation returns nothing; it re-raises what the ServerApp raised)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        result = run_on_grid(grid, cfg, out=out, quiet=quiet, **timeouts)
        if outcome is not None:
            outcome["result"] = result

    return app


# --- `flwr run` / deployment: the run comes from the app's run config ---------------------------
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """``config`` (a TOML run config, "" for the defaults), ``set`` (overrides, ``;``-separated
    ``key=value``) and ``out`` (the run directory, on the ServerApp's machine). Relative paths
    are taken against this process's working directory: Flower starts the ServerApp in the
    SuperLink's (``flwr run`` sends no directory of its own)."""
    rc = context.run_config
    overrides = [s.strip() for s in str(rc.get("set", "")).split(";") if s.strip()]
    config = str(rc.get("config", ""))
    cfg = load_config(Path(config).expanduser().absolute() if config else None, overrides)
    run_on_grid(grid, cfg, out=Path(str(rc.get("out", "runs/flower"))).expanduser().absolute(),
                quiet=True, round_timeout=float(rc.get("round-timeout", ROUND_TIMEOUT_S)))


