"""`python -m wavetyp.demo`: the listening demonstration behind `samples/demo/index.html`.

One fixed, seeded sweep (`wavetyp.analysis.sweep`) renders conditioning levels x decoding
settings from a checkpoint, measures every render (`wavetyp.analysis.measures`) and writes a
static report (`wavetyp.report.demo_run`).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from wavetyp.analysis.sweep import DEFAULT_SECONDS, QUICK_SECONDS
from wavetyp.core.checkpoint import load_model, total_training_steps
from wavetyp.core.checks import HelpFormatter, add_common, check_count, check_positive, run_cli
from wavetyp.core.runtime import pick_device
from wavetyp.data.fsdd import load_fsdd_test
from wavetyp.report.demo_page import console_table
from wavetyp.report.demo_run import check_demo_dir, run_demo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.demo",
        description="Render the fixed demonstration grid (conditioning levels x decoding "
                    "settings), measure loudness, typicality and fricatives, and write a static "
                    "report (index.html, metrics.json, metrics.md).",
        formatter_class=HelpFormatter)
    add_common(p)
    p.add_argument("--out", default="samples/demo", help="output folder")
    p.add_argument("--quick", action="store_true",
                   help="one digit per level, 0.5 s, one short beam search (about a minute)")
    p.add_argument("--seconds", type=float, default=None,
                   help=f"length of unconditional/label renders; none: {DEFAULT_SECONDS:g} s, "
                        f"{QUICK_SECONDS:g} s with --quick; vocoder renders take the recording's")
    p.add_argument("--seed", type=int, default=0, help="condition i uses seed + i")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    p.add_argument("--data-dir", default=None,
                   help="FSDD folder; none: $WAVETYP_DATA, ../shared/data/fsdd, ~/.cache/wavetyp/fsdd")
    p.add_argument("--no-inspector", action="store_true",
                   help="skip inspector.html, the interactive page the report links each greedy, "
                        "tau 0.7 and tau 1 render to (building it rescores those renders in one "
                        "parallel pass each)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads; none: torch's choice")
    return p


def main(argv=None) -> int:
    def body(a):
        t0 = time.time()
        check_positive("--seconds", a.seconds)
        check_count("--threads", a.threads)
        if a.threads is not None:
            torch.set_num_threads(a.threads)
        out_dir = check_demo_dir(a.out, a.overwrite)   # fail fast, before any work
        model, ckpt = load_model(a.checkpoint, pick_device(a.device))
        corpus = load_fsdd_test(a.data_dir, model.cfg.sample_rate, progress=True)
        res = run_demo(model, out_dir, quick=a.quick, seconds=a.seconds, seed=a.seed,
                       corpus=corpus, progress=True, overwrite=a.overwrite,
                       checkpoint=str(a.checkpoint or "shipped"), checkpoint_step=ckpt.get("step"),
                       training_steps=total_training_steps(a.checkpoint),
                       inspector=not a.no_inspector)
        print(console_table(res["rows"]))
        for n in res["meta"]["notes"]:
            print(f"note: {n}")
        insp = res["meta"].get("inspector")
        if insp:
            print(f"inspector: {out_dir / insp['page']} ({insp['tracks']} tracks, "
                  f"{insp['bytes'] / 1e6:.2f} MB, built in {insp['seconds']:.0f} s)")
        print(f"\nwrote {len(res['rows'])} renders, {len(res['files'])} files to {out_dir}/ "
              f"(index.html, metrics.json, metrics.md) in {time.time() - t0:.1f} s")
        return 0

    return run_cli(build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
