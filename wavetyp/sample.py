"""`python -m wavetyp.sample`: render samples from a checkpoint and log where they sit
relative to the typical set (per-step NLL vs entropy of the untempered model)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from wavetyp.core.audio import load_codes, save_wav
from wavetyp.core.checks import (
    add_common,
    check_count,
    check_output_dir,
    check_positive,
    check_probability,
    run_cli,
)
from wavetyp.core.conditioning import make_cond_spec
from wavetyp.core.decoding import DecodeSettings
from wavetyp.core.errors import UsageError
from wavetyp.core.generate import Rendered, render


def write_outputs(out_dir: Path, run: str, rendered: list[Rendered], sample_rate: int,
                  meta: dict, plot: bool = True) -> dict:
    """<name>.wav (16-bit PCM), <name>.npz (per-step arrays + settings), <run>.json, <run>.png."""
    rows = []
    for r in rendered:
        save_wav(out_dir / f"{r.name}.wav", r.wave, sample_rate)
        res = r.result
        np.savez_compressed(
            out_dir / f"{r.name}.npz", codes=res.codes.astype(np.int16), nll_bits=res.nll_bits,
            entropy_bits=res.entropy_bits, varentropy_bits2=res.varentropy_bits2,
            sampled_nll_bits=res.sampled_nll_bits, prime_len=res.prime_len, sample_rate=sample_rate,
            settings=json.dumps(res.settings.to_dict()), conditioning=json.dumps(r.cond.to_dict()))
        rows.append(r.row(sample_rate))
    summary = {**meta, "run": run, "samples": rows}
    tmp = out_dir / f".{run}.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out_dir / f"{run}.json")
    if plot:
        from wavetyp.report.plots import plot_run
        plot_run([{"name": r.name, "wave": r.wave, "nll_bits": r.result.nll_bits,
                   "entropy_bits": r.result.entropy_bits, "summary": row["summary"],
                   "rms_dbfs": r.rms_dbfs, "prime_len": r.result.prime_len}
                  for r, row in zip(rendered, rows)], sample_rate, out_dir / f"{run}.png",
                 title=f"{run}: NLL vs entropy under the untempered model")
    return summary


def format_table(rows: list[dict]) -> str:
    head = (f"{'name':<28} {'settings':<16} {'cond':<14} {'sec':>5} {'RMS dBFS':>9} "
            f"{'NLL':>6} {'H':>6} {'gap':>7} {'z':>8} typical?")
    lines = [head, "-" * len(head)]
    for r in rows:
        s = r["summary"]
        lines.append(f"{r['name']:<28} {r['settings']:<16} {r['conditioning']:<14} "
                     f"{r['seconds']:>5.2f} {r['rms_dbfs']:>9.1f} {s['mean_nll_bits']:>6.3f} "
                     f"{s['mean_entropy_bits']:>6.3f} {s['gap_bits']:>+7.3f} {s['z']:>+8.1f} "
                     f"{'yes' if s['in_typical_set'] else 'no'}")
    return "\n".join(lines)


def settings_from_args(a) -> list[DecodeSettings]:
    temps = [0.0] if a.greedy else (a.temperature or [1.0])
    for t in temps:
        check_positive("--temperature", t, allow_zero=True)
    check_probability("--top-p", a.top_p)
    check_probability("--typical-p", a.typical_p)
    if a.top_k is not None and a.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {a.top_k}")
    return [DecodeSettings(t, a.top_k, a.top_p, a.typical_p) for t in temps]


def unique_run_name(out_dir: Path, base: str) -> str:
    """base, base-2, base-3 ...: the first name whose summary file does not exist yet."""
    name, i = base, 2
    while (out_dir / f"{name}.json").exists():
        name, i = f"{base}-{i}", i + 1
    return name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.sample",
        description="Render samples and log per-step NLL vs entropy of the untempered model. "
                    "--temperature 0 means greedy (argmax). Several temperatures render side by "
                    "side in one batch, e.g. --temperature 0 0.5 0.7 1.0.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--temperature", type=float, nargs="+", default=None,
                   help="sampling temperature(s) tau >= 0 (default 1.0 = ancestral; 0 = greedy)")
    g.add_argument("--greedy", action="store_true", help="argmax decoding (same as --temperature 0)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely codes")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--typical-p", type=float, default=None, help="locally typical sampling mass in (0, 1]")
    p.add_argument("--beam", type=int, default=None, help="beam search with this width (one output)")
    p.add_argument("--seconds", type=float, default=None, help="length (default 2; with --mel-from: the recording's)")
    p.add_argument("--num", type=int, default=4, help="samples per temperature")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--digit", default=None, help="condition on a digit label, 0-9 or zero..nine")
    p.add_argument("--speaker", default=None, help="condition on a speaker name from the checkpoint")
    p.add_argument("--mel-from", default=None, help="vocoder mode: mel frames of this recording")
    p.add_argument("--prime", default=None, help="teacher-force the start of this recording")
    p.add_argument("--prime-ms", type=float, default=200.0, help="how much of --prime to force")
    p.add_argument("--out", default="samples", help="output folder")
    p.add_argument("--name", default=None, help="run name (default: from the settings)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files of the same run name")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def main(argv=None) -> int:
    p = build_parser()

    def body(a):
        t0 = time.time()
        settings = settings_from_args(a)
        check_positive("--seconds", a.seconds)
        check_positive("--num", a.num)
        check_positive("--prime-ms", a.prime_ms)
        check_count("--threads", a.threads)
        if a.beam is not None and a.beam < 1:
            raise UsageError(f"--beam must be >= 1, got {a.beam}")
        from wavetyp.core.checkpoint import load_model
        from wavetyp.core.runtime import pick_device
        if a.threads:
            torch.set_num_threads(a.threads)
        out_dir = check_output_dir(a.out)
        model, ckpt = load_model(a.checkpoint, pick_device(a.device))
        sr = model.cfg.sample_rate
        spec = make_cond_spec(model, a.digit, a.speaker, a.mel_from)
        if a.seconds is None:
            n = len(spec.mel_codes) if spec.mel_codes is not None else int(2.0 * sr)
        else:
            n = max(1, int(round(a.seconds * sr)))
        prime = None
        if a.prime:
            prime = load_codes(a.prime, sr)[: int(a.prime_ms * sr / 1000)]
            if len(prime) >= n:
                raise UsageError(f"--prime-ms covers the whole output ({len(prime)} >= {n} samples)")
        streams = [s for s in settings for _ in range(a.num)]
        if a.beam:
            streams = streams[:1]
        base = a.name or f"{spec.label}-{'beam%d' % a.beam if a.beam else '_'.join(s.name for s in settings)}-seed{a.seed}"
        if a.name and not a.overwrite and (out_dir / f"{a.name}.json").exists():
            raise UsageError(f"{out_dir / a.name}.json exists; pass --overwrite or another --name")
        run = base if a.name else unique_run_name(out_dir, base)
        rendered = render(model, streams, n, spec, a.seed, prime, a.beam, prefix=f"{run}-", progress=True)
        meta = {"checkpoint": str(a.checkpoint or "shipped"), "seed": a.seed, "sample_rate": sr,
                "conditioning": spec.to_dict(), "prime": a.prime, "prime_ms": a.prime_ms if a.prime else 0,
                "wall_seconds": None}
        meta["wall_seconds"] = time.time() - t0
        summary = write_outputs(out_dir, run, rendered, sr, meta, plot=not a.no_plot)
        print(format_table(summary["samples"]))
        plot = "" if a.no_plot else f" and {run}.png"
        print(f"\nwrote {len(rendered)} WAV/NPZ pairs, {run}.json{plot} to {out_dir}/ "
              f"in {time.time() - t0:.1f} s")
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
