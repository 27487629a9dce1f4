"""The listening report: a markdown table, a JSON of every cell and render, and one figure
(recognizer accuracy beside the typicality gap, against temperature and per other setting).

matplotlib's object API (Figure + savefig): no backend is chosen or needed."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from wavetyp.analysis.listening import BEAM, LEVELS

FILES = ("listening.md", "listening.json", "listening.png")
COLORS = {"label": "tab:blue", "speaker": "tab:orange", "vocoder": "tab:green"}
COLUMNS = [  # (measure, header, format of one number)
    ("accuracy", "accuracy", "{:.0%}"), ("p_digit", "p(digit)", "{:.2f}"),
    ("gap_bits", "gap (bits)", "{:+.2f}"), ("z", "z", "{:+.0f}"),
    ("silence_frac", "silent frames", "{:.2f}"), ("fric_band_db", "fric. band (dB)", "{:+.1f}"),
    ("mel_db", "log-mel dist. (dB)", "{:.1f}")]


def json_safe(x):
    """NaN/inf -> None, numpy scalars -> Python, recursively."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def cell_text(c: dict, fmt: str) -> str:
    """'mean [low, high]' ('-' when undefined; the bare mean when the interval is a point)."""
    m, lo, hi = c["mean"], c["low"], c["high"]
    if m is None or not math.isfinite(m):
        return "-"
    if fmt.endswith("%}"):
        return f"{m:.0%} [{lo * 100:.0f}, {hi * 100:.0f}]" if hi > lo else f"{m:.0%}"
    return f"{fmt.format(m)} [{fmt.format(lo)}, {fmt.format(hi)}]" if hi > lo else fmt.format(m)


def markdown_table(cells: list[dict]) -> str:
    """One row per (level, setting); every measure as mean [95 % interval]."""
    levels = [lv for lv in LEVELS if any(c["level"] == lv for c in cells)]
    cols = [c for c in COLUMNS if c[0] != "mel_db" or "vocoder" in levels]
    head = ["level", "setting", "renders", "units"] + [h for _, h, _ in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for lv in levels:
        for c in (c for c in cells if c["level"] == lv):
            vals = [lv, c["setting"], str(c["renders"]), str(c["units"])]
            vals += [cell_text(c[m], f) if not (m == "mel_db" and lv != "vocoder") else ""
                     for m, _, f in cols]
            lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def difference_table(diffs: list[dict]) -> str:
    """Paired differences to the baseline setting: mean [95 % interval] over shared units."""
    if not diffs:
        return ""
    levels = [lv for lv in LEVELS if any(c["level"] == lv for c in diffs)]
    cols = [c for c in COLUMNS if c[0] not in ("gap_bits", "z") and (c[0] != "mel_db" or "vocoder" in levels)]
    fmts = {"accuracy": "{:+.0%}", "p_digit": "{:+.2f}", "silence_frac": "{:+.2f}", "mel_db": "{:+.1f}"}
    head = ["level", "setting", "units"] + [f"{h} - {diffs[0]['baseline']}" for _, h, _ in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for lv in levels:
        for c in (c for c in diffs if c["level"] == lv):
            vals = [lv, c["setting"], str(c["accuracy"]["units"])]
            for m, _, f in cols:
                cell = c[m]
                if m == "accuracy" and cell["mean"] is not None and math.isfinite(cell["mean"]):
                    lo, hi = cell["low"] * 100, cell["high"] * 100
                    vals.append(f"{cell['mean'] * 100:+.0f} pp [{lo:+.0f}, {hi:+.0f}]" if hi > lo
                                else f"{cell['mean'] * 100:+.0f} pp")
                else:
                    vals.append("" if m == "mel_db" and lv != "vocoder" else cell_text(cell, fmts.get(m, f)))
            lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _temperature(setting: str) -> float | None:
    """Greedy -> 0, 'tau0.7' -> 0.7; None for every filtered setting and beam."""
    if setting == "greedy":
        return 0.0
    if setting.startswith("tau") and "-" not in setting:
        return float(setting[3:])
    return None


def _errorbars(ax, x, cells, measure, color, label, ls="-"):
    m = np.array([c[measure]["mean"] for c in cells], dtype=float)
    lo = np.array([c[measure]["low"] for c in cells], dtype=float)
    hi = np.array([c[measure]["high"] for c in cells], dtype=float)
    ax.errorbar(x, m, yerr=[np.maximum(m - lo, 0), np.maximum(hi - m, 0)], color=color, marker="o",
                ms=4, lw=1.2, ls=ls, capsize=3, label=label)


def draw_figure(cells: list[dict], path) -> None:
    """Top: accuracy and gap against temperature (greedy at 0); bottom: the same two for every
    other setting. One colour per level; error bars: 95 % bootstrap intervals over units."""
    others = list(dict.fromkeys(c["setting"] for c in cells if _temperature(c["setting"]) is None))
    fig = Figure(figsize=(12, 8), dpi=90)
    axes = fig.subplots(2, 2)
    levels = [lv for lv in LEVELS if any(c["level"] == lv for c in cells)]
    for k, lv in enumerate(levels):
        mine = [c for c in cells if c["level"] == lv]
        temp = sorted((c for c in mine if _temperature(c["setting"]) is not None),
                      key=lambda c: _temperature(c["setting"]))
        xs = [_temperature(c["setting"]) for c in temp]
        rest = [c for c in mine if _temperature(c["setting"]) is None]
        xo = [others.index(c["setting"]) + (k - (len(levels) - 1) / 2) * 0.12 for c in rest]
        for row, (x, cs, ls) in enumerate(((xs, temp, "-"), (xo, rest, "none"))):
            for col, measure in enumerate(("accuracy", "gap_bits")):
                if cs:
                    _errorbars(axes[row][col], x, cs, measure, COLORS[lv], LEVELS[lv], ls)
    for row in range(2):
        axes[row][0].set_ylabel("recognizer accuracy (intended digit)")
        axes[row][0].set_ylim(-0.03, 1.03)
        axes[row][1].set_ylabel("gap = mean(NLL - H), bits/sample")
        for col in range(2):
            ax = axes[row][col]
            ax.grid(alpha=0.3)
            if col == 1:
                ax.axhline(0.0, color="k", lw=0.8)
    for col in range(2):
        axes[0][col].set_xlabel("temperature (0 = greedy)")
        axes[1][col].set_xticks(range(len(others)))
        axes[1][col].set_xticklabels([o.replace("tau1-", "") for o in others], rotation=40, ha="right",
                                     fontsize=8)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle("Does the render say its digit? Recognizer accuracy beside the typicality gap "
                 f"(error bars: 95 % bootstrap over digits/recordings; {BEAM} deterministic)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=fig.dpi)
    os.replace(tmp, path)


def write_report(out_dir, cells: list[dict], rows: list[dict], meta: dict,
                 diffs: list[dict] | None = None) -> list[Path]:
    """listening.md (tables + what was run), listening.json (meta, cells, paired differences,
    rows), listening.png."""
    out = Path(out_dir)
    md = ["# Listening by recognizer", "",
          (f"Checkpoint: {meta.get('checkpoint')}; recognizer: {meta.get('recognizer')}; "
          f"CPU: {meta.get('cpu')}; wall time "
           + meta.get("wall_text", f"{meta.get('wall_seconds', float('nan')) / 60:.1f} min") + "."), "",
          f"Plan: {meta.get('plan_text', '')}", "",
          ("Every cell: mean over units (digits at the label levels, recordings at the vocoder level) "
          "[95 % bootstrap interval over units]."), "", markdown_table(cells), ""]
    if diffs:
        md += [(f"Paired by unit: each setting minus {diffs[0]['baseline']} on the same digits/recordings "
               "(mean [95 % bootstrap interval over units])."), "", difference_table(diffs), ""]
    (out / FILES[0]).write_text("\n".join(md))
    tmp = out / (FILES[1] + ".tmp")
    tmp.write_text(json.dumps(json_safe({"meta": meta, "cells": cells, "differences": diffs or [], "rows": rows}), indent=1))
    os.replace(tmp, out / FILES[1])
    draw_figure(cells, out / FILES[2])
    return [out / f for f in FILES]
