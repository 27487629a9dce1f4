"""Teacher-forced test-split NLL in bits/sample, overall and per digit, per conditioning level."""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict

import torch
import torch.nn.functional as F

from .audio import mu_law_decode
from .cli import UsageError, add_common, run_cli
from .data import DIGIT_NAMES, Utterance, full_batches
from .model import Conditioning, WaveNet, nll_bits

# none: unconditional; label: digit + speaker; mel: mel frames only; all: labels + mel
CONDITIONING_LEVELS = ("none", "label", "mel", "all")
# loudness bins (dBFS of the local RMS) for `--by-loudness`: background noise sits in the
# lowest ones, vowels in the highest
LOUDNESS_EDGES_DB = (-50.0, -40.0, -30.0, -20.0)
LOUDNESS_WINDOW = 256          # 32 ms at 8 kHz, centred on each sample


def loudness_db(codes: torch.Tensor, mask: torch.Tensor, window: int = LOUDNESS_WINDOW) -> torch.Tensor:
    """(B, T) codes -> (B, T) local RMS level in dBFS of the decoded audio, over a centred
    window of real samples only (padding neither counts nor dilutes the level)."""
    T = codes.shape[1]

    def pool(v):                      # centred moving sum / (window + 1), (B, 1, T) -> (B, T)
        return F.avg_pool1d(v, window + 1, stride=1, padding=window // 2)[:, 0, :T]

    m = mask.float().unsqueeze(1)
    x2 = mu_law_decode(codes).unsqueeze(1).pow(2) * m
    power = pool(x2) / pool(m).clamp_min(1e-9)
    return 10.0 * torch.log10(power.clamp_min(1e-12))


def loudness_labels(edges=LOUDNESS_EDGES_DB) -> list[str]:
    lo = [f"< {edges[0]:g}"] + [f"{a:g} .. {b:g}" for a, b in zip(edges[:-1], edges[1:])]
    return [s + " dBFS" for s in lo] + [f">= {edges[-1]:g} dBFS"]


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
                 batch_size: int = 16, device="cpu", progress: bool = False,
                 by_loudness: bool = False) -> dict:
    """Mean NLL (bits/sample) over every real sample of `utts`; padding never counts.

    by_loudness: also split it by the local loudness of each sample (LOUDNESS_EDGES_DB):
    'by_loudness' lists each bin's share of the samples and its mean bits/sample."""
    from tqdm import tqdm
    model.eval()
    if level in ("mel", "all"):
        # mel frames of a padded batch would see the padding through the frame-level convs
        # near each file's end: score such files one at a time so results do not depend on
        # which files share a batch
        batch_size = 1
    tot, n = 0.0, 0
    per_digit = defaultdict(lambda: [0.0, 0])
    edges = torch.tensor(LOUDNESS_EDGES_DB)
    bin_bits = torch.zeros(len(LOUDNESS_EDGES_DB) + 1, dtype=torch.float64)
    bin_n = torch.zeros_like(bin_bits)
    batches = list(full_batches(utts, batch_size))
    for chunk, b in tqdm(batches, desc=f"eval {level}", disable=not progress, unit="batch"):
        b = b.to(device)
        cond = make_conditioning(model, level, b.codes, b.digit, b.speaker)
        bits = nll_bits(model(b.codes, cond), b.codes).masked_fill(~b.mask, 0.0)
        if by_loudness:
            real = b.mask.cpu()
            which = torch.bucketize(loudness_db(b.codes, b.mask).cpu()[real], edges, right=True)
            bin_bits += torch.bincount(which, bits.cpu()[real].double(), minlength=len(bin_bits))
            bin_n += torch.bincount(which, minlength=len(bin_n))
        file_bits = bits.sum(1).double().cpu()
        file_n = b.mask.sum(1).cpu()
        for u, fb, fn in zip(chunk, file_bits.tolist(), file_n.tolist()):
            tot += fb
            n += fn
            per_digit[u.digit][0] += fb
            per_digit[u.digit][1] += fn
    out = {"level": level, "bits_per_sample": tot / max(n, 1), "samples": n, "files": len(utts),
           "per_digit": {d: s / max(c, 1) for d, (s, c) in sorted(per_digit.items())}}
    if by_loudness:
        out["by_loudness"] = [
            {"range": lab, "fraction": c / max(n, 1), "bits_per_sample": bb / c if c else None}
            for lab, bb, c in zip(loudness_labels(), bin_bits.tolist(), bin_n.tolist())]
    return out


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
    p.add_argument("--by-loudness", action="store_true",
                   help="also split the NLL by each sample's local loudness (32 ms RMS, dBFS): "
                        "where the bits go, background noise vs speech")
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
            r = evaluate_nll(model, utts, lv, args.batch_size, device, progress=True,
                             by_loudness=args.by_loudness)
            results.append(r)
            print(f"conditioning {lv}: {r['bits_per_sample']:.3f} bits/sample "
                  f"({r['files']} files, {r['samples']} samples, {args.split} split)")
            for d, v in r["per_digit"].items():
                name = DIGIT_NAMES[d] if 0 <= d < 10 else "unlabelled"
                print(f"  digit {d} {name:<6} {v:.3f} bits/sample")
            for row in r.get("by_loudness", []):
                bits = "-" if row["bits_per_sample"] is None else f"{row['bits_per_sample']:.3f}"
                print(f"  loudness {row['range']:<18} {100 * row['fraction']:5.1f} % of samples, "
                      f"{bits} bits/sample")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
