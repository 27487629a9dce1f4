"""Shared fixtures: tiny models, synthetic audio, and the real FSDD folder when present."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from wavetyp.core.model import WaveNet, WaveNetConfig
from wavetyp.data.fsdd import fsdd_candidates, recordings_dir

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def tiny_config(**kw) -> WaveNetConfig:
    """A few-thousand-parameter model: fast enough for exactness and CLI tests."""
    base = dict(layers_per_stack=3, n_stacks=2, kernel_size=2, residual_channels=8,
                gate_channels=8, skip_channels=8, head_channels=16, n_digits=10,
                speakers=["alice", "bob"], global_dim=4, n_mels=8, n_fft=64, hop_length=16,
                mel_channels=8)
    base.update(kw)
    return WaveNetConfig(**base)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return WaveNet(tiny_config()).eval()


def synth_speechlike(seconds: float = 0.5, sr: int = 8000, seed: int = 0) -> np.ndarray:
    """A vowel-like harmonic burst followed by a noise 'fricative', with silence around."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    w = np.zeros(n, dtype=np.float32)
    a, b = n // 8, n // 2
    f0 = 120 + 20 * seed
    w[a:b] = 0.3 * np.sin(2 * np.pi * f0 * t[a:b]) + 0.1 * np.sin(2 * np.pi * 3 * f0 * t[a:b])
    w[b:b + n // 4] = 0.1 * rng.standard_normal(n // 4)
    return w.astype(np.float32)


def real_fsdd() -> Path | None:
    for c in fsdd_candidates():
        if recordings_dir(c).is_dir() and any(recordings_dir(c).glob("*.wav")):
            return c
    return None


@pytest.fixture
def fsdd_dir():
    """The real FSDD folder. In CI (CI=true) its absence is a failure, not a skip."""
    d = real_fsdd()
    if d is None:
        if os.environ.get("CI"):
            pytest.fail("FSDD not found beside the repository (../shared/data/fsdd) in CI")
        pytest.skip("FSDD not present on this machine")
    return d


def save_tiny_checkpoint(path, **cfg_kw) -> Path:
    """A randomly initialised tiny model saved in the checkpoint format."""
    from wavetyp.core.checkpoint import FORMAT, VERSION, save_atomic
    torch.manual_seed(0)
    cfg = tiny_config(**cfg_kw)
    save_atomic({"format": FORMAT, "version": VERSION, "config": cfg.to_dict(),
                 "model": WaveNet(cfg).state_dict(), "step": 0}, path)
    return Path(path)


@pytest.fixture
def tiny_ckpt(tmp_path):
    return save_tiny_checkpoint(tmp_path / "tiny.pt")
