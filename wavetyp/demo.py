"""`python -m wavetyp.demo`: the listening demonstration behind `samples/demo/index.html`.

One fixed, seeded sweep renders a grid of conditioning levels x decoding settings from a
checkpoint, measures every render, and writes a static report (see `report.py`).

Conditioning levels (a ladder; each level adds to the one before):

- ``uncond``   no conditioning at all;
- ``label``    the digit label ("six", "seven", "five": they contain /s/ and /f/);
- ``speaker``  digit label + the speaker of the recording picked below;
- ``vocoder``  digit + speaker + the log-mel frames of one FSDD *test* recording (the
  strongest conditioning). For every digit the test take with the most fricative frames
  (rule below) is picked; ties go to the alphabetically first file name.

Decoding settings, rendered side by side in ONE `generate()` call per condition: greedy
(temperature 0), tau in {0.1, 0.3, 0.5, 0.7, 0.85, 1.0}, top_p 0.9 and typical_p 0.9 (both
at tau 1). Beam search (width 4) is run for the first condition of the label and vocoder
levels only (per step it costs ~6x the whole sampling batch). Label renders last `--seconds`
(default 1.0); vocoder renders have the recording's length. `--quick` renders one digit
("six") per level, 0.5 s long (vocoder: the recording, cut to 0.5 s), and one beam search
(vocoder condition, 0.25 s).

Measurements (all computed from the rendered audio or from the sampler's per-step logs):

- loudness: RMS dBFS of the whole render, and the fraction of 20 ms frames (non-overlapping,
  after removing the render's mean, i.e. a constant DC offset) whose RMS is below -50 dBFS.
  A render is called *silent* when at least 90 % of its 20 ms frames are below -50 dBFS.
- typicality: mean NLL and mean entropy (bits/sample) of the untempered model along the
  render, their gap (NLL - entropy), z = sum(NLL - H) / sqrt(sum varentropy), and whether
  |gap| <= 0.1 bits/sample (`typicality.summarize`).
- fricatives. Frames: librosa STFT, 256-sample (32 ms) Hann window, 80-sample (10 ms) hop,
  centred; the waveform's mean is removed first. Per frame:
    * level:  RMS in dBFS (librosa.feature.rms, same framing);
    * ratio:  10 log10(energy 2-4 kHz / energy 0.1-2 kHz) from the power spectrum;
    * ZCR:    librosa.feature.zero_crossing_rate (crossings per sample, same framing);
    * band:   mean-square power in 2-4 kHz in dB re full scale (Parseval estimate over the
              Hann window), floored at -100 dB;
    * flatness: librosa.feature.spectral_flatness of the 2-4 kHz bins (power spectrum);
              undefined (ignored) in frames whose band level is below -70 dB (about the
              recordings' noise floor: flatness of near-silence means nothing).
  A frame is a **fricative frame** when ALL of: level >= -55 dBFS, level within 40 dB of
  the recording's loudest frame, ratio >= 0 dB (more energy above 2 kHz than below) and
  ZCR >= 0.3. (On the FSDD test split this finds ~11 frames per "six", ~4 per "seven",
  ~2 per "five" and none in any "one".)
  * vocoder mode (aligned): F = the fricative frames of the conditioning recording. The
    render has the recording's length and is time-aligned with it, so the render's band
    level is compared frame by frame: fric_band_db = mean over F of (band_render -
    band_reference); fric_flatness = mean render flatness over F.
  * label / uncond modes (distributions): the reference recordings are the test takes of
    the same digit (same digit and speaker on the speaker level; the whole test split for
    uncond). K = the mean number of fricative frames per reference recording (rounded,
    at least 1). The reference level is the mean band level of every reference recording's
    K frames with the most 2-4 kHz energy; fric_band_db = (mean band level of the render's
    K frames with the most 2-4 kHz energy) - reference level. fric_flatness = mean render
    flatness over those K frames (reference: over the reference frames).
  Every row also reports the render's own fricative frames per second by the rule.

Nothing here knows which setting "should" be silent or atypical: every render goes
through the same measurements, and the report's text is generated from the numbers.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import inspect
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from wavetyp.core.checks import add_common, check_count, check_positive, run_cli
from wavetyp.core.conditioning import DIGIT_NAMES
from wavetyp.core.decoding import DecodeSettings
from wavetyp.core.errors import UsageError
from wavetyp.data.corpus import Corpus, Utterance

# ------------------------------------------------------------------ the sweep

TAUS = (0.1, 0.3, 0.5, 0.7, 0.85, 1.0)
SETTINGS = ([DecodeSettings(0.0)] + [DecodeSettings(t) for t in TAUS]
            + [DecodeSettings(1.0, top_p=0.9), DecodeSettings(1.0, typical_p=0.9)])
BEAM_WIDTH = 4
# Beam search costs ~13 ms/step (width 4) against ~2 ms/step for the whole 9-stream sampling
# batch, so it runs for the first condition of the label and vocoder levels only.
BEAM_LEVELS = ("label", "vocoder")
QUICK_BEAM_LEVELS = ("vocoder",)
FRICATIVE_DIGITS = (6, 7, 5)          # six, seven (/s/), five (/f/, /v/)
QUICK_DIGITS = (6,)
DEFAULT_SECONDS, QUICK_SECONDS, QUICK_BEAM_SECONDS = 1.0, 0.5, 0.25

LEVELS = {  # id -> title (in ladder order)
    "uncond": "no conditioning",
    "label": "digit label",
    "speaker": "digit label + speaker",
    "vocoder": "digit + speaker + mel frames (vocoder)",
}

# ------------------------------------------------------------------ measurement rules

N_FFT, HOP = 256, 80                  # 32 ms window, 10 ms hop at 8 kHz
SPLIT_HZ, LOW_MIN_HZ = 2000.0, 100.0  # high band: 2 kHz..Nyquist (4 kHz); low: 0.1-2 kHz
ACTIVE_ABS_DBFS = -55.0
ACTIVE_REL_DB = 40.0
RATIO_MIN_DB = 0.0
ZCR_MIN = 0.3
BAND_FLOOR_DB = -100.0
FLATNESS_MIN_DB = -70.0
SILENCE_FRAME_MS = 20.0
SILENCE_DBFS = -50.0
SILENT_FRACTION = 0.9

RULES = {
    "frame": {"n_fft": N_FFT, "hop": HOP, "window": "hann", "center": True,
              "dc_removed": True},
    "fricative_frame": {"level_min_dbfs": ACTIVE_ABS_DBFS, "level_within_db_of_max": ACTIVE_REL_DB,
                        "ratio_min_db": RATIO_MIN_DB, "zcr_min": ZCR_MIN,
                        "high_band_hz": [SPLIT_HZ, "nyquist"], "low_band_hz": [LOW_MIN_HZ, SPLIT_HZ]},
    "band_floor_db": BAND_FLOOR_DB, "flatness_min_band_db": FLATNESS_MIN_DB,
    "silence": {"frame_ms": SILENCE_FRAME_MS, "threshold_dbfs": SILENCE_DBFS,
                "silent_if_fraction_at_least": SILENT_FRACTION},
}


@dataclass
class FrameFeatures:
    level_db: np.ndarray      # frame RMS, dBFS
    ratio_db: np.ndarray      # high/low band energy ratio, dB
    zcr: np.ndarray           # zero crossings per sample
    band_db: np.ndarray       # 2-4 kHz mean-square power, dB re full scale (floored)
    flatness: np.ndarray      # spectral flatness of the 2-4 kHz bins; NaN where too quiet

    @property
    def n(self) -> int:
        return int(self.level_db.size)

    @property
    def fricative(self) -> np.ndarray:
        """Boolean mask of fricative frames (module docstring)."""
        if self.n == 0:
            return np.zeros(0, dtype=bool)
        active = (self.level_db >= ACTIVE_ABS_DBFS) & (self.level_db >= self.level_db.max() - ACTIVE_REL_DB)
        return active & (self.ratio_db >= RATIO_MIN_DB) & (self.zcr >= ZCR_MIN)


def frame_features(wave: np.ndarray, sample_rate: int) -> FrameFeatures:
    """Per-frame level, high/low ratio, ZCR, 2-4 kHz band level and flatness (librosa)."""
    import librosa
    w = np.asarray(wave, dtype=np.float64).reshape(-1)
    if w.size == 0:
        e = np.zeros(0)
        return FrameFeatures(e, e, e, e, e)
    w = (w - w.mean()).astype(np.float32)
    X = librosa.stft(w, n_fft=N_FFT, hop_length=HOP, window="hann", center=True)
    P = np.abs(X).astype(np.float64) ** 2
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=N_FFT)
    hi = freqs >= SPLIT_HZ
    lo = (freqs >= LOW_MIN_HZ) & (freqs < SPLIT_HZ)
    win = librosa.filters.get_window("hann", N_FFT, fftbins=True)
    band_ms = 2.0 * P[hi].sum(0) / (N_FFT * float(np.sum(win**2)))
    band_db = np.maximum(10 * np.log10(np.maximum(band_ms, 1e-30)), BAND_FLOOR_DB)
    ratio_db = 10 * np.log10((P[hi].sum(0) + 1e-20) / (P[lo].sum(0) + 1e-20))
    rms = librosa.feature.rms(y=w, frame_length=N_FFT, hop_length=HOP, center=True)[0]
    level_db = 20 * np.log10(np.maximum(rms.astype(np.float64), 1e-10))
    zcr = librosa.feature.zero_crossing_rate(w, frame_length=N_FFT, hop_length=HOP, center=True)[0]
    flat = librosa.feature.spectral_flatness(S=np.abs(X[hi]), power=2.0)[0].astype(np.float64)
    flat = np.where(band_db >= FLATNESS_MIN_DB, flat, np.nan)
    n = min(P.shape[1], rms.size, zcr.size)
    return FrameFeatures(level_db[:n], ratio_db[:n], zcr[:n].astype(np.float64), band_db[:n], flat[:n])


def silence_fraction(wave: np.ndarray, sample_rate: int) -> float:
    """Fraction of non-overlapping 20 ms frames (render mean removed) below -50 dBFS."""
    w = np.asarray(wave, dtype=np.float64).reshape(-1)
    if w.size == 0:
        return 1.0
    w = w - w.mean()
    n = max(1, int(round(SILENCE_FRAME_MS * sample_rate / 1000)))
    k = max(1, w.size // n)
    frames = w[: k * n].reshape(k, n) if w.size >= n else w[None]
    db = 20 * np.log10(np.maximum(np.sqrt((frames**2).mean(1)), 1e-10))
    return float((db < SILENCE_DBFS).mean())


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def top_k_frames(f: FrameFeatures, k: int) -> np.ndarray:
    """Indices of the k frames with the most 2-4 kHz energy (ties: earlier frame first)."""
    order = np.argsort(-f.band_db, kind="stable")
    return order[: min(k, f.n)]


@dataclass
class Reference:
    """What a condition's renders are compared with (see the module docstring)."""
    mode: str                                   # "aligned" or "distribution"
    names: list[str]
    feats: list[FrameFeatures]
    seconds: float                              # total reference audio
    k: int = 0                                  # distribution mode: frames compared
    level_db: float = float("nan")              # reference band level
    flatness: float = float("nan")              # reference flatness
    fric_frames: int = 0                        # fricative frames in all reference recordings
    silence_frac: float = float("nan")

    @property
    def fric_per_s(self) -> float:
        return self.fric_frames / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return {"mode": self.mode, "recordings": self.names if len(self.names) <= 12 else
                self.names[:12] + [f"... ({len(self.names)} in all)"],
                "n_recordings": len(self.names), "seconds": self.seconds, "k": self.k,
                "band_db": self.level_db, "flatness": self.flatness,
                "fricative_frames": self.fric_frames, "fricative_frames_per_s": self.fric_per_s,
                "silence_frac": self.silence_frac}


def decode_utt(u: Utterance) -> np.ndarray:
    from wavetyp.core.audio import mu_law_decode
    return mu_law_decode(u.codes).numpy()


def make_reference(utts: list[Utterance], sample_rate: int, aligned: bool) -> Reference:
    waves = [decode_utt(u) for u in utts]
    feats = [frame_features(w, sample_rate) for w in waves]
    secs = sum(len(w) for w in waves) / sample_rate
    n_fric = int(sum(f.fricative.sum() for f in feats))
    sil = _nanmean([silence_fraction(w, sample_rate) for w in waves])
    ref = Reference("aligned" if aligned else "distribution", [u.name for u in utts], feats,
                    secs, fric_frames=n_fric, silence_frac=sil)
    if aligned:
        f = feats[0]
        m = f.fricative
        ref.k = int(m.sum())
        ref.level_db = _nanmean(f.band_db[m]) if m.any() else float("nan")
        ref.flatness = _nanmean(f.flatness[m]) if m.any() else float("nan")
    else:
        ref.k = max(1, int(round(n_fric / max(1, len(feats)))))
        idx = [(f, top_k_frames(f, ref.k)) for f in feats]
        ref.level_db = _nanmean(np.concatenate([f.band_db[i] for f, i in idx]))
        ref.flatness = _nanmean(np.concatenate([f.flatness[i] for f, i in idx]))
    return ref


def fricative_measures(wave: np.ndarray, sample_rate: int, ref: Reference) -> dict:
    """The fricative numbers of one render against its condition's reference."""
    f = frame_features(wave, sample_rate)
    secs = len(wave) / sample_rate
    own = int(f.fricative.sum())
    out = {"fric_rule": ref.mode, "fric_frames": own,
           "fric_per_s": own / secs if secs > 0 else float("nan"),
           "ref_fric_per_s": ref.fric_per_s, "ref_band_db": ref.level_db,
           "ref_flatness": ref.flatness}
    if ref.mode == "aligned":
        rf = ref.feats[0]
        idx = np.flatnonzero(rf.fricative)
        idx = idx[idx < f.n]
        out["fric_frames_compared"] = int(idx.size)
        out["fric_band_db"] = _nanmean(f.band_db[idx] - rf.band_db[idx]) if idx.size else float("nan")
        out["fric_flatness"] = _nanmean(f.flatness[idx]) if idx.size else float("nan")
    else:
        idx = top_k_frames(f, ref.k)
        out["fric_frames_compared"] = int(idx.size)
        out["fric_band_db"] = (_nanmean(f.band_db[idx]) - ref.level_db) if idx.size else float("nan")
        out["fric_flatness"] = _nanmean(f.flatness[idx]) if idx.size else float("nan")
    return out


# ------------------------------------------------------------------ the plan

@dataclass
class Condition:
    id: str
    level: str
    title: str
    spec: object                   # sample.CondSpec
    n_samples: int
    beam_samples: int              # 0: no beam search
    reference: Reference
    listen: Utterance | None = None  # a recording to play next to the renders
    info: dict = field(default_factory=dict)


def count_fricative_frames(u: Utterance, sample_rate: int) -> int:
    return int(frame_features(decode_utt(u), sample_rate).fricative.sum())


def pick_takes(corpus: Corpus, digits, sample_rate: int) -> dict[int, Utterance]:
    """Per digit, the test take with the most fricative frames (ties: first name)."""
    out = {}
    for d in digits:
        takes = sorted((u for u in corpus.test if u.digit == d), key=lambda u: u.name)
        if takes:
            counts = [count_fricative_frames(u, sample_rate) for u in takes]
            out[d] = takes[int(np.argmax(counts))]   # argmax: first of the maxima
    return out


def plan_conditions(model, corpus: Corpus, quick: bool, seconds: float, notes: list[str]) -> list[Condition]:
    from wavetyp.core.conditioning import CondSpec
    cfg = model.cfg
    sr = cfg.sample_rate
    n_label = max(1, int(round(seconds * sr)))
    digits = QUICK_DIGITS if quick else FRICATIVE_DIGITS
    if not corpus.test:
        raise UsageError("the corpus has no test recordings to compare with")
    takes = pick_takes(corpus, digits, sr)
    for d in digits:
        if d not in takes:
            notes.append(f"no test recording of digit {d} ({DIGIT_NAMES[d]}) in the corpus: skipped")
    beam_cap = int(round(QUICK_BEAM_SECONDS * sr))

    def beam_len(n: int, first: bool, level: str) -> int:
        """Beam search for the first condition of each level in BEAM_LEVELS (full length);
        --quick: QUICK_BEAM_LEVELS only, at most QUICK_BEAM_SECONDS."""
        if not first:
            return 0
        if quick:
            return min(n, beam_cap) if level in QUICK_BEAM_LEVELS else 0
        return n if level in BEAM_LEVELS else 0

    conds: list[Condition] = []
    ref_all = make_reference(corpus.test, sr, aligned=False)
    conds.append(Condition("uncond", "uncond", "no conditioning", CondSpec(), n_label,
                           beam_len(n_label, True, "uncond"), ref_all,
                           info={"reference_text": "all test recordings"}))
    if cfg.n_digits:
        for i, (d, take) in enumerate(takes.items()):
            refs = [u for u in corpus.test if u.digit == d]
            conds.append(Condition(f"label-{DIGIT_NAMES[d]}", "label", f'digit "{DIGIT_NAMES[d]}"',
                                   CondSpec(digit=d), n_label, beam_len(n_label, i == 0, "label"),
                                   make_reference(refs, sr, aligned=False), listen=take,
                                   info={"reference_text": f"test takes of digit {d}"}))
    else:
        notes.append("the checkpoint has no digit conditioning: label levels skipped")
    first = True
    for d, take in takes.items():
        if not cfg.n_digits:
            break
        spk = corpus.speakers[take.speaker] if 0 <= take.speaker < len(corpus.speakers) else None
        if spk is None or spk not in cfg.speakers:
            notes.append(f"speaker {spk!r} of {take.name} is unknown to the checkpoint: "
                         f"no speaker condition for digit {d}")
            continue
        refs = [u for u in corpus.test if u.digit == d and u.speaker == take.speaker]
        conds.append(Condition(f"speaker-{DIGIT_NAMES[d]}-{spk}", "speaker",
                               f'digit "{DIGIT_NAMES[d]}" + speaker {spk}',
                               CondSpec(digit=d, speaker=spk), n_label, beam_len(n_label, first, "speaker"),
                               make_reference(refs, sr, aligned=False), listen=take,
                               info={"reference_text": f"test takes of digit {d} by {spk}"}))
        first = False
    if cfg.n_mels:
        first = True
        for d, take in takes.items():
            spk = corpus.speakers[take.speaker] if 0 <= take.speaker < len(corpus.speakers) else None
            spk = spk if spk in cfg.speakers else None
            codes = take.codes
            if quick:
                codes = codes[:n_label]
            n = len(codes)
            ref = make_reference([Utterance(take.name, codes, take.digit, take.speaker)], sr, aligned=True)
            spec = CondSpec(digit=d if cfg.n_digits else None, speaker=spk, mel_from=take.name,
                            mel_codes=codes)
            b = beam_len(n, first, "vocoder")
            conds.append(Condition(f"vocoder-{take.name}", "vocoder", f"mel frames of {take.name}",
                                   spec, n, b, ref, listen=Utterance(take.name, codes, take.digit, take.speaker),
                                   info={"reference_text": f"{take.name} (aligned)",
                                         "recording_seconds": len(take.codes) / sr}))
            first = False
    else:
        notes.append("the checkpoint has no mel conditioning: vocoder level skipped")
    return conds


def load_fsdd_test(data_dir=None, sample_rate: int = 8000, progress: bool = False) -> Corpus:
    """Only FSDD's official test split (take index 0-4), found like `data.load_corpus` does.

    Reading all 3000 files costs more than the quick sweep itself; the demo needs the 300
    test takes. Speaker indices are those `data.scan_fsdd` gives (sorted names of all files).
    """
    from wavetyp.core.audio import AUDIO_SUFFIXES, load_codes
    from wavetyp.core.errors import AudioError, DataError
    from wavetyp.data.fsdd import FSDD_NAME, recordings_dir, resolve_fsdd
    rec = recordings_dir(Path(resolve_fsdd(data_dir)))
    if not rec.is_dir():
        raise DataError(f"{rec}: no such folder")
    parsed = []
    for p in sorted(rec.iterdir()):
        m = FSDD_NAME.match(p.name) if p.suffix.lower() in AUDIO_SUFFIXES else None
        if m:
            parsed.append((p, int(m.group(1)), m.group(2), int(m.group(3))))
    speakers = sorted({s for _, _, s, _ in parsed})
    test, skipped = [], []
    for p, digit, spk, idx in tqdm([x for x in parsed if x[3] < 5], desc=f"reading {rec.name} (test split)",
                                   disable=not progress, unit="file"):
        try:
            test.append(Utterance(p.stem, load_codes(p, sample_rate), digit, speakers.index(spk)))
        except AudioError as e:
            skipped.append((str(p), str(e)))
    if not test:
        raise DataError(f"{rec}: no usable test recordings (take index 0-4)")
    return Corpus("fsdd", sample_rate, speakers, [], test, skipped, root=str(rec))


# ------------------------------------------------------------------ helpers

def recording_link(corpus: Corpus, name: str, out_dir: Path) -> str | None:
    """Where the report's player finds recording `name`: a path relative to the report
    (works on any checkout with `../shared` beside it), or None when the corpus has no root."""
    if not corpus.root:
        return None
    path = os.path.join(os.path.abspath(corpus.root), f"{name}.wav")   # symlinks kept
    return Path(os.path.relpath(path, os.path.abspath(out_dir))).as_posix()


def _finite(x):
    """JSON-safe numbers: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def setting_fields(s: DecodeSettings | None, beam: int | None) -> dict:
    if beam:
        return {"setting": f"beam{beam}", "temperature": None, "top_p": None, "typical_p": None,
                "beam": beam}
    return {"setting": s.name, "temperature": s.temperature, "top_p": s.top_p,
            "typical_p": s.typical_p, "beam": None}


def output_names() -> list[str]:
    return ["index.html", "metrics.json", "metrics.md"]


def check_demo_dir(out_dir, overwrite: bool) -> Path:
    """Create the folder; refuse (UsageError) to replace an existing report unless overwrite."""
    from wavetyp.core.checks import check_output_dir
    return check_output_dir(out_dir, overwrite=overwrite, expect=output_names())


def _old_manifest(out_dir: Path) -> list[str]:
    try:
        files = json.loads((out_dir / "metrics.json").read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    safe = []
    for f in files:
        p = Path(str(f))
        if not p.is_absolute() and ".." not in p.parts:
            safe.append(p.as_posix())
    return safe


def _publish(stage: Path, out_dir: Path, files: list[str]) -> None:
    """Move the staged run into out_dir: stale files of the previous run are removed,
    index.html goes last so a crash never leaves a page pointing at missing files."""
    new = set(files)
    for old in _old_manifest(out_dir):
        if old not in new and (out_dir / old).is_file():
            (out_dir / old).unlink()
    for rel in sorted(files, key=lambda r: (r == "index.html", r)):
        dst = out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / rel, dst)
    for d in sorted((p for p in out_dir.rglob("*") if p.is_dir()), reverse=True):
        if d != out_dir and not any(d.iterdir()):
            d.rmdir()


def _run_toys(stage: Path, quick: bool, notes: list[str]) -> str | None:
    """The essay's toy examples (wavetyp.toys, if present) as an HTML section."""
    try:
        from wavetyp import toys
    except ImportError as e:
        if getattr(e, "name", None) in (None, "wavetyp.toys") or "toys" in str(e):
            notes.append("wavetyp.toys is not available: toy examples section omitted")
            return None
        raise
    try:
        kw = {}
        if quick and "n_mc" in inspect.signature(toys.run_toys).parameters:
            kw["n_mc"] = 10**5
        res = toys.run_toys(stage / "toys", **kw)
        return toys.toys_html(res, img_prefix="toys/")
    except Exception as e:  # a broken toy module must not throw away the whole sweep
        msg = f"toy examples failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        notes.append(msg + ": section omitted")
        print(f"warning: {msg}", file=sys.stderr)
        return None


# ------------------------------------------------------------------ the run

def run_demo(model, out_dir="samples/demo", quick: bool = False, seconds: float | None = None,
             seed: int = 0, corpus: Corpus | None = None, progress: bool = True,
             overwrite: bool = False, checkpoint: str | None = None,
             checkpoint_step: int | None = None) -> dict:
    """Render the grid, measure every render, write the report; return metrics.json's dict.

    Refuses (UsageError) to replace an existing report in out_dir unless overwrite=True.
    """
    from wavetyp.core.audio import rms_dbfs, save_wav
    from wavetyp.core.generate import render
    from wavetyp.report import demo_page as report

    t_start = time.time()
    out_dir = check_demo_dir(out_dir, overwrite)
    if seconds is None:
        seconds = QUICK_SECONDS if quick else DEFAULT_SECONDS
    check_positive("--seconds", seconds)
    sr = model.cfg.sample_rate
    if corpus is None:
        corpus = load_fsdd_test(sample_rate=sr, progress=progress)
    if corpus.sample_rate != sr:
        raise UsageError(f"corpus sample rate {corpus.sample_rate} Hz != model's {sr} Hz")
    notes: list[str] = []
    conds = plan_conditions(model, corpus, quick, seconds, notes)

    stage = out_dir / ".staging"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "audio").mkdir(parents=True)
    (stage / "img").mkdir()
    rows, cond_rows, timings = [], [], []
    thumbs = report.Thumbnails()
    try:
        total = sum(len(SETTINGS) * c.n_samples + BEAM_WIDTH * c.beam_samples for c in conds)
        bar = tqdm(total=total, disable=not progress, unit="step", unit_scale=True,
                   desc="demo", dynamic_ncols=True)
        for ci, c in enumerate(conds):
            t0 = time.time()
            bar.set_postfix_str(c.id)
            rendered = render(model, SETTINGS, c.n_samples, c.spec, seed=seed + ci,
                              prefix=f"{c.id}__")
            bar.update(len(SETTINGS) * c.n_samples)
            t_sample = time.time() - t0
            t_beam = 0.0
            if c.beam_samples:
                bar.set_postfix_str(f"{c.id} beam{BEAM_WIDTH}")
                t1 = time.time()
                rendered += render(model, SETTINGS[:1], c.beam_samples, c.spec, beam=BEAM_WIDTH,
                                   prefix=f"{c.id}__")
                t_beam = time.time() - t1
                bar.update(BEAM_WIDTH * c.beam_samples)
            timings.append({"condition": c.id, "sampling_s": t_sample, "beam_s": t_beam})
            listen = None
            if c.listen is not None:
                # The dataset's recordings are never copied into the report (it gets
                # committed): the player links to the file where the corpus lies.
                w = decode_utt(c.listen)
                listen = {"name": c.listen.name, "wav": recording_link(corpus, c.listen.name, out_dir),
                          "spec_png": f"img/{c.id}__reference.spec.png", "seconds": len(w) / sr,
                          "rms_dbfs": rms_dbfs(w)}
                thumbs.spectrogram(w, sr, stage / listen["spec_png"])
            cond_rows.append({"id": c.id, "level": c.level, "level_title": LEVELS[c.level],
                              "title": c.title, "conditioning": c.spec.to_dict(),
                              "samples": c.n_samples, "seconds": c.n_samples / sr,
                              "beam_samples": c.beam_samples, "reference": c.reference.to_dict(),
                              "listen": listen, **c.info})
            for r in rendered:
                beam = r.result.info.get("beam")
                sf = setting_fields(r.result.settings, beam)
                base = f"{c.id}__{sf['setting']}"
                wav, spec_png, trace_png = (f"audio/{base}.wav", f"img/{base}.spec.png",
                                            f"img/{base}.trace.png")
                save_wav(stage / wav, r.wave, sr)
                thumbs.spectrogram(r.wave, sr, stage / spec_png)
                thumbs.traces(r.result.nll_bits, r.result.entropy_bits, sr, stage / trace_png)
                s = r.result.summary()
                sil = silence_fraction(r.wave, sr)
                rows.append({
                    "name": base, "level": c.level, "level_title": LEVELS[c.level],
                    "condition": c.id, "condition_title": c.title, **sf,
                    "seed": None if beam else seed + ci,
                    "samples": len(r.wave), "seconds": len(r.wave) / sr,
                    "rms_dbfs": r.rms_dbfs, "silence_frac": sil,
                    "silent": bool(sil >= SILENT_FRACTION),
                    "mean_nll_bits": s.mean_nll_bits, "mean_entropy_bits": s.mean_entropy_bits,
                    "gap_bits": s.gap_bits, "z": s.z, "in_typical_set": s.in_typical_set,
                    "epsilon_bits": s.epsilon,
                    **fricative_measures(r.wave, sr, c.reference),
                    "log2_prob": r.result.info.get("log2_prob"),
                    "wav": wav, "spec_png": spec_png, "trace_png": trace_png,
                })
        bar.close()
        t_render = time.time() - t_start

        toys_section = _run_toys(stage, quick, notes)
        ood = out_dir.parent / "ood" / "index.html"
        ood_href = "../ood/index.html" if ood.is_file() else None

        meta = {
            "checkpoint": checkpoint, "checkpoint_step": checkpoint_step, "seed": seed, "quick": quick,
            "seconds": seconds, "sample_rate": sr, "settings": [s.name for s in SETTINGS],
            "beam_width": BEAM_WIDTH, "corpus": corpus.name,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "render_seconds": t_render, "timings": timings, "notes": notes,
            "rules": {**RULES, "typical_set_epsilon_bits": rows[0]["epsilon_bits"] if rows else None},
        }
        result = {"meta": meta, "conditions": cond_rows, "rows": rows}
        report.write_report(stage, _finite(result), toys_section=toys_section, ood_href=ood_href)
        result["meta"]["wall_seconds"] = time.time() - t_start
        files = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
        files = sorted(set(files) | {"metrics.json"})
        result["files"] = files
        clean = _finite(result)
        (stage / "metrics.json").write_text(json.dumps(clean, indent=1, allow_nan=False) + "\n")
        _publish(stage, out_dir, files)
    finally:
        thumbs.close()
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return clean


# ------------------------------------------------------------------ CLI

def console_table(rows: list[dict]) -> str:
    head = (f"{'condition':<26} {'setting':<17} {'sec':>4} {'RMS':>6} {'sil%':>5} {'NLL':>5} "
            f"{'H':>5} {'gap':>6} {'z':>7} {'fric/s':>6} {'band dB':>7} {'flat':>5}")
    lines = [head, "-" * len(head)]

    def f(v, fmt, width):
        return f"{v:{fmt}}" if v is not None else "n/a".rjust(width)

    for r in rows:
        lines.append(f"{r['condition'][:26]:<26} {r['setting']:<17} {r['seconds']:>4.2f} "
                     f"{f(r['rms_dbfs'], '>6.1f', 6)} {100 * r['silence_frac']:>5.0f} "
                     f"{f(r['mean_nll_bits'], '>5.2f', 5)} {f(r['mean_entropy_bits'], '>5.2f', 5)} "
                     f"{f(r['gap_bits'], '>+6.2f', 6)} {f(r['z'], '>+7.1f', 7)} "
                     f"{f(r['fric_per_s'], '>6.1f', 6)} {f(r['fric_band_db'], '>+7.1f', 7)} "
                     f"{f(r['fric_flatness'], '>5.2f', 5)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.demo",
        description="Render the fixed demonstration grid (conditioning levels x decoding "
                    "settings), measure loudness, typicality and fricatives, and write a static "
                    "report (index.html, metrics.json, metrics.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common(p)
    p.add_argument("--out", default="samples/demo", help="output folder")
    p.add_argument("--quick", action="store_true",
                   help="one digit per level, 0.5 s, one short beam search (about a minute)")
    p.add_argument("--seconds", type=float, default=None,
                   help=f"length of unconditional/label renders (default {DEFAULT_SECONDS:g}; "
                        f"{QUICK_SECONDS:g} with --quick); vocoder renders take the recording's")
    p.add_argument("--seed", type=int, default=0, help="condition i uses seed + i")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    p.add_argument("--data-dir", default=None, help="FSDD folder (default: the usual places)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def main(argv=None) -> int:
    p = build_parser()

    def body(a):
        t0 = time.time()
        check_positive("--seconds", a.seconds)
        check_count("--threads", a.threads)
        if a.threads is not None:
            torch.set_num_threads(a.threads)
        out_dir = check_demo_dir(a.out, a.overwrite)   # fail fast, before any work
        from wavetyp.core.checkpoint import load_model
        from wavetyp.core.runtime import pick_device
        model, ckpt = load_model(a.checkpoint, pick_device(a.device))
        corpus = load_fsdd_test(a.data_dir, model.cfg.sample_rate, progress=True)
        res = run_demo(model, out_dir, quick=a.quick, seconds=a.seconds, seed=a.seed,
                       corpus=corpus, progress=True, overwrite=a.overwrite,
                       checkpoint=str(a.checkpoint or "shipped"),
                       checkpoint_step=ckpt.get("step"))
        print(console_table(res["rows"]))
        for n in res["meta"]["notes"]:
            print(f"note: {n}")
        print(f"\nwrote {len(res['rows'])} renders, {len(res['files'])} files to {out_dir}/ "
              f"(index.html, metrics.json, metrics.md) in {time.time() - t0:.1f} s")
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
