"""The demo's static report: index.html and metrics.md, built from the metrics rows that
`report.demo_run.run_demo` measured (no number here is written in by hand).

Everything is a pure function of the `result` dict (what metrics.json holds: "meta",
"conditions", "rows"); `write_report` writes index.html, metrics.md and three figures; the
listening grids are `report.demo_grids`.
Missing values arrive as None (NaN/inf are not JSON) and are shown as "n/a".
"""
from __future__ import annotations

import html
import os
from pathlib import Path

from wavetyp.report.demo_grids import ab_strip_html, img_html, level_grids_html
from wavetyp.report.demo_plots import (
    FIG_CURVES,
    FIG_SCATTER,
    SPEC_SCALE,
    plot_spec_scale,
    plot_temperature_curves,
    plot_typical_scatter,
)
from wavetyp.report.demo_reading import reading, rules_text
from wavetyp.report.demo_rows import (
    band_name,
    fmt,
    is_literature_row,
    is_temperature_row,
    mean_of,
    settings_order,
)

E = html.escape


def checkpoint_text(meta: dict) -> str:
    """Which checkpoint, and how long it was trained: the total over all training rounds when
    known (a shipped checkpoint's own step counter restarts with every round)."""
    name = str(meta.get("checkpoint"))
    name = "Shipped checkpoint" if name == "shipped" else f"Checkpoint {name}"
    total, step = meta.get("training_steps"), meta.get("checkpoint_step")
    if total is not None:
        last = (f" (its own step counter, {step:,}, counts the last training round only)"
                if step is not None and step != total else "")
        return f"{name}, {total:,} training steps in all{last}"
    return f"{name} (step {fmt(step, 'd')})"


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
            "rms_dbfs": mean_of(r.get("rms_dbfs") for r in rs),
            "gap_bits": mean_of(r.get("gap_bits") for r in rs),
            "typical": sum(1 for r in rs if r.get("in_typical_set")),
            "fric_band_db_distribution": mean_of(r.get("fric_band_db") for r in dist),
            "fric_band_db_aligned": mean_of(r.get("fric_band_db") for r in alig),
            "fric_flatness": mean_of(r.get("fric_flatness") for r in rs),
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


def by_setting_html(rows: list[dict], md: str | None = None) -> str:
    md = (md or by_setting_md(rows)).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md if not line.startswith("|---")]
    head = "".join(f"<th>{E(c)}</th>" for c in cells[0])
    body = "\n".join("<tr>" + "".join(f"<td>{E(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
    return f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def literature_rows(rows: list[dict]) -> list[dict]:
    """Per setting from the literature, and plain tau 1 for comparison, over all conditions:
    gap, z, silent frames and the fricative band (means skip missing values)."""
    groups = [(s, [r for r in rows if r["setting"] == s]) for s in settings_order(rows)
              if any(r["setting"] == s and is_literature_row(r) for r in rows)]
    if not groups:
        return []
    groups.append(("tau 1.0 (plain)", [r for r in rows if is_temperature_row(r) and r["temperature"] == 1.0]))
    return [{"setting": s, "renders": len(rs), "gap_bits": mean_of(r.get("gap_bits") for r in rs),
             "z": mean_of(r.get("z") for r in rs), "silence_frac": mean_of(r.get("silence_frac") for r in rs),
             "silent": sum(1 for r in rs if r.get("silent")),
             "typical": sum(1 for r in rs if r.get("in_typical_set")),
             "fric_distribution": mean_of(r.get("fric_band_db") for r in rs if r.get("fric_rule") == "distribution"),
             "fric_aligned": mean_of(r.get("fric_band_db") for r in rs if r.get("fric_rule") == "aligned")}
            for s, rs in groups if rs]


def literature_md(rows: list[dict]) -> str:
    lines = ["| setting | renders | mean gap (bits) | mean z | mean silent frames | silent | in typical set | "
             "fric. band dB, label rows | fric. band dB, vocoder rows |", "|" + "---|" * 9]
    for a in literature_rows(rows):
        lines.append(f"| {a['setting']} | {a['renders']} | {fmt(a['gap_bits'], '+.3f')} | {fmt(a['z'], '+.1f')} | "
                     f"{fmt(a['silence_frac'], '.0%')} | {a['silent']} | {a['typical']} | "
                     f"{fmt(a['fric_distribution'], '+.1f')} | {fmt(a['fric_aligned'], '+.1f')} |")
    return "\n".join(lines)


LITERATURE_TEXT = ("All at tau 1, rendered in their own batch after the sweep's (their own seed), "
                   "so the sweep's renders do not depend on them. min-p: keep p >= min_p * max p; "
                   "eps: keep p >= epsilon; eta: keep p >= min(eta, sqrt(eta) exp(-H)); mirostat: "
                   "cut codes whose surprise exceeds mu, mu steered so the surprise holds a target "
                   "(fixed bits, or mirostatgap G: the step's entropy + G).")


def metrics_markdown(result: dict) -> str:
    meta, rows = result["meta"], result["rows"]
    out = ["# wavetyp demo: metrics", "",
           f"{checkpoint_text(meta)}, "
           f"seed {meta.get('seed')}, {'quick' if meta.get('quick') else 'full'} sweep, "
           f"{len(rows)} renders, rendering took {fmt(meta.get('render_seconds'), '.0f')} s "
           f"with {meta.get('threads')} torch thread(s), {meta.get('created_utc')}.", "",
           "## Reading", ""]
    out += [f"- {s}" for s in reading(result)]
    out += ["", "## By setting (over all conditions)", "", by_setting_md(rows),
            "", "Label rows: uncond, label and speaker levels (distribution rule); vocoder rows: "
            "aligned rule. Means skip renders where a value is undefined."]
    if literature_rows(rows):
        out += ["", "## Decoding from the literature (over all conditions)", "", literature_md(rows),
                "", LITERATURE_TEXT]
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
p.story{font-size:1.1em;max-width:60em;line-height:1.45}
table.strip td{vertical-align:top;font-size:12px} a.insp img{border:1px solid transparent}
a.insp:hover img{border-color:#36c} details{margin:.6em 0} summary{cursor:pointer;font-weight:600}
"""


STORY = ("Decoding this WaveNet by always taking its most likely next sample (greedy), by "
         "sharpening its predictions (low temperature) or by beam search picks codes far more "
         "likely than the model's own samples: the audio leaves the typical set. Sampling at "
         "temperature 1 keeps the negative log-likelihood (NLL) of each chosen code next to the "
         "entropy of the model's prediction, as a typical sample does. The curves, the listening "
         "strip and the toy examples below show what that difference looks and sounds like "
         "(after Dieleman, \"Musings on typicality\", 2020).")

METHOD = ("A compact WaveNet over 8-bit mu-law speech (FSDD, {khz} kHz) is decoded in several "
          "ways, from greedy (always the most likely next code) through low temperatures to "
          "ancestral sampling (tau = 1), with nucleus (top-p) and locally typical sampling, and "
          "beam search. For every render the sampler logged, at each step, the NLL of the chosen "
          "code under the model's untempered distribution next to that distribution's entropy. "
          "Samples from the model itself have NLL ≈ entropy on average: they are typical. "
          "Mode-seeking decoding picks codes that are far more likely than typical (NLL well "
          "below entropy).")


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{E(summary)}</summary>\n{body}\n</details>"


def _literature_html(rows: list[dict]) -> str:
    if not literature_rows(rows):
        return ""
    return (f'<h2>Decoding from the literature (over all conditions)</h2>\n<div class="metricswrap">'
            f'{by_setting_html(rows, literature_md(rows))}</div>\n<p class="small">{E(LITERATURE_TEXT)} '
            "Hollow points in the typical-set figure.</p>")


def build_index_html(result: dict, toys_section: str | None = None, ood_href: str | None = None) -> str:
    """The page: the story first (three sentences, the temperature curves, the A/B strip, the
    toys), then the reading, the gap picture and the grids; the measurement rules and the
    table of every render folded into <details>."""
    meta, rows = result["meta"], result["rows"]
    eps = meta.get("rules", {}).get("typical_set_epsilon_bits")
    notes = "".join(f"<li>{E(n)}</li>" for n in meta.get("notes", []))
    lit = ("<p>Beside them, decoding rules from the sampling literature (min-p, epsilon and eta "
           "cutoffs, mirostat) are rendered as rows of their own; see the table after the grids.</p>\n"
           if literature_rows(rows) else "")
    ood = (f'<p>See also: <a href="{E(ood_href)}">out-of-distribution inputs</a> '
           f"(how the same model scores audio it was not trained on).</p>" if ood_href else "")
    insp = meta.get("inspector")
    insp_p = (f'<p>Every greedy, tau 0.7 and tau 1 render (and each recording they follow) opens '
              f'in the <a href="{E(insp["page"])}">inspector</a>: play it and watch the NLL, the '
              f"entropy and the model's distribution move under a cursor. Click any of their "
              f"pictures below.</p>" if insp else "")
    method = METHOD.format(khz=fmt((meta.get("sample_rate") or 0) / 1000, "g"))
    rules = (f'<p class="small">{E(method)}</p>'
             f'<ul class="small">{"".join(f"<li>{E(s)}</li>" for s in rules_text(meta))}</ul>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>wavetyp: hearing typicality</title>
<style>{CSS}</style></head>
<body>
<h1>wavetyp: hearing typicality</h1>
<p class="story">{E(STORY)}</p>
{lit}<p class="small">{E(checkpoint_text(meta))},
seed {E(str(meta.get('seed')))}, {'quick' if meta.get('quick') else 'full'} sweep, {len(rows)} renders;
rendering took {fmt(meta.get('render_seconds'), '.0f')} s on {E(str(meta.get('threads')))} CPU thread(s);
generated {E(str(meta.get('created_utc')))}. All numbers on this page were computed by that run
(<a href="metrics.json">metrics.json</a>, <a href="metrics.md">metrics.md</a>).</p>
{insp_p}
{ood}
<h2>Temperature</h2>
{img_html(FIG_CURVES, 'gap, fricative band level and flatness vs temperature')}
<p class="small">Plain temperature sampling only (greedy at 0); thick lines: mean over the
conditions of a level, thin lines: single conditions.{f' Grey band: |gap| ≤ {eps:g}.' if eps else ''}</p>
<h2>Listen: a recording and three decodings</h2>
{ab_strip_html(result)}
{toys_section or ''}
<h2>What the numbers say</h2>
<ul class="reading">{''.join(f'<li>{E(s)}</li>' for s in reading(result))}</ul>
<h2>Gap from the typical set, per render</h2>
{img_html(FIG_SCATTER, 'gap = mean NLL minus mean entropy, one point per render, by decoding setting')}
<p class="small">Each point is one render: the mean NLL of the codes it chose minus the mean
entropy of the model's predictive distributions along it, in bits/sample, grouped by decoding
setting (colour and shape: conditioning level; black bar: the setting's mean).
{f'Green band: the typical set, |gap| ≤ {eps:g} bits/sample; below it, a render is more likely than the model expects of its own samples.' if eps else ''}</p>
{level_grids_html(result)}
<h2>By setting (over all conditions)</h2>
<div class="metricswrap">{by_setting_html(rows)}</div>
<p class="small">Label rows: the uncond, label and speaker levels (distribution rule); vocoder
rows: the aligned rule. Means skip renders where a value is undefined (n/a).</p>
{_literature_html(rows)}<h2>Measurements</h2>
{_details("How it was measured: the decoding, the typical set, silence and fricatives", rules)}
{_details(f"All measurements: {len(rows)} renders", f'<div class="metricswrap">{metrics_table_html(rows)}</div>')}
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
    plot_spec_scale(out_dir / SPEC_SCALE)
    plot_temperature_curves(rows, out_dir / FIG_CURVES, eps, band_name(result["meta"]))
    (out_dir / "metrics.md").write_text(metrics_markdown(result))
    tmp = out_dir / ".index.html.tmp"
    tmp.write_text(build_index_html(result, toys_section, ood_href))
    os.replace(tmp, out_dir / "index.html")
    return [FIG_SCATTER, FIG_CURVES, SPEC_SCALE, "metrics.md", "index.html"]


def console_table(rows: list[dict]) -> str:
    """The metrics as a fixed-width text table (what the CLI prints)."""
    w = max([17] + [len(r["setting"]) for r in rows])
    head = (f"{'condition':<26} {'setting':<{w}} {'sec':>4} {'RMS':>6} {'sil%':>5} {'NLL':>5} "
            f"{'H':>5} {'gap':>6} {'z':>7} {'fric/s':>6} {'band dB':>7} {'flat':>5}")
    lines = [head, "-" * len(head)]

    def f(v, spec, width):
        return f"{v:{spec}}" if v is not None else "n/a".rjust(width)

    for r in rows:
        lines.append(f"{r['condition'][:26]:<26} {r['setting']:<{w}} {r['seconds']:>4.2f} "
                     f"{f(r['rms_dbfs'], '>6.1f', 6)} {100 * r['silence_frac']:>5.0f} "
                     f"{f(r['mean_nll_bits'], '>5.2f', 5)} {f(r['mean_entropy_bits'], '>5.2f', 5)} "
                     f"{f(r['gap_bits'], '>+6.2f', 6)} {f(r['z'], '>+7.1f', 7)} "
                     f"{f(r['fric_per_s'], '>6.1f', 6)} {f(r['fric_band_db'], '>+7.1f', 7)} "
                     f"{f(r['fric_flatness'], '>5.2f', 5)}")
    return "\n".join(lines)
