"""Conditioning: what a model is conditioned on, in one vocabulary, and one builder.

Levels: none (no conditioning), label (digit + speaker labels), mel (log-mel frames of a
recording: vocoder mode), all (labels + mel frames).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from wavetyp.core.audio import load_codes
from wavetyp.core.errors import UsageError

if TYPE_CHECKING:   # annotations only: model.py imports Conditioning from here
    from wavetyp.core.model import WaveNet, WaveNetConfig

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# none: unconditional; label: digit + speaker; mel: mel frames only; all: labels + mel
CONDITIONING_LEVELS = ("none", "label", "mel", "all")


@dataclass
class Conditioning:
    """What a model is conditioned on; any field may be None (= absent for every stream).

    digit, speaker: (B,) int64 with -1 meaning 'none' for that stream.
    mel: (B, n_mels, F) log-mel frames; mel_present: (B,) bool to drop it per stream.
    """
    digit: torch.Tensor | None = None
    speaker: torch.Tensor | None = None
    mel: torch.Tensor | None = None
    mel_present: torch.Tensor | None = None


@dataclass
class CondSpec:
    """Conditioning as a user states it; `build` turns it into tensors for B streams."""
    digit: int | None = None
    speaker: str | None = None
    mel_from: str | None = None
    mel_codes: torch.Tensor | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        parts = []
        if self.digit is not None:
            parts.append(f"digit{self.digit}")
        if self.speaker:
            parts.append(self.speaker)
        if self.mel_from:
            parts.append("mel-" + Path(self.mel_from).stem)
        return "-".join(parts) or "uncond"

    def to_dict(self) -> dict:
        return {"digit": self.digit, "speaker": self.speaker, "mel_from": self.mel_from}

    def build(self, model: WaveNet, batch: int) -> Conditioning:
        dev = next(model.parameters()).device
        c = Conditioning()
        if self.digit is not None:
            c.digit = torch.full((batch,), self.digit, dtype=torch.long, device=dev)
        if self.speaker is not None:
            c.speaker = torch.full((batch,), model.cfg.speakers.index(self.speaker),
                                   dtype=torch.long, device=dev)
        if self.mel_codes is not None:
            c.mel = model.log_mel(self.mel_codes[None].to(dev)).expand(batch, -1, -1)
        return c


def parse_digit(value) -> int | None:
    if value is None:
        return None
    v = str(value).strip().lower()
    if v in DIGIT_NAMES:
        return DIGIT_NAMES.index(v)
    if v.isdigit() and 0 <= int(v) <= 9:
        return int(v)
    raise UsageError(f"unknown digit {value!r} (0-9 or zero..nine)")


def make_cond_spec(model: WaveNet, digit=None, speaker=None, mel_from=None) -> CondSpec:
    """Validate user conditioning against what the checkpoint supports."""
    cfg = model.cfg
    d = parse_digit(digit)
    if d is not None and not cfg.n_digits:
        raise UsageError("this checkpoint has no digit conditioning")
    if speaker is not None and speaker not in cfg.speakers:
        known = ", ".join(cfg.speakers) or "none"
        raise UsageError(f"unknown speaker {speaker!r} (this checkpoint knows: {known})")
    spec = CondSpec(d, speaker, str(mel_from) if mel_from else None)
    if mel_from:
        if not cfg.n_mels:
            raise UsageError("this checkpoint has no mel conditioning")
        spec.mel_codes = load_codes(mel_from, cfg.sample_rate)
    return spec


def make_conditioning(model: WaveNet, level: str, codes: torch.Tensor,
                      digit: torch.Tensor, speaker: torch.Tensor) -> Conditioning:
    """Conditioning for a batch at a level; mel frames are computed from the codes."""
    if level not in CONDITIONING_LEVELS:
        raise UsageError(f"unknown conditioning {level!r} (choose from {', '.join(CONDITIONING_LEVELS)})")
    cond = Conditioning()
    if level in ("label", "all"):
        cond.digit, cond.speaker = digit, speaker
    if level in ("mel", "all"):
        if model.cfg.n_mels == 0:
            raise UsageError("this checkpoint has no mel conditioning")
        cond.mel = model.log_mel(codes)
    return cond


def drop_conditioning(cfg: WaveNetConfig, batch, g: torch.Generator) -> tuple:
    """Conditioning dropout: each label / the mel frames dropped independently per example."""
    B = batch.codes.shape[0]
    r = torch.rand(3, B, generator=g)
    digit = torch.where(r[0] < cfg.p_drop_digit, -1, batch.digit)
    speaker = torch.where(r[1] < cfg.p_drop_speaker, -1, batch.speaker)
    return digit, speaker, r[2] >= cfg.p_drop_mel

