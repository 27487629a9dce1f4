"""`python -m wavetyp.ood`: can the model tell speech from things that are not speech?

Likelihood thresholding against per-file typicality and the batch typicality test (see
wavetyp.analysis.ood_stats), on built-in OOD sets (wavetyp.analysis.ood_sets) and any
given files; writes a report (wavetyp.report.ood_page) and prints its tables.
"""
from __future__ import annotations

import argparse
import sys

from wavetyp.analysis.ood_run import OOD_LEVELS, OodConfig
from wavetyp.analysis.ood_sets import SYNTH_SETS
from wavetyp.analysis.ood_stats import DEFAULT_ALPHA, DEFAULT_BATCH_SIZES
from wavetyp.core.checks import HelpFormatter, add_common, check_output_dir, run_cli
from wavetyp.core.errors import UsageError
from wavetyp.report.ood_page import OUTPUTS, PNG_GAP, PNG_NLL, ood_report, summary_text

DEFAULT_OUT = "samples/ood"
SHIPPED = "checkpoints/wavetyp-fsdd.pt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.ood",
        description="Out-of-distribution detection with the WaveNet: the likelihood threshold "
                    "against per-file typicality and the batch typicality test, as AUROC and "
                    "detection rates, with histograms and a static HTML page.",
        formatter_class=HelpFormatter)
    add_common(p)
    p.add_argument("--in", dest="in_paths", action="extend", nargs="+", default=None,
                   metavar="PATH", help="in-distribution files/folders; none: the FSDD test split")
    p.add_argument("--ood", dest="ood_paths", action="extend", nargs="+", default=None,
                   metavar="PATH", help="extra OOD files/folders; each path becomes its own named set")
    p.add_argument("--ref", dest="ref_paths", action="extend", nargs="+", default=None,
                   metavar="PATH", help="training-distribution reference files for H_hat and the "
                                        "bootstrap; none: the FSDD training split")
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    p.add_argument("--train-files", type=int, default=300,
                   help="seeded subset of the reference/training files: half estimates H_hat, "
                        "the held-out half is the bootstrap pool")
    p.add_argument("--in-files", type=int, default=None,
                   help="score only a seeded subset of N in-distribution files (quick looks); "
                        "none: all of them")
    p.add_argument("--per-set", type=int, default=30, help="files per built-in OOD set")
    p.add_argument("--sets", nargs="+", default=None, choices=list(SYNTH_SETS), metavar="NAME",
                   help="only these built-in OOD sets (none: all): " + ", ".join(SYNTH_SETS))
    p.add_argument("--no-builtin", action="store_true",
                   help="skip the built-in OOD sets (then --ood is required)")
    p.add_argument("--conditioning", default="none", choices=OOD_LEVELS,
                   help="none: unconditioned; mel: each file conditioned on its own mel frames")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="batch test false-positive level")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(DEFAULT_BATCH_SIZES),
                   metavar="M", help="batch sizes M for the batch test")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--eval-batches", type=int, default=1000,
                   help="random M-file batches per set for detection/false-positive rates")
    p.add_argument("--data-dir", default=None,
                   help="FSDD folder; none: where wavetyp.data finds it")
    p.add_argument("--seed", type=int, default=0, help="seed of every subset, set and resample")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def check_args(a) -> None:
    for name, v, lo in (("--train-files", a.train_files, 2), ("--per-set", a.per_set, 1),
                        ("--bootstrap", a.bootstrap, 10), ("--eval-batches", a.eval_batches, 1),
                        ("--in-files", a.in_files, 1)):
        if v is not None and v < lo:
            raise UsageError(f"{name} must be >= {lo}, got {v}")
    if not 0.0 < a.alpha < 1.0:
        raise UsageError(f"--alpha must be in (0, 1), got {a.alpha}")
    if any(m < 1 for m in a.batch_sizes):
        raise UsageError("--batch-sizes must all be >= 1")
    if a.no_builtin and not a.ood_paths:
        raise UsageError("--no-builtin leaves no OOD set: pass --ood PATH")


def main(argv=None) -> int:
    def body(a):
        check_args(a)
        out = check_output_dir(a.out, a.overwrite, list(OUTPUTS))   # refuse before the slow part
        from wavetyp.core.checkpoint import load_model
        from wavetyp.core.runtime import pick_device
        model, _ = load_model(a.checkpoint, pick_device(a.device))
        cfg = OodConfig(a.in_paths, a.ood_paths, a.ref_paths, a.train_files, a.in_files,
                        a.per_set, a.sets, not a.no_builtin, a.conditioning, a.alpha,
                        a.batch_sizes, a.bootstrap, a.eval_batches, a.data_dir, a.seed)
        settings = {k: v for k, v in vars(a).items() if k not in ("debug",)}
        run = ood_report(model, cfg, out, a.checkpoint or SHIPPED, settings, not a.quiet,
                         on_skip=lambda path, why: print(f"skipped {path}: {why}", file=sys.stderr))
        print(summary_text(run))
        if run.sets.skipped:
            print(f"skipped {len(run.sets.skipped)} file(s) (listed in {out / 'ood.md'})",
                  file=sys.stderr)
        t = run.timing
        print(f"\nscored {t['files']} files ({t['audio_seconds']:.0f} s of audio) in "
              f"{t['scoring_seconds']:.0f} s; wrote {out / 'index.html'}, ood.md, ood.json, "
              f"{PNG_NLL}, {PNG_GAP}")
        return 0

    return run_cli(build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
