"""Figures people would rather look at than read: NLL/entropy traces over a spectrogram.

matplotlib's object API (Figure + savefig): no backend is chosen or needed."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from wavetyp.analysis.typical_set import WINDOW_MS, window_steps, windowed_gap

SPEC_DBFS = (-100.0, -10.0)   # dBFS per STFT bin, the inspector's scale (black .. white)
SPEC_CMAP = "magma"
GAP_YLIM = (-1.5, 0.5)        # bits/sample: greedy's -0.5 sits well below the +-0.1 band
BAND_COLOR = "#b7e4b0"        # the typical band |gap| <= epsilon


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
                prime_len: int = 0, raw: bool = True):
    """NLL and entropy over time (smoothed ~10 ms, raw faint behind unless raw=False) and
    their gap."""
    t = np.arange(len(nll)) / sample_rate
    w = max(1, int(sample_rate * smooth_ms / 1000))
    if raw:
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


def spectrogram_dbfs(wave, n_fft: int = 256, hop: int = 64) -> np.ndarray:
    """(bins, frames) STFT level in dBFS: 0 dB is the peak bin of a full-scale sine (Hann
    window), as in the inspector; floored at -200 dB (digital silence)."""
    import librosa
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size < n_fft:
        wave = np.pad(wave, (0, n_fft - wave.size))
    S = np.abs(librosa.stft(wave, n_fft=n_fft, hop_length=hop))
    full_scale = librosa.filters.get_window("hann", n_fft, fftbins=True).sum() / 2
    return 20 * np.log10(np.maximum(S / full_scale, 1e-10))


def draw_spectrogram(ax, wave, sample_rate: int):
    """Spectrogram 0..Nyquist on the one fixed scale SPEC_DBFS (the same for every render, so
    a near-silent render is dark, not rescaled into noise); returns the image (for a colorbar)."""
    db = spectrogram_dbfs(wave)
    n = max(len(wave), 256)
    ext = [0, n / sample_rate, 0, sample_rate / 2 / 1000]
    im = ax.imshow(db, origin="lower", aspect="auto", extent=ext, cmap=SPEC_CMAP,
                   vmin=SPEC_DBFS[0], vmax=SPEC_DBFS[1], interpolation="nearest")
    ax.set_ylabel("kHz")
    return im


def draw_gap(ax, nll, entropy, sample_rate: int, epsilon: float = 0.1,
             window_ms: float = WINDOW_MS, ylim: tuple = GAP_YLIM):
    """The windowed gap mean(NLL - H) over time (centred windows of window_ms, as in the
    inspector) with the typical band |gap| <= epsilon shaded; values beyond ylim are drawn at
    its edge, so every render shares one y scale."""
    t = np.arange(len(nll)) / sample_rate
    g = windowed_gap(nll, entropy, window_steps(sample_rate, window_ms))
    ax.axhspan(-epsilon, epsilon, color=BAND_COLOR, lw=0, zorder=0)
    ax.axhline(0, color="0.5", lw=0.5, zorder=1)
    gc = np.clip(g, ylim[0], ylim[1])
    ax.fill_between(t, gc, -epsilon, where=gc < -epsilon, color="tab:red", alpha=0.3, lw=0)
    ax.plot(t, gc, color="tab:purple", lw=1.0, zorder=2)
    ax.set_ylim(*ylim)
    ax.set_xlim(0, max(t[-1], 1e-3) if len(t) else 1)
    return g


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
