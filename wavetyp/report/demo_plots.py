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

from wavetyp.core.typicality import DEFAULT_EPSILON
from wavetyp.report.demo_rows import (
    is_literature_row,
    is_temperature_row,
    level_title,
    levels_present,
    mean_of,
    settings_order,
    temperature_curve,
)
from wavetyp.report.plots import (
    BAND_COLOR,
    SPEC_CMAP,
    SPEC_DBFS,
    draw_gap,
    draw_spectrogram,
    draw_traces,
)

FIG_SCATTER, FIG_CURVES = "img/typical_set.png", "img/temperature_curves.png"
SPEC_SCALE = "img/spec_scale.png"      # the spectrograms' colorbar


def _save(fig, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=fig.dpi)
    os.replace(tmp, path)


MARKERS = ("o", "s", "^", "D", "v", "P")


class Thumbnails:
    """Small pictures for the grids, drawn into reused figures with fixed layouts (no
    tight_layout per picture) and saved as 64-colour palette PNGs (small files):
    spectrograms on the one scale `plots.SPEC_DBFS`, and
    traces: NLL / entropy (top) over the windowed gap with the typical band (bottom), every
    render on the same y scales. The spectrograms' colorbar is `plot_spec_scale`."""

    def __init__(self, size=(3.2, 1.7), dpi: int = 90, colors: int = 64,
                 epsilon: float = DEFAULT_EPSILON):
        self.spec_fig, self.spec_ax = self._figure(size, dpi)
        self.spec_fig.subplots_adjust(left=0.11, right=0.97, bottom=0.2, top=0.96)
        self.trace_fig = Figure(figsize=size, dpi=dpi)
        FigureCanvasAgg(self.trace_fig)
        self.trace_axes = self.trace_fig.subplots(2, 1, sharex=True,
                                                  gridspec_kw={"height_ratios": [1.1, 1]})
        self.trace_fig.subplots_adjust(left=0.13, right=0.97, bottom=0.2, top=0.96, hspace=0.12)
        self.colors, self.epsilon = colors, epsilon

    @staticmethod
    def _figure(size, dpi):
        fig = Figure(figsize=size, dpi=dpi)
        FigureCanvasAgg(fig)                 # drawn to pixels here, not only saved
        return fig, fig.subplots()

    def _save(self, fig, path) -> None:
        from PIL import Image
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for ax in fig.axes:
            ax.tick_params(labelsize=6, length=2, pad=1)
        fig.canvas.draw()
        rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
        tmp = path.with_name(path.stem + ".tmp" + path.suffix)
        Image.fromarray(np.ascontiguousarray(rgb)).quantize(colors=self.colors).save(
            tmp, format="PNG", optimize=True)
        os.replace(tmp, path)

    def spectrogram(self, wave, sample_rate: int, path) -> None:
        ax = self.spec_ax
        ax.clear()
        draw_spectrogram(ax, wave, sample_rate)
        ax.set_ylabel("kHz", fontsize=6, labelpad=1)
        ax.set_xlabel("s", fontsize=6, labelpad=0)
        self._save(self.spec_fig, path)

    def traces(self, nll_bits, entropy_bits, sample_rate: int, path) -> None:
        top, bottom = self.trace_axes
        top.clear()
        bottom.clear()
        draw_traces(top, nll_bits, entropy_bits, sample_rate, legend=False, raw=False)
        top.set_ylim(0, 8)
        top.set_yticks([0, 4, 8])
        top.set_ylabel("bits", fontsize=6, labelpad=1)
        draw_gap(bottom, nll_bits, entropy_bits, sample_rate, self.epsilon)
        bottom.set_yticks([-1, 0])
        bottom.set_ylabel("gap", fontsize=6, labelpad=1)
        bottom.set_xlabel("s", fontsize=6, labelpad=0)
        self._save(self.trace_fig, path)

    def close(self) -> None:
        self.spec_fig.clear()
        self.trace_fig.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------ figures

def plot_spec_scale(path) -> None:
    """The spectrograms' one dB scale as a strip (shown in the grids' headers)."""
    fig = Figure(figsize=(3.2, 0.5), dpi=90)
    cax = fig.add_axes((0.04, 0.62, 0.92, 0.3))
    sm = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(*SPEC_DBFS), SPEC_CMAP)
    cb = fig.colorbar(sm, cax=cax, orientation="horizontal")
    cb.set_ticks(np.arange(SPEC_DBFS[0], SPEC_DBFS[1] + 1, 10))
    cb.ax.tick_params(labelsize=6, length=2, pad=1)
    cb.set_label("dBFS per bin (0 = the peak of a full-scale sine)", fontsize=6, labelpad=1)
    _save(fig, path)


def plot_typical_scatter(rows: list[dict], path, epsilon: float | None = None) -> Figure:
    """Distance from the typical set, one point per render: its gap mean(NLL - H) in
    bits/sample (y) against its decoding setting (x, one column each, the order of the sweep),
    coloured and shaped by conditioning level; the typical band |gap| <= epsilon shaded and
    each setting's mean marked, so greedy's -0.5 reads as five band-widths below; settings
    from the literature (min-p, cutoffs, mirostat) drawn hollow. Returns
    the figure (for tests)."""
    sets, levels = settings_order(rows), levels_present(rows)
    fig = Figure(figsize=(max(9.0, 3.0 + 0.55 * len(sets)), 4.2), dpi=90, layout="constrained")
    ax = fig.subplots()
    hollow = {r["setting"] for r in rows if is_literature_row(r)}   # from the literature
    cmap = matplotlib.colormaps["tab10"]
    pts = [r for r in rows if r.get("gap_bits") is not None]
    gaps = [r["gap_bits"] for r in pts] or [0.0]
    eps = epsilon or 0.0
    lo, hi = min(min(gaps), -3 * eps) - 0.05, max(max(gaps), 3 * eps) + 0.05
    hi += 0.14 * (hi - lo)                        # room for the means written at the top
    if eps:
        ax.axhspan(-eps, eps, color=BAND_COLOR, lw=0, zorder=0)
        ax.text(-0.55, -eps, f"typical set: |gap| ≤ {eps:g}", fontsize=7, ha="left",
                va="top", color="#2c7a2c")
    ax.axhline(0, color="k", lw=0.8, zorder=1)
    for j, lv in enumerate(levels):              # side by side within a setting's column
        label = level_title(rows, lv)
        for i, st in enumerate(sets):
            ys = [r["gap_bits"] for r in pts if r["setting"] == st and r["level"] == lv]
            if not ys:
                continue
            offs = (j - (len(levels) - 1) / 2) * 0.14 + np.linspace(-0.03, 0.03, len(ys))
            look = (dict(facecolor="none", edgecolor=cmap(j % 10), linewidth=1.0) if st in hollow
                    else dict(color=cmap(j % 10), edgecolor="k", linewidth=0.3))
            ax.scatter(i + offs, ys, s=22, marker=MARKERS[j % len(MARKERS)], zorder=3,
                       label=label if st not in hollow else None, **look)
            if st not in hollow:
                label = None
            label = None
    for i, st in enumerate(sets):
        m = mean_of(r["gap_bits"] for r in pts if r["setting"] == st)
        if m is not None:
            ax.plot([i - 0.36, i + 0.36], [m, m], color="k", lw=1.6, zorder=4,
                    label="mean of the setting" if i == 0 else None)
            ax.text(i, hi, f"mean\n{m:+.2f}", fontsize=7, ha="center", va="top", color="0.25")
    ax.set_xticks(range(len(sets)))
    ax.set_xticklabels(sets, fontsize=8, rotation=20, ha="right")
    ax.set_xlim(-0.6, len(sets) - 0.4)
    ax.set_ylim(lo, hi)
    ax.set_ylabel("gap = mean NLL − mean entropy (bits/sample)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Gap from the typical set, one point per render (below the band: more likely "
                 "than typical)", fontsize=9, loc="left")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              title="conditioning", title_fontsize=7)
    _save(fig, path)
    return fig


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
