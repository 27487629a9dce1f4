"""The demo page's listening parts: the A/B strip at the top (a recording and three decodings
of its mel frames) and one grid per conditioning level (player, spectrogram, traces and
numbers per render). Pictures of renders the inspector shows link into it
(`row["inspector"]`, set by `report.demo_run`).
"""
from __future__ import annotations

import html

from wavetyp.report.demo_plots import SPEC_SCALE
from wavetyp.report.demo_rows import fmt, level_title, levels_present

E = html.escape
DATASET_CREDIT = ("Free Spoken Digit Dataset, Zohar Jackson and contributors, CC BY-SA 4.0, "
                  "https://github.com/Jakobovski/free-spoken-digit-dataset")
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
STRIP_SETTINGS = ("greedy", "tau0.7", "tau1")     # beside the recording, at the top of the page
OPEN = "open in the inspector: its NLL, entropy and distributions, with the audio"


def audio_html(src: str) -> str:
    return f'<audio controls preload="metadata" src="{E(src)}"></audio>'


def img_html(src: str, alt: str) -> str:
    return f'<img src="{E(src)}" alt="{E(alt)}" loading="eager">'


def linked(inner: str, href: str | None) -> str:
    """inner wrapped in a link to the inspector when there is one."""
    return f'<a class="insp" href="{E(href)}" title="{E(OPEN)}">{inner}</a>' if href else inner


def inspector_link(href: str | None) -> str:
    return f'<br><a href="{E(href)}" title="{E(OPEN)}">inspector ↗</a>' if href else ""


def row_stats(r: dict) -> str:
    return (f"RMS {fmt(r.get('rms_dbfs'), '.1f')} dBFS, silent frames "
            f"{fmt(r.get('silence_frac'), '.0%')}<br>NLL {fmt(r.get('mean_nll_bits'), '.2f')}, "
            f"H {fmt(r.get('mean_entropy_bits'), '.2f')}, gap {fmt(r.get('gap_bits'), '+.3f')}, "
            f"z {fmt(r.get('z'), '+.1f')}<br>fricative band {fmt(r.get('fric_band_db'), '+.1f')} dB, "
            f"flatness {fmt(r.get('fric_flatness'), '.2f')}, {fmt(r.get('fric_per_s'), '.1f')} fric. frames/s")


def credit_html(lis: dict) -> str:
    """The licence line of a reference recording (the file is copied into the report)."""
    credit = f' (<a href="{E(lis["credit"])}">attribution</a>)' if lis.get("credit") else ""
    return f"<span class=small>{E(DATASET_CREDIT)}{credit}</span>"


def recording_player(lis: dict) -> str:
    """A reference recording's player with its licence."""
    if not lis.get("wav"):
        return "<span class=small>(dataset not found)</span>"
    return f"{audio_html(lis['wav'])}<br>{credit_html(lis)}"


def _condition_note(c: dict) -> str:
    ref = c.get("reference", {})
    return (f'<p class="small">{fmt(c.get("seconds"), ".2f")} s per render; reference: '
            f'{E(str(ref.get("mode")))} comparison with {E(str(c.get("reference_text", "")))}: '
            f'{ref.get("n_recordings")} recording(s), {fmt(ref.get("seconds"), ".1f")} s, '
            f'{fmt(ref.get("fricative_frames_per_s"), ".1f")} fricative frames/s, band level '
            f'{fmt(ref.get("band_db"), ".1f")} dB, flatness {fmt(ref.get("flatness"), ".2f")}'
            f'{", K = " + str(ref.get("k")) if ref.get("mode") == "distribution" else ""}.</p>')


def grid_head(sr_khz: float, eps) -> str:
    band = f"green band: |gap| ≤ {eps:g}" if eps else "green band: the typical set"
    return ('<table class="grid"><thead><tr><th>setting</th><th>listen</th>'
            f'<th>spectrogram, 0–{sr_khz:g} kHz, one dB scale for all{img_html(SPEC_SCALE, "dB scale")}</th>'
            '<th>top: NLL of the chosen code (red) and entropy (blue), bits; bottom: their gap over '
            f'50 ms, bits/sample ({band}). Click a picture: the inspector</th>'
            '<th>numbers</th></tr></thead><tbody>')


def level_grids_html(result: dict) -> str:
    rows, conds = result["rows"], result.get("conditions", [])
    meta = result.get("meta", {})
    sr_khz = (meta.get("sample_rate") or 0) / 2000
    eps = meta.get("rules", {}).get("typical_set_epsilon_bits")
    parts = []
    for lv in levels_present(rows):
        parts.append(f'<section class="level" id="level-{E(lv)}"><h2>Conditioning: '
                     f'{E(level_title(rows, lv))}</h2><p>{E(LEVEL_TEXT.get(lv, ""))}</p>')
        for c in [c for c in conds if c["level"] == lv]:
            parts += [f'<h3 id="{E(c["id"])}">{E(c["title"])}</h3>', _condition_note(c),
                      grid_head(sr_khz, eps)]
            lis = c.get("listen")
            if lis:
                href = lis.get("inspector")
                parts.append(f"<tr><td>recording<br><span class=small>{E(lis['name'])}</span></td>"
                             f"<td>{recording_player(lis)}</td>"
                             f"<td>{linked(img_html(lis['spec_png'], 'spectrogram of ' + lis['name']), href)}</td>"
                             f"<td></td><td>RMS {fmt(lis.get('rms_dbfs'), '.1f')} dBFS{inspector_link(href)}</td></tr>")
            for r in [r for r in rows if r["condition"] == c["id"]]:
                href = r.get("inspector")
                parts.append(f"<tr><td>{E(r['setting'])}</td><td>{audio_html(r['wav'])}</td>"
                             f"<td>{linked(img_html(r['spec_png'], 'spectrogram ' + r['name']), href)}</td>"
                             f"<td>{linked(img_html(r['trace_png'], 'NLL, entropy and gap ' + r['name']), href)}</td>"
                             f"<td class=small>{row_stats(r)}{inspector_link(href)}</td></tr>")
            parts.append("</tbody></table>")
        parts.append("</section>")
    return "\n".join(parts)


def strip_condition(result: dict) -> dict | None:
    """The condition of the A/B strip: the first vocoder one with its recording, else the
    first with a recording, else the first."""
    conds = result.get("conditions", [])
    have = {r["condition"] for r in result["rows"]}
    conds = [c for c in conds if c["id"] in have]
    for ok in (lambda c: c["level"] == "vocoder" and (c.get("listen") or {}).get("wav"),
               lambda c: (c.get("listen") or {}).get("wav"), lambda c: True):
        found = [c for c in conds if ok(c)]
        if found:
            return found[0]
    return None


def ab_strip_html(result: dict) -> str:
    """Recording / greedy / tau 0.7 / tau 1 of one condition side by side: players and
    spectrograms, each linked to the inspector."""
    c = strip_condition(result)
    if c is None:
        return ""
    cells = []
    lis = c.get("listen")
    if lis and lis.get("wav"):
        cells.append(("recording", lis["wav"], lis["spec_png"], lis.get("inspector"),
                      f"RMS {fmt(lis.get('rms_dbfs'), '.1f')} dBFS<br>{credit_html(lis)}"))
    for st in STRIP_SETTINGS:
        r = next((r for r in result["rows"] if r["condition"] == c["id"] and r["setting"] == st), None)
        if r is not None:
            text = (f"gap {fmt(r.get('gap_bits'), '+.2f')} bits/sample, RMS "
                    f"{fmt(r.get('rms_dbfs'), '.1f')} dBFS")
            cells.append((st, r["wav"], r["spec_png"], r.get("inspector"), text))
    head = "".join(f"<th>{E(name)}</th>" for name, *_ in cells)
    body = "".join(f"<td>{audio_html(wav)}<br>{linked(img_html(png, 'spectrogram ' + name), href)}"
                   f"<span class=small>{text}</span>{inspector_link(href)}</td>"
                   for name, wav, png, href, text in cells)
    return (f'<div class="strip"><p class="small">{E(c["title"])} ({E(c["id"])}): one dB scale '
            f'for all {img_html(SPEC_SCALE, "dB scale")}</p>'
            f'<table class="grid strip"><thead><tr>{head}</tr></thead><tbody><tr>{body}</tr></tbody>'
            f"</table></div>")
