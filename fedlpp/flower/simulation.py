"""An in-process Flower simulation of a FedLPP run (``fedlpp train --engine flower``): the
ServerApp runs in this process, each client's ClientApp in Flower's simulation backend (Ray,
one CPU per client)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedlpp.config import RunConfig
from fedlpp.errors import FedlppError
from fedlpp.flower.server_app import check_engine, server_app


def run_flower_simulation(cfg: RunConfig, *, out: Path, quiet: bool = True,
                          num_cpus_per_client: float = 1.0, **timeouts: float) -> dict[str, Any]:
    """Run ``cfg`` as a Flower simulation with one virtual node per client; returns what
    :func:`~fedlpp.run.simulator.run_federation` returns for the same run."""
    check_engine(cfg)
    from flwr.simulation import run_simulation

    from fedlpp.flower.client_app import app as client_app

    outcome: dict[str, Any] = {}
    run_simulation(server_app=server_app(cfg, out=out, quiet=quiet, outcome=outcome, **timeouts),
                   client_app=client_app, num_supernodes=cfg.fed.num_clients,
                   backend_config={"client_resources": {"num_cpus": num_cpus_per_client,
                                                        "num_gpus": 0.0}},
                   verbose_logging=False)
    if "result" not in outcome:
        raise FedlppError("the Flower simulation ended before its ServerApp finished "
                          "(see Flower's log above)")
    return outcome["result"]
