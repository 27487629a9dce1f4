"""Audio I/O (soundfile) and the 8-bit mu-law codec (torchaudio).

Every waveform in wavetyp is mono float32 in [-1, 1] at the model's sample rate;
every model input/output is a mu-law code in 0..255.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from wavetyp.core.errors import AudioError

N_CODES = 256          # 8-bit mu-law
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
MIN_RATE, MAX_RATE = 1000, 384_000      # sample rates accepted from a file header


def mu_law_encode(wave) -> torch.Tensor:
    """Float waveform in [-1, 1] -> int64 codes 0..255 (torchaudio's mu-law)."""
    x = torch.as_tensor(wave, dtype=torch.float32).clamp(-1.0, 1.0)
    return AF.mu_law_encoding(x, N_CODES).long()


def mu_law_decode(codes) -> torch.Tensor:
    """Codes 0..255 -> float32 waveform in [-1, 1]."""
    return AF.mu_law_decoding(torch.as_tensor(codes).long(), N_CODES).float()


# The code digital silence (0.0) maps to. Generation starts from it and padding uses it.
SILENCE_CODE = int(mu_law_encode(torch.zeros(1))[0])


def resample(wave: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited resampling with librosa's soxr backend.

    (torchaudio's polyphase resampler builds a kernel of size ~ rate / gcd(rates): for a file
    at 7937 Hz it takes seconds per file, soxr handles any ratio quickly.)
    """
    if orig_sr == new_sr:
        return wave
    import librosa
    out = librosa.resample(np.ascontiguousarray(wave, dtype=np.float32), orig_sr=int(orig_sr),
                           target_sr=int(new_sr), res_type="soxr_hq")
    return out.astype(np.float32)


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Read a WAV/FLAC/OGG file as mono float32 at `sample_rate`.

    Stereo is averaged to mono, integer PCM is scaled to [-1, 1] by soundfile, other
    rates are resampled. Raises AudioError (never anything else) for unusable files.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises several types for bad headers/data
        raise AudioError(f"{path}: not readable as audio ({type(e).__name__}: {e})") from None
    if not MIN_RATE <= sr <= MAX_RATE:   # a corrupt header can claim any rate; resampling
        raise AudioError(f"{path}: implausible sample rate {sr} Hz")  # from it could take hours
    if data.size == 0 or data.shape[0] == 0:
        raise AudioError(f"{path}: zero-length audio")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or Inf samples")
    wave = data.mean(axis=1).astype(np.float32)
    if sr != sample_rate:
        wave = resample(wave, sr, sample_rate)
    return np.clip(wave, -1.0, 1.0)


def save_wav(path: str | os.PathLike, wave, sample_rate: int) -> None:
    """Write mono float audio as 16-bit PCM WAV (written to a temp name, then renamed)."""
    path = Path(path)
    wave = np.clip(np.asarray(wave, dtype=np.float32).reshape(-1), -1.0, 1.0)
    tmp = path.with_name(path.name + ".tmp")
    sf.write(str(tmp), wave, int(sample_rate), subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def load_codes(path: str | os.PathLike, sample_rate: int) -> torch.Tensor:
    """Read an audio file straight to mu-law codes (int64, shape (T,))."""
    return mu_law_encode(load_audio(path, sample_rate))


def rms_dbfs(wave) -> float:
    """RMS level in dB relative to full scale (digital silence gives -inf clipped to -200)."""
    w = np.asarray(wave, dtype=np.float64)
    rms = float(np.sqrt(np.mean(w**2))) if w.size else 0.0
    return 20.0 * np.log10(max(rms, 1e-10))
