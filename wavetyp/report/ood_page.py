"""The OOD-detection report: markdown, a static HTML page, histograms, the JSON record and
one example file per set, written from an OodRun (wavetyp.analysis.ood_run)."""
from __future__ import annotations

import html
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from wavetyp.analysis.ood_run import OodConfig, OodRun, run_ood
from wavetyp.analysis.ood_stats import DETECTORS, column
from wavetyp.core.audio import mu_law_decode, save_wav

PNG_NLL, PNG_GAP = "hist_nll.png", "hist_gap.png"
OUTPUTS = ("ood.md", "ood.json", "index.html", PNG_NLL, PNG_GAP, "examples")


# ------------------------------------------------------------------ tables and pages

def _fmt(x, nd=2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def auroc_table_rows(res: dict) -> tuple[list[str], list[list[str]]]:
    head = ["OOD set", "files"] + list(DETECTORS.values())
    rows = [[s, str(res["stats"][s]["files"])] + [_fmt(res["auroc"][s][k]) for k in DETECTORS]
            for s in res["auroc"]]
    return head, rows


def batch_table_rows(res: dict, in_label: str) -> tuple[list[str], list[list[str]]]:
    bt = res["batch_test"]
    ms = list(bt["fpr_in"])
    head = ["set"] + [f"M={m}" for m in ms]
    rows = [[f"{s} (NLL test)"] + [f"{100 * bt['detection'][s][m]:.0f}%" for m in ms]
            for s in bt["detection"]]
    rows.append([f"{in_label} test (NLL test: false-positive rate)"]
                + [f"{100 * bt['fpr_in'][m]:.1f}%" for m in ms])
    rows.append(["threshold on |mean NLL - H_hat| (bits)"] + [f"{bt['threshold'][m]:.3f}" for m in ms])
    gt = res.get("gap_batch_test")
    if gt:
        for test, label in (("gap", "gap test"), ("joint", "joint NLL + gap test")):
            rows += [[f"{s} ({label})"] + [f"{100 * gt['detection'][s][test][m]:.0f}%" for m in ms]
                     for s in gt["detection"]]
            rows.append([f"{in_label} test ({label}: false-positive rate)"]
                        + [f"{100 * gt['fpr_in'][test][m]:.1f}%" for m in ms])
        rows.append(["threshold on |mean gap - G_hat| (bits)"]
                    + [f"{gt['threshold_gap'][m]:.3f}" for m in ms])
    return head, rows


def _md_table(head, rows) -> str:
    def row(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    lines = [row(head), "|" + "|".join(["---"] * len(head)) + "|"] + [row(r) for r in rows]
    return "\n".join(lines)


def _html_table(head, rows) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def write_markdown(path: Path, res: dict, meta: dict) -> None:
    lab = meta["in_label"]
    parts = [
        "# Out-of-distribution detection: likelihood vs typicality", "",
        f"Model `{meta['checkpoint']}`, conditioning: {meta['conditioning']}; in-distribution: "
        f"{meta['in_desc']} ({res['stats']['in']['files']} files). H_hat = "
        f"{res['h_hat_bits']:.3f} bits/sample over {res['batch_test']['h_files']} training files; "
        f"bootstrap pool {res['batch_test']['pool_files']} held-out training files; "
        f"alpha = {res['alpha']:g}.", "",
        "## AUROC per OOD set and detector", "",
        "AUROC = P(score of an OOD file > score of an in-distribution file), ties count half. "
        "1 = perfect detection, 0.5 = chance, below 0.5 = the detector finds the OOD files "
        "*more normal* than the real thing.", "",
        _md_table(*auroc_table_rows(res)), "",
        "## Batch typicality test (Nalisnick et al. 2019)", "",
        "Statistic |mean of the M per-file mean NLLs - H_hat| (per-file weighting); flagged "
        "above the bootstrap (1 - alpha) quantile of held-out training batches.", "",
        _md_table(*batch_table_rows(res, lab)), "",
        "## Reading", "", *[f"- {s}" for s in meta["reading"]], "",
        f"![mean NLL per file]({PNG_NLL})", "", f"![gap per file]({PNG_GAP})", "",
        "## OOD sets", "", *[f"- **{s}**: {d}" for s, d in meta["set_desc"].items()], "",
    ]
    if meta["skipped"]:
        parts += ["## Skipped files", "", *[f"- `{p}`: {w}" for p, w in meta["skipped"]], ""]
    path.write_text("\n".join(parts))


def write_html(path: Path, res: dict, meta: dict) -> None:
    esc = html.escape
    lab = meta["in_label"]
    examples = "".join(
        f"<figure><figcaption>{esc(s)}</figcaption><audio controls preload='none' "
        f"src='examples/{esc(f)}'></audio></figure>" for s, f in meta["examples"].items())
    sets = "".join(f"<li><b>{esc(s)}</b>: {esc(d)}</li>" for s, d in meta["set_desc"].items())
    skipped = ("<h2>Skipped files</h2><ul>" + "".join(
        f"<li><code>{esc(p)}</code>: {esc(w)}</li>" for p, w in meta["skipped"]) + "</ul>"
        if meta["skipped"] else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>wavetyp: likelihood vs typicality for OOD detection</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       line-height: 1.45; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: .25em .6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
figure {{ display: inline-block; margin: .3em 1em .3em 0; }}
figcaption {{ font-size: .85em; }}
.note {{ color: #555; font-size: .9em; }}
</style></head><body>
<h1>Likelihood vs typicality for out-of-distribution detection</h1>
<p class="note">Model <code>{esc(str(meta['checkpoint']))}</code>, conditioning:
{esc(meta['conditioning'])}. In-distribution: {esc(meta['in_desc'])} ({res['stats']['in']['files']} files).
Each file is scored in one parallel pass and reduced to its mean NLL, mean entropy and their
gap (bits/sample). H_hat = {res['h_hat_bits']:.3f} bits/sample (mean per-file NLL of
{res['batch_test']['h_files']} training files).</p>
<h2>Reading</h2>
<ul>{''.join(f'<li>{esc(s)}</li>' for s in meta['reading'])}</ul>
<h2>AUROC per OOD set and detector</h2>
<p class="note">AUROC = P(an OOD file scores as more anomalous than an in-distribution file),
ties half. 1 = perfect, 0.5 = chance, below 0.5 = the detector finds the OOD files more
normal than the real thing.</p>
{_html_table(*auroc_table_rows(res))}
<h2>Batch typicality test (Nalisnick et al. 2019)</h2>
<p class="note">A batch of M files is flagged when |mean of their per-file mean NLLs - H_hat|
exceeds the (1 - alpha) quantile of the same statistic over M-file batches resampled from
{res['batch_test']['pool_files']} held-out training files (alpha = {res['alpha']:g}).
Each file counts once whatever its length.</p>
{_html_table(*batch_table_rows(res, lab))}
<h2>Per-file mean NLL</h2>
<img src="{PNG_NLL}" alt="histograms of per-file mean NLL, in-distribution vs each OOD set">
<h2>Per-file gap (mean NLL - mean entropy)</h2>
<img src="{PNG_GAP}" alt="histograms of per-file gap, in-distribution vs each OOD set">
<h2>Listen: one file per set</h2>
{examples}
<h2>The OOD sets</h2>
<ul>{sets}</ul>
{skipped}
</body></html>
"""
    path.write_text(page)


# ------------------------------------------------------------------ histograms

def plot_histograms(path: Path, in_values, ood_values: dict[str, np.ndarray], xlabel: str,
                    in_label: str, aurocs: dict[str, float], auroc_name: str,
                    vline: float | None = None, vline_label: str = "") -> None:
    """Small multiples: in-distribution (grey) against each OOD set, density-normalised."""
    from matplotlib.figure import Figure
    names = list(ood_values)
    ncol = min(4, max(1, len(names)))
    nrow = math.ceil(len(names) / ncol)
    fig = Figure(figsize=(3.3 * ncol, 2.5 * nrow + 0.4))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    a_in = np.asarray(in_values, dtype=np.float64)
    for ax, name in zip(axes.flat, names):
        b = np.asarray(ood_values[name], dtype=np.float64)
        both = np.concatenate([a_in, b])
        both = both[np.isfinite(both)]
        lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 31)
        ax.hist(np.clip(a_in, lo, hi), bins=bins, density=True, color="0.6", alpha=0.7,
                label=in_label)
        ax.hist(np.clip(b, lo, hi), bins=bins, density=True, color="tab:red", alpha=0.6,
                label=name)
        if vline is not None and lo <= vline <= hi:
            ax.axvline(vline, color="k", lw=0.8, ls="--", label=vline_label or None)
        ax.set_title(f"{name}: AUROC {auroc_name} {_fmt(aurocs[name])}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.set_yticks([])
        ax.legend(fontsize=6, loc="upper right")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=90)
    tmp.replace(path)



# ------------------------------------------------------------------ the whole report

def _json_safe(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_examples(folder: Path, run: OodRun, sample_rate: int) -> dict[str, str]:
    """The first file of each set as a WAV in `folder`: {set label: file name}."""
    folder.mkdir(exist_ok=True)
    sets = run.sets
    examples = {}
    for name, items in [(sets.in_label, sets.in_items)] + list(sets.ood.items()):
        fname = ("in-" if items is sets.in_items else "ood-") + "".join(
            c if c.isalnum() or c in "-_." else "_" for c in name) + ".wav"
        save_wav(folder / fname, mu_law_decode(items[0].codes).numpy(), sample_rate)
        examples[name] = fname
    return examples


def write_report(out: Path, run: OodRun, sample_rate: int, checkpoint: str, conditioning: str,
                 settings: dict) -> None:
    """Every file of OUTPUTS in `out`; `settings` (the CLI's arguments) go into ood.json."""
    res, sets = run.results, run.sets
    lab = sets.in_label
    meta = {"checkpoint": checkpoint, "conditioning": conditioning, "in_desc": sets.in_desc,
            "in_label": lab, "set_desc": sets.set_desc, "skipped": sets.skipped,
            "examples": write_examples(out / "examples", run, sample_rate),
            "reading": run.reading}
    ood = run.ood_scores
    plot_histograms(out / PNG_NLL, column(run.in_scores, "mean_nll_bits"),
                    {n: column(s, "mean_nll_bits") for n, s in ood.items()},
                    "mean NLL per file (bits/sample)", lab,
                    {n: v["nll"] for n, v in res["auroc"].items()}, "NLL",
                    res["h_hat_bits"], "H_hat")
    plot_histograms(out / PNG_GAP, column(run.in_scores, "gap_bits"),
                    {n: column(s, "gap_bits") for n, s in ood.items()},
                    "gap = mean NLL - mean entropy (bits/sample)", lab,
                    {n: v["abs_gap"] for n, v in res["auroc"].items()}, "|gap|", 0.0)
    write_markdown(out / "ood.md", res, meta)
    write_html(out / "index.html", res, meta)
    doc = {"settings": settings, **meta, "timing": run.timing, "results": res,
           "files": [asdict(s) for s in run.every]}
    (out / "ood.json").write_text(json.dumps(_json_safe(doc), indent=1))


def summary_text(run: OodRun) -> str:
    """What the CLI prints: both tables and the reading."""
    res = run.results
    return "\n".join([_md_table(*auroc_table_rows(res)), "",
                      _md_table(*batch_table_rows(res, run.sets.in_label)), "",
                      *["- " + s for s in run.reading]])


def ood_report(model, cfg: OodConfig, out, checkpoint: str, settings: dict,
               progress: bool = False, on_skip=None) -> OodRun:
    """The whole pipeline: run_ood, then write_report into `out` (an existing folder)."""
    run = run_ood(model, cfg, progress, on_skip)
    write_report(Path(out), run, model.cfg.sample_rate, checkpoint, cfg.conditioning, settings)
    return run
