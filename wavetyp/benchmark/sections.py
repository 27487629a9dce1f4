"""The bench's sections and where they run: in this process, or each in a fresh worker
process (`python -m wavetyp.bench` re-invoked with a hidden --worker flag, which calls
run_worker), so peak RSS is per section and one section's allocations cannot slow the next.
Also the end-to-end timing of the sample CLI.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from wavetyp.benchmark.measure import TEMPERATURE, Plan, log, measure_section, rusage_mb
from wavetyp.benchmark.subjects import (
    QUICK_REFERENCE_CONFIG,
    REFERENCE_CONFIG,
    ReferenceSubject,
    WavetypSubject,
    load_shipped,
    resolve_shipped,
    wavetyp_config_like,
)
from wavetyp.core.model import WaveNet
from wavetyp.core.runtime import keep_freed_memory

SECTIONS = ("reference", "wavetyp_reference_config", "shipped")
SECTIONS_FOR = {"reference": SECTIONS[:2], "shipped": SECTIONS[2:], "both": SECTIONS}   # --config
TITLES = {"reference": "reference", "wavetyp_reference_config": "wavetyp (ref. config)",
          "shipped": "wavetyp (shipped)"}


@dataclass(frozen=True)
class BenchOptions:
    """What every section needs to know (a worker process gets the same on its command line)."""
    device: str = "cpu"
    quick: bool = False
    checkpoint: str | None = None
    threads: int | None = None
    repeats: int = 3

    def plan(self) -> Plan:
        return Plan.quick() if self.quick else Plan(repeats=self.repeats)


def prepare_process(threads: int | None) -> bool:
    """torch's thread count, and glibc keeping freed memory, as `python -m wavetyp.train` does
    on the CPU: a process-wide setting any implementation could use, so every section (the
    reference included) runs with it. Returns whether the malloc setting applied."""
    if threads:
        torch.set_num_threads(threads)
    return keep_freed_memory()


def json_ready(obj: dict) -> dict:
    return json.loads(json.dumps(obj, default=str))


def build_subject(section: str, opts: BenchOptions, device=None):
    device = device or opts.device
    rc = QUICK_REFERENCE_CONFIG if opts.quick else REFERENCE_CONFIG
    if section == "reference":
        return ReferenceSubject(rc, device)
    if section == "wavetyp_reference_config":
        torch.manual_seed(0)
        return WavetypSubject(WaveNet(wavetyp_config_like(rc)), device)
    path, _ = resolve_shipped(opts.checkpoint)
    return WavetypSubject(load_shipped(path, device), device)


def run_section_here(section: str, opts: BenchOptions) -> dict:
    subject = build_subject(section, opts)
    return measure_section(subject, opts.plan(), opts.device, TITLES[section])


def run_worker(section: str, out: str, opts: BenchOptions) -> int:
    """A worker process's whole job: one section, its results as JSON to `out`."""
    Path(out).write_text(json.dumps(json_ready(run_section_here(section, opts))))
    return 0


def worker_argv(section: str, opts: BenchOptions, out: str) -> list[str]:
    argv = [sys.executable, "-m", "wavetyp.bench", "--worker", section, "--worker-out", out,
            "--repeats", str(opts.repeats), "--device", str(opts.device)]
    if opts.threads:
        argv += ["--threads", str(opts.threads)]
    if opts.quick:
        argv.append("--quick")
    if opts.checkpoint:
        argv += ["--checkpoint", str(opts.checkpoint)]
    return argv


def run_section_isolated(section: str, opts: BenchOptions) -> dict:
    """The section in a fresh process (its own peak RSS); progress goes to our stderr."""
    with tempfile.TemporaryDirectory(prefix="wavetyp-bench-") as tmp:
        out = os.path.join(tmp, "result.json")
        rc = subprocess.call(worker_argv(section, opts, out))
        if rc != 0:
            raise RuntimeError(f"section {section}: worker process failed (exit code {rc}); see above")
        return json.loads(Path(out).read_text())


# ================================================================ the sample CLI, end to end

def sample_cli_argv(checkpoint: str | None, opts: BenchOptions, plan: Plan, out: str) -> list[str]:
    """`python -m wavetyp.sample --temperature 0.7` on the bench's device (always named: the
    sample CLI's own default would pick a GPU even when the bench measures the CPU)."""
    cmd = [sys.executable, "-m", "wavetyp.sample", "--temperature", str(TEMPERATURE), "--out", out,
           "--device", str(opts.device)]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    if opts.threads:
        cmd += ["--threads", str(opts.threads)]
    if plan.sample_seconds is not None:
        cmd += ["--seconds", str(plan.sample_seconds)]
    if plan.sample_num is not None:
        cmd += ["--num", str(plan.sample_num)]
    if not plan.sample_plot:
        cmd.append("--no-plot")
    return cmd


def sample_cli_once(checkpoint: str | None, opts: BenchOptions, plan: Plan) -> tuple[float, float | None]:
    """Wall seconds and peak RSS (MiB) of one `python -m wavetyp.sample --temperature 0.7`."""
    with tempfile.TemporaryDirectory(prefix="wavetyp-bench-sample-") as out:
        cmd = sample_cli_argv(checkpoint, opts, plan, out)
        with open(os.path.join(out, "stdout.txt"), "w+") as f:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
            if hasattr(os, "wait4"):
                _, status, ru = os.wait4(p.pid, 0)   # the child's own rusage
                p.returncode = os.waitstatus_to_exitcode(status)
                rss = rusage_mb(ru)
            else:
                p.wait()
                rss = None
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                f.seek(0)
                tail = f.read()[-2000:]
                raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {p.returncode}):\n{tail}")
    return wall, rss


def measure_sample_cli(opts: BenchOptions, sample_rate: int) -> dict:
    """The sample CLI end to end on the shipped model: warm-up run(s), then the median wall."""
    from wavetyp.core.checkpoint import FORMAT, SHIPPED, VERSION, save_atomic
    plan = opts.plan()
    path, note = resolve_shipped(opts.checkpoint)
    with tempfile.TemporaryDirectory(prefix="wavetyp-bench-ckpt-") as tmp:
        if path is None:                      # no checkpoint anywhere: a random default one
            path = os.path.join(tmp, "random-default.pt")
            model = load_shipped(None, "cpu")
            save_atomic({"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(),
                         "model": model.state_dict(), "step": 0}, path)
        cli_ckpt = None if Path(path).resolve() == SHIPPED.resolve() else path
        seconds = plan.sample_seconds if plan.sample_seconds is not None else 2.0
        num = plan.sample_num if plan.sample_num is not None else 4
        for i in range(plan.sample_warmup):
            log(f"sample CLI: warm-up run ({num} x {seconds:g} s)")
            sample_cli_once(cli_ckpt, opts, plan)
        runs = []
        for i in range(plan.repeats):
            log(f"sample CLI: run {i + 1}/{plan.repeats} ({num} x {seconds:g} s)")
            runs.append(sample_cli_once(cli_ckpt, opts, plan))
    wall = statistics.median(w for w, _ in runs)
    rss = [r for _, r in runs if r is not None]
    audio_s = num * max(1, int(round(seconds * sample_rate))) / sample_rate
    return {"sample_cli_wall_s": wall, "sample_cli_runs_s": [w for w, _ in runs],
            "sample_cli_audio_s": audio_s, "sample_cli_rtf": audio_s / wall,
            "sample_cli_peak_rss_mb": max(rss) if rss else None,
            "sample_cli_command": "python -m wavetyp.sample --temperature 0.7"
                                  + (f" --checkpoint {cli_ckpt}" if cli_ckpt else "")
                                  + ("" if plan.sample_seconds is None else
                                     f" --seconds {plan.sample_seconds:g} --num {num} --no-plot"),
            "checkpoint_note": note}
