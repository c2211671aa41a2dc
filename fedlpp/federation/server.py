"""The FedLPP server: the full-precision master, its quantized broadcasts, and aggregation of
the clients' uploads into a straight-through update.

Engine-agnostic: the in-process simulator and a Flower strategy drive the same object through
two calls, ``broadcast(rnd)`` and ``aggregate(rnd, uploads)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from fedlpp.aggregators import build_aggregator
from fedlpp.config import FedConfig
from fedlpp.defenses import Defense, HookFailed, Rejected
from fedlpp.errors import FedlppError
from fedlpp.federation.broadcast import Broadcast, make_broadcast
from fedlpp.federation.master_update import apply_update, overflow_culprits
from fedlpp.federation.validate import (
    contribution_limit,
    delta_norm,
    max_abs,
    non_finite,
    validate_update,
)
from fedlpp.protocol.records import Upload, Verdict
from fedlpp.protocol.wire import Layout, decode_upload
from fedlpp.quant import Quantizer
from fedlpp.seeding import derive_seed

log = logging.getLogger("fedlpp")


@contextmanager
def hook(rnd: int, name: str, defense: Defense) -> Iterator[None]:
    """Round ``rnd``'s call of ``defense``'s hook ``name``: an error it raises (other than
    :class:`Rejected`) becomes a :class:`HookFailed` naming the round, hook and defense."""
    try:
        yield
    except (Rejected, HookFailed):
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's error, named where it came from
        raise HookFailed(rnd=rnd, hook=name, plugin=f"defense '{defense.name}'", exc=exc) from exc


class FedLPPServer:
    """Owns the master (float32 private tensors), the expected update layout and the broadcasts.

    Args:
        master: private tensors, trainable ones first (LoRA A/B, heads), then ``static`` ones
            (scope ``full``: base linear weights, broadcast but never trained).
        reference: one trainable tensor of the expected name, shape and dtype per update tensor.
        static: names in ``master`` that never change.
        quantizer, uploader: the broadcast and the upload quantizers.
        enrolled: each client's number of training examples, known from enrollment: an upload
            claiming another count (its aggregation weight) is rejected.
        fed: server learning rate, master update rule, norm bound.
        aggregator: the config table of the aggregation rule.
        defenses: hooks before the broadcast, on each update and after aggregation.
        seed: the run seed (stochastic quantizers draw per round from it).
    """

    def __init__(self, *, master: dict[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
                 static: Sequence[str], quantizer: Quantizer, uploader: Quantizer,
                 enrolled: Sequence[int], fed: FedConfig, aggregator: Any,
                 defenses: Sequence[Defense] = (), seed: int) -> None:
        self.master = master
        self.reference = dict(reference)
        self.static = frozenset(static)
        self.quantizer, self.uploader = quantizer, uploader
        self.enrolled = list(enrolled)
        self.fed, self.aggregator, self.defenses, self.seed = fed, aggregator, list(defenses), seed
        self.upload_layout = Layout.of(self.reference, quantizer=uploader)
        # every weighted sum of accepted updates stays finite below this value bound
        self.value_limit = contribution_limit(total_weight=float(sum(self.enrolled)))
        self._static_cache: dict = {}
        self._sent: dict[int, Broadcast] = {}
        self.aggregation_report: dict[str, Any] = {}  # what the rule did in the last round

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        """The master's tensors that training changes."""
        return {n: t for n, t in self.master.items() if n not in self.static}

    # --- server -> clients ---------------------------------------------------------------------
    def broadcast(self, rnd: int) -> Broadcast:
        """Round ``rnd``'s payload, made from the master as it is when first asked for."""
        if rnd not in self._sent:
            tensors: Mapping[str, torch.Tensor] = self.master
            for d in self.defenses:
                with hook(rnd, "before_broadcast", d):
                    tensors = d.before_broadcast(rnd, tensors, static=self.static)
            self._sent = {r: b for r, b in self._sent.items() if r >= rnd - 1}
            self._sent[rnd] = make_broadcast(tensors, quantizer=self.quantizer, rnd=rnd,
                                             seed=derive_seed(self.seed, rnd),
                                             cache=self._static_cache, static=self.static)
        return self._sent[rnd]

    # --- clients -> server ---------------------------------------------------------------------
    def aggregate(self, rnd: int, uploads: Iterable[Upload], *,
                  observe: Callable[[Verdict], None] | None = None) -> tuple[list[Verdict], dict | None]:
        """Decode, check and aggregate round ``rnd``'s uploads, then update the master.

        Uploads are taken one at a time and each accepted update goes straight into the
        aggregate, so a round never holds every update. ``observe`` sees each verdict with its
        decoded tensors (e.g. to write the trace) before they are dropped.

        A round whose accepted updates are fewer than the aggregation rule needs (Krum with
        rejected uploads) leaves the master as it is: the refusal names the rule, the accepted
        count and what it needed, and the run goes on.

        Returns:
            The verdicts (without tensors), and ``None`` if the master was updated (or no
            update was accepted), else why the round's update was refused and which clients
            caused it.
        """
        sent = self.broadcast(rnd)
        received = {n: sent.proxy[n] for n in self.reference}
        rule = build_aggregator(self.aggregator)
        rule.begin(broadcast=received)
        verdicts: list[Verdict] = []
        reach: dict[int, float] = {}
        seen: set[int] = set()
        for upload in uploads:
            if upload.client in seen:
                verdict = Verdict(client=upload.client, accepted=False, nbytes=upload.nbytes,
                                  reason=f"a second upload in round {rnd}")
            else:
                verdict = self.receive(rnd, upload, broadcast=received)
            seen.add(upload.client)
            if verdict.accepted:
                rule.add(verdict.tensors, weight=verdict.num_examples, client=verdict.client)
                # accepted values are far below float32's range: the difference cannot overflow
                reach[verdict.client] = verdict.num_examples * max_abs(
                    {n: t.float() - received[n] for n, t in verdict.tensors.items()})
            else:
                log.warning("round %d: rejected the update of client %d: %s", rnd,
                            verdict.client, verdict.reason)
            if observe is not None:
                observe(verdict)
            verdict.tensors = None
            verdicts.append(verdict)
        if verdicts and all(v.reason and v.reason.startswith("client failed") for v in verdicts):
            raise RuntimeError(f"every client of round {rnd} failed; the first: {verdicts[0].reason}")
        if not rule.count:
            self.aggregation_report = {}
            return verdicts, None
        needed, why = rule.needs()
        if rule.count < needed:  # rejections left too few for the rule: the master stays
            self.aggregation_report = {}
            return verdicts, too_few(rnd, rule=rule.name, needed=needed, why=why,
                                     verdicts=verdicts)
        mean = rule.result()
        self.aggregation_report = rule.report()
        return verdicts, self._apply(rnd, mean, received=received, reach=reach)

    def _apply(self, rnd: int, mean: dict[str, torch.Tensor], *, received: dict[str, torch.Tensor],
               reach: dict[int, float]) -> dict[str, Any] | None:
        """Straight-through update of the master, unless it would make the master non-finite."""
        for d in self.defenses:
            with hook(rnd, "after_aggregate", d):
                mean = dict(d.after_aggregate(rnd, mean, broadcast=received,
                                              weights={c: self.enrolled[c] for c in reach}))
        new = apply_update(self.master, mean=mean, broadcast=received,
                           server_lr=self.fed.server_lr, rule=self.fed.aggregation)
        bad = non_finite(new)
        if not bad:
            self.master = new
            return None
        blamed = overflow_culprits(reach, weights={c: self.enrolled[c] for c in reach},
                                   master_abs=max_abs(self.trainable), server_lr=self.fed.server_lr)
        reason = (f"the aggregate would make the master non-finite ({bad[0]}"
                  f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}); update refused")
        log.warning("round %d: %s; clients responsible: %s", rnd, reason, blamed)
        return {"reason": reason, "clients": blamed}

    def receive(self, rnd: int, upload: Upload, *, broadcast: Mapping[str, torch.Tensor]) -> Verdict:
        """Decode and check one upload; the verdict holds the decoded tensors when accepted."""
        def reject(reason: str, **known: Any) -> Verdict:
            return Verdict(client=upload.client, accepted=False, reason=reason,
                           nbytes=upload.nbytes, **known)

        c = upload.client
        if upload.data is None:
            return reject(f"client failed: {upload.error}")
        try:
            content = decode_upload(upload.data, layout=self.upload_layout)
            tensors = {n: self.uploader.dequantize(p) for n, p in content.packed.items()}
        except (FedlppError, ValueError, RuntimeError) as exc:
            return reject(f"malformed upload: {exc}")
        known = {"num_examples": content.num_examples, "train_loss": content.train_loss,
                 "tensors": tensors}
        reason = self.check(c, tensors, num_examples=content.num_examples,
                            train_loss=content.train_loss, broadcast=broadcast)
        if reason is None:
            try:
                for d in self.defenses:
                    with hook(rnd, "on_update", d):
                        tensors = dict(d.on_update(rnd, c, tensors, broadcast=broadcast))
            except Rejected as exc:
                reason = f"rejected by a defense: {exc}"
        if reason is not None:
            return reject(reason, **known)
        return Verdict(client=c, accepted=True, nbytes=upload.nbytes, **{**known, "tensors": tensors})

    def check(self, client: int, tensors: Mapping[str, torch.Tensor], *, num_examples: int,
              train_loss: float, broadcast: Mapping[str, torch.Tensor]) -> str | None:
        """Why a decoded update cannot be aggregated, or None."""
        if not 0 <= client < len(self.enrolled):
            return f"unknown client {client} (enrolled: 0..{len(self.enrolled) - 1})"
        if num_examples != self.enrolled[client]:
            return (f"claims {num_examples:,} training examples, enrolled with "
                    f"{self.enrolled[client]:,}")
        if not math.isfinite(train_loss):
            return f"reports a non-finite training loss ({train_loss})"
        reason = validate_update(tensors, reference=self.reference)
        if reason is not None:
            return reason
        largest = max_abs(tensors)
        if largest > self.value_limit:
            return (f"values up to {largest:.3g} cannot be aggregated in float32 (limit "
                    f"{self.value_limit:.3g} for {sum(self.enrolled):,} enrolled examples)")
        bound = self.fed.max_update_norm
        if bound > 0:
            norm = delta_norm(tensors, broadcast=broadcast)
            if norm > bound:
                return f"update norm {norm:.4g} exceeds fed.max_update_norm={bound:g}"
        return None


def too_few(rnd: int, *, rule: str, needed: int, why: str, verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """The refusal of a round whose accepted updates are fewer than aggregation rule ``rule``
    needs: the reason, the clients whose uploads were rejected, the rule and both counts."""
    accepted = sum(v.accepted for v in verdicts)
    rejected = sorted(v.client for v in verdicts if not v.accepted)
    reason = (f"aggregation rule '{rule}' needs at least {needed} accepted updates ({why}), got "
              f"{accepted} of {len(verdicts)}; update refused")
    log.warning("round %d: %s; rejected clients: %s", rnd, reason, rejected)
    return {"reason": reason, "clients": rejected, "rule": rule, "accepted": accepted,
            "needed": needed}
