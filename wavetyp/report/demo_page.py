"""The demo's static report: figures, tables and a plain-language reading, all built from
the metrics rows that `demo.run_demo` measured (no number here is written in by hand).

Everything is a pure function of the `result` dict (what metrics.json holds: "meta",
"conditions", "rows"); `write_report` writes index.html, metrics.md and two figures.
Missing values arrive as None (NaN/inf are not JSON) and are shown as "n/a".
"""
from __future__ import annotations

import html
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LEVEL_ORDER = ("uncond", "label", "speaker", "vocoder")
LEVEL_TEXT = {
    "uncond": "The model is given nothing: it babbles whatever FSDD-like audio it finds likely. "
              "Fricatives are compared with the whole test split (distributions).",
    "label": "The model is told which digit to say. Fricatives are compared with the test "
             "recordings of that digit (distributions).",
    "speaker": "Digit label plus the speaker of the recording used on the vocoder level. "
               "Fricatives are compared with that speaker's test takes of the digit.",
    "vocoder": "Digit, speaker and the log-mel frames of one test recording: the strongest "
               "conditioning. The render is time-aligned with the recording, so its fricative "
               "frames are compared frame by frame.",
}
FIG_SCATTER, FIG_CURVES = "img/typical_set.png", "img/temperature_curves.png"
E = html.escape


# ------------------------------------------------------------------ small helpers

def fmt(v, spec: str = ".2f", na: str = "n/a") -> str:
    if v is None:
        return na
    try:
        if isinstance(v, float) and not np.isfinite(v):
            return na
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def settings_order(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["setting"] not in out:
            out.append(r["setting"])
    return out


def levels_present(rows: list[dict]) -> list[str]:
    have = {r["level"] for r in rows}
    return [lv for lv in LEVEL_ORDER if lv in have] + sorted(have - set(LEVEL_ORDER))


def level_title(rows: list[dict], level: str) -> str:
    for r in rows:
        if r["level"] == level:
            return r.get("level_title") or level
    return level


def is_temperature_row(r: dict) -> bool:
    """Plain temperature sampling (greedy = temperature 0): the rows on the tau curves."""
    return (r.get("beam") is None and r.get("top_p") is None and r.get("typical_p") is None
            and r.get("temperature") is not None)


def _mean(vals) -> float | None:
    v = [float(x) for x in vals if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def temperature_curve(rows: list[dict], level: str, key: str) -> list[tuple[float, float]]:
    """[(temperature, mean of `key` over the level's conditions)], temperature ascending."""
    temps = sorted({r["temperature"] for r in rows if r["level"] == level and is_temperature_row(r)})
    out = []
    for t in temps:
        m = _mean(r.get(key) for r in rows
                  if r["level"] == level and is_temperature_row(r) and r["temperature"] == t)
        if m is not None:
            out.append((t, m))
    return out


def band_name(meta: dict) -> str:
    """The fricative band as the run defined it, e.g. "2–4 kHz"."""
    lo = (meta.get("rules", {}).get("fricative_frame", {}).get("high_band_hz") or [None])[0]
    sr = meta.get("sample_rate")
    if lo is None or not sr:
        return "high-band"
    return f"{lo / 1000:g}–{sr / 2000:g} kHz"


def tlabel(t: float) -> str:
    return "greedy" if t == 0 else f"tau {t:g}"


def _save(fig, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=fig.dpi)
    plt.close(fig)
    os.replace(tmp, path)


MARKERS = ("o", "s", "^", "D", "v", "P")


class Thumbnails:
    """Small pictures for the grids: spectrograms and NLL/entropy traces drawn with
    `plots.draw_spectrogram` / `plots.draw_traces` into ONE reused figure with a fixed
    layout (no tight_layout per picture), saved as 64-colour palette PNGs (small files)."""

    def __init__(self, size=(3.2, 1.3), dpi: int = 90, colors: int = 64):
        self.fig, self.ax = plt.subplots(figsize=size, dpi=dpi)
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
        from wavetyp.report.plots import draw_spectrogram
        self.ax.clear()
        draw_spectrogram(self.ax, wave, sample_rate)
        self._save(path)

    def traces(self, nll_bits, entropy_bits, sample_rate: int, path) -> None:
        from wavetyp.report.plots import draw_traces
        self.ax.clear()
        draw_traces(self.ax, nll_bits, entropy_bits, sample_rate, legend=False)
        self._save(path)

    def close(self) -> None:
        plt.close(self.fig)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------ figures

def plot_typical_scatter(rows: list[dict], path, epsilon: float | None = None) -> None:
    """x = mean entropy, y = mean NLL (bits/sample), one point per render; y = x drawn."""
    fig, ax = plt.subplots(figsize=(8.4, 5.0), dpi=90)
    sets, levels = settings_order(rows), levels_present(rows)
    cmap = plt.get_cmap("tab10")
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
        ax.scatter(r["mean_entropy_bits"], r["mean_nll_bits"], s=28,
                   color=cmap(sets.index(r["setting"]) % 10),
                   marker=MARKERS[levels.index(r["level"]) % len(MARKERS)],
                   edgecolor="k", linewidth=0.3, zorder=3)
    handles = [plt.Line2D([], [], color=cmap(i % 10), marker="o", ls="", label=s)
               for i, s in enumerate(sets)]
    handles += [plt.Line2D([], [], color="0.4", marker=MARKERS[i % len(MARKERS)], ls="",
                           label=level_title(rows, lv)) for i, lv in enumerate(levels)]
    handles.append(plt.Line2D([], [], color="k", lw=1, label="NLL = entropy"))
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
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), dpi=90)
    cmap = plt.get_cmap("tab10")
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


# ------------------------------------------------------------------ the reading

def _count_by_setting(rows, pred) -> list[tuple[str, int, int]]:
    out = []
    for s in settings_order(rows):
        rs = [r for r in rows if r["setting"] == s]
        out.append((s, sum(1 for r in rs if pred(r)), len(rs)))
    return out


def _steps_up(vals: list[float]) -> tuple[int, int]:
    d = np.diff(vals)
    return int((d > 0).sum()), int(d.size)


def reading(result: dict) -> list[str]:
    """Plain-language findings, each sentence built from the measured numbers."""
    rows = result["rows"]
    if not rows:
        return ["No renders were produced."]
    meta = result.get("meta", {})
    rules = meta.get("rules", {})
    sil = rules.get("silence", {})
    thr, frac = sil.get("threshold_dbfs", -50), sil.get("silent_if_fraction_at_least", 0.9)
    eps = rules.get("typical_set_epsilon_bits") or rows[0].get("epsilon_bits") or 0.1
    band = band_name(meta)
    out = []

    # loudness / silence
    counts = _count_by_setting(rows, lambda r: r.get("silent"))
    silent = [(s, k, n) for s, k, n in counts if k]
    rule = f"at least {frac:.0%} of its {sil.get('frame_ms', 20):g} ms frames below {thr:g} dBFS"
    if not silent:
        out.append(f"Silence: no render was silent by the rule ({rule}).")
    else:
        parts = [f"{s} in {k} of {n} condition{'s' if n != 1 else ''}" for s, k, n in silent]
        never = [s for s, k, n in counts if not k]
        out.append(f"Silence ({rule}): silent were {'; '.join(parts)}."
                   + (f" No {', '.join(never)} render was silent." if never else ""))
    med = [(s, _mean(r["rms_dbfs"] for r in rows if r["setting"] == s)) for s in settings_order(rows)]
    med = [(s, m) for s, m in med if m is not None]
    if len(med) >= 2:
        lo, hi = min(med, key=lambda x: x[1]), max(med, key=lambda x: x[1])
        out.append(f"Loudness: the mean RMS level over conditions is lowest for {lo[0]} "
                   f"({lo[1]:.1f} dBFS) and highest for {hi[0]} ({hi[1]:.1f} dBFS).")

    # typicality: gap vs temperature per level
    for lv in levels_present(rows):
        pts = temperature_curve(rows, lv, "gap_bits")
        if len(pts) < 2:
            continue
        name = level_title(rows, lv)
        below = [g < -eps for _, g in pts]
        if not any(below):
            out.append(f"Typicality, {name}: the mean gap is at or above −{eps:g} bits/sample at "
                       f"every temperature, {pts[0][1]:+.3f} with {tlabel(pts[0][0])}.")
        elif all(below):
            out.append(f"Typicality, {name}: the mean gap stays below −{eps:g} bits/sample at "
                       f"every temperature, from {pts[0][1]:+.3f} ({tlabel(pts[0][0])}) to "
                       f"{pts[-1][1]:+.3f} ({tlabel(pts[-1][0])}).")
        else:
            cross = [(a, b) for a, b in zip(pts, pts[1:]) if (a[1] < -eps) != (b[1] < -eps)]
            up = [(a, b) for a, b in cross if a[1] < -eps]
            a, b = (up or cross)[0]
            verb = "rises above" if a[1] < -eps else "falls below"
            s = (f"Typicality, {name}: the mean gap {verb} −{eps:g} bits/sample between "
                 f"{tlabel(a[0])} ({a[1]:+.3f}) and {tlabel(b[0])} ({b[1]:+.3f})")
            if len(cross) > 1:
                s += f"; it crosses −{eps:g} {len(cross)} times over the temperature grid"
            out.append(s + ".")
        above = [(t, g) for t, g in pts if g > eps]
        if above:
            out.append(f"  ... and it is above +{eps:g} (less likely than typical) at "
                       + ", ".join(f"{tlabel(t)} ({g:+.3f})" for t, g in above) + ".")
    inside = _count_by_setting(rows, lambda r: r.get("in_typical_set"))
    yes = [f"{s} {k}/{n}" for s, k, n in inside if k]
    no = [s for s, k, n in inside if not k]
    out.append(f"Inside the typical set (|gap| ≤ {eps:g} bits/sample): "
               + (", ".join(yes) if yes else "no render")
               + (f"; never: {', '.join(no)}." if no else "."))

    # fricatives vs temperature
    for lv in levels_present(rows):
        pts = temperature_curve(rows, lv, "fric_band_db")
        if len(pts) < 2:
            continue
        name = level_title(rows, lv)
        up, n = _steps_up([v for _, v in pts])
        trend = ("rises at every step" if up == n else "falls at every step" if up == 0
                 else f"rises in {up} of {n} steps")
        s = (f"Fricatives, {name}: the {band} band level in the fricative frames, relative "
             f"to the reference, is {pts[0][1]:+.1f} dB with {tlabel(pts[0][0])} and "
             f"{pts[-1][1]:+.1f} dB with {tlabel(pts[-1][0])}; as the temperature increases it {trend}.")
        fl = temperature_curve(rows, lv, "fric_flatness")
        ref_fl = _mean(r.get("ref_flatness") for r in rows if r["level"] == lv)
        if len(fl) >= 2:
            s += (f" Spectral flatness there: {fl[0][1]:.2f} ({tlabel(fl[0][0])}) to "
                  f"{fl[-1][1]:.2f} ({tlabel(fl[-1][0])})"
                  + (f", reference {ref_fl:.2f}." if ref_fl is not None else "."))
        fr = temperature_curve(rows, lv, "fric_per_s")
        ref_fr = _mean(r.get("ref_fric_per_s") for r in rows if r["level"] == lv)
        if len(fr) >= 2:
            s += (f" Fricative frames per second by the rule: {fr[0][1]:.1f} ({tlabel(fr[0][0])}), "
                  f"{fr[-1][1]:.1f} ({tlabel(fr[-1][0])})"
                  + (f", reference {ref_fr:.1f}." if ref_fr is not None else "."))
        out.append(s)

    # truncation and beam search
    trunc = [s for s in settings_order(rows) if any(
        r["setting"] == s and (r.get("top_p") is not None or r.get("typical_p") is not None) for r in rows)]
    plain = _mean(r["gap_bits"] for r in rows if is_temperature_row(r) and r["temperature"] == 1.0)
    if trunc:
        parts = [f"{s} {_mean(r['gap_bits'] for r in rows if r['setting'] == s):+.3f}"
                 for s in trunc if _mean(r['gap_bits'] for r in rows if r['setting'] == s) is not None]
        out.append("Truncated sampling at tau 1, mean gap over all conditions: " + ", ".join(parts)
                   + (f" (plain tau 1.0: {plain:+.3f})." if plain is not None else "."))
    beams = [r for r in rows if r.get("beam")]
    if beams:
        g = _mean(r["gap_bits"] for r in beams)
        k = sum(1 for r in beams if r.get("silent"))
        out.append(f"Beam search (width {beams[0]['beam']}): mean gap {fmt(g, '+.3f')} bits/sample "
                   f"over {len(beams)} condition{'s' if len(beams) != 1 else ''}; silent in {k} of {len(beams)}.")
    return out


# ------------------------------------------------------------------ tables

COLUMNS = (  # (header, key, format)
    ("level", "level", "s"), ("condition", "condition", "s"), ("setting", "setting", "s"),
    ("sec", "seconds", ".2f"), ("RMS dBFS", "rms_dbfs", ".1f"), ("silent frames", "silence_frac", ".0%"),
    ("silent?", "silent", "s"), ("NLL", "mean_nll_bits", ".3f"), ("H", "mean_entropy_bits", ".3f"),
    ("gap", "gap_bits", "+.3f"), ("z", "z", "+.1f"), ("typical?", "in_typical_set", "s"),
    ("fric. frames/s", "fric_per_s", ".1f"), ("ref fric/s", "ref_fric_per_s", ".1f"),
    ("fric. band dB (rel)", "fric_band_db", "+.1f"), ("flatness", "fric_flatness", ".2f"),
    ("ref flatness", "ref_flatness", ".2f"), ("frames compared", "fric_frames_compared", "d"),
    ("rule", "fric_rule", "s"),
)


def _cell(r: dict, key: str, spec: str) -> str:
    v = r.get(key)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if spec == "s":
        return "n/a" if v is None else str(v)
    return fmt(v, spec)


def metrics_table_html(rows: list[dict]) -> str:
    head = "".join(f"<th>{E(h)}</th>" for h, _, _ in COLUMNS)
    body = "\n".join("<tr>" + "".join(f"<td>{E(_cell(r, k, s))}</td>" for _, k, s in COLUMNS)
                     + "</tr>" for r in rows)
    return f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def metrics_table_md(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r, k, s) for _, k, s in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def by_setting(rows: list[dict]) -> list[dict]:
    """Per decoding setting, aggregated over conditions (means skip missing values)."""
    out = []
    for st in settings_order(rows):
        rs = [r for r in rows if r["setting"] == st]
        dist = [r for r in rs if r.get("fric_rule") == "distribution"]
        alig = [r for r in rs if r.get("fric_rule") == "aligned"]
        out.append({
            "setting": st, "renders": len(rs), "silent": sum(1 for r in rs if r.get("silent")),
            "rms_dbfs": _mean(r.get("rms_dbfs") for r in rs),
            "gap_bits": _mean(r.get("gap_bits") for r in rs),
            "typical": sum(1 for r in rs if r.get("in_typical_set")),
            "fric_band_db_distribution": _mean(r.get("fric_band_db") for r in dist),
            "fric_band_db_aligned": _mean(r.get("fric_band_db") for r in alig),
            "fric_flatness": _mean(r.get("fric_flatness") for r in rs),
        })
    return out


def by_setting_md(rows: list[dict]) -> str:
    head = ("| setting | renders | silent | mean RMS dBFS | mean gap (bits) | in typical set | "
            "fric. band dB, label rows | fric. band dB, vocoder rows | flatness |")
    lines = [head, "|" + "---|" * 9]
    for a in by_setting(rows):
        lines.append(f"| {a['setting']} | {a['renders']} | {a['silent']} | {fmt(a['rms_dbfs'], '.1f')} | "
                     f"{fmt(a['gap_bits'], '+.3f')} | {a['typical']} | "
                     f"{fmt(a['fric_band_db_distribution'], '+.1f')} | "
                     f"{fmt(a['fric_band_db_aligned'], '+.1f')} | {fmt(a['fric_flatness'], '.2f')} |")
    return "\n".join(lines)


def by_setting_html(rows: list[dict]) -> str:
    md = by_setting_md(rows).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md if not line.startswith("|---")]
    head = "".join(f"<th>{E(c)}</th>" for c in cells[0])
    body = "\n".join("<tr>" + "".join(f"<td>{E(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
    return f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def rules_text(meta: dict) -> list[str]:
    """The measurement rules, from the constants the run used."""
    r = meta.get("rules", {})
    fr, fm, sil = r.get("fricative_frame", {}), r.get("frame", {}), r.get("silence", {})
    sr = meta.get("sample_rate") or 8000
    n_fft, hop = fm.get("n_fft", 0), fm.get("hop", 0)
    lo, split = fr.get("low_band_hz", [None, None])
    band = band_name(meta)
    return [
        f"Silence: the render's mean is removed; a {fmt(sil.get('frame_ms'), 'g')} ms frame is silent below "
        f"{sil.get('threshold_dbfs')} dBFS RMS; a render is called silent when at least "
        f"{fmt(sil.get('silent_if_fraction_at_least'), '.0%')} of its frames are.",
        f"Frames for the spectral features: librosa STFT, {n_fft}-sample "
        f"({1000 * n_fft / sr:.0f} ms) Hann window, {hop}-sample ({1000 * hop / sr:.0f} ms) hop, mean removed.",
        f"Fricative frame: level ≥ {fr.get('level_min_dbfs')} dBFS and within "
        f"{fr.get('level_within_db_of_max')} dB of the recording's loudest frame; energy in "
        f"{band} vs {fmt(lo, 'g')}–{fmt(split, 'g')} Hz ≥ {fr.get('ratio_min_db')} dB "
        f"(more energy above than below {fmt(split, 'g')} Hz); zero-crossing rate ≥ "
        f"{fr.get('zcr_min')} per sample.",
        "Vocoder level (aligned): band level of the render minus that of the recording, "
        "averaged over the recording's fricative frames. Other levels (distributions): K = the "
        "mean number of fricative frames per reference recording; the mean band level of the "
        f"render's K frames with the most {band} energy minus the same mean over every "
        "reference recording's K such frames.",
        f"Band level: {band} mean-square power in dB re full scale (floor "
        f"{r.get('band_floor_db')} dB). Flatness: librosa spectral flatness of the {band} "
        f"power spectrum, ignored in frames whose band level is below {r.get('flatness_min_band_db')} dB.",
        f"Typicality: per-step NLL of the chosen code and entropy of the model's untempered "
        f"distribution; gap = mean(NLL − entropy); z = sum(NLL − H)/sqrt(sum varentropy); "
        f"typical when |gap| ≤ {fmt(r.get('typical_set_epsilon_bits'), 'g')} bits/sample.",
    ]


def metrics_markdown(result: dict) -> str:
    meta, rows = result["meta"], result["rows"]
    out = ["# wavetyp demo: metrics", "",
           f"Checkpoint `{meta.get('checkpoint')}` (step {fmt(meta.get('checkpoint_step'), 'd')}), "
           f"seed {meta.get('seed')}, {'quick' if meta.get('quick') else 'full'} sweep, "
           f"{len(rows)} renders, rendering took {fmt(meta.get('render_seconds'), '.0f')} s "
           f"with {meta.get('threads')} torch thread(s), {meta.get('created_utc')}.", "",
           "## Reading", ""]
    out += [f"- {s}" for s in reading(result)]
    out += ["", "## By setting (over all conditions)", "", by_setting_md(rows),
            "", "Label rows: uncond, label and speaker levels (distribution rule); vocoder rows: "
            "aligned rule. Means skip renders where a value is undefined."]
    out += ["", "## Rules", ""] + [f"- {s}" for s in rules_text(meta)]
    out += ["", "## Metrics", "", metrics_table_md(rows), ""]
    if meta.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in meta["notes"]] + [""]
    return "\n".join(out)


# ------------------------------------------------------------------ the page

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1280px;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{margin-top:2em;border-bottom:1px solid #ccc} h3{margin-bottom:.3em}
table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ddd;padding:2px 5px}
table.grid td{vertical-align:middle} table.grid audio{width:220px}
table.metrics td{text-align:right;white-space:nowrap} table.metrics td:nth-child(-n+3){text-align:left}
.small{font-size:12px;color:#555} ul.reading li{margin:.3em 0}
.metricswrap{overflow-x:auto} img{display:block}
"""


def _row_stats(r: dict) -> str:
    return (f"RMS {fmt(r.get('rms_dbfs'), '.1f')} dBFS, silent frames "
            f"{fmt(r.get('silence_frac'), '.0%')}<br>NLL {fmt(r.get('mean_nll_bits'), '.2f')}, "
            f"H {fmt(r.get('mean_entropy_bits'), '.2f')}, gap {fmt(r.get('gap_bits'), '+.3f')}, "
            f"z {fmt(r.get('z'), '+.1f')}<br>fricative band {fmt(r.get('fric_band_db'), '+.1f')} dB, "
            f"flatness {fmt(r.get('fric_flatness'), '.2f')}, {fmt(r.get('fric_per_s'), '.1f')} fric. frames/s")


def _audio(src: str) -> str:
    return f'<audio controls preload="metadata" src="{E(src)}"></audio>'


def _img(src: str, alt: str) -> str:
    return f'<img src="{E(src)}" alt="{E(alt)}" loading="eager">'


def level_grids_html(result: dict) -> str:
    rows, conds = result["rows"], result.get("conditions", [])
    sr_khz = (result.get("meta", {}).get("sample_rate") or 0) / 2000
    parts = []
    for lv in levels_present(rows):
        parts.append(f'<section class="level" id="level-{E(lv)}"><h2>Conditioning: '
                     f'{E(level_title(rows, lv))}</h2><p>{E(LEVEL_TEXT.get(lv, ""))}</p>')
        for c in [c for c in conds if c["level"] == lv]:
            ref = c.get("reference", {})
            parts.append(f"<h3>{E(c['title'])}</h3>")
            parts.append(
                f'<p class="small">{fmt(c.get("seconds"), ".2f")} s per render; reference: '
                f'{E(str(ref.get("mode")))} comparison with {E(str(c.get("reference_text", "")))}: '
                f'{ref.get("n_recordings")} recording(s), {fmt(ref.get("seconds"), ".1f")} s, '
                f'{fmt(ref.get("fricative_frames_per_s"), ".1f")} fricative frames/s, band level '
                f'{fmt(ref.get("band_db"), ".1f")} dB, flatness {fmt(ref.get("flatness"), ".2f")}'
                f'{", K = " + str(ref.get("k")) if ref.get("mode") == "distribution" else ""}.</p>')
            parts.append('<table class="grid"><thead><tr><th>setting</th><th>listen</th>'
                         f'<th>spectrogram (0–{sr_khz:g} kHz)</th><th>NLL (red) vs entropy (blue), bits</th>'
                         '<th>numbers</th></tr></thead><tbody>')
            lis = c.get("listen")
            if lis:
                player = (_audio(lis["wav"]) + "<br><span class=small>linked from the dataset folder, "
                          "not copied here</span>") if lis.get("wav") else "<span class=small>(dataset not found)</span>"
                parts.append(f"<tr><td>recording<br><span class=small>{E(lis['name'])}</span></td>"
                             f"<td>{player}</td><td>{_img(lis['spec_png'], 'spectrogram of ' + lis['name'])}</td>"
                             f"<td></td><td>RMS {fmt(lis.get('rms_dbfs'), '.1f')} dBFS</td></tr>")
            for r in [r for r in rows if r["condition"] == c["id"]]:
                parts.append(f"<tr><td>{E(r['setting'])}</td><td>{_audio(r['wav'])}</td>"
                             f"<td>{_img(r['spec_png'], 'spectrogram ' + r['name'])}</td>"
                             f"<td>{_img(r['trace_png'], 'NLL and entropy ' + r['name'])}</td>"
                             f"<td class=small>{_row_stats(r)}</td></tr>")
            parts.append("</tbody></table>")
        parts.append("</section>")
    return "\n".join(parts)


def build_index_html(result: dict, toys_section: str | None = None, ood_href: str | None = None) -> str:
    meta, rows = result["meta"], result["rows"]
    eps = meta.get("rules", {}).get("typical_set_epsilon_bits")
    notes = "".join(f"<li>{E(n)}</li>" for n in meta.get("notes", []))
    ood = (f'<p>See also: <a href="{E(ood_href)}">out-of-distribution inputs</a> '
           f"(how the same model scores audio it was not trained on).</p>" if ood_href else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>wavetyp: hearing typicality</title>
<style>{CSS}</style></head>
<body>
<h1>wavetyp: hearing typicality</h1>
<p>A compact WaveNet over 8-bit mu-law speech (FSDD, {fmt((meta.get('sample_rate') or 0) / 1000, 'g')} kHz) is decoded in several ways, from
greedy (always the most likely next code) through low temperatures to ancestral sampling
(tau = 1), with nucleus (top-p) and locally typical sampling, and beam search. For every render
the sampler logged, at each step, the negative log-likelihood (NLL) of the chosen code under the
model's <em>untempered</em> distribution next to that distribution's entropy. Samples from the
model itself have NLL ≈ entropy on average: they are <em>typical</em>. Mode-seeking decoding picks
codes that are far more likely than typical (NLL well below entropy). Following Dieleman,
"Musings on typicality" (2020).</p>
<p class="small">Checkpoint {E(str(meta.get('checkpoint')))} (step {fmt(meta.get('checkpoint_step'), 'd')}),
seed {E(str(meta.get('seed')))}, {'quick' if meta.get('quick') else 'full'} sweep, {len(rows)} renders;
rendering took {fmt(meta.get('render_seconds'), '.0f')} s on {E(str(meta.get('threads')))} CPU thread(s);
generated {E(str(meta.get('created_utc')))}. All numbers on this page were computed by that run
(<a href="metrics.json">metrics.json</a>, <a href="metrics.md">metrics.md</a>).</p>
{ood}
<h2>What the numbers say</h2>
<ul class="reading">{''.join(f'<li>{E(s)}</li>' for s in reading(result))}</ul>
<h2>Typical set and temperature</h2>
{_img(FIG_SCATTER, 'mean NLL vs mean entropy, one point per render')}
<p class="small">Each point is one render: mean entropy of the model's predictive distributions
along the render (x) against the mean NLL of the codes it chose (y). On the diagonal the render
is as surprising as the model expects (typical); below it, more likely than typical.
{f'Dotted lines: gap = ±{eps:g} bits/sample.' if eps else ''}</p>
{_img(FIG_CURVES, 'gap, fricative band level and flatness vs temperature')}
<p class="small">Plain temperature sampling only (greedy at 0); thick lines: mean over the
conditions of a level, thin lines: single conditions.</p>
<h2>Measurement rules</h2>
<ul class="small">{''.join(f'<li>{E(s)}</li>' for s in rules_text(meta))}</ul>
{level_grids_html(result)}
<h2>By setting (over all conditions)</h2>
<div class="metricswrap">{by_setting_html(rows)}</div>
<p class="small">Label rows: the uncond, label and speaker levels (distribution rule); vocoder
rows: the aligned rule. Means skip renders where a value is undefined (n/a).</p>
<h2>All measurements</h2>
<div class="metricswrap">{metrics_table_html(rows)}</div>
{toys_section or ''}
{f'<h2>Notes</h2><ul class="small">{notes}</ul>' if notes else ''}
</body></html>
"""


def write_report(out_dir, result: dict, toys_section: str | None = None,
                 ood_href: str | None = None) -> list[str]:
    """Write the figures, metrics.md and index.html into out_dir; return their paths."""
    out_dir = Path(out_dir)
    rows = result["rows"]
    eps = result["meta"].get("rules", {}).get("typical_set_epsilon_bits")
    plot_typical_scatter(rows, out_dir / FIG_SCATTER, eps)
    plot_temperature_curves(rows, out_dir / FIG_CURVES, eps, band_name(result["meta"]))
    (out_dir / "metrics.md").write_text(metrics_markdown(result))
    tmp = out_dir / ".index.html.tmp"
    tmp.write_text(build_index_html(result, toys_section, ood_href))
    os.replace(tmp, out_dir / "index.html")
    return [FIG_SCATTER, FIG_CURVES, "metrics.md", "index.html"]
