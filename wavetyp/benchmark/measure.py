"""How the bench measures: the plan (how long), timers that wait for the measured device,
the precision policy, and one section's measurements of any subject (a model + its sampler
and training step; see subjects.py).

Every timing is the median of `repeats` runs after a warm-up; generation step counts are
calibrated so one timed run lasts about the plan's target.
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

TEMPERATURE = 0.7
EXACT_TOL = 1e-4
# TF32 while timing: torch's own defaults (float32 matmuls exact, cuDNN convolutions in TF32),
# set explicitly so every section is timed alike; the exactness checks run with TF32 off.
TIMING_TF32 = {"matmul": False, "cudnn": True}


class ExactnessError(AssertionError):
    """Incremental logits differ from the parallel pass: timings would be meaningless."""


@dataclass(frozen=True)
class Plan:
    """How long to measure. Step counts are calibrated so each timed run lasts ~*_target_s."""
    repeats: int = 3
    inc_warmup_steps: int = 100
    inc_target_s: float = 3.0
    inc_min_steps: int = 200
    naive_warmup_steps: int = 2
    naive_target_s: float = 2.0
    naive_min_steps: int = 3
    train_batch: int = 8
    train_len: int = 8000
    train_warmup: int = 2
    exact_extra: int = 64            # exactness over RF + this many steps, 2 streams
    sample_seconds: float | None = None   # None: the CLI's defaults (2 s x 4)
    sample_num: int | None = None
    sample_warmup: int = 1
    sample_plot: bool = True

    @classmethod
    def quick(cls) -> "Plan":
        return cls(repeats=1, inc_warmup_steps=4, inc_target_s=0.02, inc_min_steps=8,
                   naive_warmup_steps=1, naive_target_s=0.01, naive_min_steps=1,
                   train_batch=2, train_len=256, exact_extra=8, sample_seconds=0.05,
                   sample_num=2, sample_warmup=0, sample_plot=False)


def log(msg: str) -> None:
    """Progress line on stderr (stdout carries the results)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ================================================================ memory

def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux: VmHWM of our own address space. ru_maxrss is not used there because exec()
    folds the spawning process's peak into it, so a worker or CLI started by a large
    process would report at least that process's peak. Elsewhere: ru_maxrss.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return rusage_mb(resource.getrusage(resource.RUSAGE_SELF))


def rusage_mb(ru) -> float:
    return ru.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)   # bytes / KiB


# ================================================================ threads, precision, timers

@contextmanager
def num_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def tf32(matmul: bool, cudnn: bool):
    """TF32 for CUDA float32 matmuls / cuDNN convolutions inside the block (restored after)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def sync(device) -> None:
    """Wait for the measured device's queued work (not merely the current CUDA device's)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def measure_generation(run, batch: int, warmup_steps: int, target_s: float, min_steps: int,
                       max_steps: int, repeats: int, device, thread_options=None) -> dict:
    """Time run(batch, n_steps): warm-up (picking the fastest thread count when given
    several), calibrate n so one run takes ~target_s, then the median of `repeats` runs."""
    options = list(dict.fromkeys(thread_options or [None]))
    with num_threads(options[0] or torch.get_num_threads()):
        run(batch, warmup_steps)                      # first call: allocations, caches
    rates = {}
    probe = warmup_steps if len(options) == 1 else max(1, warmup_steps // 4)
    for th in options:
        with num_threads(th or torch.get_num_threads()):
            rates[th] = probe / timed(lambda: run(batch, probe), device)
    th = max(rates, key=rates.get)
    n = int(min(max_steps, max(min_steps, rates[th] * target_s)))
    with num_threads(th or torch.get_num_threads()):
        times = [timed(lambda: run(batch, n), device) for _ in range(repeats)]
    med = statistics.median(times)
    return {"steps": n, "batch": batch, "median_s": med, "runs_s": times,
            "samples_per_s": batch * n / med, "ms_per_step": 1000 * med / n,
            "threads": th if th is not None else "own policy"}


def measure_train(step, batch: int, length: int, warmup: int, repeats: int, device) -> dict:
    warm = [timed(step, device) for _ in range(warmup)]
    times = [timed(step, device) for _ in range(repeats)]
    med = statistics.median(times)
    return {"step_s": med, "runs_s": times, "warmup_s": warm, "samples_per_s": batch * length / med,
            "batch": batch, "length": length, "threads": torch.get_num_threads()}


# ================================================================ one section

def check_exactness(subject, plan: Plan, label: str) -> float:
    """Max |incremental - parallel| logits, with TF32 off; ExactnessError above EXACT_TOL."""
    n = subject.receptive_field + plan.exact_extra
    log(f"{label}: exactness (incremental vs parallel logits, 2 x {n})")
    with num_threads(1), tf32(matmul=False, cudnn=False):   # untimed loops of tiny ops: one thread
        err = subject.exactness(plan.exact_extra)
    if not err <= EXACT_TOL:
        raise ExactnessError(f"{label}: incremental logits differ from the parallel pass by {err:.3g} "
                             f"(tolerance {EXACT_TOL:g}); not timing a wrong sampler")
    return err


def measure_section(subject, plan: Plan, device, label: str) -> dict:
    """Exactness, then generation (incremental, naive; B = 1, 16), then training."""
    res = {"n_params": subject.n_params, "receptive_field": subject.receptive_field,
           "sample_rate": subject.sample_rate, "config": subject.config}
    res["exact_max_abs_diff"] = check_exactness(subject, plan, label)
    with tf32(**TIMING_TF32):
        measure_generation_rows(subject, plan, device, label, res)
        res["peak_rss_generation_mb"] = peak_rss_mb()
        log(f"{label}: training step, batch {plan.train_batch} x {plan.train_len}")
        tr = measure_train(subject.train_step(plan.train_batch, plan.train_len), plan.train_batch,
                           plan.train_len, plan.train_warmup, plan.repeats, device)
    res["train_samples_per_s"] = tr["samples_per_s"]
    res["train_step_s"] = tr["step_s"]
    res["detail_train"] = tr
    res["peak_rss_mb"] = peak_rss_mb()
    return res


def measure_generation_rows(subject, plan: Plan, device, label: str, res: dict) -> None:
    """Incremental and naive generation at B = 1 and 16 (+ the optional cross-check) into res."""
    all_threads = torch.get_num_threads()
    for batch in (1, 16):
        log(f"{label}: incremental generation, B={batch}")
        inc_threads = None if subject.gen_threads_own_policy else [1, all_threads]
        inc = measure_generation(subject.incremental, batch, plan.inc_warmup_steps, plan.inc_target_s,
                                 plan.inc_min_steps, 100_000, plan.repeats, device, inc_threads)
        log(f"{label}: naive generation (full forward per sample), B={batch}")
        nai = measure_generation(subject.naive, batch, plan.naive_warmup_steps, plan.naive_target_s,
                                 plan.naive_min_steps, 1000, plan.repeats, device, [1, all_threads])
        b = f"b{batch}"
        res[f"incremental_{b}_samples_per_s"] = inc["samples_per_s"]
        res[f"incremental_{b}_ms_per_step"] = inc["ms_per_step"]
        res[f"naive_{b}_samples_per_s"] = nai["samples_per_s"]
        res[f"naive_{b}_ms_per_step"] = nai["ms_per_step"]
        res[f"incremental_over_naive_{b}"] = inc["samples_per_s"] / nai["samples_per_s"]
        res[f"rtf_incremental_{b}"] = inc["samples_per_s"] / subject.sample_rate
        res[f"detail_incremental_{b}"] = inc
        res[f"detail_naive_{b}"] = nai
    original = subject.original() if hasattr(subject, "original") else None
    if original is not None:
        log(f"{label}: cross-check, wavenet_vocoder {original.version} incremental_forward, B=1")
        org = measure_generation(original.incremental, 1, plan.inc_warmup_steps, plan.inc_target_s,
                                 plan.inc_min_steps, 100_000, plan.repeats, device, [1, all_threads])
        res["original_version"] = original.version
        res["original_b1_samples_per_s"] = org["samples_per_s"]
        res["reference_over_original_b1"] = res["incremental_b1_samples_per_s"] / org["samples_per_s"]
        res["detail_original_b1"] = org
