"""`python -m wavetyp.gpu_round OUT_DIR`: the GPU round in one command (docs/gpu.md).

On a machine with one CUDA GPU: the CUDA tests, SIGTERM and --resume, every sampling mode,
score/ood/demo, the bench, sampling throughput and a time-boxed bf16 training round with its
evaluation, each a subprocess under its own timeout, within a wall-time budget; OUT_DIR gets
summary.json and every output. `--dry-run` rehearses the same steps on the CPU in seconds.
"""
from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

from wavetyp.benchmark.gpu_round import (
    DRY,
    GPU,
    STEP_NAMES,
    Launcher,
    Plan,
    dry_inputs,
    environment,
    run_round,
    status,
)
from wavetyp.core.checkpoint import SHIPPED, read_checkpoint
from wavetyp.core.checks import HelpFormatter, add_common, check_positive, run_cli
from wavetyp.core.errors import DataError, UsageError
from wavetyp.core.runtime import env_override
from wavetyp.data.fsdd import fsdd_candidates, recordings_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.gpu_round",
        description="Run every GPU check in one command on a machine with one CUDA GPU: the "
                    "tests marked cuda, SIGTERM + --resume, sampling in every mode, score, ood, "
                    "demo, the bench, sampling throughput and a time-boxed bf16 training round "
                    "with its evaluation. Each step is a subprocess under its own timeout; a "
                    "failure is recorded and the next step runs. Writes OUT_DIR/summary.json "
                    "and prints a table. Steps: " + ", ".join(STEP_NAMES) + ".",
        formatter_class=HelpFormatter)
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (new or empty)")
    p.add_argument("--minutes", type=float, default=3.0,
                   help="length of the training round (train --max-minutes)")
    p.add_argument("--budget-minutes", type=float, default=9.0,
                   help="wall time for the whole round: earlier steps are cut short or skipped "
                        "so that the training round and its evaluation keep their time")
    p.add_argument("--dry-run", action="store_true",
                   help="the same steps on the CPU with a tiny checkpoint made on the fly and an "
                        "FSDD subset, in seconds (the cuda tests report skipped); --checkpoint "
                        "and --minutes are then not used")
    p.add_argument("--data-dir", default=None,
                   help="FSDD folder for every step (sets WAVETYP_DATA; with --dry-run: where "
                        "the subset comes from); none: found as `python -m wavetyp.data --help` "
                        "describes")
    p.add_argument("--skip", nargs="+", default=None, metavar="STEP", choices=STEP_NAMES,
                   help="record these steps as skipped (e.g. to rerun only the others)")
    add_common(p, device=False)
    return p


def find_fsdd(data_dir=None) -> Path:
    for c in fsdd_candidates(data_dir):
        if recordings_dir(c).is_dir() and any(recordings_dir(c).glob("*.wav")):
            return c
    raise DataError("--dry-run needs FSDD (looked in " + ", ".join(map(str, fsdd_candidates(data_dir))) + ")")


def format_table(summary: dict) -> str:
    """The compact end-of-round table: one row per step, its status and its log's last line."""
    rows = [f"{'step':<22} {'status':<9} {'rc':>4} {'seconds':>8}  last line of output"]
    for r in summary["steps"]:
        last = ([ln.strip() for ln in r["output"].splitlines() if ln.strip()] or [""])[-1]
        rows.append(f"{r['name']:<22} {status(r):<9} {r['rc']!s:>4} {r['seconds']:>8.1f}  "
                    f"{(last or r['skipped'] or '')[:70]}")
    n = {s: sum(status(r) == s for r in summary["steps"]) for s in ("ok", "FAILED", "TIMED OUT", "skipped")}
    rows.append(", ".join(f"{v} {k}" for k, v in n.items()) + f"; wall {summary['wall_s']:.1f} s")
    return "\n".join(rows)


def main(argv=None) -> int:
    def body(a):
        check_positive("--minutes", a.minutes)
        check_positive("--budget-minutes", a.budget_minutes)
        out = Path(a.out_dir)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UsageError(f"{out} exists and is not an empty folder; give a new OUT_DIR")
        if a.data_dir and not Path(a.data_dir).is_dir():
            raise UsageError(f"--data-dir {a.data_dir}: no such folder")
        info = environment()
        if not a.dry_run and not info["gpu"]:
            raise UsageError("no CUDA device here; --dry-run rehearses the round on the CPU")
        if not a.dry_run:
            read_checkpoint(a.checkpoint)                # a bad checkpoint fails here, not in every step
        out.mkdir(parents=True, exist_ok=True)
        if a.dry_run:
            data, ckpt = dry_inputs(out.resolve(), find_fsdd(a.data_dir))
            plan = Plan(out.resolve(), str(ckpt), "cpu", DRY, 0.03)
        else:
            data = Path(a.data_dir).resolve() if a.data_dir else None
            plan = Plan(out.resolve(), str(Path(a.checkpoint or SHIPPED).resolve()), "cuda", GPU, a.minutes)
        launcher = Launcher(a.dry_run, str(data) if data else None, 1 if a.dry_run else None)
        with env_override("WAVETYP_DATA", str(data)) if data else nullcontext():
            summary = run_round(plan, info, a.budget_minutes * 60, set(a.skip or ()), launcher, a.dry_run)
        print(format_table(summary))
        print(f"wrote {plan.out / 'summary.json'}")
        return 0 if all(status(r) in ("ok", "skipped") for r in summary["steps"]) else 1

    return run_cli(build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
