"""Decoding settings and the pieces that compose over logits.

`DecodeSettings` is one stream's decoding (temperature 0 = greedy, top_k, top_p,
typical_p); `encode_settings` gives a batch's one tensor encoding (DecodeBatch), which both
the warpers here and the scripted loop read. The model returns logits; these functions only
reshape the distribution that is sampled. NLL and entropy
are always logged from the untempered logits (generate.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch

from wavetyp.core.audio import N_CODES


@dataclass(frozen=True)
class DecodeSettings:
    """One stream's decoding: temperature 0 means greedy (argmax); None/1.0 disable a filter."""
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        for name in ("top_p", "typical_p"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0 < v <= 1):
                raise ValueError(f"{name} must be in (0, 1], got {v}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def name(self) -> str:
        if self.greedy:
            return "greedy"
        parts = [f"tau{self.temperature:g}"]
        for k in ("top_k", "top_p", "typical_p"):
            if getattr(self, k) is not None:
                parts.append(f"{k.replace('_', '')}{getattr(self, k):g}")
        return "-".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DecodeBatch:
    """The one tensor encoding of a batch's decoding settings, read by the warpers below and
    by the scripted sampling loop (fastloop.py) alike.

    inv_tau (B, 1): 1/tau, and 1 on greedy rows; noise (B, 1): 1 on sampled rows, 0 on greedy
    rows, so that argmax(logits * inv_tau + noise * g) is greedy or Gumbel-max sampling.
    The flags say which filters any stream uses; they come from the settings (host side),
    so the sampling loop never asks the device.
    """
    temperature: torch.Tensor      # (B,)
    inv_tau: torch.Tensor          # (B, 1)
    noise: torch.Tensor            # (B, 1)
    top_k: torch.Tensor            # (B,), N_CODES where off
    top_p: torch.Tensor            # (B,), 1 where off
    typical_p: torch.Tensor        # (B,), 1 where off
    any_greedy: bool
    any_top_k: bool
    any_top_p: bool
    any_typical_p: bool

    @property
    def truncating(self) -> bool:
        return self.any_top_k or self.any_top_p or self.any_typical_p

    def repeat(self, n: int) -> "DecodeBatch":
        """The same settings for n consecutive rows of streams (rows t*B + b)."""
        return replace(self, **{k: getattr(self, k).repeat(n, *([1] * (getattr(self, k).dim() - 1)))
                                for k in ("temperature", "inv_tau", "noise", "top_k", "top_p", "typical_p")})


def encode_settings(settings: list[DecodeSettings], device="cpu") -> DecodeBatch:
    """Per-stream settings as tensors, with neutral values where a filter is off."""
    tau = torch.tensor([s.temperature for s in settings], device=device)
    return DecodeBatch(
        temperature=tau,
        inv_tau=torch.where(tau > 0, 1.0 / tau.clamp_min(1e-30), torch.ones_like(tau)).unsqueeze(-1),
        noise=(tau > 0).float().unsqueeze(-1),
        top_k=torch.tensor([s.top_k or N_CODES for s in settings], device=device),
        top_p=torch.tensor([s.top_p or 1.0 for s in settings], device=device),
        typical_p=torch.tensor([s.typical_p or 1.0 for s in settings], device=device),
        any_greedy=any(s.greedy for s in settings),
        any_top_k=any(s.top_k is not None and s.top_k < N_CODES for s in settings),
        any_top_p=any(s.top_p is not None and s.top_p < 1 for s in settings),
        any_typical_p=any(s.typical_p is not None and s.typical_p < 1 for s in settings))


NEG_INF = float("-inf")


def apply_temperature(logits, inv_tau):
    """logits / tau per row, as logits * (1/tau); greedy rows have inv_tau 1 (argmax is taken)."""
    return logits * inv_tau.to(logits.dtype)


def apply_greedy(logits, temperature):
    """tau = 0 rows become a point mass on their argmax (0 there, -inf elsewhere)."""
    point = torch.full_like(logits, NEG_INF).scatter(-1, logits.argmax(-1, keepdim=True), 0.0)
    return torch.where((temperature == 0).unsqueeze(-1), point, logits)


def apply_top_k(logits, top_k):
    """Keep the k largest logits per row (k = 256 keeps all)."""
    kth = logits.sort(-1, descending=True).values.gather(-1, (top_k.long() - 1).clamp(0, N_CODES - 1).unsqueeze(-1))
    return logits.masked_fill(logits < kth, NEG_INF)


def apply_top_p(logits, top_p):
    """Nucleus: keep the smallest set of most likely codes whose probability reaches p."""
    sorted_logits, order = logits.sort(-1, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs                 # mass strictly before each code
    p = top_p.to(probs.dtype).unsqueeze(-1)
    drop_sorted = (before >= p) & (p < 1)             # p = 1 keeps everything, despite rounding
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def apply_typical_p(logits, typical_p):
    """Locally typical sampling (Meister et al. 2023): keep codes whose surprisal is closest
    to the entropy until their mass reaches p."""
    logp = logits.log_softmax(-1)
    p = logp.exp()
    ent = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1, keepdim=True)
    dist = (-logp - ent).abs()
    sorted_dist, order = dist.sort(-1)
    sp = p.gather(-1, order)
    before = sp.cumsum(-1) - sp
    tp = typical_p.to(p.dtype).unsqueeze(-1)
    drop_sorted = (before >= tp) & (tp < 1)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def process_logits(logits: torch.Tensor, dec: DecodeBatch) -> torch.Tensor:
    """The distribution each stream samples from, as logits (-inf = excluded):
    temperature, then top-k, top-p and typical-p on the tempered distribution, then greedy."""
    out = apply_temperature(logits, dec.inv_tau)
    if dec.any_top_k:
        out = apply_top_k(out, dec.top_k)
    if dec.any_top_p:
        out = apply_top_p(out, dec.top_p)
    if dec.any_typical_p:
        out = apply_typical_p(out, dec.typical_p)
    return apply_greedy(out, dec.temperature) if dec.any_greedy else out
