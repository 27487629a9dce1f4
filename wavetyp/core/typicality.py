"""Pure typicality metrics: per-step NLL, entropy, varentropy and the per-sample summary.

A sequence x_1..x_N drawn from the model sits in the typical set when its mean
surprisal (NLL) is close to the mean entropy of the predictive distributions it met:
each term nll_t - H_t has mean 0 and variance varentropy_t given the past, so the sum
divided by sqrt(sum of varentropies) is about N(0, 1) for ancestral samples.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

LN2 = math.log(2.0)
DEFAULT_EPSILON = 0.1   # bits/sample


def step_stats(logits: torch.Tensor, codes: torch.Tensor):
    """(..., 256) logits and (...) codes -> (nll_bits, entropy_bits, varentropy_bits2).

    All three come from the distribution the logits define (for the sampler: the
    model's untempered distribution, whatever the sample was drawn from).
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    surprisal = -logp / LN2                                   # bits
    surprisal = torch.where(p > 0, surprisal, torch.zeros_like(surprisal))
    entropy = (p * surprisal).sum(-1)
    varentropy = (p * (surprisal - entropy.unsqueeze(-1)) ** 2).sum(-1)
    nll = -logp.gather(-1, codes.long().unsqueeze(-1)).squeeze(-1) / LN2
    return nll, entropy, varentropy


def chosen_nll_bits(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """-log2 q(x) under the distribution the (possibly processed) logits define; inf if q(x)=0."""
    logq = torch.log_softmax(logits.float(), dim=-1)
    return -logq.gather(-1, codes.long().unsqueeze(-1)).squeeze(-1) / LN2


@dataclass
class TypicalitySummary:
    n: int                      # samples scored
    mean_nll_bits: float
    mean_entropy_bits: float
    gap_bits: float             # mean(nll - entropy), bits/sample; < 0: more likely than typical
    z: float                    # sum(nll - entropy) / sqrt(sum varentropy)
    in_typical_set: bool        # |gap| <= epsilon
    epsilon: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(nll_bits, entropy_bits, varentropy_bits2, epsilon: float = DEFAULT_EPSILON,
              mask=None) -> TypicalitySummary:
    """Typicality summary of one sequence's per-step logs (numpy or torch, 1-D)."""
    nll = np.asarray(nll_bits, dtype=np.float64)
    ent = np.asarray(entropy_bits, dtype=np.float64)
    var = np.asarray(varentropy_bits2, dtype=np.float64)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        nll, ent, var = nll[m], ent[m], var[m]
    n = int(nll.size)
    if n == 0:
        return TypicalitySummary(0, float("nan"), float("nan"), float("nan"), float("nan"),
                                 False, epsilon)
    diff = nll - ent
    gap = float(diff.mean())
    sv = float(var.sum())
    z = float(diff.sum() / math.sqrt(sv)) if sv > 0 else (0.0 if diff.sum() == 0 else math.copysign(math.inf, diff.sum()))
    return TypicalitySummary(n, float(nll.mean()), float(ent.mean()), gap, z,
                             bool(abs(gap) <= epsilon), epsilon)
