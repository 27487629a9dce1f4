"""A run's options and the state its checkpoints hold: what `--resume` reads back.

`checkpoint_state` writes, `load_resume_state` and `restore` read, so the keys a training
checkpoint holds are named in this one module.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from wavetyp.core.checkpoint import (
    FORMAT,
    VERSION,
    check_resumable,
    config_from,
    load_weights,
    read_checkpoint,
)
from wavetyp.core.errors import CheckpointError, error_line
from wavetyp.core.model import WaveNetConfig


@dataclass
class TrainOptions:
    """How to train: stored in every checkpoint as `train_args` (see resume_options)."""
    out: str = ""
    max_steps: int | None = 20000    # also the LR schedule's length; None on resume: the run's
    max_minutes: float | None = None
    stop_at: int | None = None       # pause: save and return at this step (schedule unchanged)
    batch_size: int = 16
    crop: int = 4000                 # samples per training crop (0.5 s at 8 kHz)
    lr: float = 2e-3
    warmup: int = 300
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 500
    eval_files: int = 40             # fixed, evenly spread subset of the test split
    ckpt_every: int = 250
    log_every: int = 10
    device: str = "auto"
    compile: bool = False
    threads: int | None = None
    dataset: str = "fsdd"
    data_dir: str | None = None
    progress: bool = True
    final_eval: bool = True          # full test split at the end
    ema_decay: float = 0.0           # > 0: also keep an exponential moving average of the weights

    def lr_at(self, step: int) -> float:
        """Linear warmup, then cosine decay to min_lr_ratio * lr at max_steps."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.max_steps - self.warmup))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


# On --resume the schedule, data, batch and seed come from the checkpoint, so the
# continuation is exact. These are the caller's to choose each time (where and how to run):
CALLER_OPTIONS = ("out", "progress", "device", "threads", "compile", "final_eval", "stop_at")
# ... and these limits are the caller's when given (not None), else the run's own.
LIMIT_OPTIONS = ("max_steps", "max_minutes")


def resume_options(opts: TrainOptions, saved: dict) -> TrainOptions:
    """The resumed run's options: the run's own, except where and how long to run."""
    known = {f.name for f in fields(TrainOptions)}
    keep = {k: v for k, v in saved.items() if k in known and k not in CALLER_OPTIONS}
    for k in LIMIT_OPTIONS:
        if getattr(opts, k) is not None:
            keep[k] = getattr(opts, k)
    if keep.get("max_steps") is None:             # a checkpoint without train_args
        keep["max_steps"] = TrainOptions.max_steps
    return replace(opts, **keep)


def checkpoint_state(cfg: WaveNetConfig, model, opt, opts: TrainOptions, *, step: int,
                     best: float, wall_seconds: float, metrics: dict | None = None,
                     ema=None) -> dict:
    """A training checkpoint: weights, optimizer moments, schedule, step, torch RNG, options,
    and with --ema-decay the averaged weights ("ema": the AveragedModel's state dict)."""
    extra = {"ema": ema.state_dict()} if ema is not None else {}
    return {**extra, "format": FORMAT, "version": VERSION, "config": cfg.to_dict(),
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": {"name": "warmup-cosine", "warmup": opts.warmup,
                          "max_steps": opts.max_steps, "lr": opts.lr_at(step)},
            "step": step, "rng": {"torch": torch.get_rng_state()},
            "best_val_bits": best, "train_args": asdict(opts),
            "wall_seconds": wall_seconds, "metrics": metrics or {}}


def load_resume_state(last_path: Path, opts: TrainOptions):
    """Read last.pt for --resume -> (checkpoint, config, options); CheckpointError if unusable."""
    if not last_path.is_file():
        raise CheckpointError(f"--resume: {last_path} not found (nothing to resume in "
                              f"{last_path.parent})")
    ckpt = read_checkpoint(last_path)
    check_resumable(ckpt, last_path)
    return ckpt, config_from(ckpt, last_path), resume_options(opts, dict(ckpt.get("train_args") or {}))


def make_ema(model, decay: float):
    """torch's AveragedModel keeping an exponential moving average of `model` (and buffers)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def restore(model, opt, ckpt: dict, path: Path, ema=None) -> None:
    """Weights, optimizer moments, the torch RNG and the averaged weights from a checkpoint."""
    load_weights(model, ckpt["model"], path)
    if ema is not None:
        if "ema" not in ckpt:
            raise CheckpointError(f"{path}: the run keeps an EMA but the checkpoint has none")
        ema.load_state_dict(ckpt["ema"])
    try:
        opt.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: optimizer state does not fit the model "
                              f"({error_line(e)})") from None
    torch.set_rng_state(ckpt["rng"]["torch"])
