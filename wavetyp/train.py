"""Train a WaveNet on a speech corpus: CPU, CUDA (bf16 autocast) or several GPUs via torchrun.

Every batch is a pure function of (seed, step, rank), so `--resume` from `last.pt`
continues exactly: the losses after resuming equal those of an uninterrupted run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import FORMAT, VERSION, CheckpointError, read_checkpoint, save_atomic
from .cli import UsageError, check_positive, run_cli
from .data import Corpus, load_corpus, random_batch
from .evaluate import evaluate_nll
from .model import Conditioning, WaveNet, WaveNetConfig

LN2 = math.log(2.0)


class TrainingDiverged(RuntimeError):
    """The loss or gradient became NaN/Inf; the last good checkpoint is kept."""


@dataclass
class TrainOptions:
    out: str = ""
    max_steps: int = 20000
    max_minutes: float | None = None
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


def plot_log(log_path: Path, png_path: Path) -> None:
    """Loss curve (train, smoothed; validation per conditioning level) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [json.loads(l) for l in log_path.read_text().splitlines() if l.strip()]
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
        pts = [(r["step"], r["bits"][lv]) for r in rows if r.get("kind") == "val"]
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


def train(cfg: WaveNetConfig, opts: TrainOptions, corpus: Corpus | None = None,
          resume: bool = False) -> dict:
    """Train (or resume) and return a summary dict. Rank 0 logs and writes checkpoints."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    device = pick_device(opts.device)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    out = Path(opts.out)
    main_proc = rank == 0
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
    log_path, last_path, best_path = out / "train.jsonl", out / "last.pt", out / "best.pt"

    ckpt = None
    if resume:
        if not last_path.is_file():
            raise CheckpointError(f"--resume: {last_path} not found")
        ckpt = read_checkpoint(last_path)
        cfg = WaveNetConfig.from_dict(ckpt["config"])
        saved = dict(ckpt.get("train_args", {}))
        # the schedule, data and seed come from the run being resumed; limits may change
        for k in ("max_steps", "max_minutes", "progress", "device", "threads", "final_eval", "out"):
            saved.pop(k, None)
        opts = TrainOptions(**{**asdict(opts), **{k: v for k, v in saved.items()
                                                   if k in {f.name for f in fields(TrainOptions)}}})
    torch.manual_seed(opts.seed)
    if corpus is None:
        corpus = load_corpus(opts.dataset, opts.data_dir, cfg.sample_rate, progress=main_proc and opts.progress)
    model = WaveNet(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay,
                            betas=(0.9, 0.99))
    step, best, wall = 0, float("inf"), 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, best = int(ckpt["step"]), float(ckpt.get("best_val_bits", float("inf")))
        wall = float(ckpt.get("wall_seconds", 0.0))
        torch.set_rng_state(ckpt["rng"]["torch"])
        if main_proc and log_path.exists():   # drop log lines written after the checkpoint
            keep = [l for l in log_path.read_text().splitlines()
                    if l.strip() and json.loads(l).get("step", 0) <= step]
            log_path.write_text("".join(k + "\n" for k in keep))
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if opts.compile:
        net = torch.compile(net)
    train_utts = corpus.train[rank::world]       # a disjoint shard per rank
    val_utts = eval_subset(corpus.test, opts.eval_files)
    levels = ["none", "label"] + (["mel"] if cfg.n_mels else [])
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None

    def save(path, metrics=None):
        state = {"format": FORMAT, "version": VERSION, "config": cfg.to_dict(),
                 "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": {"name": "warmup-cosine", "warmup": opts.warmup,
                               "max_steps": opts.max_steps, "lr": opts.lr_at(step)},
                 "step": step, "rng": {"torch": torch.get_rng_state()},
                 "best_val_bits": best, "train_args": asdict(opts),
                 "wall_seconds": wall + (time.time() - t_start), "metrics": metrics or {}}
        save_atomic(state, path)

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

    t_start = time.time()
    deadline = t_start + opts.max_minutes * 60 if opts.max_minutes else None
    bar = tqdm(total=opts.max_steps, initial=step, disable=not (main_proc and opts.progress),
               desc="train", unit="step", dynamic_ncols=True)
    model.train()
    acc_loss, acc_n, t_log, stopped = 0.0, 0, time.time(), None
    with _StopFlag() as stop:
        while step < opts.max_steps:
            g = step_generator(opts.seed, step, rank)
            batch = random_batch(train_utts, opts.batch_size, opts.crop, g)
            digit, speaker, mel_present = drop_conditioning(cfg, batch, g)
            batch = batch.to(device)
            for group in opt.param_groups:
                group["lr"] = opts.lr_at(step)
            with torch.no_grad():
                mel = model.log_mel(batch.codes) if cfg.n_mels else None
            cond = Conditioning(digit.to(device), speaker.to(device), mel, mel_present.to(device))
            with amp or torch.autocast("cpu", enabled=False):
                logits = net(batch.codes, cond)
            loss = masked_loss(logits, batch.codes, batch.mask)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss.item()} at step {step}; stopped before "
                                       f"updating; last good checkpoint kept in {last_path}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            if not torch.isfinite(gnorm):
                raise TrainingDiverged(f"gradient norm is {gnorm.item()} at step {step}; stopped "
                                       f"before updating; last good checkpoint kept in {last_path}")
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
            if main_proc and opts.eval_every and step % opts.eval_every == 0:
                bits = validate()
                bar.write(f"step {step}: val " + ", ".join(f"{k} {v:.3f}" for k, v in bits.items())
                          + " bits/sample")
            if main_proc and opts.ckpt_every and step % opts.ckpt_every == 0:
                save(last_path)
            if stop.signum is not None:
                stopped = signal.Signals(stop.signum).name
            elif deadline and time.time() > deadline:
                stopped = "time limit"
            if world > 1:  # every rank stops at the same step
                flag = torch.tensor([1.0 if stopped else 0.0], device=device)
                torch.distributed.all_reduce(flag)
                stopped = stopped or ("peer stopped" if flag.item() > 0 else None)
            if stopped:
                break
    bar.close()
    metrics = {}
    if main_proc:
        if not stopped and opts.final_eval:
            for lv in levels:
                r = evaluate_nll(model, corpus.test, lv, 16, device)
                metrics[lv] = {"bits_per_sample": r["bits_per_sample"], "per_digit": r["per_digit"]}
            log({"kind": "final", "step": step, "bits": {k: v["bits_per_sample"] for k, v in metrics.items()}})
        save(last_path, metrics)
        if not best_path.exists():
            save(best_path, metrics)
        plot_log(log_path, out / "loss.png")
    if world > 1:
        torch.distributed.barrier()
    return {"step": step, "stopped": stopped, "metrics": metrics, "out": str(out),
            "best_val_bits": best}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.train",
        description="Train a wavetyp WaveNet. Multi-GPU: torchrun --nproc_per_node N -m wavetyp.train ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainOptions()
    p.add_argument("--out", default=None, help="run folder (default checkpoints/run-<time>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt exactly")
    p.add_argument("--dataset", default=d.dataset)
    p.add_argument("--data-dir", default=None, help="corpus folder (FSDD: see `wavetyp.data --help`)")
    p.add_argument("--max-steps", type=int, default=d.max_steps)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this long")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--crop", type=int, default=d.crop, help="samples per training crop")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--eval-files", type=int, default=d.eval_files)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--device", default=d.device, help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    m = WaveNetConfig()
    g = p.add_argument_group("model (ignored with --resume: the checkpoint's config is used)")
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
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def main(argv=None) -> int:
    p = build_parser()

    def body(a):
        for name in ("max_steps", "batch_size", "crop", "lr", "layers", "stacks", "kernel_size",
                     "residual", "gate", "skip", "head"):
            check_positive("--" + name.replace("_", "-"), getattr(a, name))
        check_positive("--max-minutes", a.max_minutes)
        if a.resume and not a.out:
            raise UsageError("--resume needs --out (the run folder holding last.pt)")
        out = a.out or f"checkpoints/run-{time.strftime('%Y%m%d-%H%M%S')}"
        opts = TrainOptions(out=out, max_steps=a.max_steps, max_minutes=a.max_minutes,
                            batch_size=a.batch_size, crop=a.crop, lr=a.lr, warmup=a.warmup,
                            seed=a.seed, eval_every=a.eval_every, eval_files=a.eval_files,
                            ckpt_every=a.ckpt_every, device=a.device, compile=a.compile,
                            threads=a.threads, dataset=a.dataset, data_dir=a.data_dir,
                            progress=not a.no_progress)
        pick_device(opts.device)
        corpus = None
        cfg = None
        if not a.resume:
            if (Path(out) / "last.pt").exists():
                raise UsageError(f"{out}/last.pt exists: pass --resume to continue it, or another --out")
            corpus = load_corpus(a.dataset, a.data_dir, progress=not a.no_progress)
            cfg = WaveNetConfig(layers_per_stack=a.layers, n_stacks=a.stacks, kernel_size=a.kernel_size,
                                residual_channels=a.residual, gate_channels=a.gate, skip_channels=a.skip,
                                head_channels=a.head, n_mels=a.n_mels,
                                n_digits=0 if a.no_digit or a.dataset != "fsdd" else 10,
                                speakers=[] if a.no_speaker else list(corpus.speakers),
                                sample_rate=corpus.sample_rate)
            if int(os.environ.get("RANK", 0)) == 0:
                print(f"model: {cfg.n_params:,} parameters, receptive field {cfg.receptive_field} "
                      f"samples ({cfg.receptive_field / cfg.sample_rate * 1000:.0f} ms); run folder {out}")
        try:
            r = train(cfg, opts, corpus, resume=a.resume)
        except TrainingDiverged as e:
            print(f"error: {e}", file=sys.stderr)
            return 3
        if int(os.environ.get("RANK", 0)) == 0:
            if r["stopped"]:
                print(f"stopped ({r['stopped']}) at step {r['step']}; saved {out}/last.pt "
                      f"(continue with --resume --out {out})")
            for lv, m in r["metrics"].items():
                print(f"test ({lv}): {m['bits_per_sample']:.3f} bits/sample")
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
