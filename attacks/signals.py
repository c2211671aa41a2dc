"""Per-sample signals of one model on a set of records, computed in one forward pass and shared.

Every membership attack reads these instead of running the model itself, so all attacks on one
target together cost about one scoring pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fedlpp.data.batching import scoring_batches


@dataclass
class SampleSignals:
    """Signals of one model on records ``indices`` (one entry per record).

    For ``lm``, per record: ``token_logprobs`` = log p(x_t | x_<t) of each target token,
    ``token_mu`` / ``token_sigma`` = mean and std of log p(z) under the model's own next-token
    distribution at that position (for Min-K%++). For ``cls`` the "tokens" are the one label:
    log p(y), and mean/std of log p over the classes.
    """

    indices: np.ndarray
    token_logprobs: list[np.ndarray]
    token_mu: list[np.ndarray]
    token_sigma: list[np.ndarray]

    @property
    def loss(self) -> np.ndarray:
        """Per-record mean negative log-likelihood."""
        # sum / size is exactly np.mean (same reduction, same division) at a third of its overhead
        return np.array([-float(lp.sum()) / lp.size if lp.size else 0.0 for lp in self.token_logprobs])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays (the ragged per-record ones concatenated, with their lengths)."""
        lengths = np.array([lp.size for lp in self.token_logprobs], dtype=np.int64)

        def cat(arrays: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float64)

        return {"indices": np.asarray(self.indices, dtype=np.int64), "lengths": lengths,
                "token_logprobs": cat(self.token_logprobs), "token_mu": cat(self.token_mu),
                "token_sigma": cat(self.token_sigma)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> SampleSignals:
        """The inverse of :meth:`to_arrays`."""
        cuts = np.cumsum(arrays["lengths"])[:-1]

        def split(name: str) -> list[np.ndarray]:
            return [a.copy() for a in np.split(arrays[name], cuts)] if arrays["lengths"].size else []

        return cls(indices=arrays["indices"], token_logprobs=split("token_logprobs"),
                   token_mu=split("token_mu"), token_sigma=split("token_sigma"))

    @classmethod
    def concat(cls, parts: Sequence[SampleSignals]) -> SampleSignals:
        """The records of ``parts``, in order."""
        return cls(indices=np.concatenate([p.indices for p in parts]) if parts
                   else np.zeros(0, dtype=np.int64),
                   token_logprobs=[x for p in parts for x in p.token_logprobs],
                   token_mu=[x for p in parts for x in p.token_mu],
                   token_sigma=[x for p in parts for x in p.token_sigma])

    def subset(self, positions: Sequence[int]) -> SampleSignals:
        """The signals of the records at ``positions`` (positions into ``indices``)."""
        pos = list(positions)
        return SampleSignals(indices=self.indices[pos],
                             token_logprobs=[self.token_logprobs[i] for i in pos],
                             token_mu=[self.token_mu[i] for i in pos],
                             token_sigma=[self.token_sigma[i] for i in pos])


@torch.no_grad()
def compute_signals(model: torch.nn.Module, data: Mapping[str, torch.Tensor], *,
                    indices: Sequence[int], task: str, batch_size: int) -> SampleSignals:
    """One forward pass of ``model`` over encoded ``data`` (rows aligned with ``indices``)."""
    was_training = model.training
    model.eval()
    lps, mus, sigmas = [], [], []
    for batch in scoring_batches(model, data, task=task, batch_size=batch_size):
        labels = batch.pop("labels")
        logits = model(**batch).logits
        if task == "lm":
            logits, labels = logits[:, :-1], labels[:, 1:]
        else:
            logits, labels = logits[:, None, :], labels[:, None]
        valid = labels != -100
        # one record at a time: the (len, vocab) temporaries of a whole batch would cost
        # several times the logits' memory
        for row in range(labels.shape[0]):
            keep = valid[row]
            logp = torch.log_softmax(logits[row][keep].float(), dim=-1)
            p = logp.exp()
            mu = (p * logp).sum(-1)
            sigma = ((p * logp.square()).sum(-1) - mu.square()).clamp(min=0).sqrt()
            tok = logp.gather(-1, labels[row][keep][:, None])[:, 0]
            lps.append(tok.cpu().numpy().astype(np.float64))
            mus.append(mu.cpu().numpy().astype(np.float64))
            sigmas.append(sigma.cpu().numpy().astype(np.float64))
        del logits
    model.train(was_training)
    return SampleSignals(indices=np.asarray(indices), token_logprobs=lps, token_mu=mus,
                         token_sigma=sigmas)
