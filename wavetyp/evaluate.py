"""`python -m wavetyp.evaluate`: teacher-forced NLL of a data split in bits/sample, overall and
per digit, per conditioning level (the pass: wavetyp.core.scoring.evaluate_nll)."""
from __future__ import annotations

import argparse
import json
import sys

from wavetyp.core.checks import HelpFormatter, add_common, run_cli
from wavetyp.core.conditioning import CONDITIONING_LEVELS, DIGIT_NAMES
from wavetyp.core.errors import UsageError
from wavetyp.core.scoring import evaluate_nll


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wavetyp.evaluate",
                                description="Test-split NLL of a checkpoint in bits/sample.",
                                formatter_class=HelpFormatter)
    add_common(p)
    p.add_argument("--conditioning", default="none", choices=CONDITIONING_LEVELS + ("each",),
                   help="none | label (digit+speaker) | mel (mel frames only) | all | each "
                        "(every level the checkpoint has)")
    p.add_argument("--dataset", default="fsdd", help="corpus to read (see python -m wavetyp.data)")
    p.add_argument("--data-dir", default=None,
                   help="folder of the corpus; none: where wavetyp.data finds it")
    p.add_argument("--split", default="test", choices=("test", "train"), help="split to score")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N files (for a quick look); none: all of them")
    p.add_argument("--batch-size", type=int, default=16,
                   help="files per pass (mel levels: one file per pass)")
    p.add_argument("--by-loudness", action="store_true",
                   help="also split the NLL by each sample's local loudness (32 ms RMS, dBFS): "
                        "where the bits go, background noise vs speech")
    p.add_argument("--json", default=None, help="also write the results as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    return p


def print_result(r: dict, split: str) -> None:
    print(f"conditioning {r['level']}: {r['bits_per_sample']:.3f} bits/sample "
          f"({r['files']} files, {r['samples']} samples, {split} split)")
    for d, v in r["per_digit"].items():
        name = DIGIT_NAMES[d] if 0 <= d < 10 else "unlabelled"
        print(f"  digit {d} {name:<6} {v:.3f} bits/sample")
    for row in r.get("by_loudness", []):
        bits = "-" if row["bits_per_sample"] is None else f"{row['bits_per_sample']:.3f}"
        print(f"  loudness {row['range']:<18} {100 * row['fraction']:5.1f} % of samples, "
              f"{bits} bits/sample")


def main(argv=None) -> int:
    def body(args):
        from wavetyp.core.checkpoint import load_model
        from wavetyp.core.checks import check_count, check_new_file
        check_count("--batch-size", args.batch_size)
        check_count("--limit", args.limit)
        if args.json:
            check_new_file(args.json, args.overwrite)
        from wavetyp.core.runtime import pick_device
        from wavetyp.data.load import load_corpus
        device = pick_device(args.device)
        model, _ = load_model(args.checkpoint, device)
        corpus = load_corpus(args.dataset, args.data_dir, model.cfg.sample_rate)
        utts = corpus.split(args.split)[: args.limit]
        if not utts:
            raise UsageError(f"no files in the {args.split} split")
        levels = CONDITIONING_LEVELS if args.conditioning == "each" else (args.conditioning,)
        levels = [lv for lv in levels if model.cfg.n_mels or lv in ("none", "label")]
        results = []
        for lv in levels:
            results.append(evaluate_nll(model, utts, lv, args.batch_size, device, progress=True,
                                        by_loudness=args.by_loudness))
            print_result(results[-1], args.split)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        return 0

    return run_cli(build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
