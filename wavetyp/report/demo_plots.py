"""The demo page's pictures: per-render thumbnails (spectrogram, NLL/entropy traces), the
typical-set scatter and the temperature curves. matplotlib's object API: no backend needed.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from wavetyp.report.demo_rows import (
    is_literature_row,
    is_temperature_row,
    level_title,
    levels_present,
    settings_order,
    temperature_curve,
)
from wavetyp.report.plots import draw_spectrogram, draw_traces

FIG_SCATTER, FIG_CURVES = "img/typical_set.png", "img/temperature_curves.png"


def _save(fig, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=fig.dpi)
    os.replace(tmp, path)


MARKERS = ("o", "s", "^", "D", "v", "P")


class Thumbnails:
    """Small pictures for the grids: spectrograms and NLL/entropy traces drawn with
    `plots.draw_spectrogram` / `plots.draw_traces` into ONE reused figure with a fixed
    layout (no tight_layout per picture), saved as 64-colour palette PNGs (small files)."""

    def __init__(self, size=(3.2, 1.3), dpi: int = 90, colors: int = 64):
        self.fig = Figure(figsize=size, dpi=dpi)
        FigureCanvasAgg(self.fig)                 # drawn to pixels here, not only saved
        self.ax = self.fig.subplots()
        self.fig.subplots_adjust(left=0.08, right=0.96, bottom=0.19, top=0.96)
        self.colors = colors

    def _save(self, path) -> None:
        from PIL import Image
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ax.tick_params(labelsize=6)
        self.ax.set_ylabel("")
        self.fig.canvas.draw()
        rgb = np.asarray(self.fig.canvas.buffer_rgba())[..., :3]
        tmp = path.with_name(path.stem + ".tmp" + path.suffix)
        Image.fromarray(np.ascontiguousarray(rgb)).quantize(colors=self.colors).save(
            tmp, format="PNG", optimize=True)
        os.replace(tmp, path)

    def spectrogram(self, wave, sample_rate: int, path) -> None:
        self.ax.clear()
        draw_spectrogram(self.ax, wave, sample_rate)
        self._save(path)

    def traces(self, nll_bits, entropy_bits, sample_rate: int, path) -> None:
        self.ax.clear()
        draw_traces(self.ax, nll_bits, entropy_bits, sample_rate, legend=False)
        self._save(path)

    def close(self) -> None:
        self.fig.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------ figures

def plot_typical_scatter(rows: list[dict], path, epsilon: float | None = None) -> None:
    """x = mean entropy, y = mean NLL (bits/sample), one point per render; y = x drawn.
    Settings from the literature are hollow points, coloured among themselves."""
    fig = Figure(figsize=(8.4, 5.0), dpi=90)
    ax = fig.subplots()
    sets, levels = settings_order(rows), levels_present(rows)
    cmap = matplotlib.colormaps["tab10"]
    hollow = {r["setting"] for r in rows if is_literature_row(r)}
    filled = [s for s in sets if s not in hollow]      # their colours as without hollow ones
    cidx = {s: (filled.index(s) if s in filled else [h for h in sets if h in hollow].index(s)) % 10
            for s in sets}
    pts = [(r["mean_entropy_bits"], r["mean_nll_bits"]) for r in rows
           if r.get("mean_entropy_bits") is not None and r.get("mean_nll_bits") is not None]
    vals = [v for p in pts for v in p] or [0.0, 8.0]
    pad = max(0.15, 0.08 * (max(vals) - min(vals)), 1.5 * (epsilon or 0))
    lo, hi = min(vals) - pad, max(vals) + pad            # zoomed on the renders, square
    ax.plot([lo, hi], [lo, hi], color="k", lw=1, label="NLL = entropy (typical)")
    if epsilon:
        for s in (-epsilon, epsilon):
            ax.plot([lo, hi], [lo + s, hi + s], color="k", lw=0.6, ls=":")
    for r in rows:
        if r.get("mean_entropy_bits") is None or r.get("mean_nll_bits") is None:
            continue
        color = cmap(cidx[r["setting"]])
        ax.scatter(r["mean_entropy_bits"], r["mean_nll_bits"], s=28,
                   marker=MARKERS[levels.index(r["level"]) % len(MARKERS)], zorder=3,
                   **(dict(facecolor="none", edgecolor=color, linewidth=1.2) if r["setting"] in hollow
                      else dict(color=color, edgecolor="k", linewidth=0.3)))
    handles = [Line2D([], [], color=cmap(cidx[s]), marker="o", ls="", label=s,
                      **({"markerfacecolor": "none"} if s in hollow else {}))
               for s in sets]
    handles += [Line2D([], [], color="0.4", marker=MARKERS[i % len(MARKERS)], ls="",
                           label=level_title(rows, lv)) for i, lv in enumerate(levels)]
    handles.append(Line2D([], [], color="k", lw=1, label="NLL = entropy"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              frameon=False)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("mean entropy of the model's predictive distribution (bits/sample)")
    ax.set_ylabel("mean NLL of the rendered codes (bits/sample)")
    ax.set_title("Typical set: one point per render (dotted: gap = ±ε)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_temperature_curves(rows: list[dict], path, epsilon: float | None = None,
                            band: str = "high-band") -> None:
    """Gap, fricative band level and flatness vs temperature; one line per conditioning
    level (mean over its conditions), thin lines for the single conditions. Greedy = 0."""
    panels = (("gap_bits", "gap = NLL − entropy (bits/sample)"),
              ("fric_band_db", f"fricative {band} band level\nrel. to reference (dB)"),
              ("fric_flatness", f"{band} spectral flatness\nin the fricative frames"))
    fig = Figure(figsize=(11, 3.4), dpi=90)
    axes = fig.subplots(1, 3)
    cmap = matplotlib.colormaps["tab10"]
    levels = levels_present(rows)
    for ax, (key, ylabel) in zip(axes, panels):
        for i, lv in enumerate(levels):
            color = cmap(i % 10)
            for cond in sorted({r["condition"] for r in rows if r["level"] == lv}):
                pts = sorted((r["temperature"], r[key]) for r in rows
                             if r["condition"] == cond and is_temperature_row(r) and r.get(key) is not None)
                if pts:
                    ax.plot(*zip(*pts), color=color, lw=0.6, alpha=0.35)
            pts = temperature_curve(rows, lv, key)
            if pts:
                ax.plot(*zip(*pts), color=color, lw=1.8, marker=MARKERS[i % len(MARKERS)], ms=4,
                        label=level_title(rows, lv))
        if key == "gap_bits" and epsilon:
            ax.axhspan(-epsilon, epsilon, color="0.85", zorder=0, label=f"|gap| ≤ {epsilon:g}")
        if key == "fric_band_db":
            ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("temperature (0 = greedy)")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6.5, frameon=False)
    fig.tight_layout()
    _save(fig, path)
