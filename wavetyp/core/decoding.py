"""Decoding settings and the pieces that compose over logits.

`DecodeSettings` is one stream's decoding (temperature 0 = greedy, top_k, top_p,
typical_p); `settings_tensors` is its tensor encoding for a batch. The model returns
logits; these functions only reshape the distribution that is sampled. NLL and entropy
are always logged from the untempered logits (generate.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

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


def settings_tensors(settings: list[DecodeSettings], device="cpu") -> dict[str, torch.Tensor]:
    """Per-stream settings as tensors (B,), with neutral values where a filter is off."""
    return {
        "temperature": torch.tensor([s.temperature for s in settings], device=device),
        "top_k": torch.tensor([s.top_k or N_CODES for s in settings], device=device),
        "top_p": torch.tensor([s.top_p or 1.0 for s in settings], device=device),
        "typical_p": torch.tensor([s.typical_p or 1.0 for s in settings], device=device),
    }


NEG_INF = float("-inf")


def apply_temperature(logits, temperature):
    """logits / tau per row; tau = 0 rows are left as they are (greedy takes the argmax)."""
    t = temperature.to(logits.dtype).unsqueeze(-1)
    return logits / torch.where(t > 0, t, torch.ones_like(t))


def apply_greedy(logits, temperature):
    """tau = 0 rows become a point mass on their argmax (0 there, -inf elsewhere)."""
    rows = temperature == 0
    if not bool(rows.any()):
        return logits
    point = torch.full_like(logits, NEG_INF).scatter(-1, logits.argmax(-1, keepdim=True), 0.0)
    return torch.where(rows.unsqueeze(-1), point, logits)


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


def process_logits(logits: torch.Tensor, st: dict[str, torch.Tensor]) -> torch.Tensor:
    """The distribution each stream samples from, as logits (-inf = excluded):
    temperature, then top-k, top-p and typical-p on the tempered distribution, then greedy."""
    out = apply_temperature(logits, st["temperature"])
    if bool((st["top_k"] < N_CODES).any()):
        out = apply_top_k(out, st["top_k"])
    if bool((st["top_p"] < 1).any()):
        out = apply_top_p(out, st["top_p"])
    if bool((st["typical_p"] < 1).any()):
        out = apply_typical_p(out, st["typical_p"])
    return apply_greedy(out, st["temperature"])


def needs_truncation(st: dict[str, torch.Tensor]) -> bool:
    return bool((st["top_k"] < N_CODES).any() or (st["top_p"] < 1).any()
                or (st["typical_p"] < 1).any())

