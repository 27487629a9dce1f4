"""The demo run: render the sweep, measure every render, write the report, publish it atomically.

The sweep and its measurements are `wavetyp.analysis.sweep` / `.measures`; the page is
`report.demo_page`; the inspector page beside it (inspector.html, the renders' NLL traces
with their audio and distributions) is `report.demo_inspector`. Everything is staged in `<out>/.staging` and moved into place at the end
(index.html last), so a crash never leaves a page that points at missing files.

The report gets committed, so every link in it must resolve inside the repository: the
reference recordings played beside the renders (FSDD, CC BY-SA 4.0) are copied into
`recordings/` with an attribution file, and the out-of-distribution page is linked only
when it is beside the report and not ignored by git.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from wavetyp.analysis.measures import RULES, decode_utt
from wavetyp.analysis.sweep import (
    BEAM_WIDTH,
    DEFAULT_SECONDS,
    LEVELS,
    LITERATURE,
    LITERATURE_SEED_OFFSET,
    QUICK_SECONDS,
    SETTINGS,
    Condition,
    measure_render,
    plan_conditions,
    render_beam,
    render_literature,
    render_sampled,
)
from wavetyp.core.audio import rms_dbfs, save_wav
from wavetyp.core.checks import check_output_dir, check_positive
from wavetyp.core.errors import UsageError
from wavetyp.data.corpus import Corpus
from wavetyp.data.fsdd import load_fsdd_test
from wavetyp.report.demo_grids import DATASET_CREDIT
from wavetyp.report.demo_inspector import INSPECTOR, build_demo_inspector, wanted
from wavetyp.report.demo_page import write_report
from wavetyp.report.demo_plots import Thumbnails
from wavetyp.report.inspector_inputs import DEMO_SETTINGS
from wavetyp.report.toys_page import run_toys, toys_html

RECORDINGS = "recordings"
MAX_RECORDINGS = 5            # the full sweep plays 3: one take per fricative digit
ATTRIBUTION = f"{RECORDINGS}/ATTRIBUTION.md"
OOD_PAGE = "../ood/index.html"


# ------------------------------------------------------------------ files and links

def output_names() -> list[str]:
    return ["index.html", "metrics.json", "metrics.md"]


def check_demo_dir(out_dir, overwrite: bool) -> Path:
    """Create the folder; refuse (UsageError) to replace an existing report unless overwrite."""
    return check_output_dir(out_dir, overwrite=overwrite, expect=output_names())


def json_safe(x):
    """JSON-safe numbers: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def copy_recording(corpus: Corpus, name: str, stage: Path, copied: list[str]) -> str | None:
    """Copy recording `name` (unchanged) into the staged report's recordings/ folder, at most
    MAX_RECORDINGS files in all; its path relative to the report, or None when the corpus
    file is not there (or the limit is reached)."""
    rel = f"{RECORDINGS}/{name}.wav"
    if name in copied:
        return rel
    src = Path(corpus.root) / f"{name}.wav" if corpus.root else None
    if src is None or not src.is_file() or len(copied) >= MAX_RECORDINGS:
        return None
    (stage / RECORDINGS).mkdir(exist_ok=True)
    shutil.copyfile(src, stage / rel)
    copied.append(name)
    return rel


def attribution_text(names: list[str]) -> str:
    return "\n".join([
        "# Recordings", "",
        "The reference recordings that the demo's conditions are compared with, copied unchanged from the",
        f"{DATASET_CREDIT}",
        "(licence: https://creativecommons.org/licenses/by-sa/4.0/).", "",
        "Files:", "", *[f"- `{n}.wav`" for n in sorted(names)], ""])


def _git_ignored(path: Path) -> bool:
    """True when git says `path` is ignored (it would never be committed); False when it is
    not, or when there is no git or no repository to ask."""
    try:
        r = subprocess.run(["git", "check-ignore", "-q", path.name], cwd=path.parent,
                           capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def ood_link(out_dir: Path) -> str | None:
    """OOD_PAGE when the out-of-distribution page is beside the report and would be committed
    with it (it exists and git does not ignore it); None otherwise (no dead link)."""
    page = Path(out_dir) / OOD_PAGE
    if not page.is_file() or _git_ignored(page.resolve()):
        return None
    return OOD_PAGE


def _old_manifest(out_dir: Path) -> list[str]:
    try:
        files = json.loads((out_dir / "metrics.json").read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    safe = []
    for f in files:
        p = Path(str(f))
        if not p.is_absolute() and ".." not in p.parts:
            safe.append(p.as_posix())
    return safe


def publish(stage: Path, out_dir: Path, files: list[str]) -> None:
    """Move the staged run into out_dir: stale files of the previous run are removed,
    index.html goes last so a crash never leaves a page pointing at missing files."""
    new = set(files)
    for old in _old_manifest(out_dir):
        if old not in new and (out_dir / old).is_file():
            (out_dir / old).unlink()
    for rel in sorted(files, key=lambda r: (r == "index.html", r)):
        dst = out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / rel, dst)
    for d in sorted((p for p in out_dir.rglob("*") if p.is_dir()), reverse=True):
        if d != out_dir and not any(d.iterdir()):
            d.rmdir()


def toys_section(stage: Path, quick: bool, notes: list[str]) -> str | None:
    """The essay's toy examples as an HTML section (their files under toys/)."""
    try:
        res = run_toys(stage / "toys", **({"n_mc": 10**5} if quick else {}))
        return toys_html(res, img_prefix="toys/")
    except Exception as e:  # a broken toy example must not throw away the whole sweep
        msg = f"toy examples failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        notes.append(msg + ": section omitted")
        print(f"warning: {msg}", file=sys.stderr)
        return None


# ------------------------------------------------------------------ the run

def _listen_row(c: Condition, corpus: Corpus, stage: Path, thumbs: Thumbnails, sr: int,
                copied: list[str]) -> dict:
    """The recording played beside condition c: copied into the report, with its spectrogram."""
    w = decode_utt(c.listen)
    wav = copy_recording(corpus, c.listen.name, stage, copied)
    listen = {"name": c.listen.name, "wav": wav, "credit": ATTRIBUTION if wav else None,
              "spec_png": f"img/{c.id}__reference.spec.png", "seconds": len(w) / sr,
              "rms_dbfs": rms_dbfs(w)}
    thumbs.spectrogram(w, sr, stage / listen["spec_png"])
    return listen


def _render_condition(model, c: Condition, seed: int, bar) -> tuple[list, dict]:
    """All renders of condition c as (render, its call's seed): the sweep's settings, then the
    literature's in their own call (so the sweep's codes do not depend on them), then beam
    search (seed None); and their timings."""
    t0 = time.time()
    bar.set_postfix_str(c.id)
    rendered = [(r, seed) for r in render_sampled(model, c, seed)]
    bar.update(len(SETTINGS) * c.n_samples)
    t_sample, t_beam = time.time() - t0, 0.0
    rendered += [(r, seed + LITERATURE_SEED_OFFSET) for r in render_literature(model, c, seed)]
    bar.update(len(LITERATURE) * c.n_samples)
    t_literature = time.time() - t0 - t_sample
    if c.beam_samples:
        bar.set_postfix_str(f"{c.id} beam{BEAM_WIDTH}")
        t1 = time.time()
        rendered += [(r, None) for r in render_beam(model, c)]
        t_beam = time.time() - t1
        bar.update(BEAM_WIDTH * c.beam_samples)
    return rendered, {"condition": c.id, "sampling_s": t_sample, "literature_s": t_literature,
                      "beam_s": t_beam}


def _write_render(r, c: Condition, seed: int, stage: Path, thumbs: Thumbnails, sr: int) -> dict:
    """Measure one render, write its audio and thumbnails; its metrics row."""
    row = measure_render(r, c, seed, sr)
    wav, spec_png, trace_png = (f"audio/{row['name']}.wav", f"img/{row['name']}.spec.png",
                                f"img/{row['name']}.trace.png")
    save_wav(stage / wav, r.wave, sr)
    thumbs.spectrogram(r.wave, sr, stage / spec_png)
    thumbs.traces(r.result.nll_bits, r.result.entropy_bits, sr, stage / trace_png)
    return {**row, "wav": wav, "spec_png": spec_png, "trace_png": trace_png}


def _sweep(model, conds, corpus, seed, stage, thumbs, progress) -> tuple[list, list, list, list, list]:
    """Render and measure every condition: (rows, condition rows, timings, copied recordings,
    the renders the inspector shows: [(condition, [(render, row)], recording wav)])."""
    sr = model.cfg.sample_rate
    rows, cond_rows, timings, copied, picked = [], [], [], [], []
    total = sum((len(SETTINGS) + len(LITERATURE)) * c.n_samples + BEAM_WIDTH * c.beam_samples
                for c in conds)
    bar = tqdm(total=total, disable=not progress, unit="step", unit_scale=True,
               desc="demo", dynamic_ncols=True)
    for ci, c in enumerate(conds):
        rendered, timing = _render_condition(model, c, seed + ci, bar)
        timings.append(timing)
        listen = None if c.listen is None else _listen_row(c, corpus, stage, thumbs, sr, copied)
        cond_rows.append({"id": c.id, "level": c.level, "level_title": LEVELS[c.level],
                          "title": c.title, "conditioning": c.spec.to_dict(),
                          "samples": c.n_samples, "seconds": c.n_samples / sr,
                          "beam_samples": c.beam_samples, "reference": c.reference.to_dict(),
                          "listen": listen, **c.info})
        written = [(r, _write_render(r, c, s, stage, thumbs, sr)) for r, s in rendered]
        rows += [row for _, row in written]
        picked.append((c, [(r, row) for r, row in written if wanted(row)],
                       listen["wav"] if listen else None))
    bar.close()
    return rows, cond_rows, timings, copied, picked


def inspector_section(model, picked, stage: Path, rows: list[dict], cond_rows: list[dict],
                      info: dict, progress: bool, notes: list[str]) -> dict | None:
    """Build inspector.html and link the rows (row["inspector"], listen["inspector"]) that it
    shows; the page's facts for metrics.json, or None (with a note) when it failed."""
    t0 = time.time()
    try:
        page, links = build_demo_inspector(model, picked, stage, info, progress)
    except Exception as e:  # a broken inspector must not throw away the whole sweep
        msg = f"inspector page failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        notes.append(msg + ": no links to it")
        print(f"warning: {msg}", file=sys.stderr)
        (stage / INSPECTOR).unlink(missing_ok=True)
        return None
    for r in rows:
        if (r["condition"], r["setting"]) in links:
            r["inspector"] = links[(r["condition"], r["setting"])]
    for c in cond_rows:
        if c.get("listen") and (c["id"], "recording") in links:
            c["listen"]["inspector"] = links[(c["id"], "recording")]
    return {"page": INSPECTOR, "tracks": len(page.tracks), "bytes": page.bytes,
            "settings": list(DEMO_SETTINGS), "seconds": time.time() - t0}


def run_demo(model, out_dir="samples/demo", quick: bool = False, seconds: float | None = None,
             seed: int = 0, corpus: Corpus | None = None, progress: bool = True,
             overwrite: bool = False, checkpoint: str | None = None,
             checkpoint_step: int | None = None, training_steps: int | None = None,
             inspector: bool = True) -> dict:
    """Render the grid, measure every render, write the report (and inspector.html unless
    inspector=False); return metrics.json's dict.

    Refuses (UsageError) to replace an existing report in out_dir unless overwrite=True.
    """
    t_start = time.time()
    out_dir = check_demo_dir(out_dir, overwrite)
    if seconds is None:
        seconds = QUICK_SECONDS if quick else DEFAULT_SECONDS
    check_positive("--seconds", seconds)
    sr = model.cfg.sample_rate
    if corpus is None:
        corpus = load_fsdd_test(sample_rate=sr, progress=progress)
    if corpus.sample_rate != sr:
        raise UsageError(f"corpus sample rate {corpus.sample_rate} Hz != model's {sr} Hz")
    notes: list[str] = []
    conds = plan_conditions(model, corpus, quick, seconds, notes)

    stage = out_dir / ".staging"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "audio").mkdir(parents=True)
    (stage / "img").mkdir()
    thumbs = Thumbnails()
    try:
        rows, cond_rows, timings, copied, picked = _sweep(model, conds, corpus, seed, stage,
                                                          thumbs, progress)
        t_render = time.time() - t_start
        created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        insp = (inspector_section(model, picked, stage, rows, cond_rows,
                                  {"checkpoint": checkpoint, "created": created}, progress, notes)
                if inspector else None)
        if copied:
            (stage / ATTRIBUTION).write_text(attribution_text(copied))
        toys = toys_section(stage, quick, notes)
        meta = {
            "checkpoint": checkpoint, "checkpoint_step": checkpoint_step,
            "training_steps": training_steps, "seed": seed, "quick": quick,
            "seconds": seconds, "sample_rate": sr, "settings": [s.name for s in SETTINGS],
            "literature_settings": [s.name for s in LITERATURE],
            "literature_seed_offset": LITERATURE_SEED_OFFSET,
            "beam_width": BEAM_WIDTH, "corpus": corpus.name,
            "created_utc": created, "inspector": insp,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "render_seconds": t_render, "timings": timings, "notes": notes,
            "rules": {**RULES, "typical_set_epsilon_bits": rows[0]["epsilon_bits"] if rows else None},
        }
        result = {"meta": meta, "conditions": cond_rows, "rows": rows}
        write_report(stage, json_safe(result), toys_section=toys, ood_href=ood_link(out_dir))
        result["meta"]["wall_seconds"] = time.time() - t_start
        files = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
        result["files"] = sorted(set(files) | {"metrics.json"})
        clean = json_safe(result)
        (stage / "metrics.json").write_text(json.dumps(clean, indent=1, allow_nan=False) + "\n")
        publish(stage, out_dir, clean["files"])
    finally:
        thumbs.close()
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return clean
