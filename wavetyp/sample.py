"""`python -m wavetyp.sample`: render samples from a checkpoint and log where they sit
relative to the typical set (per-step NLL vs entropy of the untempered model)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from wavetyp.core.audio import load_codes
from wavetyp.core.checks import (
    HelpFormatter,
    add_common,
    check_count,
    check_output_dir,
    check_positive,
    run_cli,
)
from wavetyp.core.conditioning import make_cond_spec
from wavetyp.core.cstep import WEIGHTS
from wavetyp.core.decoding import DecodeSettings
from wavetyp.core.errors import UsageError
from wavetyp.core.generate import render
from wavetyp.core.memory import check_disk, check_fits, file_bytes, render_bytes
from wavetyp.data.fsdd import resolve_audio_arg
from wavetyp.report.sample_stream import STREAM_SECONDS, stream_run
from wavetyp.report.samples import format_table, write_run, write_summary

REFERENCE = DecodeSettings(1.0)       # the contrast rendered beside other settings
FILTERS = ("top_k", "top_p", "typical_p", "min_p", "epsilon_cutoff", "eta_cutoff", "mirostat_tau",
           "mirostat_gap", "mirostat_eta")


def settings_from_args(a) -> list[DecodeSettings]:
    """The asked-for settings; DecodeSettings validates them, errors name the flag."""
    temps = [0.0] if a.greedy else (a.temperature or [1.0])
    filters = {k: getattr(a, k) for k in FILTERS}
    out = []
    for t in temps:
        try:
            out.append(DecodeSettings(t, **filters))
        except ValueError as e:
            name = str(e).split()[0]
            flag = "--" + name.replace("_", "-") if name in FILTERS or name == "temperature" else name
            raise UsageError(f"{flag}{str(e)[len(name):]}") from None
    return out


def unique_run_dir(out_dir: Path, base: str) -> Path:
    """out/base, out/base-2, ...: the first run folder that does not exist yet."""
    path, i = out_dir / base, 2
    while path.exists():
        path, i = out_dir / f"{base}-{i}", i + 1
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.sample",
        description="Render samples and log per-step NLL vs entropy of the untempered model. "
                    "--temperature 0 means greedy (argmax). Several temperatures render side by "
                    "side in one batch, e.g. --temperature 0 0.5 0.7 1.0. Recordings can be named "
                    "fsdd:NAME (e.g. fsdd:6_theo_0) wherever FSDD was found.",
        formatter_class=HelpFormatter)
    add_common(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--temperature", type=float, nargs="+", default=None,
                   help="sampling temperature(s) tau >= 0; none given: 1.0 (ancestral); 0 = greedy")
    g.add_argument("--greedy", action="store_true", help="argmax decoding (same as --temperature 0)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely codes")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--typical-p", type=float, default=None, help="locally typical sampling mass in (0, 1]")
    p.add_argument("--min-p", type=float, default=None, help="keep codes with p >= min_p * max p (Nguyen et al. 2024)")
    p.add_argument("--epsilon-cutoff", type=float, default=None,
                   help="keep codes with p >= epsilon (Hewitt et al. 2022)")
    p.add_argument("--eta-cutoff", type=float, default=None,
                   help="keep codes with p >= min(eta, sqrt(eta) exp(-entropy)) (Hewitt et al. 2022)")
    p.add_argument("--mirostat-tau", type=float, default=None,
                   help="mirostat 2 (Basu et al. 2021): target surprise in bits per sample")
    p.add_argument("--mirostat-gap", type=float, default=None,
                   help="mirostat aimed at the model's own entropy: target = entropy + this gap "
                        "(bits; 0 = the middle of the typical set)")
    p.add_argument("--mirostat-eta", type=float, default=0.1, help="mirostat's learning rate")
    p.add_argument("--beam", type=int, default=None, help="beam search with this width (one output)")
    p.add_argument("--seconds", type=float, default=None,
                   help="length; none given: 2 s, or the recording's length with --mel-from")
    p.add_argument("--num", type=int, default=4, help="samples per temperature")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (same seed, same codes)")
    p.add_argument("--digit", default=None, help="condition on a digit label, 0-9 or zero..nine")
    p.add_argument("--speaker", default=None, help="condition on a speaker name from the checkpoint")
    p.add_argument("--mel-from", default=None, help="vocoder mode: mel frames of this recording (or fsdd:NAME)")
    p.add_argument("--prime", default=None, help="teacher-force the start of this recording (or fsdd:NAME)")
    p.add_argument("--prime-ms", type=float, default=200.0, help="how much of --prime to force, in ms")
    p.add_argument("--no-reference", action="store_true",
                   help="do not add a tau = 1 stream for contrast when no asked-for setting is plain tau = 1")
    p.add_argument("--out", default="samples", help="output folder; each run gets a folder in it")
    p.add_argument("--name", default=None, help="run folder name; none given: from the settings")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an existing --name")
    p.add_argument("--no-plot", action="store_true", help="skip traces.png")
    p.add_argument("--stream", action="store_true",
                   help=f"write the WAV and NPZ files while rendering, chunk by chunk: memory stays "
                        f"flat in the length, a Ctrl-C keeps what was written, no traces.png; on by "
                        f"itself for renders longer than {STREAM_SECONDS:g} s (not with --beam)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads; none given: torch's choice")
    p.add_argument("--step-weights", choices=WEIGHTS, default="fp32",
                   help="weights of the fused CPU sampling step: bf16 rounds its weight matrices to "
                        "bfloat16 (faster at one stream; codes and logs are then the rounded model's: "
                        "rescore with python -m wavetyp.score)")
    return p


def streamed(model, streams, n, spec, prime, run_dir, with_reference, seed, meta, t0,
             weights: str = "fp32") -> int:
    """Render straight to disk, chunk by chunk (flat memory); a Ctrl-C keeps what was written
    and says so (exit 130)."""
    sr = model.cfg.sample_rate
    rows, stopped = stream_run(model, streams, n, spec, seed, prime, run_dir,
                               REFERENCE if with_reference else None, weights=weights)
    meta = {**meta, "streamed": True, "interrupted_at": stopped, "wall_seconds": time.time() - t0}
    write_summary(run_dir, run_dir.name, rows, meta)
    print(format_table(rows))
    if stopped is not None:
        print(f"\ninterrupted at {stopped / sr:.2f} s of {n / sr:.2f} s: kept what was written, "
              f"{len(rows)} WAV/NPZ pairs and summary.json, in {run_dir}/")
        return 130
    print(f"\nwrote {len(rows)} WAV/NPZ pairs and summary.json to {run_dir}/ while rendering "
          f"(streamed: flat memory, no traces.png) in {time.time() - t0:.1f} s")
    print(f"listen and inspect the traces: python -m wavetyp.inspect {run_dir}")
    return 0


def main(argv=None) -> int:
    p = build_parser()

    def body(a):
        t0 = time.time()
        settings = settings_from_args(a)
        check_positive("--seconds", a.seconds)
        check_positive("--num", a.num)
        check_positive("--prime-ms", a.prime_ms)
        check_count("--threads", a.threads)
        check_count("--beam", a.beam)
        if a.step_weights != "fp32" and a.beam:
            raise UsageError("--step-weights applies to sampling, not to --beam")
        from wavetyp.core.checkpoint import load_model
        from wavetyp.core.runtime import pick_device
        if a.threads:
            torch.set_num_threads(a.threads)
        out_dir = check_output_dir(a.out)
        model, _ = load_model(a.checkpoint, pick_device(a.device))
        sr = model.cfg.sample_rate
        mel_from = resolve_audio_arg(a.mel_from) if a.mel_from else None
        spec = make_cond_spec(model, a.digit, a.speaker, mel_from)
        if a.seconds is None:
            n = len(spec.mel_codes) if spec.mel_codes is not None else int(2.0 * sr)
        else:
            n = max(1, int(round(a.seconds * sr)))
        prime = None
        if a.prime:
            prime = load_codes(resolve_audio_arg(a.prime), sr)[: int(a.prime_ms * sr / 1000)]
            if len(prime) >= n:
                raise UsageError(f"--prime-ms covers the whole output ({len(prime)} >= {n} samples)")
        streams = [s for s in settings for _ in range(a.num)]
        if a.beam:
            streams = streams[:1]
        with_reference = not (a.no_reference or a.beam or REFERENCE in settings)
        n_streams = len(streams) + with_reference
        if a.stream and a.beam:
            raise UsageError("--stream does not apply to --beam (beam search backtracks at the end)")
        stream = a.stream or (not a.beam and n > STREAM_SECONDS * sr)
        est = render_bytes(model.cfg, n_streams, n, a.beam, plot=not (a.no_plot or stream),
                           mel_samples=0 if spec.mel_codes is None else len(spec.mel_codes),
                           stream=stream)
        what = f"rendering {n_streams} stream(s) x {n:,} samples"
        check_fits(est, next(model.parameters()).device, what,   # before any folder or step
                   "ask for fewer " + ("--num" if stream else "--seconds or --num"
                                       + ("" if a.no_plot else ", or pass --no-plot")))
        check_disk(file_bytes(n_streams, n, stream), out_dir, what,
                   "ask for fewer --seconds or --num, or another --out")
        tag = f"beam{a.beam}" if a.beam else "_".join(s.name for s in settings)
        if a.name:
            run_dir = out_dir / a.name
            if run_dir.exists() and not a.overwrite:
                raise UsageError(f"{run_dir} exists; pass --overwrite or another --name")
        else:
            run_dir = unique_run_dir(out_dir, f"{spec.label}-{tag}-seed{a.seed}")
        run_dir = check_output_dir(run_dir)
        meta = {"checkpoint": str(a.checkpoint or "shipped"), "seed": a.seed, "sample_rate": sr,
                "conditioning": spec.to_dict(), "prime": a.prime, "prime_ms": a.prime_ms if a.prime else 0,
                "step_weights": a.step_weights}
        try:
            if stream:
                return streamed(model, streams, n, spec, prime, run_dir, with_reference, a.seed,
                                meta, t0, a.step_weights)
            rendered = render(model, streams, n, spec, a.seed, prime, a.beam, progress=True,
                              weights=a.step_weights)
        except ValueError as err:
            if a.step_weights == "fp32":
                raise
            raise UsageError(f"--step-weights {a.step_weights}: {err}") from None
        if with_reference:
            # a separate batch, so the asked-for streams keep the codes they have without it
            ref = render(model, [REFERENCE], n, spec, a.seed, prime, weights=a.step_weights)[0]
            ref.name = f"reference-{ref.name}"
            rendered.append(ref)
        meta["wall_seconds"] = time.time() - t0
        summary = write_run(run_dir, run_dir.name, rendered, sr, meta, plot=not a.no_plot)
        print(format_table(summary["samples"]))
        plot = "" if a.no_plot else ", traces.png"
        print(f"\nwrote {len(rendered)} WAV/NPZ pairs, summary.json{plot} to {run_dir}/ "
              f"in {time.time() - t0:.1f} s")
        print(f"listen and inspect the traces: python -m wavetyp.inspect {run_dir}")
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
