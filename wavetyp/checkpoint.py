"""Checkpoints are data, not code: atomic saves, `weights_only=True` loads, clear errors."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from .model import WaveNet, WaveNetConfig

FORMAT = "wavetyp-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "config", "model")
OPTIONAL = ("optimizer", "scheduler", "step", "rng", "best_val_bits", "train_args", "metrics",
            "dtype", "history", "wall_seconds")
SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "wavetyp-fsdd.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why in one line."""


def save_atomic(obj: dict, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def read_checkpoint(path: str | os.PathLike | None = None) -> dict:
    """Load and validate a checkpoint dict (default: the shipped one)."""
    path = Path(path) if path else SHIPPED
    if not path.is_file():
        hint = " (train one with `python -m wavetyp.train`)" if path == SHIPPED else ""
        raise CheckpointError(f"checkpoint {path} not found{hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: refused, it is not plain data "
                              f"(weights_only load failed: {first[:200]})") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a wavetyp checkpoint (top level is "
                              f"{type(ckpt).__name__}, expected a dict)")
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a wavetyp checkpoint (format={ckpt.get('format')!r})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {ckpt.get('version')!r}, "
                              f"this wavetyp reads version {VERSION}")
    missing = [k for k in REQUIRED if k not in ckpt]
    extra = sorted(set(ckpt) - set(REQUIRED) - set(OPTIONAL))
    if missing or extra:
        raise CheckpointError(f"{path}: " + "; ".join(
            ([f"missing key(s): {', '.join(missing)}"] if missing else []) +
            ([f"unexpected key(s): {', '.join(extra)}"] if extra else [])))
    return ckpt


def build_model(ckpt: dict, path="checkpoint") -> WaveNet:
    """Rebuild the model from the config stored in the checkpoint and load its weights."""
    try:
        cfg = WaveNetConfig.from_dict(dict(ckpt["config"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad config ({e})") from None
    model = WaveNet(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing weights: {', '.join(result.missing_keys[:4])}"
                         f"{' ...' if len(result.missing_keys) > 4 else ''}")
        if result.unexpected_keys:
            parts.append(f"unexpected weights: {', '.join(result.unexpected_keys[:4])}"
                         f"{' ...' if len(result.unexpected_keys) > 4 else ''}")
        raise CheckpointError(f"{path}: weights do not match the config ({'; '.join(parts)})")
    return model.eval()


def load_model(path=None, device="cpu") -> tuple[WaveNet, dict]:
    """Load a checkpoint (default: the shipped one) -> (model in eval mode, checkpoint dict)."""
    ckpt = read_checkpoint(path)
    model = build_model(ckpt, path or SHIPPED)
    return model.to(device), ckpt


def export_weights(src, dst, dtype: torch.dtype = torch.float16, metrics: dict | None = None):
    """Write a shippable checkpoint: config + weights (fp16/fp32) only, no optimizer state."""
    ckpt = read_checkpoint(src)
    model = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    out = {"format": FORMAT, "version": VERSION, "config": ckpt["config"], "model": model,
           "step": ckpt.get("step", 0), "dtype": str(dtype).replace("torch.", ""),
           "train_args": ckpt.get("train_args", {}), "metrics": metrics or ckpt.get("metrics", {}),
           "wall_seconds": ckpt.get("wall_seconds", 0.0)}
    save_atomic(out, dst)
    return out
