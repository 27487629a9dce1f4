"""The demo's measurements: loudness/silence and fricatives of a render, against references.

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

Every render goes through the same rules; nothing here knows which setting "should" be
silent or atypical.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wavetyp.core.audio import mu_law_decode
from wavetyp.data.corpus import Utterance

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
    """The waveform of a corpus utterance (mu-law codes decoded)."""
    return mu_law_decode(u.codes).numpy()


def make_reference(utts: list[Utterance], sample_rate: int, aligned: bool) -> Reference:
    """The reference of a condition: one time-aligned recording, or a set of recordings
    compared as a distribution (module docstring)."""
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


def count_fricative_frames(u: Utterance, sample_rate: int) -> int:
    return int(frame_features(decode_utt(u), sample_rate).fricative.sum())
