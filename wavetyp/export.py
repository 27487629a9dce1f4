"""`python -m wavetyp.export RUN_DIR`: turn a training run into a shippable checkpoint
(config + fp16 weights, no optimizer state) and write its model card from measured numbers."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from wavetyp.core.checkpoint import export_weights, load_model, read_checkpoint
from wavetyp.core.checks import HelpFormatter, run_cli
from wavetyp.core.conditioning import CONDITIONING_LEVELS
from wavetyp.core.errors import UsageError
from wavetyp.core.scoring import evaluate_nll
from wavetyp.data.load import load_corpus
from wavetyp.report.model_card import model_card, with_kept_sections


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wavetyp.export", formatter_class=HelpFormatter,
                                description="Export a run's checkpoint for shipping and write its model card.")
    p.add_argument("run_dir", help="training run folder (holding last.pt/best.pt and train.jsonl)")
    p.add_argument("--which", default="last.pt", help="checkpoint file in the run folder")
    p.add_argument("--out", default="checkpoints/wavetyp-fsdd.pt", help="the exported checkpoint")
    p.add_argument("--card", default="checkpoints/README.md", help="the model card written beside it")
    p.add_argument("--weights", default="ema", choices=("ema", "raw"),
                   help="ema: the run's moving average of the weights where it kept one (--ema-decay), "
                        "else the trained weights; raw: always the trained weights")
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"), help="weight precision on disk")
    p.add_argument("--notes", default=None, help="a markdown file appended as the card's notes")
    p.add_argument("--json", default=None, help="also write the evaluation results here")
    p.add_argument("--results", default=None,
                   help="use these results (JSON from `wavetyp.evaluate --conditioning each --json`) "
                        "instead of evaluating again")
    p.add_argument("--earlier", nargs="+", default=[], metavar="RUN_DIR",
                   help="run folders this run was warm-started from (train --init-from), oldest "
                        "first: their last.pt's steps and wall time are listed as earlier rounds")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def main(argv=None) -> int:
    p = build_parser()

    def body(a):
        run = Path(a.run_dir)
        if not (run / a.which).is_file():
            raise UsageError(f"{run / a.which} not found")
        earlier = []
        for d in map(Path, a.earlier):
            if not (d / "last.pt").is_file():
                raise UsageError(f"--earlier {d}: no last.pt there")
            earlier.append((read_checkpoint(d / "last.pt"), d))
        out = export_weights(run / a.which, a.out, getattr(torch, a.dtype), weights=a.weights)
        model, _ = load_model(a.out)
        if a.results:
            results = json.loads(Path(a.results).read_text())
            for r in results:
                r["per_digit"] = {int(k): v for k, v in r["per_digit"].items()}
        else:
            corpus = load_corpus("fsdd", sample_rate=model.cfg.sample_rate)
            results = [evaluate_nll(model, corpus.test, lv, 16, progress=True)
                       for lv in CONDITIONING_LEVELS]
        for r in results:
            print(f"conditioning {r['level']}: {r['bits_per_sample']:.3f} bits/sample")
        notes = Path(a.notes).read_text() if a.notes else ""
        card = Path(a.card)
        old = card.read_text() if card.is_file() else ""
        card.write_text(with_kept_sections(model_card(out, results, run, Path(a.out), notes, earlier), old))
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=2))
        size = Path(a.out).stat().st_size / 1e6
        print(f"wrote {a.out} ({size:.1f} MB) and {a.card}")
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
