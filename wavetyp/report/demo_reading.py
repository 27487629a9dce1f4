"""The demo page's words: a plain-language reading of the measured rows, and the measurement
rules as the run stated them. Every number in a sentence comes from metrics.json.
"""
from __future__ import annotations

import numpy as np

from wavetyp.report.demo_rows import (
    band_name,
    fmt,
    is_literature_row,
    is_temperature_row,
    level_title,
    levels_present,
    mean_of,
    settings_order,
    temperature_curve,
    tlabel,
)


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
    med = [(s, mean_of(r["rms_dbfs"] for r in rows if r["setting"] == s)) for s in settings_order(rows)]
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
        ref_fl = mean_of(r.get("ref_flatness") for r in rows if r["level"] == lv)
        if len(fl) >= 2:
            s += (f" Spectral flatness there: {fl[0][1]:.2f} ({tlabel(fl[0][0])}) to "
                  f"{fl[-1][1]:.2f} ({tlabel(fl[-1][0])})"
                  + (f", reference {ref_fl:.2f}." if ref_fl is not None else "."))
        fr = temperature_curve(rows, lv, "fric_per_s")
        ref_fr = mean_of(r.get("ref_fric_per_s") for r in rows if r["level"] == lv)
        if len(fr) >= 2:
            s += (f" Fricative frames per second by the rule: {fr[0][1]:.1f} ({tlabel(fr[0][0])}), "
                  f"{fr[-1][1]:.1f} ({tlabel(fr[-1][0])})"
                  + (f", reference {ref_fr:.1f}." if ref_fr is not None else "."))
        out.append(s)

    # truncation and beam search
    trunc = [s for s in settings_order(rows) if any(
        r["setting"] == s and (r.get("top_p") is not None or r.get("typical_p") is not None) for r in rows)]
    plain = mean_of(r["gap_bits"] for r in rows if is_temperature_row(r) and r["temperature"] == 1.0)
    if trunc:
        parts = [f"{s} {mean_of(r['gap_bits'] for r in rows if r['setting'] == s):+.3f}"
                 for s in trunc if mean_of(r['gap_bits'] for r in rows if r['setting'] == s) is not None]
        out.append("Truncated sampling at tau 1, mean gap over all conditions: " + ", ".join(parts)
                   + (f" (plain tau 1.0: {plain:+.3f})." if plain is not None else "."))
    out += _literature(rows, eps)
    beams = [r for r in rows if r.get("beam")]
    if beams:
        g = mean_of(r["gap_bits"] for r in beams)
        k = sum(1 for r in beams if r.get("silent"))
        out.append(f"Beam search (width {beams[0]['beam']}): mean gap {fmt(g, '+.3f')} bits/sample "
                   f"over {len(beams)} condition{'s' if len(beams) != 1 else ''}; silent in {k} of {len(beams)}.")
    return out



def _setting_means(rs: list[dict]) -> str:
    """Mean gap, z, silent frames and fricative band (aligned / distribution rows) of rs."""
    def m(key, rule=None):
        return mean_of(r.get(key) for r in rs if rule is None or r.get("fric_rule") == rule)
    return (f"gap {fmt(m('gap_bits'), '+.3f')}, z {fmt(m('z'), '+.1f')}, silent frames "
            f"{fmt(m('silence_frac'), '.0%')}, fricative band {fmt(m('fric_band_db', 'aligned'), '+.1f')} dB "
            f"aligned / {fmt(m('fric_band_db', 'distribution'), '+.1f')} dB distribution")


def _literature(rows: list[dict], eps: float) -> list[str]:
    """Decoding from the literature against plain tau 1, and whether mirostat-gap reached its
    target gap (within eps / 2): sentences only about the rows that exist."""
    lit = [s for s in settings_order(rows) if any(r["setting"] == s and is_literature_row(r) for r in rows)]
    if not lit:
        return []
    plain = [r for r in rows if is_temperature_row(r) and r["temperature"] == 1.0]
    out = [f"Decoding from the literature, means over {len({r['condition'] for r in rows})} conditions: "
           + "; ".join(f"{s}: {_setting_means([r for r in rows if r['setting'] == s])}" for s in lit)
           + (f". Plain tau 1.0: {_setting_means(plain)}." if plain else ".")]
    gaps = []
    for s in lit:
        rs = [r for r in rows if r["setting"] == s and r.get("mirostat_gap") is not None]
        g = mean_of(r.get("gap_bits") for r in rs)
        if rs and g is not None:
            gaps.append((rs[0]["mirostat_gap"], g))
    if gaps:
        hit = [f"{t:+g} ({g:+.3f})" for t, g in gaps if abs(g - t) <= eps / 2]
        miss = [f"{t:+g} ({g:+.3f})" for t, g in gaps if abs(g - t) > eps / 2]
        out.append("Mirostat-gap aims each step's surprise at that step's entropy plus G; the mean "
                   f"gap it reached, within ±{eps / 2:g} bits/sample of G: "
                   + (", ".join(hit) if hit else "none")
                   + (f"; missed: {', '.join(miss)}" if miss else "") + ".")
    return out


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
