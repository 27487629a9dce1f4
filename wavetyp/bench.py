"""`python -m wavetyp.bench`: wavetyp's sampler and trainer against a reference-style WaveNet,
measured in one run on one machine.

Three sections, each measured in its own worker process (so peak RSS is per section and one
section's allocations cannot slow the next):

  reference                 the reference-style implementation (wavetyp/benchmark/reference.py)
                            on the issue's model: 16 layers, kernel 3, 64/2x64/64/64, ~566k
                            parameters, receptive field 1021;
  wavetyp_reference_config  wavetyp's own WaveNet + GenerationCache on the same model
                            (random weights): the like-for-like comparison;
  shipped                   wavetyp on the shipped checkpoint's config, plus the wall time
                            of `python -m wavetyp.sample --temperature 0.7` end to end.

The reference section also times, at one stream and when the package `wavenet_vocoder`
(r9y9's original, e.g. `pip install wavenet-vocoder`) can be imported, that package's own
`incremental_forward` on the same model as a cross-check of the reference (an optional
extra: nothing needs it installed).

For each: exactness first (incremental logits == parallel logits within 1e-4, else the run
stops), then incremental and naive (full forward over the receptive field per sample)
generation at B = 1 and B = 16, then a training step (batch 8 x 8000). Every timing is the
median of --repeats runs after a warm-up. Naive generation is a short run; its rate is
extrapolated from it. Training gets two warm-up steps for both implementations (reported):
wavetyp's first one compiles its fused gate (torch.compile; from the on-disk cache after the
first run), and the second still pages in memory that later steps reuse.

Threads: training uses torch's thread count (--threads). The reference's generation and both
naive paths run at whichever of 1 thread and that count was faster in the warm-up (giving
the reference its best case); wavetyp's sampler uses its own policy (1 thread below 64
streams). The chosen counts are reported.

Real-time factor (RTF) here = seconds of audio generated per wall-clock second, all streams
together, at the model's sample rate: > 1 is faster than real time.

`--profile` skips the timings and instead profiles ~200 incremental steps at B = 1 of
wavetyp's sampler (and of the reference, for its op count) and one training step of each,
printing the top ops and the share of the training step spent in matrix products.

`--speed-paths` instead runs the one-process A/B of every speed-only path (the fused C++
sampling step, the TorchScript chunk loop, the hand-written training stack, the compiled gate) on
the shipped model on the CPU (wavetyp/benchmark/speed_paths.py): a path keeps its place only
if it still pays there.

On a GPU the exactness checks run with TF32 off; the timings run with torch's default TF32
setting (float32 matmuls exact, cuDNN convolutions in TF32), stated in the report.

The code lives in wavetyp/benchmark/ (measure, subjects, sections, report, profile, run);
this module only parses the command line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wavetyp.benchmark.measure import ExactnessError, log
from wavetyp.benchmark.profile import profile_sampler, profile_training
from wavetyp.benchmark.report import format_report
from wavetyp.benchmark.run import run_benchmark, run_speed_paths
from wavetyp.benchmark.sections import SECTIONS, BenchOptions, json_ready, prepare_process, run_worker
from wavetyp.benchmark.speed_paths import format_rows
from wavetyp.core.checks import HelpFormatter, add_common, check_count, check_new_file, run_cli
from wavetyp.core.runtime import pick_device


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.bench", formatter_class=HelpFormatter,
        description="Benchmark wavetyp's sampler and trainer against a reference-style WaveNet "
                    "in one run (see the module docstring for what is measured).")
    p.add_argument("--config", choices=["reference", "shipped", "both"], default="both",
                   help="reference: the issue's model with both implementations; shipped: "
                        "wavetyp on the shipped checkpoint (+ the sample CLI); both: all three sections")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument("--threads", type=int, default=None, help="torch threads; none given: torch's choice")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: tiny reference model, tiny lengths, 1 repeat")
    p.add_argument("--profile", action="store_true",
                   help="instead of timing: profile ~200 incremental steps at B=1 and one training "
                        "step, and print the top ops")
    p.add_argument("--speed-paths", action="store_true",
                   help="instead of timing: one-process A/B of every speed-only path on the shipped "
                        "model (or --checkpoint), always on the CPU; with --quick, tiny step counts")
    p.add_argument("--in-process", action="store_true",
                   help="measure all sections in this process (faster start; peak RSS is then "
                        "the running maximum of the whole process)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--worker", choices=SECTIONS, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    add_common(p)
    return p


def write_json(path: str | None, obj: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(json_ready(obj), indent=2) + "\n")
        log(f"wrote {path}")


def main(argv=None) -> int:
    p = build_parser()

    def body(a):
        check_count("--repeats", a.repeats)
        check_count("--threads", a.threads)
        opts = BenchOptions(device=str(pick_device(a.device)), quick=a.quick, checkpoint=a.checkpoint,
                            threads=a.threads, repeats=1 if a.quick else a.repeats)
        malloc_kept = prepare_process(a.threads)
        if a.worker:                                   # one section, results to a file
            return run_worker(a.worker, a.worker_out, opts)
        if a.json:
            check_new_file(a.json, a.overwrite)
        if a.profile:
            print(profile_sampler(opts, a.config))
            print(profile_training(opts, a.config))
            return 0
        if a.speed_paths:
            result = run_speed_paths(opts)
            print(format_rows(result))
            write_json(a.json, result)
            return 0
        try:
            report = run_benchmark(opts, a.config, a.in_process, malloc_kept)
        except ExactnessError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(format_report(report))
        write_json(a.json, report)
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
