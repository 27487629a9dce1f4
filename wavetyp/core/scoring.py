"""Scoring known audio with the parallel pass: test-split NLL and per-file typicality.

The model scores a whole file in one pass (logits[t] predict codes[t] from codes[:t]);
padding never counts.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wavetyp.core.audio import AUDIO_SUFFIXES, load_codes, mu_law_decode, rms_dbfs
from wavetyp.core.conditioning import CondSpec, level_conditioning
from wavetyp.core.errors import AudioError, UsageError
from wavetyp.core.model import WaveNet, nll_bits
from wavetyp.core.typicality import (
    DEFAULT_EPSILON,
    TypicalitySummary,
    step_stats,
    summarize,
)
from wavetyp.data.batches import full_batches
from wavetyp.data.corpus import Utterance

# loudness bins (dBFS of the local RMS) for `--by-loudness`: background noise sits in the
# lowest ones, vowels in the highest
LOUDNESS_EDGES_DB = (-50.0, -40.0, -30.0, -20.0)
LOUDNESS_WINDOW = 256          # 32 ms at 8 kHz, centred on each sample


def loudness_db(codes: torch.Tensor, mask: torch.Tensor, window: int = LOUDNESS_WINDOW) -> torch.Tensor:
    """(B, T) codes -> (B, T) local RMS level in dBFS of the decoded audio, over a centred
    window of real samples only (padding neither counts nor dilutes the level)."""
    T = codes.shape[1]

    def pool(v):                      # centred moving sum / (window + 1), (B, 1, T) -> (B, T)
        return F.avg_pool1d(v, window + 1, stride=1, padding=window // 2)[:, 0, :T]

    m = mask.float().unsqueeze(1)
    x2 = mu_law_decode(codes).unsqueeze(1).pow(2) * m
    power = pool(x2) / pool(m).clamp_min(1e-9)
    return 10.0 * torch.log10(power.clamp_min(1e-12))


def loudness_labels(edges=LOUDNESS_EDGES_DB) -> list[str]:
    lo = [f"< {edges[0]:g}"] + [f"{a:g} .. {b:g}" for a, b in zip(edges[:-1], edges[1:])]
    return [s + " dBFS" for s in lo] + [f">= {edges[-1]:g} dBFS"]


@torch.inference_mode()
def evaluate_nll(model: WaveNet, utts: list[Utterance], level: str = "none",
                 batch_size: int = 16, device="cpu", progress: bool = False,
                 by_loudness: bool = False) -> dict:
    """Mean NLL (bits/sample) over every real sample of `utts`; padding never counts.

    by_loudness: also split it by the local loudness of each sample (LOUDNESS_EDGES_DB):
    'by_loudness' lists each bin's share of the samples and its mean bits/sample."""
    from tqdm import tqdm
    model.eval()
    if level in ("mel", "all"):
        # mel frames of a padded batch would see the padding through the frame-level convs
        # near each file's end: score such files one at a time so results do not depend on
        # which files share a batch
        batch_size = 1
    tot, n = 0.0, 0
    per_digit = defaultdict(lambda: [0.0, 0])
    edges = torch.tensor(LOUDNESS_EDGES_DB)
    bin_bits = torch.zeros(len(LOUDNESS_EDGES_DB) + 1, dtype=torch.float64)
    bin_n = torch.zeros_like(bin_bits)
    batches = list(full_batches(utts, batch_size))
    for chunk, b in tqdm(batches, desc=f"eval {level}", disable=not progress, unit="batch"):
        b = b.to(device)
        cond = level_conditioning(model, level, b.codes, b.digit, b.speaker)
        bits = nll_bits(model(b.codes, cond), b.codes).masked_fill(~b.mask, 0.0)
        if by_loudness:
            real = b.mask.cpu()
            which = torch.bucketize(loudness_db(b.codes, b.mask).cpu()[real], edges, right=True)
            bin_bits += torch.bincount(which, bits.cpu()[real].double(), minlength=len(bin_bits))
            bin_n += torch.bincount(which, minlength=len(bin_n))
        file_bits = bits.sum(1).double().cpu()
        file_n = b.mask.sum(1).cpu()
        for u, fb, fn in zip(chunk, file_bits.tolist(), file_n.tolist()):
            tot += fb
            n += fn
            per_digit[u.digit][0] += fb
            per_digit[u.digit][1] += fn
    out = {"level": level, "bits_per_sample": tot / max(n, 1), "samples": n, "files": len(utts),
           "per_digit": {d: s / max(c, 1) for d, (s, c) in sorted(per_digit.items())}}
    if by_loudness:
        out["by_loudness"] = [
            {"range": lab, "fraction": c / max(n, 1), "bits_per_sample": bb / c if c else None}
            for lab, bb, c in zip(loudness_labels(), bin_bits.tolist(), bin_n.tolist())]
    return out


@dataclass
class ScoreResult:
    path: str
    codes: np.ndarray
    nll_bits: np.ndarray
    entropy_bits: np.ndarray
    varentropy_bits2: np.ndarray
    rms_dbfs: float

    def summary(self, epsilon: float = DEFAULT_EPSILON) -> TypicalitySummary:
        return summarize(self.nll_bits, self.entropy_bits, self.varentropy_bits2, epsilon)


@torch.inference_mode()
def score_codes(model: WaveNet, codes: torch.Tensor, cond: CondSpec | None = None,
                path: str = "") -> ScoreResult:
    """Per-step NLL/entropy/varentropy of a code sequence (T,) in one parallel pass."""
    dev = next(model.parameters()).device
    codes = torch.as_tensor(codes).long().to(dev)
    c = (cond or CondSpec()).build(model, 1)
    logits = model(codes[None], c)[0]
    nll, ent, var = step_stats(logits, codes)
    wave = mu_law_decode(codes.cpu()).numpy()
    return ScoreResult(path, codes.cpu().numpy(), nll.cpu().numpy(), ent.cpu().numpy(),
                       var.cpu().numpy(), rms_dbfs(wave))


def expand_paths(items) -> list[Path]:
    """Files as given, folders expanded (recursively) to their audio files, sorted."""
    out = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    return out


def score_files(model: WaveNet, paths, cond: CondSpec | None = None, mel_self: bool = False,
                progress: bool = False):
    """Score many files; unreadable ones are returned separately as (path, reason)."""
    from tqdm import tqdm
    results, skipped = [], []
    for p in tqdm(paths, desc="scoring", unit="file", disable=not progress):
        try:
            codes = load_codes(p, model.cfg.sample_rate)
        except AudioError as e:
            skipped.append((str(p), str(e)))
            continue
        spec = cond or CondSpec()
        if mel_self:
            spec = CondSpec(spec.digit, spec.speaker, str(p), codes)
        results.append(score_codes(model, codes, spec, str(p)))
    return results, skipped

