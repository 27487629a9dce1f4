"""Figures people would rather look at than read: NLL/entropy traces over a spectrogram.

matplotlib's object API (Figure + savefig): no backend is chosen or needed."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average over `width` samples (same length; NaNs ignored)."""
    x = np.asarray(x, dtype=np.float64)
    if width <= 1 or x.size == 0:
        return x
    ok = np.isfinite(x)
    k = np.ones(width)
    num = np.convolve(np.where(ok, x, 0.0), k, mode="same")
    den = np.convolve(ok.astype(float), k, mode="same")
    return num / np.maximum(den, 1)


def _save(fig, path):
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=fig.dpi)
    os.replace(tmp, path)


def draw_traces(ax, nll, entropy, sample_rate: int, smooth_ms: float = 10.0, legend=True,
                prime_len: int = 0):
    """NLL and entropy over time (smoothed ~10 ms, raw faint behind) and their gap."""
    t = np.arange(len(nll)) / sample_rate
    w = max(1, int(sample_rate * smooth_ms / 1000))
    ax.plot(t, nll, color="tab:red", alpha=0.12, lw=0.4)
    ax.plot(t, entropy, color="tab:blue", alpha=0.12, lw=0.4)
    sn, se = smooth(nll, w), smooth(entropy, w)
    ax.plot(t, sn, color="tab:red", lw=1.0, label="NLL of chosen code")
    ax.plot(t, se, color="tab:blue", lw=1.0, label="entropy H(p_t)")
    ax.fill_between(t, sn, se, where=sn < se, color="tab:purple", alpha=0.25, lw=0,
                    label="NLL < entropy (atypically likely)")
    if prime_len:
        ax.axvspan(0, prime_len / sample_rate, color="0.85", label="teacher-forced prime")
    ax.set_ylim(0, 8.5)
    ax.set_ylabel("bits")
    ax.set_xlim(0, max(t[-1], 1e-3) if len(t) else 1)
    if legend:
        ax.legend(loc="upper right", fontsize=7, ncol=2)


def draw_spectrogram(ax, wave, sample_rate: int):
    """Log-magnitude spectrogram (librosa STFT), 0..Nyquist."""
    import librosa
    wave = np.asarray(wave, dtype=np.float32)
    n_fft = 256
    if wave.size < n_fft:
        wave = np.pad(wave, (0, n_fft - wave.size))
    S = np.abs(librosa.stft(wave, n_fft=n_fft, hop_length=64))
    db = librosa.amplitude_to_db(S, ref=1.0, top_db=None)
    db = np.maximum(db, -100.0)
    ext = [0, wave.size / sample_rate, 0, sample_rate / 2 / 1000]
    ax.imshow(db, origin="lower", aspect="auto", extent=ext, cmap="magma", vmin=-90, vmax=10)
    ax.set_ylabel("kHz")


def plot_run(rows: list[dict], sample_rate: int, path, title: str = ""):
    """One figure per run: for each sample, traces (top) over its spectrogram (bottom).

    rows: dicts with name, wave, nll_bits, entropy_bits, summary (TypicalitySummary dict),
    and optionally prime_len.
    """
    n = len(rows)
    fig = Figure(figsize=(10, 2.6 * n + 0.6))
    axes = fig.subplots(2 * n, 1, squeeze=False, gridspec_kw={"height_ratios": [3, 2] * n})
    for i, r in enumerate(rows):
        a, b = axes[2 * i, 0], axes[2 * i + 1, 0]
        draw_traces(a, r["nll_bits"], r["entropy_bits"], sample_rate, legend=(i == 0),
                    prime_len=r.get("prime_len", 0))
        s = r["summary"]
        a.set_title(f"{r['name']}: mean NLL {s['mean_nll_bits']:.2f}, entropy "
                    f"{s['mean_entropy_bits']:.2f}, gap {s['gap_bits']:+.3f} bits/sample, "
                    f"z {s['z']:+.1f}, RMS {r.get('rms_dbfs', float('nan')):.1f} dBFS", fontsize=9)
        draw_spectrogram(b, r["wave"], sample_rate)
        b.set_xlim(a.get_xlim())
        if i == n - 1:
            b.set_xlabel("seconds")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
