"""One bench run from start to report: the sections of --config (here or one worker process
each), the sample CLI, the ratios and the notes; and the --speed-paths A/B on the shipped
model. What is measured is described in wavetyp/bench.py's docstring."""
from __future__ import annotations

import time

import torch

from wavetyp.benchmark import speed_paths
from wavetyp.benchmark.measure import log
from wavetyp.benchmark.report import machine_info, precision_note, ratios
from wavetyp.benchmark.sections import (
    SECTIONS,
    SECTIONS_FOR,
    BenchOptions,
    measure_sample_cli,
    run_section_here,
    run_section_isolated,
)
from wavetyp.benchmark.subjects import load_shipped, resolve_shipped
from wavetyp.core import faststack


def start_report(opts: BenchOptions, sections, malloc_kept: bool) -> dict:
    """The report before any measurement: empty sections, the machine, the notes."""
    report = {s: None for s in SECTIONS}
    report["machine"] = machine_info(opts.device)
    report["notes"] = notes = []
    report["machine"]["malloc_keeps_freed_memory"] = malloc_kept
    if malloc_kept:
        notes.append("glibc malloc keeps freed memory in every section, the reference "
                     "included (as `python -m wavetyp.train` does on the CPU)")
    if "shipped" in sections:
        notes.append(resolve_shipped(opts.checkpoint)[1])
    if opts.device == "cpu":
        report["machine"]["faststack"] = faststack.enabled()
        notes.append("wavetyp trains with the hand-written residual-stack backward (faststack.py)"
                     if report["machine"]["faststack"] else
                     "WAVETYP_FASTSTACK=0: wavetyp trains with the plain autograd layer loop")
    if precision_note(opts.device):
        notes.append(precision_note(opts.device))
    if opts.quick:
        notes.append("--quick: tiny reference model and lengths, 1 repeat; timings are not meaningful")
    elif opts.repeats < 3:
        notes.append(f"--repeats {opts.repeats}: fewer than 3 timed runs per median")
    return report


def run_benchmark(opts: BenchOptions, config: str = "both", in_process: bool = False,
                  malloc_kept: bool = False) -> dict:
    """Every section of `config` measured, plus the sample CLI on the shipped model; raises
    ExactnessError (before any timing of that section) when a sampler is not exact."""
    sections = SECTIONS_FOR[config]
    report = start_report(opts, sections, malloc_kept)
    log(f"sections: {', '.join(sections)}; {opts.repeats} repeat(s) after a warm-up; "
        f"{torch.get_num_threads()} torch threads; "
        + ("in this process" if in_process else "one worker process per section"))
    t0 = time.perf_counter()
    for s in sections:
        report[s] = run_section_here(s, opts) if in_process else run_section_isolated(s, opts)
    if report["shipped"]:
        report["shipped"].update(measure_sample_cli(opts, report["shipped"]["sample_rate"]))
    report["ratios"] = ratios(report)
    report["machine"]["bench_wall_s"] = time.perf_counter() - t0
    if in_process:
        report["notes"].append("--in-process: peak RSS is the running maximum of one process, "
                               "and the sample CLI's (its ru_maxrss) is at least this "
                               "process's peak when it was started")
    return report


def run_speed_paths(opts: BenchOptions) -> dict:
    """speed_paths.run on the shipped checkpoint (or --checkpoint), on the CPU; --quick: tiny
    step counts (a smoke test, not a measurement)."""
    path, note = resolve_shipped(opts.checkpoint)
    log(f"speed paths: {note}, on the CPU")
    model = load_shipped(path, "cpu")
    counts = dict(n_steps=16, repeats=1, train_batch=2, train_length=128) if opts.quick else {}
    result = speed_paths.run(model, log=log, **counts)
    result["checkpoint_note"] = note
    return result
