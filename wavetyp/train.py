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

import argparse
import ctypes
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import (FORMAT, VERSION, CheckpointError, check_resumable, config_from,
                         load_weights, read_checkpoint, save_atomic)
from .cli import UsageError, check_count, check_output_dir, check_positive, error_line, run_cli
from .data import Corpus, DataError, load_corpus, random_batch
from .evaluate import evaluate_nll
from .model import Conditioning, WaveNet, WaveNetConfig

LN2 = math.log(2.0)


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
    """auto = cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but CUDA is not available")
    return dev


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The RNG for one step's batch and conditioning dropout: a function of (seed, step, rank)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 65_537 + rank)


def drop_conditioning(cfg: WaveNetConfig, batch, g: torch.Generator) -> tuple:
    """Conditioning dropout: each label / the mel frames dropped independently per example."""
    B = batch.codes.shape[0]
    r = torch.rand(3, B, generator=g)
    digit = torch.where(r[0] < cfg.p_drop_digit, -1, batch.digit)
    speaker = torch.where(r[1] < cfg.p_drop_speaker, -1, batch.speaker)
    return digit, speaker, r[2] >= cfg.p_drop_mel


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


# ------------------------------------------------------------ the run log (train.jsonl)

def read_log(log_path: Path) -> list[dict]:
    """The rows of train.jsonl; a torn last line (a kill mid-write) is ignored."""
    if not log_path.exists():
        return []
    rows = []
    for line in log_path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def trim_log(log_path: Path, step: int) -> None:
    """Keep only the rows up to `step` (the checkpoint resumed from), atomically."""
    keep = [r for r in read_log(log_path) if r.get("step", 0) <= step]
    tmp = log_path.with_name(log_path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, log_path)


def plot_log(log_path: Path, png_path: Path) -> None:
    """Loss curve (train, smoothed; validation per conditioning level) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = read_log(log_path)
    tr = [(r["step"], r["loss_bits"]) for r in rows if r.get("kind") == "train"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if tr:
        s, v = zip(*tr)
        ax.plot(s, v, color="0.75", lw=0.8, label="train (per log interval)")
        k = max(1, len(v) // 50)
        sm = [sum(v[max(0, i - k):i + 1]) / len(v[max(0, i - k):i + 1]) for i in range(len(v))]
        ax.plot(s, sm, color="k", lw=1.2, label="train (smoothed)")
    levels = sorted({lv for r in rows if r.get("kind") == "val" for lv in r["bits"]})
    for lv in levels:
        pts = [(r["step"], r["bits"][lv]) for r in rows if r.get("kind") == "val" and lv in r["bits"]]
        ax.plot(*zip(*pts), marker="o", ms=3, label=f"val ({lv})")
    ax.set_xlabel("step")
    ax.set_ylabel("bits / sample")
    ax.set_title("wavetyp training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png_path)


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
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
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
    with torch.no_grad():
        mel = model.log_mel(batch.codes) if cfg.n_mels else None
    cond = Conditioning(digit.to(device), speaker.to(device), mel, mel_present.to(device))
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
        if asked is not None and run_steps not in (None, asked) and int(os.environ.get("RANK", 0)) == 0:
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


# ------------------------------------------------------------ CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.train",
        description="Train a wavetyp WaveNet. Multi-GPU: torchrun --nproc_per_node N -m wavetyp.train ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainOptions()
    p.add_argument("--out", default=None, help="run folder (default checkpoints/run-<time>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/last.pt exactly (its schedule, data and seed)")
    p.add_argument("--init-from", default=None, metavar="CKPT",
                   help="new run starting from this checkpoint's weights and config "
                        "(fresh optimizer, schedule and log): fine-tuning or a second round")
    p.add_argument("--dataset", default=d.dataset)
    p.add_argument("--data-dir", default=None, help="corpus folder (FSDD: see `wavetyp.data --help`)")
    p.add_argument("--max-steps", type=int, default=None,
                   help=f"length of the run and its LR schedule (default {d.max_steps}; "
                        "with --resume: the run's own)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this long")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--crop", type=int, default=d.crop, help="samples per training crop")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="0 disables validation")
    p.add_argument("--eval-files", type=int, default=d.eval_files)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="0: only at the end")
    p.add_argument("--log-every", type=int, default=d.log_every, help="train.jsonl row every N steps")
    p.add_argument("--no-final-eval", action="store_true", help="skip the full test-split evaluation")
    p.add_argument("--device", default=d.device, help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    m = WaveNetConfig()
    g = p.add_argument_group("model (ignored with --resume or --init-from: the checkpoint's config is used)")
    g.add_argument("--layers", type=int, default=m.layers_per_stack, help="layers per stack")
    g.add_argument("--stacks", type=int, default=m.n_stacks)
    g.add_argument("--kernel-size", type=int, default=m.kernel_size)
    g.add_argument("--residual", type=int, default=m.residual_channels)
    g.add_argument("--gate", type=int, default=m.gate_channels)
    g.add_argument("--skip", type=int, default=m.skip_channels)
    g.add_argument("--head", type=int, default=m.head_channels)
    g.add_argument("--n-mels", type=int, default=m.n_mels, help="0 disables mel conditioning")
    g.add_argument("--no-digit", action="store_true", help="no digit conditioning")
    g.add_argument("--no-speaker", action="store_true", help="no speaker conditioning")
    c = p.add_argument_group(
        "conditioning dropout (training only, so these also apply with --init-from; default: "
        f"the checkpoint's with --init-from, else digit {m.p_drop_digit}, speaker "
        f"{m.p_drop_speaker}, mel {m.p_drop_mel})")
    for kind in ("digit", "speaker", "mel"):
        c.add_argument(f"--p-drop-{kind}", type=float, default=argparse.SUPPRESS, metavar="P",
                       help=f"probability of training an example without its {kind} conditioning")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def check_args(a) -> None:
    """Every numeric option in range, before any data is read (UsageError otherwise)."""
    for name in ("batch_size", "crop", "log_every", "layers", "stacks", "residual", "gate",
                 "skip", "head", "threads", "max_steps"):
        check_count("--" + name.replace("_", "-"), getattr(a, name), 1)
    for name in ("warmup", "eval_every", "eval_files", "ckpt_every", "n_mels"):
        check_count("--" + name.replace("_", "-"), getattr(a, name), 0)
    check_count("--kernel-size", a.kernel_size, 2)
    check_positive("--lr", a.lr)
    check_positive("--max-minutes", a.max_minutes)
    drops = dropout_overrides(a)
    for field_name, p in drops.items():
        if not 0.0 <= p <= 1.0:                           # also catches nan
            raise UsageError(f"--{field_name.replace('_', '-')} must be in [0, 1], got {p}")
    if a.resume and not a.out:
        raise UsageError("--resume needs --out (the run folder holding last.pt)")
    if a.resume and drops:
        raise UsageError("--p-drop-* cannot change a run being resumed (it continues exactly as "
                         "it was); start a new round with --init-from instead")
    if a.resume and a.init_from:
        raise UsageError("--resume and --init-from exclude each other (resume continues a run; "
                         "--init-from starts a new one)")


def dropout_overrides(a) -> dict:
    """The --p-drop-* values given on the command line, as WaveNetConfig fields."""
    return {f"p_drop_{k}": getattr(a, f"p_drop_{k}") for k in ("digit", "speaker", "mel")
            if hasattr(a, f"p_drop_{k}")}


def new_config(a, corpus: Corpus) -> WaveNetConfig:
    """The model config from the command line, sized to the corpus (speakers, sample rate)."""
    try:
        return WaveNetConfig(layers_per_stack=a.layers, n_stacks=a.stacks, kernel_size=a.kernel_size,
                             residual_channels=a.residual, gate_channels=a.gate, skip_channels=a.skip,
                             head_channels=a.head, n_mels=a.n_mels,
                             n_digits=0 if a.no_digit or a.dataset != "fsdd" else 10,
                             speakers=[] if a.no_speaker else list(corpus.speakers),
                             sample_rate=corpus.sample_rate, **dropout_overrides(a))
    except ValueError as e:
        raise UsageError(f"bad model settings: {e}") from None


def main(argv=None) -> int:
    p = build_parser()

    def body(a):
        check_args(a)
        main_proc = int(os.environ.get("RANK", 0)) == 0
        out = a.out or f"checkpoints/run-{time.strftime('%Y%m%d-%H%M%S')}"
        if not a.resume:
            check_output_dir(out)                 # fail fast, before reading any data
        opts = TrainOptions(out=out, max_steps=a.max_steps, max_minutes=a.max_minutes,
                            batch_size=a.batch_size, crop=a.crop, lr=a.lr, warmup=a.warmup,
                            seed=a.seed, eval_every=a.eval_every, eval_files=a.eval_files,
                            ckpt_every=a.ckpt_every, log_every=a.log_every, device=a.device,
                            compile=a.compile, threads=a.threads, dataset=a.dataset,
                            data_dir=a.data_dir, progress=not a.no_progress,
                            final_eval=not a.no_final_eval)
        if pick_device(opts.device).type == "cpu":
            keep_freed_memory()                   # no page faults on every step's activations
        corpus = cfg = init_state = None
        if a.resume:
            if main_proc:
                print(f"resuming {out}/last.pt", flush=True)
        else:
            if (Path(out) / "last.pt").exists():
                raise UsageError(f"{out}/last.pt exists: pass --resume to continue it, or another --out")
            opts = replace(opts, max_steps=a.max_steps or TrainOptions.max_steps)
            if a.init_from:                       # the checkpoint's model, not the flags'
                ckpt = read_checkpoint(a.init_from)
                cfg, init_state = config_from(ckpt, a.init_from), ckpt["model"]
                cfg = replace(cfg, **dropout_overrides(a))   # training-time only: same weights fit
                corpus = load_corpus(a.dataset, a.data_dir, cfg.sample_rate, progress=not a.no_progress)
                if cfg.speakers and list(cfg.speakers) != list(corpus.speakers):
                    # speaker ids are indices into the corpus' sorted speaker list
                    raise UsageError(f"--init-from {a.init_from}: its speakers {cfg.speakers} differ "
                                     f"from this corpus' {list(corpus.speakers)}")
            else:
                corpus = load_corpus(a.dataset, a.data_dir, progress=not a.no_progress)
                cfg = new_config(a, corpus)
            if main_proc:
                print(f"model: {cfg.n_params:,} parameters, receptive field {cfg.receptive_field} "
                      f"samples ({cfg.receptive_field / cfg.sample_rate * 1000:.0f} ms); run folder {out}",
                      flush=True)
        try:
            r = train(cfg, opts, corpus, resume=a.resume, init_state=init_state)
        except TrainingDiverged as e:
            if a.debug:
                raise
            print(f"error: {e}", file=sys.stderr)
            return 3
        if main_proc:
            if r["stopped"]:
                print(f"stopped ({r['stopped']}) at step {r['step']}; saved {out}/last.pt; "
                      f"continue with: python -m wavetyp.train --resume --out {out}")
            else:
                print(f"finished at step {r['step']}; saved {out}/last.pt")
            for lv, m in r["metrics"].items():
                print(f"test ({lv}): {m['bits_per_sample']:.3f} bits/sample")
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
