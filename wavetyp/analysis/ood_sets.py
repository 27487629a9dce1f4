"""The inputs of OOD detection: built-in OOD sets synthesised at the model rate, files read
from disk, and the in-distribution / reference / OOD sets of one run.

Built-in sets (SYNTH_SETS): silence, noise at two levels, two tones and click trains have
lengths drawn from the in-distribution recordings; 'reversed' and 'speedup-1.5x' transform
randomly chosen in-distribution recordings. Everything is deterministic given the seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from wavetyp.core.audio import load_codes, mu_law_decode, mu_law_encode, resample
from wavetyp.core.errors import AudioError, UsageError
from wavetyp.core.scoring import expand_paths

NOISE_LOW_DBFS = -60.0
NOISE_HIGH_DBFS = -10.0
TONE_RMS_DBFS = -25.0          # about the median file level of FSDD
CLICK_AMPLITUDE = 0.3
CLICK_RATE_HZ = (20.0, 100.0)
SPEEDUP = 1.5
MIN_SECONDS, MAX_SECONDS = 0.25, 1.0

# built-in OOD sets, synthesised at the model rate; the last two transform in-distribution files
SYNTH_SETS = {
    "silence": "digital silence (every sample 0.0)",
    "noise-60dBFS": "white Gaussian noise at -60 dBFS RMS (very quiet)",
    "noise-10dBFS": "white Gaussian noise at -10 dBFS RMS (loud)",
    "tone-200Hz": f"200 Hz sine at {TONE_RMS_DBFS:g} dBFS RMS, random phase",
    "tone-1kHz": f"1 kHz sine at {TONE_RMS_DBFS:g} dBFS RMS, random phase",
    "clicks": (f"click trains: single-sample impulses of {CLICK_AMPLITUDE:g} at "
               f"{CLICK_RATE_HZ[0]:g}-{CLICK_RATE_HZ[1]:g} Hz, silence between"),
    "reversed": "in-distribution recordings played backwards",
    "speedup-1.5x": "in-distribution recordings sped up 1.5x (resampled: shorter, higher)",
}


# ------------------------------------------------------------------ OOD sets

@dataclass
class Item:
    """One input to score: a name and its mu-law codes (int64, (T,))."""
    name: str
    codes: np.ndarray


def _lengths(source_lengths, n: int, sample_rate: int, rng) -> np.ndarray:
    lo, hi = int(round(MIN_SECONDS * sample_rate)), int(round(MAX_SECONDS * sample_rate))
    src = np.asarray(source_lengths, dtype=np.int64)
    if src.size == 0:
        return rng.integers(lo, hi + 1, size=n)
    return np.clip(rng.choice(src, size=n, replace=True), lo, hi)


def _encode(wave) -> np.ndarray:
    return mu_law_encode(np.asarray(wave, dtype=np.float32)).numpy()


def _noise(n: int, dbfs: float, rng) -> np.ndarray:
    return rng.standard_normal(n) * 10.0 ** (dbfs / 20.0)


def _tone(n: int, hz: float, sample_rate: int, rng) -> np.ndarray:
    amp = math.sqrt(2.0) * 10.0 ** (TONE_RMS_DBFS / 20.0)
    return amp * np.sin(2 * np.pi * hz * np.arange(n) / sample_rate + rng.uniform(0, 2 * np.pi))


def _clicks(n: int, sample_rate: int, rng) -> np.ndarray:
    w = np.zeros(n)
    period = sample_rate / rng.uniform(*CLICK_RATE_HZ)
    w[np.floor(np.arange(rng.uniform(0, period), n, period)).astype(int)] = CLICK_AMPLITUDE
    return w


def synthesize_sets(source: list[np.ndarray], sample_rate: int, n_per_set: int = 30,
                    seed: int = 0, sets=tuple(SYNTH_SETS)) -> dict[str, list[Item]]:
    """The built-in OOD sets as mu-law codes, deterministic given the seed.

    `source`: in-distribution code sequences (the FSDD test split by default). Synthetic
    sets draw their lengths from the source lengths clipped to 0.25-1.0 s; 'reversed' and
    'speedup-1.5x' transform randomly chosen source recordings. Each set has its own random
    stream, so choosing fewer sets does not change the others.
    """
    if n_per_set < 1:
        raise ValueError("n_per_set must be >= 1")
    source = [np.asarray(s) for s in source]
    out = {}
    for k, name in enumerate(SYNTH_SETS):
        if name not in sets:
            continue
        rng = np.random.default_rng([seed, k])
        items = []
        if name in ("reversed", "speedup-1.5x"):
            if not source:
                raise ValueError(f"set {name!r} needs in-distribution recordings")
            pick = rng.choice(len(source), size=n_per_set, replace=len(source) < n_per_set)
            for i in pick:
                codes = source[i]
                if name == "reversed":
                    new = codes[::-1].copy()
                else:
                    wave = mu_law_decode(torch.as_tensor(codes)).numpy()
                    new = _encode(resample(wave, int(round(sample_rate * SPEEDUP)), sample_rate))
                items.append(Item(f"{name}-{len(items):02d}", new.astype(np.int64)))
        else:
            for n in _lengths([len(s) for s in source], n_per_set, sample_rate, rng):
                n = int(n)
                if name == "silence":
                    wave = np.zeros(n)
                elif name == "noise-60dBFS":
                    wave = _noise(n, NOISE_LOW_DBFS, rng)
                elif name == "noise-10dBFS":
                    wave = _noise(n, NOISE_HIGH_DBFS, rng)
                elif name == "tone-200Hz":
                    wave = _tone(n, 200.0, sample_rate, rng)
                elif name == "tone-1kHz":
                    wave = _tone(n, 1000.0, sample_rate, rng)
                else:
                    wave = _clicks(n, sample_rate, rng)
                items.append(Item(f"{name}-{len(items):02d}", _encode(wave)))
        out[name] = items
    return out


# ------------------------------------------------------------------ files and the sets of a run

def load_items(paths, sample_rate: int) -> tuple[list[Item], list[tuple[str, str]]]:
    """Read files/folders (folders recursively) to Items; unreadable files are skipped."""
    items, skipped = [], []
    for p in expand_paths(paths):
        try:
            items.append(Item(str(p), load_codes(p, sample_rate).numpy()))
        except AudioError as e:
            skipped.append((str(p), str(e)))
    return items, skipped


def _subset(seq: list, n: int | None, rng) -> list:
    if n is None or n >= len(seq):
        return list(seq)
    return [seq[i] for i in sorted(rng.choice(len(seq), size=n, replace=False))]


def _set_name(path: str, taken) -> str:
    p = Path(path)
    base = (p.name if p.is_dir() else p.stem) or "ood"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


@dataclass
class InputSets:
    """The sets of one run: the in-distribution files, the reference (training) files split
    into the half that estimates H_hat and the held-out bootstrap pool, and the OOD sets."""
    in_items: list[Item]
    in_desc: str
    in_label: str
    ref_h: list[Item]
    ref_pool: list[Item]
    ood: dict[str, list[Item]]
    set_desc: dict[str, str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def input_sets(sample_rate: int, in_paths=None, ref_paths=None, ood_paths=None,
               in_files: int | None = None, train_files: int = 300, per_set: int = 30,
               sets=None, builtin: bool = True, data_dir=None, seed: int = 0,
               progress: bool = False, on_skip=None) -> InputSets:
    """Read (or synthesise) every set of a run, deterministic given the seed.

    in_paths / ref_paths: None for the FSDD test / training split. in_files, train_files:
    seeded subsets. OOD sets: the built-in `sets` (None: all of SYNTH_SETS; none unless
    `builtin`) made from the in-distribution files, then one set per path of ood_paths.
    on_skip(path, reason) hears of each unreadable file given by path.
    """
    skipped: list[tuple[str, str]] = []
    corpus = None

    def fsdd():
        nonlocal corpus
        if corpus is None:
            from wavetyp.data.load import load_corpus
            corpus = load_corpus("fsdd", data_dir, sample_rate, progress=progress)
            skipped.extend(corpus.skipped)
        return corpus

    def read(paths):
        items, sk = load_items(paths, sample_rate)
        skipped.extend(sk)
        for path, why in sk:
            if on_skip is not None:
                on_skip(path, why)
        return items, sk

    rng = np.random.default_rng([seed, 7])
    if in_paths:
        in_items, sk = read(in_paths)
        if not in_items:
            raise UsageError(f"--in: no readable audio files in {', '.join(map(str, in_paths))}"
                             + (f" ({len(sk)} skipped)" if sk else ""))
        in_desc, in_label = "the --in files", "in-distribution"
    else:
        in_items = [Item(u.name, u.codes.numpy()) for u in fsdd().test]
        in_desc, in_label = "the FSDD test split", "speech"
        if not in_items:
            raise UsageError("the FSDD test split is empty")
    in_items = _subset(in_items, in_files, rng)

    if ref_paths:
        ref = read(ref_paths)[0]
    else:
        ref = [Item(u.name, u.codes.numpy()) for u in fsdd().train]
    ref = _subset(ref, train_files, np.random.default_rng([seed, 8]))
    if len(ref) < 2:
        raise UsageError(f"need at least 2 readable reference/training files, got {len(ref)}")
    perm = np.random.default_rng([seed, 9]).permutation(len(ref))
    half = (len(ref) + 1) // 2

    ood: dict[str, list[Item]] = {}
    set_desc = {}
    if builtin:
        chosen = tuple(sets or SYNTH_SETS)
        ood = synthesize_sets([it.codes for it in in_items], sample_rate, per_set, seed, chosen)
        set_desc = {k: v for k, v in SYNTH_SETS.items() if k in chosen}
    for path in ood_paths or []:
        items, sk = read([path])
        if not items:
            raise UsageError(f"--ood {path}: no readable audio files"
                             + (f" ({len(sk)} skipped)" if sk else ""))
        name = _set_name(path, set(ood) | {"in"})
        ood[name] = items
        set_desc[name] = f"user files from {path} ({len(items)} files)"
    return InputSets(in_items, in_desc, in_label, [ref[i] for i in sorted(perm[:half])],
                     [ref[i] for i in sorted(perm[half:])], ood, set_desc, skipped)
