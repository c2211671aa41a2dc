"""LiRA, offline (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022).

"Offline" (the paper's variant without IN models): the attacker never trains a shadow *on* a
record it scores, so the shadows are trained once, before any query, and each record ``i`` is
scored against the shadows that did not train on it (its OUT shadows ``O_i``; a record counts as
IN for a shadow when it is in that shadow's data set, whether or not a batch drew it)::

    score_i = (s_target_i - mu_i) / sigma_i,    mu_i = mean_{j in O_i} s_ji

which the paper's one-sided Gaussian test ``Phi((s - mu) / sigma)`` is monotone in (``mu`` is the
mean, as in the paper's Algorithm 1; its code takes the median). ``s`` = ``-loss`` (lm, mean NLL),
or the label's logit-scaled confidence ``log(p / (1 - p))`` (cls, closer to Gaussian, as the
paper argues). ``sigma``, as the paper advises for few shadows and its code does
(``fix_variance``): with fewer than ``global_variance_below`` (32) shadows, one global sigma
pooled over records, ``sqrt(sum_i sum_{j in O_i} (s_ji - mu_i)^2 / sum_i (|O_i| - 1))`` (if no
record has 2 OUT shadows, the std of all OUT values; 1.0 if that is 0). A global sigma is a
constant, so it ranks records as ``s_target - mu`` does. With more shadows, per record the std
over ``O_i`` (ddof 1), or the global sigma where ``|O_i| < 2`` or that std is below 1% of it.

Shadows reproduce the target's own training (:meth:`LiraAttack.procedure`):

* start: ``central`` / ``proxy``: the public base with the run's LoRA init (``ctx.initial``; for
  ``proxy`` in scope ``full``, where the base is private, the round-1 payload the client got);
  ``update``: the broadcast the client started its last round from.
* optimizer steps: ``central`` / ``proxy``: rounds x one client's local steps; ``update``: one
  client's local steps; AdamW with the run's lr, batch size, weight decay and the run's
  ``around_training`` defenses.
* data: as many records as the target's training set (every client's member pool; ``update``:
  the client's), drawn from the records no client trains on (test split and non-members). Shadows
  come in pairs on disjoint parts of a seeded permutation of that pool (each at most half of it),
  so every pool record is OUT for at least one shadow of each pair; members never enter it.
* what the target is: ``proxy`` shadows go through the broadcast quantizer and ``update`` shadows
  through the upload quantizer, as the target did.

Shadows are trained once per procedure (start, steps, records, count, seed) and kept in
``ctx.cache``, so ``central`` and ``proxy`` share them in scope ``adapter``. ``extra`` says how
they were made (``shadow_start``, ``shadow_steps``, ``shadow_records`` vs ``target_records``,
``variance``) and ``shadow_train_s`` the seconds this result spent training them (about 0, with
``shadows_reused``, when an earlier result had).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from attacks.base import ATTACKS, AttackResult
from attacks.context import Observation
from attacks.membership.base import MembershipAttack, MembershipConfig
from attacks.signals import SampleSignals
from fedlpp.data.encode import pad_id
from fedlpp.defenses import Defense, build_defenses
from fedlpp.device import model_device
from fedlpp.errors import FedlppError
from fedlpp.federation.batched import ClientJob, train_batched, unbatchable_reason
from fedlpp.federation.broadcast import make_broadcast
from fedlpp.federation.client import local_train, num_local_steps
from fedlpp.models import trainable_state
from fedlpp.protocol.trainer import Trainer
from fedlpp.seeding import derive_seed
from fedlpp.typed import check

Tensors = dict[str, torch.Tensor]


@dataclass
class LiraConfig(MembershipConfig):
    """Options of ``lira``."""

    shadows: int = 4  # shadow models, all OUT for the records they did not train on
    shadow_steps: int = 0  # optimizer steps per shadow; 0 = the target's own (see module doc)
    # fewer shadows than this: one pooled sigma, else per record (0 = always per record)
    global_variance_below: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, low in (("shadows", 1), ("shadow_steps", 0), ("global_variance_below", 0)):
            value = getattr(self, name)
            check(value >= low, name, value, f"an integer >= {low}")  # its type: fedlpp.typed


@dataclass(frozen=True)
class Procedure:
    """How the target was trained, as its shadows repeat it."""

    start: str  # "initial" or "payload <round>"
    steps: int
    records: int  # the target's training-set size
    view: str  # "trained", "broadcast" (proxy) or "upload" (update): how the target is seen


def statistic(signals: SampleSignals, *, task: str) -> np.ndarray:
    """Per record: ``-loss`` (lm) or ``log(p / (1 - p))`` of the label (cls, p capped below 1)."""
    if task == "cls":
        lp = np.minimum([float(lp.sum()) for lp in signals.token_logprobs], -1e-12)
        return lp - np.log(-np.expm1(lp))
    return -signals.loss


def lira_scores(*, target: np.ndarray, shadows: np.ndarray, out: np.ndarray | None = None,
                global_below: int = 32) -> np.ndarray:
    """Offline z-scores of ``target`` ([n]) against ``shadows`` ([m, n]) where ``out`` ([m, n],
    default all True) marks the shadows that did not train on the record; sigma as in the
    module doc (global when ``m < global_below``)."""
    s = np.asarray(shadows, dtype=np.float64)
    out = np.ones(s.shape, dtype=bool) if out is None else np.asarray(out, dtype=bool)
    count = out.sum(axis=0)
    if (count == 0).any():
        raise FedlppError(f"lira: {int((count == 0).sum())} scored records are in every shadow's "
                          "training data (no OUT shadow); use shadows >= 2")
    mu = np.where(out, s, 0.0).sum(axis=0) / count
    sq = np.where(out, (s - mu) ** 2, 0.0)
    dof = int((count - 1).sum())
    glob = float(np.sqrt(sq.sum() / dof)) if dof > 0 else float(s[out].std())
    glob = glob if glob > 0 else 1.0
    sigma = np.full(mu.shape, glob)
    if len(s) >= global_below:
        with np.errstate(divide="ignore", invalid="ignore"):
            sd = np.sqrt(sq.sum(axis=0) / (count - 1))
        sigma = np.where((count >= 2) & (sd >= 0.01 * glob), sd, glob)
    return (np.asarray(target, dtype=np.float64) - mu) / sigma


def shadow_datasets(pool: list[int], *, shadows: int, size: int, seed: int) -> list[list[int]]:
    """Per shadow, its records: pairs on disjoint parts of a seeded permutation of ``pool``, each
    ``min(size, len(pool) // 2)`` records (a lone last shadow takes a fresh permutation's first)."""
    n = min(size, len(pool) // 2)
    if n < 1:
        raise FedlppError(f"lira needs >= 2 records no client trained on (test split and "
                          f"non-members) to train shadows on, the run has {len(pool)}")
    rng, out = np.random.default_rng(seed), []
    for j in range(shadows):
        if j % 2 == 0:
            perm = rng.permutation(pool)
        out.append(sorted(perm[(j % 2) * n:(j % 2 + 1) * n].tolist()))
    return out


@ATTACKS.register("lira")
class LiraAttack(MembershipAttack):
    """Score = the target's statistic standardised by OUT shadow models' (offline LiRA)."""

    Config = LiraConfig
    summary = "membership: offline LiRA, z-score against OUT shadow fine-tunes (Carlini et al. 2022)"

    # --- the target's procedure --------------------------------------------------------------
    def procedure(self, obs: Observation) -> Procedure:
        """Start, steps and training-set size of the target (see the module doc)."""
        cfg, splits, target = obs.ctx.trace.config, obs.ctx.trace.splits, self.config.target
        if target == "update":
            records = len(splits.members[self.config.client])
            steps = num_local_steps(cfg.fed, num_examples=records)
            start, view = f"payload {self.update_round(obs)}", "upload"
        else:
            sizes = [len(m) for m in splits.members]
            records = sum(sizes)
            # per round, each client's local steps (set, or enough for local_epochs of its data)
            per_round = num_local_steps(cfg.fed, num_examples=round(records / len(sizes)))
            steps = obs.num_rounds * per_round
            full_proxy = target == "proxy" and cfg.quant.scope == "full"
            start = "payload 1" if full_proxy else "initial"
            view = "broadcast" if target == "proxy" else "trained"
        return Procedure(start=start, steps=self.config.shadow_steps or steps, records=records,
                         view=view)

    def start_tensors(self, obs: Observation, start: str) -> Tensors:
        """The model the shadows start from, as this target's attacker holds it."""
        return obs.ctx.initial if start == "initial" else obs.proxy(int(start.split()[1]))

    def shadow_key(self, obs: Observation) -> tuple:
        p = self.procedure(obs)
        return ("lira-shadows", p.start, p.steps, p.records, self.config.shadows, self.config.seed)

    def shadow_pool(self, obs: Observation) -> list[int]:
        """Records no client trained on: the test split and every client's non-members."""
        splits = obs.ctx.trace.splits
        trained = {i for m in splits.members for i in m}
        return sorted(({*splits.test} | {i for m in splits.nonmembers for i in m}) - trained)

    # --- the shadows -------------------------------------------------------------------------
    def trained_shadows(self, obs: Observation) -> list[tuple[list[int], Tensors]]:
        """Per shadow (its records, its private tensors as trained), trained on the first call."""
        ctx, key = obs.ctx, self.shadow_key(obs)
        if key not in ctx.cache:
            cfg, p = ctx.trace.config, self.procedure(obs)
            start = self.start_tensors(obs, p.start)
            # a shadow trains as the target's clients did, inside the same defenses (e.g.
            # DP-SGD), each shadow standing for one client of one round
            defenses = build_defenses(cfg.defenses)
            inside = any(type(d).around_training is not Defense.around_training for d in defenses)
            datasets = shadow_datasets(self.shadow_pool(obs), shadows=self.config.shadows,
                                       size=p.records, seed=self.config.seed)
            if not inside and self.batch_shadows(obs):
                ctx.cache[key] = self._batched_shadows(obs, datasets, start=start, steps=p.steps)
                return ctx.cache[key]
            models = []
            for j, data in enumerate(datasets):
                train: Trainer = local_train
                for d in defenses:
                    train = d.around_training(train, client=j, rnd=1)
                with ctx.loaded(start) as model:
                    train(model=model, data=ctx.encode(data), steps=p.steps,
                          batch_size=cfg.fed.batch_size, lr=cfg.fed.lr,
                          weight_decay=cfg.fed.weight_decay, seed=derive_seed(self.config.seed, j))
                    models.append((data, {**start, **trainable_state(model)}))
            ctx.cache[key] = models
        return ctx.cache[key]

    def batch_shadows(self, obs: Observation) -> bool:
        """The shadows train as one batched computation: as the run's clients would
        (``system.batch_clients``: ``auto`` = on a CUDA device), when nothing forbids it."""
        run = obs.ctx.run
        setting = run.cfg.system.batch_clients
        on = setting == "on" or (setting == "auto" and model_device(run.bundle.model).type == "cuda")
        return on and self.config.shadows > 1 and unbatchable_reason(run.bundle.model) is None

    def _batched_shadows(self, obs: Observation, datasets: list[list[int]], *, start: Tensors,
                         steps: int) -> list[tuple[list[int], Tensors]]:
        ctx, fed = obs.ctx, obs.ctx.trace.config.fed
        jobs = [ClientJob(data=ctx.encode(data), steps=steps, seed=derive_seed(self.config.seed, j))
                for j, data in enumerate(datasets)]
        with ctx.loaded(start) as model:
            trained = train_batched(model=model, jobs=jobs, start=trainable_state(model),
                                    batch_size=fed.batch_size, lr=fed.lr,
                                    weight_decay=fed.weight_decay, task=ctx.task,
                                    pad_id=pad_id(ctx.run.bundle.tokenizer))
        return [(data, {**start, **tensors}) for data, (tensors, _) in zip(datasets, trained, strict=True)]

    def shadow_models(self, obs: Observation) -> list[Tensors]:
        """The shadows' private tensors as the target is seen (quantized like a proxy / upload)."""
        key, p = self.shadow_key(obs), self.procedure(obs)
        trained = self.trained_shadows(obs)
        if p.view == "trained":
            return [tensors for _, tensors in trained]
        view_key = (*key, p.view)
        if view_key not in obs.ctx.cache:
            run = obs.ctx.run
            quantizer = run.quantizer if p.view == "broadcast" else run.uploader
            obs.ctx.cache[view_key] = [
                {**tensors, **make_broadcast({n: tensors[n] for n in run.trainable},
                                             quantizer=quantizer,
                                             seed=derive_seed(self.config.seed, j)).proxy}
                for j, (_, tensors) in enumerate(trained)]
        return obs.ctx.cache[view_key]

    # --- the attack ----------------------------------------------------------------------------
    def run(self, obs: Observation) -> AttackResult:
        reused, t0 = self.shadow_key(obs) in obs.ctx.cache, time.perf_counter()
        self.trained_shadows(obs)  # first, so the result can say what training cost
        train_s = time.perf_counter() - t0
        res = super().run(obs)
        p = self.procedure(obs)
        pooled = self.config.shadows < self.config.global_variance_below
        res.extra.update(shadow_train_s=train_s, shadows_reused=reused, shadow_start=p.start,
                         shadow_steps=p.steps, target_records=p.records,
                         shadow_records=len(self.trained_shadows(obs)[0][0]),
                         variance="global" if pooled else "per-record")
        return res

    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        task = obs.ctx.task
        shadows = np.stack([statistic(obs.ctx.signals(m, indices), task=task)
                            for m in self.shadow_models(obs)])
        ins = [set(data) for data, _ in self.trained_shadows(obs)]
        out = np.array([[i not in records for i in indices] for records in ins])
        return lira_scores(target=statistic(target, task=task), shadows=shadows, out=out,
                           global_below=self.config.global_variance_below)
