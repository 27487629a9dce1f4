"""Conditioning: one vocabulary for what a model is conditioned on, and one builder.

Levels (CONDITIONING_LEVELS): none (no conditioning), label (digit and/or speaker labels),
mel (log-mel frames of a recording: vocoder mode), all (labels + mel frames).
`build_conditioning` is the one place that turns labels and codes into the tensors the
model reads; `CondSpec` (user input), `level_conditioning` (a level over a batch of files)
and training batches all go through it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from wavetyp.core.audio import load_codes
from wavetyp.core.errors import UsageError

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CONDITIONING_LEVELS = ("none", "label", "mel", "all")
LEVEL_TEXT = {"none": "no conditioning", "label": "digit + speaker labels",
              "mel": "mel frames only (vocoder)", "all": "labels + mel frames"}


@dataclass
class Conditioning:
    """What a model is conditioned on; any field may be None (= absent for every stream).

    digit, speaker: (B,) int64 with -1 meaning 'none' for that stream.
    mel: (B, n_mels, F) log-mel frames; mel_present: (B,) bool to drop it per stream.
    start: (B,) int64, the sample of the utterance at which codes[:, 0] sits (a training
    crop's start), read by models with a position table; None: 0 for every stream.
    """
    digit: torch.Tensor | None = None
    speaker: torch.Tensor | None = None
    mel: torch.Tensor | None = None
    mel_present: torch.Tensor | None = None
    start: torch.Tensor | None = None


def build_conditioning(model, batch: int, digit=None, speaker=None, mel_codes=None,
                       mel_present=None, start=None) -> Conditioning:
    """The conditioning tensors for `batch` streams of `model` (a WaveNet).

    digit, speaker: None (absent), one int for every stream (a speaker also by name), or a
    (B,) tensor with -1 meaning 'none' for that stream. mel_codes: None, the (T,) or (1, T)
    codes of one recording (its log-mel frames shared by every stream), or (B, T) codes, one
    row per stream. mel_present: (B,) bool, the streams that keep their mel frames.
    start: None (0) or (B,) int64, where in its utterance each stream's codes[:, 0] sits.
    """
    dev = next(model.parameters()).device

    def labels(v):
        if v is None or torch.is_tensor(v):
            return None if v is None else v.to(dev)
        if isinstance(v, str):
            v = model.cfg.speakers.index(v)
        return torch.full((batch,), int(v), dtype=torch.long, device=dev)

    cond = Conditioning(labels(digit), labels(speaker),
                        start=None if start is None else torch.as_tensor(start).to(dev))
    if mel_codes is not None:
        if not model.cfg.n_mels:
            raise UsageError("this checkpoint has no mel conditioning")
        codes = torch.as_tensor(mel_codes)
        codes = codes[None] if codes.dim() == 1 else codes
        with torch.no_grad():                   # frames of known audio: nothing to learn
            mel = model.log_mel(codes.to(dev))
        cond.mel = mel.expand(batch, -1, -1) if mel.shape[0] == 1 and batch > 1 else mel
        cond.mel_present = None if mel_present is None else mel_present.to(dev)
    return cond


def level_conditioning(model, level: str, codes: torch.Tensor, digit: torch.Tensor | None = None,
                       speaker: torch.Tensor | None = None) -> Conditioning:
    """Conditioning of a batch of known files (B, T) at one of CONDITIONING_LEVELS: labels
    from `digit`/`speaker` for label and all, the files' own mel frames for mel and all."""
    if level not in CONDITIONING_LEVELS:
        raise UsageError(f"unknown conditioning {level!r} (choose from {', '.join(CONDITIONING_LEVELS)})")
    with_labels, with_mel = level in ("label", "all"), level in ("mel", "all")
    return build_conditioning(model, codes.shape[0], digit if with_labels else None,
                              speaker if with_labels else None, codes if with_mel else None)


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
        return "-".join(parts) or "none"

    def to_dict(self) -> dict:
        return {"digit": self.digit, "speaker": self.speaker, "mel_from": self.mel_from}

    @property
    def level(self) -> str:
        """Where this sits in CONDITIONING_LEVELS."""
        labels = self.digit is not None or self.speaker is not None
        mel = self.mel_codes is not None or self.mel_from is not None
        return ("all" if labels else "mel") if mel else ("label" if labels else "none")

    def build(self, model, batch: int) -> Conditioning:
        return build_conditioning(model, batch, self.digit, self.speaker, self.mel_codes)


def parse_digit(value) -> int | None:
    if value is None:
        return None
    v = str(value).strip().lower()
    if v in DIGIT_NAMES:
        return DIGIT_NAMES.index(v)
    if v.isdigit() and 0 <= int(v) <= 9:
        return int(v)
    raise UsageError(f"unknown digit {value!r} (0-9 or zero..nine)")


def make_cond_spec(model, digit=None, speaker=None, mel_from=None) -> CondSpec:
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


def drop_conditioning(cfg, batch, g: torch.Generator) -> tuple:
    """Conditioning dropout: each label / the mel frames dropped independently per example."""
    B = batch.codes.shape[0]
    r = torch.rand(3, B, generator=g)
    digit = torch.where(r[0] < cfg.p_drop_digit, -1, batch.digit)
    speaker = torch.where(r[1] < cfg.p_drop_speaker, -1, batch.speaker)
    return digit, speaker, r[2] >= cfg.p_drop_mel

