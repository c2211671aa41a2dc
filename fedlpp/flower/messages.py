"""FedLPP's wire bytes as Flower records, and back (no Flower state, no model).

A train instruction carries the packed broadcast exactly as the in-process simulator hands it to
a client (one ``uint8`` array in an ``ArrayRecord``) and, in a ``ConfigRecord``, the run's
resolved config (JSON), the client index and the round. A reply carries the client's packed
upload the same way, or the one-line error of a client that failed, plus the benchmark's ground
truth of which records each local step trained on (what the trace records; not part of what a
client sends in FedLPP, and never read by the server's aggregation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedlpp.errors import FedlppError
from fedlpp.protocol.records import Step, Upload

TRAIN, QUERY = "train", "query"
PAYLOAD, INSTRUCTION, UPLOAD, REPORT, NODE = "payload", "instruction", "upload", "report", "node"


def bytes_record(data: bytes, *, label: str) -> ArrayRecord:
    """``data`` as one uint8 array, intact."""
    return ArrayRecord({label: Array(dtype="uint8", shape=(len(data),), stype="fedlpp-packed",
                                     data=bytes(data))})


def record_bytes(record: ArrayRecord, *, label: str) -> bytes:
    return bytes(record[label].data)


@dataclass
class Instruction:
    """What the server asks one client to do in a round."""

    config: dict[str, Any]  # the run's resolved config (RunConfig.to_dict())
    client: int
    rnd: int
    payload: bytes


def encode_instruction(ins: Instruction) -> RecordDict:
    return RecordDict({
        PAYLOAD: bytes_record(ins.payload, label=PAYLOAD),
        INSTRUCTION: ConfigRecord({"config": json.dumps(ins.config, sort_keys=True),
                                   "client": ins.client, "round": ins.rnd}),
    })


def decode_instruction(content: RecordDict) -> Instruction:
    try:
        meta = content.config_records[INSTRUCTION]
        return Instruction(config=json.loads(str(meta["config"])), client=int(meta["client"]),
                           rnd=int(meta["round"]),
                           payload=record_bytes(content.array_records[PAYLOAD], label=PAYLOAD))
    except (KeyError, ValueError, TypeError) as exc:
        raise FedlppError(f"malformed FedLPP train instruction: {exc!r}") from None


def encode_reply(upload: Upload, steps: list[Step]) -> RecordDict:
    report = ConfigRecord({"client": upload.client, "error": upload.error or "",
                           "steps": json.dumps([[s.batch, s.loss, s.seconds] for s in steps])})
    content = RecordDict({REPORT: report})
    if upload.data is not None:
        content[UPLOAD] = bytes_record(upload.data, label=UPLOAD)
    return content


def decode_reply(content: RecordDict, *, client: int) -> tuple[Upload, list[Step]]:
    """The upload of ``client`` (the node the server sent to) and its steps; a reply that
    cannot be read is that client's failure, named, never the run's."""
    try:
        report = content.config_records[REPORT]
        said = int(report["client"])
        if said != client:
            return Upload(client=client, data=None,
                          error=f"reply claims to come from client {said}"), []
        steps = [Step(batch=[int(i) for i in b], loss=float(loss), seconds=float(sec))
                 for b, loss, sec in json.loads(str(report["steps"]))]
        if UPLOAD in content.array_records:
            return Upload(client=client,
                          data=record_bytes(content.array_records[UPLOAD], label=UPLOAD)), steps
        return Upload(client=client, data=None, error=str(report["error"]) or "no upload"), steps
    except (KeyError, ValueError, TypeError) as exc:
        return Upload(client=client, data=None, error=f"unreadable Flower reply: {exc!r}"), []


def node_record(partition: int) -> RecordDict:
    """A node's answer to the server's query: which client's records it holds."""
    return RecordDict({NODE: ConfigRecord({"partition-id": partition})})


def node_partition(content: RecordDict) -> int:
    try:
        return int(content.config_records[NODE]["partition-id"])
    except (KeyError, ValueError, TypeError) as exc:
        raise FedlppError(f"malformed answer to the node query: {exc!r}") from None

