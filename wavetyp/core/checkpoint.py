"""Checkpoints are data, not code: atomic saves, `weights_only=True` loads, clear errors.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) tagged with
FORMAT and VERSION. Loading never unpickles arbitrary objects, so a file that would
import or call something is refused before anything runs. Every problem with a file
becomes one CheckpointError whose message says what is wrong in one line.
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import fields
from pathlib import Path

import torch

from wavetyp.core.errors import CheckpointError
from wavetyp.core.model import WaveNet, WaveNetConfig

FORMAT = "wavetyp-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "config", "model")
OPTIONAL = ("optimizer", "scheduler", "step", "rng", "best_val_bits", "train_args", "metrics",
            "dtype", "history", "wall_seconds", "ema", "weights")
RESUMABLE = ("optimizer", "step", "rng")      # what `train --resume` needs beyond REQUIRED
SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "wavetyp-fsdd.pt"


# ---------------------------------------------------------------- saving

def _temp_name(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.tmp-{pid}")


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files a killed writer (kill -9 mid-save) left beside `path`."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)          # raises if no such process: the writer is gone
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:              # exists but not ours: leave it alone
            pass


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: some file systems cannot fsync folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def on_cpu(obj):
    """Every tensor in a (nested) checkpoint dict moved to the CPU, so that a file saved on a
    GPU loads anywhere with a plain torch.load."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


def save_atomic(obj: dict, path: str | os.PathLike) -> None:
    """torch.save (tensors moved to the CPU) to a temp file in the same folder, fsync, then
    rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one;
    a failed save (an exception) also removes its temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = _temp_name(path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            torch.save(on_cpu(obj), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


# ---------------------------------------------------------------- loading

def _load_error(path: Path, e: Exception) -> CheckpointError:
    """Turn torch.load's (long, multi-line) complaint into one line saying what is wrong."""
    text = str(e)
    bad_global = re.search(r"GLOBAL ([\w.]+)", text)
    if bad_global:
        return CheckpointError(
            f"{path}: refused: it asks to import or call {bad_global.group(1)}; a checkpoint "
            "must be plain data (tensors, numbers, strings, lists, dicts), so it was not loaded")
    if isinstance(e, pickle.UnpicklingError) and "Weights only" in text:
        detail = re.search(r"Unsupported operand \d+|Unsupported class [\w.]+", text)
        return CheckpointError(f"{path}: refused: not plain tensor data"
                               f"{f' ({detail.group(0)})' if detail else ''}; corrupt, or not "
                               "written by torch.save")
    first = " ".join(re.split(r"(?<=\.)\s", text.strip(), maxsplit=1)[0].split())[:200]
    return CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}"
                           f"{': ' + first if first else ''}); truncated or corrupt?")


def _check_structure(ckpt, path: Path) -> None:
    """Tag, version and keys: raise CheckpointError naming the first thing that is wrong."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a wavetyp checkpoint (top level is "
                              f"{type(ckpt).__name__}, expected a dict)")
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a wavetyp checkpoint (format={ckpt.get('format')!r}, "
                              f"expected {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {ckpt.get('version')!r}, "
                              f"this wavetyp reads version {VERSION}")
    missing = [k for k in REQUIRED if k not in ckpt]
    extra = sorted(map(str, set(ckpt) - set(REQUIRED) - set(OPTIONAL)))
    if missing or extra:
        raise CheckpointError(f"{path}: " + "; ".join(
            ([f"missing key(s): {', '.join(missing)}"] if missing else []) +
            ([f"unexpected key(s): {', '.join(extra)}"] if extra else [])))
    if not isinstance(ckpt["config"], dict):
        raise CheckpointError(f"{path}: 'config' is {type(ckpt['config']).__name__}, expected a dict")
    model = ckpt["model"]
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"{path}: 'model' must be a dict of tensors (a state_dict)")


def read_checkpoint(path: str | os.PathLike | None = None) -> dict:
    """Load and validate a checkpoint dict (default: the shipped one).

    torch.load runs with weights_only=True: a file that would run code is refused.
    """
    path = Path(path) if path else SHIPPED
    if not path.is_file():
        hint = " (train one with `python -m wavetyp.train`)" if path == SHIPPED else ""
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise CheckpointError(f"checkpoint {path} {what}{hint}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # torch.load raises many types for bad files; all mean the same
        raise _load_error(path, e) from None
    _check_structure(ckpt, path)
    return ckpt


def config_from(ckpt: dict, path="checkpoint") -> WaveNetConfig:
    """The model config stored in a checkpoint, or a CheckpointError saying what is wrong."""
    try:
        return WaveNetConfig.from_dict(dict(ckpt["config"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad config ({e})") from None


def load_weights(model: torch.nn.Module, state: dict, path="checkpoint", may_lack=()) -> None:
    """load_state_dict that reports missing, unexpected or mis-shaped weights in one line.

    may_lack: names of weights the state may not have (a warm start that adds parameters,
    e.g. WaveNet.POSITION_WEIGHTS); those keep the model's own values. Any other gap is an error.
    """
    own = model.state_dict()
    kept = [k for k in may_lack if k in own and k not in state]
    missing = [k for k in own if k not in state and k not in kept]
    extra = [k for k in state if k not in own]
    shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and state[k].shape != own[k].shape]

    def few(names):
        return ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")

    parts = ([f"missing weights: {few(missing)}"] if missing else []) + \
            ([f"unexpected weights: {few(extra)}"] if extra else []) + \
            ([f"shape mismatch: {few(shape)}"] if shape else [])
    if parts:
        raise CheckpointError(f"{path}: weights do not match the config ({'; '.join(parts)})")
    model.load_state_dict(state, strict=not kept)   # every other name checked above


# the per-layer conditioning projections: output L * 2G, layer l's rows [l*2G, (l+1)*2G)
PER_LAYER_PROJECTIONS = ("global_proj", "mel_proj", "pos_proj")
# what a deeper config may change besides n_stacks (training-only settings, a new position table)
_DEEPEN_FREE = ("n_stacks", "p_drop_digit", "p_drop_speaker", "p_drop_mel")


def deepen_state(state: dict, old: WaveNetConfig, new: WaveNetConfig, seed: int = 0,
                 path="checkpoint") -> dict:
    """A state dict for `new` (old's config with more stacks appended) that computes exactly
    old's function: the warm start of `train --init-from CKPT --add-stacks N`.

    The old layers and every shared weight are copied. Each new layer's res_skip is zero, so it
    adds nothing to the residual stream or the skip sum; its dilated linear keeps a fresh
    default init (seeded by `seed`, the global RNG untouched), so gradients reach it once
    res_skip moves. The per-layer conditioning projections keep old's rows for the old layers
    and get zero rows for the new ones. A position table new to `new` (--position-frames) is
    the fresh one (its projection is zero). Every key of the result comes from this mapping.
    """
    free = _DEEPEN_FREE + (() if old.position_frames else ("position_frames",))
    differ = [f.name for f in fields(WaveNetConfig)
              if f.name not in free and getattr(old, f.name) != getattr(new, f.name)]
    if differ or new.n_stacks <= old.n_stacks:
        raise CheckpointError(f"{path}: cannot deepen {old.n_stacks} stack(s) to {new.n_stacks}"
                              + (f" (also differs in {', '.join(differ)})" if differ else ""))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = WaveNet(new).state_dict()
    kept_rows = old.n_layers * 2 * old.gate_channels
    out, missing = {}, []
    for k, v in fresh.items():
        layer = re.fullmatch(r"(dilated|res_skip)\.(\d+)\.(weight|bias)", k)
        if layer and int(layer[2]) >= old.n_layers:          # a new layer
            out[k] = v if layer[1] == "dilated" else torch.zeros_like(v)
        elif k in state and k.split(".")[0] in PER_LAYER_PROJECTIONS:
            if state[k].shape != (kept_rows, *v.shape[1:]):
                missing.append(f"{k} of shape {tuple(state[k].shape)}")
                continue
            out[k] = torch.zeros_like(v)
            out[k][:kept_rows] = state[k]
        elif k in state:
            out[k] = state[k]
        elif k in WaveNet.POSITION_WEIGHTS and not old.position_frames:
            out[k] = v                                       # a table new to this run
        else:
            missing.append(k)
    extra = sorted(set(state) - set(fresh))
    if missing or extra:
        raise CheckpointError(f"{path}: weights do not match its config (missing or mis-shaped: "
                              f"{', '.join(missing[:4]) or '-'}; unexpected: {', '.join(extra[:4]) or '-'})")
    return out


def build_model(ckpt: dict, path="checkpoint") -> WaveNet:
    """Rebuild the model from the config stored in the checkpoint and load its weights."""
    model = WaveNet(config_from(ckpt, path))
    load_weights(model, {k: v.float() if v.is_floating_point() else v
                         for k, v in ckpt["model"].items()}, path)
    return model.eval()


def check_resumable(ckpt: dict, path="checkpoint") -> None:
    """A training checkpoint (last.pt) carries optimizer, step and RNG state; exports do not."""
    missing = [k for k in RESUMABLE if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: cannot resume from it, it has no {', '.join(missing)} "
                              "(an exported weights file? resume from the run's last.pt)")
    rng = ckpt["rng"]
    if not (isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor)):
        raise CheckpointError(f"{path}: cannot resume from it, 'rng' holds no torch RNG state")
    if not isinstance(ckpt["optimizer"], dict) or not isinstance(ckpt["step"], int):
        raise CheckpointError(f"{path}: cannot resume from it, bad 'optimizer' or 'step' entry")


def load_model(path=None, device="cpu") -> tuple[WaveNet, dict]:
    """Load a checkpoint (default: the shipped one) -> (model in eval mode, checkpoint dict)."""
    ckpt = read_checkpoint(path)
    model = build_model(ckpt, path or SHIPPED)
    return model.to(device), ckpt


def ema_weights(ckpt: dict) -> dict | None:
    """The moving average of the weights that a run with --ema-decay keeps ("ema", torch's
    AveragedModel state dict) as a plain WaveNet state dict; None if the run keeps none."""
    ema = ckpt.get("ema")
    if not ema:
        return None
    return {k[len("module."):]: v for k, v in ema.items() if k.startswith("module.")}


def export_weights(src, dst, dtype: torch.dtype = torch.float16, metrics: dict | None = None,
                   weights: str = "ema"):
    """Write a shippable checkpoint: config + weights (fp16/fp32) only, no optimizer state.
    weights="ema" takes the moving average where the run kept one, "raw" the trained weights."""
    ckpt = read_checkpoint(src)
    state = (ema_weights(ckpt) if weights == "ema" else None) or ckpt["model"]
    build_model({**ckpt, "model": state}, src)   # refuse to export weights that do not fit
    model = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    out = {"format": FORMAT, "version": VERSION, "config": ckpt["config"], "model": model,
           "weights": "ema" if state is not ckpt["model"] else "raw",
           "step": ckpt.get("step", 0), "dtype": str(dtype).replace("torch.", ""),
           "train_args": ckpt.get("train_args", {}), "metrics": metrics or ckpt.get("metrics", {}),
           "wall_seconds": ckpt.get("wall_seconds", 0.0)}
    save_atomic(out, dst)
    return out



def total_training_steps(path=None) -> int | None:
    """Training steps over all rounds of a checkpoint, from its model card; None if unknown.

    A checkpoint warm-started from earlier rounds (`train --init-from`) restarts its step
    counter, so its own `step` counts the last round only. `export` writes the total into the
    model card beside the file: README.md naming the file on its first line, with a line
    "- in all: N steps".
    """
    path = Path(path) if path else SHIPPED
    try:
        card = (path.parent / "README.md").read_text(encoding="utf-8")
    except OSError:
        return None
    total = re.search(r"^- in all: (\d+) steps\b", card, re.M)
    if total is None or f"`{path.name}`" not in card.split("\n", 1)[0]:
        return None
    return int(total.group(1))
