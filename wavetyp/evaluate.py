"""Teacher-forced test-split NLL in bits/sample, overall and per digit, per conditioning level."""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict

import torch

from .cli import UsageError, add_common, run_cli
from .data import DIGIT_NAMES, Utterance, full_batches
from .model import Conditioning, WaveNet, nll_bits

# none: unconditional; label: digit + speaker; mel: mel frames only; all: labels + mel
CONDITIONING_LEVELS = ("none", "label", "mel", "all")


def make_conditioning(model: WaveNet, level: str, codes: torch.Tensor,
                      digit: torch.Tensor, speaker: torch.Tensor) -> Conditioning:
    """Conditioning for a batch at a level; mel frames are computed from the codes."""
    if level not in CONDITIONING_LEVELS:
        raise UsageError(f"unknown conditioning {level!r} (choose from {', '.join(CONDITIONING_LEVELS)})")
    cond = Conditioning()
    if level in ("label", "all"):
        cond.digit, cond.speaker = digit, speaker
    if level in ("mel", "all"):
        if model.cfg.n_mels == 0:
            raise UsageError("this checkpoint has no mel conditioning")
        cond.mel = model.log_mel(codes)
    return cond


@torch.inference_mode()
def evaluate_nll(model: WaveNet, utts: list[Utterance], level: str = "none",
                 batch_size: int = 16, device="cpu", progress: bool = False) -> dict:
    """Mean NLL (bits/sample) over every real sample of `utts`; padding never counts."""
    from tqdm import tqdm
    model.eval()
    if level in ("mel", "all"):
        # mel frames of a padded batch would see the padding through the frame-level convs
        # near each file's end: score such files one at a time so results do not depend on
        # which files share a batch
        batch_size = 1
    tot, n = 0.0, 0
    per_digit = defaultdict(lambda: [0.0, 0])
    batches = list(full_batches(utts, batch_size))
    for chunk, b in tqdm(batches, desc=f"eval {level}", disable=not progress, unit="batch"):
        b = b.to(device)
        cond = make_conditioning(model, level, b.codes, b.digit, b.speaker)
        bits = nll_bits(model(b.codes, cond), b.codes).masked_fill(~b.mask, 0.0)
        file_bits = bits.sum(1).double().cpu()
        file_n = b.mask.sum(1).cpu()
        for u, fb, fn in zip(chunk, file_bits.tolist(), file_n.tolist()):
            tot += fb
            n += fn
            per_digit[u.digit][0] += fb
            per_digit[u.digit][1] += fn
    return {"level": level, "bits_per_sample": tot / max(n, 1), "samples": n, "files": len(utts),
            "per_digit": {d: s / max(c, 1) for d, (s, c) in sorted(per_digit.items())}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m wavetyp.evaluate",
                                description="Test-split NLL of a checkpoint in bits/sample.")
    add_common(p)
    p.add_argument("--conditioning", default="none", choices=CONDITIONING_LEVELS + ("each",),
                   help="none | label (digit+speaker) | mel (mel frames only) | all | each")
    p.add_argument("--dataset", default="fsdd")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", default="test", choices=("test", "train"))
    p.add_argument("--limit", type=int, default=None, help="only the first N files (for a quick look)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", default=None, help="also write the results as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")

    def body(args):
        from .checkpoint import load_model
        from .cli import check_count, check_new_file
        check_count("--batch-size", args.batch_size)
        check_count("--limit", args.limit)
        if args.json:
            check_new_file(args.json, args.overwrite)
        from .data import load_corpus
        from .train import pick_device
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
            r = evaluate_nll(model, utts, lv, args.batch_size, device, progress=True)
            results.append(r)
            print(f"conditioning {lv}: {r['bits_per_sample']:.3f} bits/sample "
                  f"({r['files']} files, {r['samples']} samples, {args.split} split)")
            for d, v in r["per_digit"].items():
                name = DIGIT_NAMES[d] if 0 <= d < 10 else "unlabelled"
                print(f"  digit {d} {name:<6} {v:.3f} bits/sample")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
