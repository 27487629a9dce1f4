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
    """One stream's decoding: temperature 0 means greedy (argmax); None disables a filter.

    The filters carry the ecosystem's names: top_k, top_p, typical_p, min_p, epsilon_cutoff and
    eta_cutoff as in Hugging Face `generate`; mirostat_tau / mirostat_eta as llama.cpp's
    mirostat 2 (target surprise in bits, learning rate). mirostat_gap is wavetyp's variant whose
    target follows the model: the surprise aimed at, step by step, is the entropy of the model's
    own untempered distribution plus this gap (0: aim at the middle of the typical set).
    """
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    min_p: float | None = None
    epsilon_cutoff: float | None = None
    eta_cutoff: float | None = None
    mirostat_tau: float | None = None
    mirostat_gap: float | None = None
    mirostat_eta: float = 0.1

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        for name in ("top_p", "typical_p", "min_p"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0 < v <= 1):
                raise ValueError(f"{name} must be in (0, 1], got {v}")
        for name in ("epsilon_cutoff", "eta_cutoff"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0 < v < 1):
                raise ValueError(f"{name} must be in (0, 1), got {v}")
        if self.mirostat_tau is not None and not (math.isfinite(self.mirostat_tau) and self.mirostat_tau > 0):
            raise ValueError(f"mirostat_tau must be > 0 bits, got {self.mirostat_tau}")
        if self.mirostat_gap is not None and not math.isfinite(self.mirostat_gap):
            raise ValueError(f"mirostat_gap must be finite, got {self.mirostat_gap}")
        if self.mirostat_tau is not None and self.mirostat_gap is not None:
            raise ValueError("mirostat_tau (a fixed target) and mirostat_gap (entropy + gap) exclude each other")
        if not (math.isfinite(self.mirostat_eta) and self.mirostat_eta > 0):
            raise ValueError(f"mirostat_eta must be > 0, got {self.mirostat_eta}")

    @property
    def mirostat(self) -> bool:
        return self.mirostat_tau is not None or self.mirostat_gap is not None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def name(self) -> str:
        if self.greedy:
            return "greedy"
        parts = [f"tau{self.temperature:g}"]
        for k, tag in (("top_k", "topk"), ("top_p", "topp"), ("typical_p", "typicalp"),
                       ("min_p", "minp"), ("epsilon_cutoff", "eps"), ("eta_cutoff", "eta"),
                       ("mirostat_tau", "mirostat"), ("mirostat_gap", "mirostatgap")):
            if getattr(self, k) is not None:
                parts.append(f"{tag}{getattr(self, k):g}")
        if self.mirostat and self.mirostat_eta != 0.1:
            parts.append(f"lr{self.mirostat_eta:g}")
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
    min_p: torch.Tensor            # (B,), 0 where off
    epsilon: torch.Tensor          # (B,), 0 where off
    eta: torch.Tensor              # (B,), 0 where off
    mirostat_tau: torch.Tensor     # (B,) fixed target surprise in bits, nan where not used
    mirostat_gap: torch.Tensor     # (B,) target = entropy + gap, nan where not used
    mirostat_eta: torch.Tensor     # (B,)
    any_greedy: bool
    any_top_k: bool
    any_top_p: bool
    any_typical_p: bool
    any_min_p: bool = False
    any_epsilon: bool = False
    any_eta: bool = False
    any_mirostat: bool = False

    @property
    def truncating(self) -> bool:
        return (self.any_top_k or self.any_top_p or self.any_typical_p or self.any_min_p
                or self.any_epsilon or self.any_eta or self.any_mirostat)

    def repeat(self, n: int) -> "DecodeBatch":
        """The same settings for n consecutive rows of streams (rows t*B + b)."""
        return replace(self, **{k: getattr(self, k).repeat(n, *([1] * (getattr(self, k).dim() - 1)))
                                for k in TENSOR_FIELDS})


TENSOR_FIELDS = ("temperature", "inv_tau", "noise", "top_k", "top_p", "typical_p", "min_p", "epsilon",
                 "eta", "mirostat_tau", "mirostat_gap", "mirostat_eta")


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
        min_p=torch.tensor([s.min_p or 0.0 for s in settings], device=device),
        epsilon=torch.tensor([s.epsilon_cutoff or 0.0 for s in settings], device=device),
        eta=torch.tensor([s.eta_cutoff or 0.0 for s in settings], device=device),
        mirostat_tau=torch.tensor([nan_if_none(s.mirostat_tau) for s in settings], device=device),
        mirostat_gap=torch.tensor([nan_if_none(s.mirostat_gap) for s in settings], device=device),
        mirostat_eta=torch.tensor([s.mirostat_eta for s in settings], device=device),
        any_greedy=any(s.greedy for s in settings),
        any_top_k=any(s.top_k is not None and s.top_k < N_CODES for s in settings),
        any_top_p=any(s.top_p is not None and s.top_p < 1 for s in settings),
        any_typical_p=any(s.typical_p is not None and s.typical_p < 1 for s in settings),
        any_min_p=any(s.min_p is not None for s in settings),
        any_epsilon=any(s.epsilon_cutoff is not None for s in settings),
        any_eta=any(s.eta_cutoff is not None for s in settings),
        any_mirostat=any(s.mirostat for s in settings))


def nan_if_none(v) -> float:
    return float("nan") if v is None else float(v)


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


def _keep_at_least_the_top(drop, logits):
    """Never drop a row's most likely code (so every row keeps a distribution)."""
    return drop.scatter(-1, logits.argmax(-1, keepdim=True), False)


def apply_min_p(logits, min_p):
    """min-p (Nguyen et al. 2024): keep codes with p >= min_p * max p (min_p 0 keeps all)."""
    p = logits.softmax(-1)
    drop = p < min_p.to(p.dtype).unsqueeze(-1) * p.amax(-1, keepdim=True)
    return logits.masked_fill(drop, NEG_INF)


def apply_epsilon_cutoff(logits, epsilon):
    """epsilon-sampling (Hewitt et al. 2022): keep codes with p >= epsilon (at least the top one)."""
    p = logits.softmax(-1)
    drop = _keep_at_least_the_top(p < epsilon.to(p.dtype).unsqueeze(-1), logits)
    return logits.masked_fill(drop, NEG_INF)


def apply_eta_cutoff(logits, eta):
    """eta-sampling (Hewitt et al. 2022): keep p >= min(eta, sqrt(eta) exp(-H)), H the entropy
    (nats) of the distribution being filtered; at least the top code stays."""
    logp = logits.log_softmax(-1)
    p = logp.exp()
    ent = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1, keepdim=True)
    e = eta.to(p.dtype).unsqueeze(-1)
    drop = _keep_at_least_the_top(p < torch.minimum(e, e.sqrt() * torch.exp(-ent)), logits)
    return logits.masked_fill(drop, NEG_INF)


def apply_mirostat(logits, raw_logits, mu):
    """Mirostat's truncation: drop the codes whose surprise under the model's untempered
    distribution, -log2 p(x), exceeds mu (bits; +inf keeps all); the top code always stays."""
    surprise = -raw_logits.log_softmax(-1) / math.log(2.0)
    drop = _keep_at_least_the_top(surprise > mu.to(surprise.dtype).unsqueeze(-1), raw_logits)
    return logits.masked_fill(drop, NEG_INF)


def process_logits(logits: torch.Tensor, dec: DecodeBatch, mu: torch.Tensor | None = None) -> torch.Tensor:
    """The distribution each stream samples from, as logits (-inf = excluded): temperature,
    then top-k, top-p, typical-p, min-p, epsilon and eta on the tempered distribution, then
    mirostat's cut at mu (per stream, see MirostatState), then greedy."""
    out = apply_temperature(logits, dec.inv_tau)
    if dec.any_top_k:
        out = apply_top_k(out, dec.top_k)
    if dec.any_top_p:
        out = apply_top_p(out, dec.top_p)
    if dec.any_typical_p:
        out = apply_typical_p(out, dec.typical_p)
    if dec.any_min_p:
        out = apply_min_p(out, dec.min_p)
    if dec.any_epsilon:
        out = apply_epsilon_cutoff(out, dec.epsilon)
    if dec.any_eta:
        out = apply_eta_cutoff(out, dec.eta)
    if dec.any_mirostat and mu is not None:
        out = apply_mirostat(out, logits, mu)
    return apply_greedy(out, dec.temperature) if dec.any_greedy else out


class MirostatState:
    """Mirostat's feedback, per stream: mu (bits) starts at twice the first target; after each
    sampled code, mu -= eta * (surprise - target), where the surprise is -log2 p(code) under
    the untempered model and the target is mirostat_tau, or the step's entropy plus
    mirostat_gap. Streams without mirostat keep mu = +inf (nothing cut)."""

    def __init__(self, dec: DecodeBatch):
        self.dec = dec
        self.on = ~(dec.mirostat_tau.isnan() & dec.mirostat_gap.isnan())
        self.mu = None

    def target(self, entropy_bits: torch.Tensor) -> torch.Tensor:
        return torch.where(self.dec.mirostat_gap.isnan(), self.dec.mirostat_tau,
                           entropy_bits + self.dec.mirostat_gap)

    def current(self, raw_logits: torch.Tensor) -> torch.Tensor:
        """mu for this step (initialised from the first step's target); +inf where off."""
        if self.mu is None:              # every stream starts sampling at the same step
            self.mu = 2.0 * self.target(entropy_bits(raw_logits))
        return torch.where(self.on, self.mu, torch.full_like(self.mu, float("inf")))

    def update(self, raw_logits: torch.Tensor, code: torch.Tensor) -> None:
        logp = raw_logits.log_softmax(-1)
        surprise = -logp.gather(-1, code.unsqueeze(-1)).squeeze(-1) / math.log(2.0)
        err = surprise - self.target(entropy_bits(raw_logits))
        self.mu = torch.where(self.on, self.mu - self.dec.mirostat_eta * err, self.mu)


def entropy_bits(logits: torch.Tensor) -> torch.Tensor:
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1) / math.log(2.0)
