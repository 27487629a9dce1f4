"""Does each speed-only path still pay? One-process A/B on the shipped model.

Every path that exists only for speed (the fused C++ step and the TorchScript chunk loop in
the sampler, the latter timed with the former off; the hand-written CPU training stack and
its compiled gate) is timed against the same code with that path switched off, interleaved A, B, A, B ... in one process, so both
arms see the same machine load. Each figure is the median over the repeats; the ratio is
B-off time / A-on time (> 1: the path pays). Outputs are not checked here: tests tie every
path to the plain forward.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

import torch

import wavetyp.core.generate as generate_mod
from wavetyp.core import cstep, faststack
from wavetyp.core.conditioning import build_conditioning
from wavetyp.core.decoding import DecodeSettings
from wavetyp.core.fastloop import run_steps
from wavetyp.core.generate import generate
from wavetyp.core.runtime import cpu_model


@contextmanager
def patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def sampling_rate(model, n_steps: int, batch: int = 1) -> float:
    """Samples per second (all streams) of temperature-0.7 sampling, n_steps per stream."""
    t = time.perf_counter()
    generate(model, [DecodeSettings(0.7)] * batch, n_steps, seed=0)
    return n_steps * batch / (time.perf_counter() - t)


def training_step_s(model, batch: int, length: int, codes: torch.Tensor) -> float:
    """Seconds for one forward + backward of the masked loss (labels and mel on)."""
    cond = build_conditioning(model, batch, torch.arange(batch) % 10, torch.arange(batch) % 2, codes)
    t = time.perf_counter()
    logits = model(codes, cond)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))
    loss.backward()
    return time.perf_counter() - t


def ab(label: str, on, off, repeats: int, log) -> dict:
    """Interleaved A/B of two zero-argument timers returning a rate (higher = faster) or a
    time (lower = faster, negated by the caller's lambdas is not needed: `higher_is_better`)."""
    on(), off()                                   # warm-up both arms
    a, b = [], []
    for _ in range(repeats):
        a.append(on())
        b.append(off())
    row = {"path": label, "on": statistics.median(a), "off": statistics.median(b),
           "on_all": a, "off_all": b}
    log(f"{label}: on {row['on']:.4g}, off {row['off']:.4g}")
    return row


def run(model, n_steps: int = 4000, repeats: int = 5, train_batch: int = 8, train_length: int = 4000,
        log=print) -> dict:
    """All A/Bs on `model` (CPU). Sampling rows are samples/s; training rows seconds/step."""
    rows = []
    # (far-layer chunking, which fetched far layers' past taps once per 8 steps, measured
    # 1.01x at B=1 and 1.00x at B=16 here and was removed; docs/performance.md)
    for batch, n in ((1, n_steps), (16, n_steps // 4)):
        rate = lambda batch=batch, n=n: sampling_rate(model, n, batch)   # noqa: E731
        torchscript = lambda rate=rate: _with(cstep, "enabled", _off, rate)   # noqa: E731
        rows.append(ab(f"sampling B={batch}: fused C++ step (samples/s)", rate, torchscript, repeats, log))
        rows.append(ab(f"sampling B={batch}: TorchScript chunk loop (samples/s)", torchscript,
                       lambda rate=rate: _with(generate_mod, "scripted_run_steps", lambda: run_steps,
                                               lambda: _with(cstep, "enabled", _off, rate)),
                       repeats, log))
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 256, (train_batch, train_length), generator=g)
    model.train()
    step = lambda: training_step_s(model, train_batch, train_length, codes)   # noqa: E731
    rows.append(ab("training step: hand-written stack backward (s/step)", step,
                   lambda: _with(faststack, "enabled", _off, step), max(2, repeats // 2), log))
    rows.append(ab("training step: compiled gate (s/step)", step,
                   lambda: _with(faststack, "fuse_enabled", _off, step), max(2, repeats // 2), log))
    model.eval()
    for r in rows:   # > 1: the path pays
        r["gain"] = r["on"] / r["off"] if "samples/s" in r["path"] else r["off"] / r["on"]
    return {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "fuse_min_elements": faststack.FUSE_MIN_ELEMENTS, "rows": rows}


def _with(obj, name, value, fn):
    with patched(obj, name, value):
        return fn()


def _off() -> bool:
    """A switch read as off: what WAVETYP_FASTSTACK=0 / WAVETYP_FUSED_GATE=0 give (the switches
    are read at every call, so the A/B flips them without touching the environment)."""
    return False


def format_rows(result: dict) -> str:
    lines = [f"speed-only paths, one-process A/B ({result['cpu']}, {result['threads']} threads, "
             f"torch {result['torch']})",
             f"{'path':<56} {'on':>10} {'off':>10} {'gain':>6}"]
    for r in result["rows"]:
        lines.append(f"{r['path']:<56} {r['on']:>10.4g} {r['off']:>10.4g} {r['gain']:>5.2f}x")
    return "\n".join(lines)
