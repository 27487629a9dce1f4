"""Where and how things run: device choice, thread policy, malloc setting, the CPU's name,
and every environment switch the package reads (ENV_SWITCHES; docs/env-switches.md)."""
from __future__ import annotations

import ctypes
import os
import platform
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from wavetyp.core.errors import UsageError

# name -> (default, what it does). Nothing else in the package reads os.environ.
ENV_SWITCHES = {
    "WAVETYP_DATA": ("", "a folder holding FSDD, looked at before ../shared/data/fsdd and ~/.cache/wavetyp/fsdd"),
    "WAVETYP_JIT": ("1", "0: the sampling loop runs as plain Python instead of TorchScript (same codes)"),
    "WAVETYP_CSTEP": ("1", "0: sampling runs the TorchScript loop or the Python warpers instead of the "
                           "fused C++ step (same codes up to float rounding)"),
    "WAVETYP_FASTSTACK": ("1", "0: CPU training uses autograd through the plain layer loop instead of "
                               "the hand-written residual-stack backward (same gradients)"),
    "WAVETYP_FUSED_GATE": ("1", "0: the training stack's gate stays eager instead of torch.compile-fused"),
    "WORLD_SIZE": ("1", "set by torchrun: the number of training processes"),
    "RANK": ("0", "set by torchrun: this process's rank (only rank 0 logs and saves)"),
    "LOCAL_RANK": ("0", "set by torchrun: this process's GPU on its machine"),
}


def env(name: str) -> str:
    """The value of one of ENV_SWITCHES (its default when unset)."""
    return os.environ.get(name, ENV_SWITCHES[name][0])


@contextmanager
def env_override(name: str, value: str):
    """Set one of ENV_SWITCHES (or a torchrun variable) for the duration of a block."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def switch_on(name: str) -> bool:
    """A 0/1 switch of ENV_SWITCHES: on unless set to 0."""
    return env(name) != "0"


def distributed_env() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) without it."""
    return int(env("WORLD_SIZE")), int(env("RANK")), int(env("LOCAL_RANK"))


def cpu_model() -> str:
    """The CPU's name (every benchmark figure states it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (avx2, fma, ...) from /proc/cpuinfo; empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def keep_freed_memory() -> bool:
    """Tell glibc malloc to serve big blocks from its heap and keep freed memory there.

    A CPU training step allocates and frees the same tens of MB of activations every step;
    by default glibc gives blocks that big their own mmap and unmaps them when freed, so every
    step page-faults its activations in again. Measured on this project's 2-core VM (batch
    8 x 8000, reference-sized model): ~19k -> ~24k samples/s, peak RSS 3.6 -> 4.0 GB. Linux
    with glibc only; returns whether it was applied (it is process-wide and stays on).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4                 # <malloc.h>
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):                         # not glibc: leave malloc alone
        return False


def pick_device(name: str = "auto") -> torch.device:
    """auto = cuda, then mps, then cpu. A CUDA device without an index is this process's GPU
    under torchrun (cuda:LOCAL_RANK), so `--device cuda` puts every rank on its own GPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", distributed_env()[2])
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", distributed_env()[2])
    return dev


class step_threads:
    """Run the step loop with few threads: per-step matrices are tiny, and on a busy CPU
    a second OpenMP thread costs far more in synchronisation than it gains (measured in
    `python -m wavetyp.bench`). Large batches keep the caller's thread count."""

    def __init__(self, batch: int, threads: int | None = None):
        self.n = threads or (1 if batch < 64 else torch.get_num_threads())

    def __enter__(self):
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)
