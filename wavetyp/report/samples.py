"""A sample run's files and its printed table: `<run>/<setting>-<i>.wav|.npz`, summary.json,
traces.png, and one line per render that says what it is (sound, near-silence or a DC offset)
and where it sits relative to the typical set."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wavetyp.core.audio import SILENCE_CODE
from wavetyp.core.generate import Rendered

NEAR_SILENT_DBFS = -60.0          # below this RMS a render is near-silent whatever its codes
ONE_CODE_FRACTION = 0.9           # ... or when one code fills this share of it

FOOTER = ("gap = mean(NLL - H) in bits/sample under the untempered model; a sample is typical when "
          "|gap| <= {eps:g}.\nNegative gap and z: the render is more likely than what the model itself "
          "produces (greedy and low temperature);\nz = sum(NLL - H) / sqrt(sum varentropy) is about "
          "N(0, 1) for ancestral (tau = 1) samples.")


def sound_reading(codes: np.ndarray, rms_dbfs: float) -> str:
    """What a render is, from its codes: sound, near-silence, or one held code (a DC offset)."""
    return counts_reading(np.bincount(np.asarray(codes).reshape(-1), minlength=256), rms_dbfs)


def counts_reading(counts: np.ndarray, rms_dbfs: float) -> str:
    """sound_reading from the count of every code (a streamed render keeps only those)."""
    top = int(np.argmax(counts))
    share = counts[top] / max(int(np.sum(counts)), 1)
    if share >= ONE_CODE_FRACTION:
        held = ("the silence code" if top == SILENCE_CODE else f"code {top}: a DC offset")
        return f"near-silent: {100 * share:.0f} % one code ({held})"
    if rms_dbfs < NEAR_SILENT_DBFS:
        return f"near-silent ({rms_dbfs:.0f} dBFS)"
    return "sound"


def typicality_reading(summary: dict) -> str:
    gap = summary["gap_bits"]
    if summary["in_typical_set"]:
        return "typical"
    return "too likely (below the typical set)" if gap < 0 else "too surprising (above the typical set)"


def row_reading(row: dict) -> str:
    return f"{row['sound']}; {typicality_reading(row['summary'])}"


def write_run(run_dir: Path, run: str, rendered: list[Rendered], sample_rate: int, meta: dict,
              plot: bool = True) -> dict:
    """<setting>-<i>.wav (16-bit PCM) and .npz (per-step arrays + settings) per render,
    summary.json for the run and traces.png (NLL vs entropy over each spectrogram)."""
    from wavetyp.core.audio import save_wav
    rows = []
    for r in rendered:
        save_wav(run_dir / f"{r.name}.wav", r.wave, sample_rate)
        res = r.result
        np.savez_compressed(
            run_dir / f"{r.name}.npz", codes=res.codes.astype(np.int16), nll_bits=res.nll_bits,
            entropy_bits=res.entropy_bits, varentropy_bits2=res.varentropy_bits2,
            sampled_nll_bits=res.sampled_nll_bits, prime_len=res.prime_len, sample_rate=sample_rate,
            settings=json.dumps(res.settings.to_dict()), conditioning=json.dumps(r.cond.to_dict()))
        row = r.row(sample_rate)
        row["sound"] = sound_reading(res.codes, r.rms_dbfs)
        row["reading"] = row_reading(row)
        rows.append(row)
    summary = write_summary(run_dir, run, rows, meta)
    if plot:
        from wavetyp.report.plots import plot_run
        plot_run([{"name": r.name, "wave": r.wave, "nll_bits": r.result.nll_bits,
                   "entropy_bits": r.result.entropy_bits, "summary": row["summary"],
                   "rms_dbfs": r.rms_dbfs, "prime_len": r.result.prime_len}
                  for r, row in zip(rendered, rows)], sample_rate, run_dir / "traces.png",
                 title=f"{run}: NLL vs entropy under the untempered model")
    return summary


def write_summary(run_dir: Path, run: str, rows: list[dict], meta: dict) -> dict:
    """summary.json: the run's metadata and one row per render (written atomically)."""
    summary = {**meta, "run": run, "samples": rows}
    tmp = run_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(run_dir / "summary.json")
    return summary


def format_table(rows: list[dict], epsilon: float | None = None) -> str:
    """The printed table: the numbers, then one reading per render, then what they mean."""
    head = (f"{'render':<24} {'cond':<14} {'sec':>5} {'RMS dBFS':>9} "
            f"{'NLL':>6} {'H':>6} {'gap':>7} {'z':>8}  reading")
    lines = [head, "-" * len(head)]
    for r in rows:
        s = r["summary"]
        lines.append(f"{r['name']:<24} {r['conditioning']:<14} "
                     f"{r['seconds']:>5.2f} {r['rms_dbfs']:>9.1f} {s['mean_nll_bits']:>6.3f} "
                     f"{s['mean_entropy_bits']:>6.3f} {s['gap_bits']:>+7.3f} {s['z']:>+8.1f}  "
                     f"{r.get('reading') or row_reading(r)}")
    eps = epsilon if epsilon is not None else (rows[0]["summary"]["epsilon"] if rows else 0.1)
    return "\n".join(lines) + "\n\n" + FOOTER.format(eps=eps)
