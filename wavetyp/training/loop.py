"""Train a WaveNet on a speech corpus: CPU, CUDA (bf16 autocast) or several processes via torchrun.

Every batch is a pure function of (seed, step, rank), so `--resume` from `last.pt`
continues exactly: the losses after resuming equal those of an uninterrupted run.

Faults the loop survives:
  * a crash or `kill -9` at any moment: checkpoints are written atomically, so `last.pt` is
    always a complete earlier state, and `--resume` continues from it;
  * SIGINT / SIGTERM: the current step finishes, `last.pt` is saved, the process exits 0;
  * a NaN/Inf loss or gradient: training stops before the bad update with a message naming
    the step; no non-finite weights are ever written, the last good checkpoint stays.
Under torchrun every rank computes the same updates (DDP); only rank 0 writes files.
"""
from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from wavetyp.core.checkpoint import (
    FORMAT,
    VERSION,
    check_resumable,
    config_from,
    load_weights,
    read_checkpoint,
    save_atomic,
)
from wavetyp.core.conditioning import build_conditioning, drop_conditioning
from wavetyp.core.errors import CheckpointError, DataError, UsageError, error_line
from wavetyp.core.model import WaveNet, WaveNetConfig
from wavetyp.core.runtime import distributed_env, pick_device
from wavetyp.core.scoring import evaluate_nll
from wavetyp.core.typicality import LN2
from wavetyp.data.batches import random_batch
from wavetyp.data.corpus import Corpus
from wavetyp.data.load import load_corpus
from wavetyp.training.log import plot_log, trim_log


class TrainingDiverged(RuntimeError):
    """The loss or gradient became NaN/Inf; the last good checkpoint is kept."""


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


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The RNG for one step's batch and conditioning dropout: a function of (seed, step, rank)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 65_537 + rank)


def masked_loss(logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) over real samples only: padding never counts."""
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), codes.reshape(-1),
                         reduction="none")
    return (ce * mask.reshape(-1)).sum() / mask.sum().clamp_min(1)


def eval_subset(utts, n: int):
    """A fixed, evenly spread subset so validation is fast and comparable across steps."""
    if n <= 0 or n >= len(utts):
        return list(utts)
    return [utts[round(i * (len(utts) - 1) / (n - 1))] for i in range(n)] if n > 1 else [utts[0]]


# ------------------------------------------------------------ faults

class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the step boundary and exits."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def any_rank(flag: bool, world: int, device) -> bool:
    """True on every rank when `flag` is true on any (so all ranks stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t)
    return t.item() > 0


def all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


# ------------------------------------------------------------ resume

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


def load_resume_state(last_path: Path, opts: TrainOptions):
    """Read last.pt for --resume -> (checkpoint, config, options); CheckpointError if unusable."""
    if not last_path.is_file():
        raise CheckpointError(f"--resume: {last_path} not found (nothing to resume in "
                              f"{last_path.parent})")
    ckpt = read_checkpoint(last_path)
    check_resumable(ckpt, last_path)
    return ckpt, config_from(ckpt, last_path), resume_options(opts, dict(ckpt.get("train_args") or {}))


def restore(model, opt, ckpt: dict, path: Path) -> None:
    """Weights, optimizer moments and the torch RNG from a training checkpoint."""
    load_weights(model, ckpt["model"], path)
    try:
        opt.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: optimizer state does not fit the model "
                              f"({error_line(e)})") from None
    torch.set_rng_state(ckpt["rng"]["torch"])


# ------------------------------------------------------------ training

def setup_distributed(device: torch.device) -> tuple[int, int]:
    """(world, rank) from torchrun's environment; joins the process group when world > 1."""
    world, rank, _ = distributed_env()
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, rank


def make_batch(cfg: WaveNetConfig, model: WaveNet, utts, opts: TrainOptions, step: int,
               rank: int, device):
    """One step's (codes, mask, conditioning): a pure function of (seed, step, rank)."""
    g = step_generator(opts.seed, step, rank)
    batch = random_batch(utts, opts.batch_size, opts.crop, g)
    digit, speaker, mel_present = drop_conditioning(cfg, batch, g)
    batch = batch.to(device)
    cond = build_conditioning(model, len(digit), digit, speaker,
                              batch.codes if cfg.n_mels else None, mel_present)
    return batch.codes, batch.mask, cond


def train(cfg: WaveNetConfig, opts: TrainOptions, corpus: Corpus | None = None,
          resume: bool = False, init_state: dict | None = None) -> dict:
    """Train (or resume) and return a summary dict (with the trained `model`).

    `init_state` (a state dict for `cfg`) warm-starts a new run: its weights, but a fresh
    optimizer, LR schedule, step count and log (fine-tuning, or a second round of training).

    Rank 0 logs to <out>/train.jsonl and writes <out>/last.pt and best.pt. A fresh run
    refuses a folder that already holds last.pt (resume it instead); it starts a new log.
    """
    device = pick_device(opts.device)
    out = Path(opts.out)
    log_path, last_path, best_path = out / "train.jsonl", out / "last.pt", out / "best.pt"
    ckpt = None
    if resume:
        asked = opts.max_steps
        ckpt, cfg, opts = load_resume_state(last_path, opts)
        run_steps = (ckpt.get("train_args") or {}).get("max_steps")
        if asked is not None and run_steps not in (None, asked) and distributed_env()[1] == 0:
            print(f"note: max_steps {asked} differs from the run's {run_steps}: the LR schedule "
                  "is stretched, so the continuation is not the run it would have been",
                  file=sys.stderr)
    elif last_path.exists():
        raise UsageError(f"{last_path} exists: resume it (--resume) or choose another --out")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    world, rank = setup_distributed(device)
    main_proc = rank == 0
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
        if ckpt is None:
            log_path.unlink(missing_ok=True)      # a log without last.pt is a dead run's

    torch.manual_seed(opts.seed)
    if corpus is None:
        corpus = load_corpus(opts.dataset, opts.data_dir, cfg.sample_rate, progress=main_proc and opts.progress)
    if len(corpus.train) < world:                # same test on every rank: all raise, none hang
        raise DataError(f"{len(corpus.train)} training file(s) cannot feed {world} processes")
    train_utts = corpus.train[rank::world]       # a disjoint shard per rank
    val_utts = eval_subset(corpus.test, opts.eval_files)
    levels = ["none", "label"] + (["mel"] if cfg.n_mels else [])

    model = WaveNet(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay,
                            betas=(0.9, 0.99))
    step, best, wall = 0, float("inf"), 0.0
    if ckpt is not None:
        restore(model, opt, ckpt, last_path)
        step, best = int(ckpt["step"]), float(ckpt.get("best_val_bits", float("inf")))
        wall = float(ckpt.get("wall_seconds", 0.0))
        if main_proc:                             # drop log rows written after the checkpoint
            trim_log(log_path, step)
    elif init_state is not None:
        load_weights(model, init_state, "--init-from")
    saved_step = step if ckpt is not None else None   # the step last.pt holds
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if opts.compile:
        net = torch.compile(net)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    t_start = time.time()

    def save(path, metrics=None):
        nonlocal saved_step
        if not all_finite(model.parameters()):   # never write NaN weights
            raise TrainingDiverged(f"weights became non-finite by step {step}; not saved, "
                                   f"last good checkpoint kept ({last_path})")
        state = {"format": FORMAT, "version": VERSION, "config": cfg.to_dict(),
                 "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": {"name": "warmup-cosine", "warmup": opts.warmup,
                               "max_steps": opts.max_steps, "lr": opts.lr_at(step)},
                 "step": step, "rng": {"torch": torch.get_rng_state()},
                 "best_val_bits": best, "train_args": asdict(opts),
                 "wall_seconds": wall + (time.time() - t_start), "metrics": metrics or {}}
        save_atomic(state, path)
        if path == last_path:
            saved_step = step

    def diverged(what: str):
        kept = (f"last good checkpoint {last_path} (step {saved_step})" if saved_step is not None
                else "no checkpoint was written yet")
        return TrainingDiverged(f"{what} at step {step}: stopped before updating, "
                                f"no weights saved; {kept}")

    def log(row):
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def validate():
        nonlocal best
        bits = {lv: evaluate_nll(model, val_utts, lv, 16, device)["bits_per_sample"] for lv in levels}
        model.train()
        score = sum(bits.values()) / len(bits)
        log({"kind": "val", "step": step, "bits": bits})
        if score < best:
            best = score
            save(best_path)
        plot_log(log_path, out / "loss.png")
        return bits

    deadline = t_start + opts.max_minutes * 60 if opts.max_minutes else None
    bar = tqdm(total=opts.max_steps, initial=step, disable=not (main_proc and opts.progress),
               desc="train", unit="step", dynamic_ncols=True)
    model.train()
    acc_loss, acc_n, t_log, stopped = 0.0, 0, time.time(), None
    metrics = {}
    with _StopFlag() as stop:
        while step < opts.max_steps:
            codes, mask, cond = make_batch(cfg, model, train_utts, opts, step, rank, device)
            for group in opt.param_groups:
                group["lr"] = opts.lr_at(step)
            with amp or torch.autocast("cpu", enabled=False):
                logits = net(codes, cond)
            loss = masked_loss(logits, codes, mask)
            bad = not bool(torch.isfinite(loss))
            if any_rank(bad, world, device):      # all ranks raise before backward: no hang
                raise diverged(f"loss is {loss.item()}" if bad else "loss on another rank is not finite")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            if not torch.isfinite(gnorm):          # identical on every rank after all-reduce
                raise diverged(f"gradient norm is {gnorm.item()}")
            opt.step()
            step += 1
            acc_loss += loss.item() / LN2
            acc_n += 1
            bar.update(1)
            if main_proc and (step % opts.log_every == 0 or step == opts.max_steps):
                dt = time.time() - t_log
                sps = acc_n * opts.batch_size * opts.crop * world / max(dt, 1e-9)
                row = {"kind": "train", "step": step, "loss_bits": acc_loss / acc_n,
                       "lr": opts.lr_at(step - 1), "samples_per_s": sps,
                       "elapsed_s": wall + time.time() - t_start}
                log(row)
                bar.set_postfix(loss=f"{row['loss_bits']:.3f} b/s", rate=f"{sps/1e3:.1f}k smp/s")
                acc_loss, acc_n, t_log = 0.0, 0, time.time()
            if main_proc and opts.eval_every and val_utts and step % opts.eval_every == 0:
                bits = validate()
                bar.write(f"step {step}: val " + ", ".join(f"{k} {v:.3f}" for k, v in bits.items())
                          + " bits/sample")
            if main_proc and opts.ckpt_every and step % opts.ckpt_every == 0:
                save(last_path)
            if stop.signum is not None:
                stopped = signal.Signals(stop.signum).name
            elif opts.stop_at and step >= opts.stop_at:
                stopped = f"stop_at {opts.stop_at}"
            elif deadline and time.time() > deadline:
                stopped = "time limit"
            if any_rank(stopped is not None, world, device):   # every rank stops at the same step
                stopped = stopped or "peer stopped"
                break
        bar.close()
        if main_proc:
            if saved_step != step:               # first make the end state safe ...
                save(last_path)
            if not stopped and opts.final_eval and corpus.test:   # ... then the long final eval
                for lv in levels:
                    if stop.signum is not None:   # a signal now only skips the evaluation
                        stopped, metrics = signal.Signals(stop.signum).name, {}
                        break
                    r = evaluate_nll(model, corpus.test, lv, 16, device)
                    metrics[lv] = {"bits_per_sample": r["bits_per_sample"], "per_digit": r["per_digit"]}
                if not stopped:
                    log({"kind": "final", "step": step,
                         "bits": {k: v["bits_per_sample"] for k, v in metrics.items()}})
                    save(last_path, metrics)
            if not best_path.exists():
                save(best_path, metrics)
            plot_log(log_path, out / "loss.png")
    if world > 1:
        torch.distributed.barrier()
    return {"step": step, "stopped": stopped, "metrics": metrics, "out": str(out),
            "best_val_bits": best, "model": model}

