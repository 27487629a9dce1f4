"""Scoring known audio with the parallel pass: test-split NLL and per-file typicality.

The model scores a whole file in one pass (logits[t] predict codes[t] from codes[:t]).
`score_batches` is the one such pass: evaluation (`evaluate_nll`), rescoring (`score_files`)
and OOD detection (wavetyp.analysis) all go through it. Files of similar length share a
batch, padded with SILENCE_CODE at the end; the model is causal, so padding never changes a
real position's prediction, and padded positions never count.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wavetyp.core.audio import (
    AUDIO_SUFFIXES,
    SILENCE_CODE,
    load_codes,
    mu_law_decode,
    rms_dbfs,
)
from wavetyp.core.conditioning import (
    CONDITIONING_LEVELS,
    CondSpec,
    build_conditioning,
    level_conditioning,
)
from wavetyp.core.errors import AudioError, UsageError
from wavetyp.core.model import WaveNet
from wavetyp.core.typicality import (
    DEFAULT_EPSILON,
    TypicalitySummary,
    step_stats,
    summarize,
)

MAX_FILES = 32              # files per batch of the parallel pass
STATS_SAMPLES = 32768       # (files x steps) per step_stats call: bounds its (.., 256) temporaries

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


# ------------------------------------------------------------------ the one parallel pass

def length_batches(lengths, max_samples: int | None = None,
                   max_files: int = MAX_FILES) -> list[list[int]]:
    """Indices sorted by length (stable) and cut into batches of at most `max_files`, so
    that files x longest length <= max_samples (None: no such bound)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur = [], []
    for i in order:
        if cur and (len(cur) >= max_files or
                    (max_samples is not None and (len(cur) + 1) * lengths[i] > max_samples)):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


@dataclass
class ScoredBatch:
    """One batch of the pass. Row r is file index[r]; tensors are (B, T) on the device,
    codes padded with SILENCE_CODE, mask True on real samples, stats float32 (bits, bits^2)
    and valid where mask is."""
    index: list[int]
    codes: torch.Tensor
    mask: torch.Tensor
    nll_bits: torch.Tensor
    entropy_bits: torch.Tensor
    varentropy_bits2: torch.Tensor

    def files(self) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """(file index, nll, entropy, varentropy) per row, real samples only, on the CPU."""
        stats = [t.cpu().numpy() for t in (self.nll_bits, self.entropy_bits, self.varentropy_bits2)]
        for r, (i, n) in enumerate(zip(self.index, self.mask.sum(1).tolist())):
            yield i, stats[0][r, :n], stats[1][r, :n], stats[2][r, :n]


def _labels(value, idx: list[int], speakers):
    """One conditioning label for the batch rows `idx`: None, a value shared by every file
    (passed on as is), or the entries of a per-file sequence (speaker names -> indices)."""
    if value is None or isinstance(value, (int, np.integer, str)):
        return value
    picked = [value[i] for i in idx]
    return torch.tensor([speakers.index(v) if isinstance(v, str) else int(v) for v in picked],
                        dtype=torch.long)


@torch.inference_mode()
def score_batches(model: WaveNet, codes_list: Sequence, level: str = "none", digit=None,
                  speaker=None, mel_codes=None, max_samples: int | None = None,
                  max_files: int = MAX_FILES, device=None, progress: bool = False,
                  desc: str = "scoring") -> Iterator[ScoredBatch]:
    """The parallel pass over many files: per-step NLL, entropy and varentropy of each.

    codes_list: (T_i,) code sequences. level (CONDITIONING_LEVELS) says what conditions
    each file: labels for label/all (`digit`, `speaker`: None, one value for every file,
    or one per file with -1 = none), mel frames for mel/all: those of `mel_codes` (one
    recording shared by every file) or, when None, each file's own, one file per pass,
    since the mel conv net mixes neighbouring frames and padded frames would leak into a
    shorter file's last real frames. Batches: see length_batches; the batch a file lands
    in changes its numbers by float32 rounding only. device: None for the model's.
    """
    from tqdm import tqdm
    if level not in CONDITIONING_LEVELS:
        raise UsageError(f"unknown conditioning {level!r} (choose from {', '.join(CONDITIONING_LEVELS)})")
    labels, mel = level in ("label", "all"), level in ("mel", "all")
    if mel and mel_codes is None:
        max_files = 1
    dev = device if device is not None else next(model.parameters()).device
    lengths = [len(c) for c in codes_list]
    bar = tqdm(total=len(lengths), desc=desc, unit="file", disable=not progress, leave=False)
    for idx in length_batches(lengths, max_samples, max_files):
        lens = [lengths[i] for i in idx]
        codes = torch.full((len(idx), max(lens)), SILENCE_CODE, dtype=torch.long)
        for r, i in enumerate(idx):
            codes[r, :lens[r]] = torch.as_tensor(codes_list[i])
        mask = torch.arange(codes.shape[1])[None] < torch.tensor(lens)[:, None]
        codes, mask = codes.to(dev), mask.to(dev)
        d, s = (_labels(v, idx, model.cfg.speakers) if labels else None for v in (digit, speaker))
        if mel and mel_codes is not None:
            cond = build_conditioning(model, len(idx), d, s, mel_codes)
        else:
            cond = level_conditioning(model, level, codes, d, s)
        logits = model(codes, cond)
        step = max(1, STATS_SAMPLES // len(idx))
        parts = [step_stats(logits[:, t:t + step], codes[:, t:t + step])
                 for t in range(0, codes.shape[1], step)]
        del logits
        yield ScoredBatch(idx, codes, mask, *(torch.cat([q[j] for q in parts], 1) for j in range(3)))
        bar.update(len(idx))
    bar.close()


# ------------------------------------------------------------------ test-split NLL

@torch.inference_mode()
def evaluate_nll(model: WaveNet, utts: list, level: str = "none", batch_size: int = 16,
                 device=None, progress: bool = False, by_loudness: bool = False) -> dict:
    """Mean NLL (bits/sample) over every real sample of `utts` (Utterances: codes, digit,
    speaker), overall and per digit; padding never counts. Files are batched `batch_size`
    at a time in length order (one at a time for mel levels, see score_batches); each
    file's bits are summed in float32 over its padded row, then in float64 over files.

    by_loudness: also split it by the local loudness of each sample (LOUDNESS_EDGES_DB):
    'by_loudness' lists each bin's share of the samples and its mean bits/sample."""
    model.eval()
    tot, n = 0.0, 0
    per_digit = defaultdict(lambda: [0.0, 0])
    edges = torch.tensor(LOUDNESS_EDGES_DB)
    bin_bits = torch.zeros(len(LOUDNESS_EDGES_DB) + 1, dtype=torch.float64)
    bin_n = torch.zeros_like(bin_bits)
    digits, speakers = [u.digit for u in utts], [u.speaker for u in utts]
    for b in score_batches(model, [u.codes for u in utts], level, digits, speakers,
                           max_files=batch_size, device=device, progress=progress,
                           desc=f"eval {level}"):
        bits = b.nll_bits.masked_fill(~b.mask, 0.0)
        if by_loudness:
            real = b.mask.cpu()
            which = torch.bucketize(loudness_db(b.codes, b.mask).cpu()[real], edges, right=True)
            bin_bits += torch.bincount(which, bits.cpu()[real].double(), minlength=len(bin_bits))
            bin_n += torch.bincount(which, minlength=len(bin_n))
        file_bits = bits.sum(1).double().cpu()
        file_n = b.mask.sum(1).cpu()
        for i, fb, fn in zip(b.index, file_bits.tolist(), file_n.tolist()):
            tot += fb
            n += fn
            per_digit[utts[i].digit][0] += fb
            per_digit[utts[i].digit][1] += fn
    out = {"level": level, "bits_per_sample": tot / max(n, 1), "samples": n, "files": len(utts),
           "per_digit": {d: s / max(c, 1) for d, (s, c) in sorted(per_digit.items())}}
    if by_loudness:
        out["by_loudness"] = [
            {"range": lab, "fraction": c / max(n, 1), "bits_per_sample": bb / c if c else None}
            for lab, bb, c in zip(loudness_labels(), bin_bits.tolist(), bin_n.tolist())]
    return out


# ------------------------------------------------------------------ rescoring files

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


def score_many(model: WaveNet, codes_list: Sequence, cond: CondSpec | None = None,
               mel_self: bool = False, paths=None, max_files: int = 1,
               progress: bool = False) -> list[ScoreResult]:
    """ScoreResults of many code sequences under one CondSpec (mel_self: each file's own
    mel frames instead of the spec's). max_files = 1 (the default) scores each file alone,
    so its arrays do not depend on which files share its batch."""
    spec = cond or CondSpec()
    labels = spec.digit is not None or spec.speaker is not None
    mel = mel_self or spec.mel_codes is not None
    level = ("all" if labels else "mel") if mel else ("label" if labels else "none")
    codes_list = [torch.as_tensor(c).long().cpu() for c in codes_list]
    paths = [""] * len(codes_list) if paths is None else [str(p) for p in paths]
    out: list[ScoreResult | None] = [None] * len(codes_list)
    for b in score_batches(model, codes_list, level, spec.digit, spec.speaker,
                           None if mel_self else spec.mel_codes, max_files=max_files,
                           progress=progress):
        for i, nll, ent, var in b.files():
            c = codes_list[i]
            out[i] = ScoreResult(paths[i], c.numpy(), nll, ent, var,
                                 rms_dbfs(mu_law_decode(c).numpy()))
    return out


def score_codes(model: WaveNet, codes, cond: CondSpec | None = None,
                path: str = "") -> ScoreResult:
    """Per-step NLL/entropy/varentropy of one code sequence (T,) in one parallel pass."""
    return score_many(model, [codes], cond, paths=[path])[0]


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
    """Score many files, each alone (see score_many); unreadable ones are returned
    separately as (path, reason)."""
    codes, read, skipped = [], [], []
    for p in paths:
        try:
            codes.append(load_codes(p, model.cfg.sample_rate))
            read.append(str(p))
        except AudioError as e:
            skipped.append((str(p), str(e)))
    return score_many(model, codes, cond, mel_self, read, progress=progress), skipped
