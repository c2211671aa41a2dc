"""The Flower ``ClientApp``: each train message runs the method's client step (decode the
broadcast bytes -> train locally -> encode the upload), exactly as the in-process simulator does.

A node holds one client's records: ``partition-id`` in its node config (``flower-supernode
--node-config "partition-id=0"``; the simulation sets it). As in the simulator, a client's
records are its part of the run's dataset, drawn from the run's config and seed. The prepared
run (model, data) is kept in the process between messages of the same run: a Flower simulation
reuses its workers, a deployment starts a fresh process per message and prepares it again.
"""

from __future__ import annotations

import json
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedlpp.config import RunConfig
from fedlpp.errors import FedlppError
from fedlpp.flower.messages import decode_instruction, encode_reply, node_record
from fedlpp.protocol.records import Step, Upload
from fedlpp.typed import from_dict

app = ClientApp()

_prepared: dict[str, Any] = {}  # one run per process: its config JSON -> its client object


def client_part(config: dict[str, Any]) -> Any:
    """The method's client object for the run ``config`` (prepared once per process)."""
    key = json.dumps(config, sort_keys=True)
    if key not in _prepared:
        from fedlpp.methods.assemble import bound_defenses, build_client
        from fedlpp.run.context import prepare_run

        _prepared.clear()
        ctx = prepare_run(from_dict(RunConfig, config))
        _prepared[key] = build_client(ctx, defenses=bound_defenses(ctx.cfg))
    return _prepared[key]


def partition_of(context: Context) -> int:
    try:
        return int(context.node_config["partition-id"])
    except (KeyError, ValueError, TypeError):
        raise FedlppError("this Flower node has no integer 'partition-id' in its node config "
                          "(start it with --node-config \"partition-id=N\")") from None


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Tell the server which client's records this node holds."""
    return Message(node_record(partition_of(context)), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One client's round from the broadcast bytes in ``msg``."""
    ins = decode_instruction(msg.content)
    mine = partition_of(context)
    steps: list[Step] = []
    if ins.client != mine:
        upload = Upload(client=ins.client, data=None,
                        error=f"sent to the node holding client {mine}'s records")
    else:
        upload = client_part(ins.config).round(client=ins.client, rnd=ins.rnd,
                                               payload=ins.payload, on_step=steps.append)
    return Message(encode_reply(upload, steps), reply_to=msg)
