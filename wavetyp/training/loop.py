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

`train()` builds a `Trainer` (setup: resume / warm start / fresh, processes, data, model) and
runs it: `train_step`, then on rank 0 `after_step` (log_row, validate, save), `stop_reason`,
and at the end `finish`. The options and the checkpoint contents live in training/state.py,
signals and the processes' joint decisions in training/ranks.py.
"""
from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from wavetyp.core.checkpoint import load_weights, save_atomic
from wavetyp.core.conditioning import build_conditioning, drop_conditioning
from wavetyp.core.errors import DataError, UsageError
from wavetyp.core.model import WaveNet, WaveNetConfig
from wavetyp.core.runtime import distributed_env, pick_device
from wavetyp.core.scoring import evaluate_nll
from wavetyp.core.typicality import LN2
from wavetyp.data.batches import random_batch
from wavetyp.data.corpus import Corpus
from wavetyp.data.load import load_corpus
from wavetyp.training.log import append_log, plot_log, trim_log
from wavetyp.training.ranks import STOP_EVERY, StopFlag, all_finite, any_rank, setup_distributed
from wavetyp.training.state import TrainOptions, checkpoint_state, load_resume_state, make_ema, restore


class TrainingDiverged(RuntimeError):
    """The loss or gradient became NaN/Inf; the last good checkpoint is kept."""


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


def make_batch(cfg: WaveNetConfig, model: WaveNet, utts, opts: TrainOptions, step: int,
               rank: int, device):
    """One step's (codes, mask, conditioning): a pure function of (seed, step, rank)."""
    g = step_generator(opts.seed, step, rank)
    batch = random_batch(utts, opts.batch_size, opts.crop, g)
    digit, speaker, mel_present = drop_conditioning(cfg, batch, g)
    batch = batch.to(device, pin=device.type == "cuda")    # pinned: the copy overlaps compute
    cond = build_conditioning(model, len(digit), digit, speaker,     # position: never dropped
                              batch.codes if cfg.n_mels else None, mel_present, batch.start)
    return batch.codes, batch.mask, cond


# ------------------------------------------------------------ training

class Trainer:
    """One run on one rank: the model, optimizer and data shard; the counters a checkpoint
    holds (step, best validation, wall time); and the files that rank 0 alone writes
    (train.jsonl, last.pt, best.pt, loss.png). `run()` trains and returns the summary."""

    def __init__(self, cfg: WaveNetConfig, opts: TrainOptions, corpus: Corpus | None = None,
                 resume: bool = False, init_state: dict | None = None):
        self.cfg, self.opts = cfg, opts
        self.device = pick_device(opts.device)
        self.out = Path(opts.out)
        self.log_path, self.last_path = self.out / "train.jsonl", self.out / "last.pt"
        self.best_path = self.out / "best.pt"
        ckpt = None
        if resume:
            ckpt = self.read_resume_state()
        elif self.last_path.exists():
            raise UsageError(f"{self.last_path} exists: resume it (--resume) or choose another --out")
        if self.opts.threads:
            torch.set_num_threads(self.opts.threads)
        self.world, self.rank = setup_distributed(self.device)
        self.main_proc = self.rank == 0
        if self.main_proc:
            self.out.mkdir(parents=True, exist_ok=True)
            if ckpt is None:
                self.log_path.unlink(missing_ok=True)      # a log without last.pt is a dead run's
        torch.manual_seed(self.opts.seed)
        self.load_data(corpus)
        self.build_model(ckpt, init_state)
        self.t_start = time.time()
        self.stopped, self.metrics = None, {}

    # -------------------------------------------------------- setup

    def read_resume_state(self) -> dict:
        """--resume: last.pt, and the run's config and options in place of the caller's."""
        asked = self.opts.max_steps
        ckpt, self.cfg, self.opts = load_resume_state(self.last_path, self.opts)
        run_steps = (ckpt.get("train_args") or {}).get("max_steps")
        if asked is not None and run_steps not in (None, asked) and distributed_env()[1] == 0:
            print(f"note: max_steps {asked} differs from the run's {run_steps}: the LR schedule "
                  "is stretched, so the continuation is not the run it would have been",
                  file=sys.stderr)
        return ckpt

    def load_data(self, corpus: Corpus | None) -> None:
        """The corpus, this rank's disjoint training shard, the validation subset and levels."""
        cfg, opts = self.cfg, self.opts
        if corpus is None:
            corpus = load_corpus(opts.dataset, opts.data_dir, cfg.sample_rate,
                                 progress=self.main_proc and opts.progress)
        if len(corpus.train) < self.world:       # same test on every rank: all raise, none hang
            raise DataError(f"{len(corpus.train)} training file(s) cannot feed {self.world} processes")
        self.corpus = corpus
        self.train_utts = corpus.train[self.rank::self.world]
        self.val_utts = eval_subset(corpus.test, opts.eval_files)
        self.levels = ["none", "label"] + (["mel"] if cfg.n_mels else [])

    def build_model(self, ckpt: dict | None, init_state: dict | None) -> None:
        """Model and AdamW, restored (resume), warm-started (init_state) or fresh; DDP, compile."""
        opts, device = self.opts, self.device
        self.model = model = WaveNet(self.cfg).to(device)
        self.opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay,
                                     betas=(0.9, 0.99))
        self.step, self.best, self.wall = 0, float("inf"), 0.0
        self.ema = make_ema(model, opts.ema_decay) if opts.ema_decay else None
        if ckpt is not None:
            restore(model, self.opt, ckpt, self.last_path, self.ema)
            self.step, self.best = int(ckpt["step"]), float(ckpt.get("best_val_bits", float("inf")))
            self.wall = float(ckpt.get("wall_seconds", 0.0))
            if self.main_proc:                    # drop log rows written after the checkpoint
                trim_log(self.log_path, self.step)
        elif init_state is not None:
            # a position table new to this run (train --position-frames) stays zero-initialised;
            # any other state (a deepened one, train --add-stacks, holds every key) loads strictly
            new_table = not any(k in init_state for k in WaveNet.POSITION_WEIGHTS)
            load_weights(model, init_state, "--init-from",
                         may_lack=WaveNet.POSITION_WEIGHTS if new_table else ())
        self.saved_step = self.step if ckpt is not None else None   # the step last.pt holds
        net = model
        if self.world > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if opts.compile:
            net = torch.compile(net)
        self.net = net
        self.amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None

    # -------------------------------------------------------- files (rank 0)

    def save(self, path: Path, metrics: dict | None = None) -> None:
        """A checkpoint of the current state, atomically; never one with non-finite weights."""
        if not all_finite(self.model.parameters()):
            raise TrainingDiverged(f"weights became non-finite by step {self.step}; not saved, "
                                   f"last good checkpoint kept ({self.last_path})")
        state = checkpoint_state(self.cfg, self.model, self.opt, self.opts, step=self.step,
                                 best=self.best, wall_seconds=self.wall + (time.time() - self.t_start),
                                 metrics=metrics, ema=self.ema)
        save_atomic(state, path)
        if path == self.last_path:
            self.saved_step = self.step

    def log_row(self) -> None:
        """The train.jsonl row for the steps since the last row: mean loss (bits), LR, rate."""
        opts, step = self.opts, self.step
        dt = time.time() - self.t_log
        sps = self.acc_n * opts.batch_size * opts.crop * self.world / max(dt, 1e-9)
        row = {"kind": "train", "step": step, "loss_bits": self.acc_loss / self.acc_n,
               "lr": opts.lr_at(step - 1), "samples_per_s": sps,
               "elapsed_s": self.wall + time.time() - self.t_start}
        append_log(self.log_path, row)
        self.bar.set_postfix(loss=f"{row['loss_bits']:.3f} b/s", rate=f"{sps/1e3:.1f}k smp/s")
        self.acc_loss, self.acc_n, self.t_log = 0.0, 0, time.time()

    @property
    def shipped(self) -> WaveNet:
        """The weights a run ships and scores: the moving average when the run keeps one."""
        return self.ema.module if self.ema is not None else self.model

    def level_bits(self, model: WaveNet, utts) -> dict:
        return {lv: evaluate_nll(model, utts, lv, 16, self.device)["bits_per_sample"]
                for lv in self.levels}

    def validate(self) -> dict:
        """Bits/sample on the validation subset per level (of the EMA weights when kept, the
        raw weights' beside them); best.pt when their mean improves."""
        bits = self.level_bits(self.shipped, self.val_utts)
        row = {"kind": "val", "step": self.step, "bits": bits}
        if self.ema is not None:
            row["raw_bits"] = self.level_bits(self.model, self.val_utts)
        self.model.train()
        score = sum(bits.values()) / len(bits)
        append_log(self.log_path, row)
        if score < self.best:
            self.best = score
            self.save(self.best_path)
        plot_log(self.log_path, self.out / "loss.png")
        return bits

    # -------------------------------------------------------- the loop

    def diverged(self, what: str) -> TrainingDiverged:
        kept = (f"last good checkpoint {self.last_path} (step {self.saved_step})"
                if self.saved_step is not None else "no checkpoint was written yet")
        return TrainingDiverged(f"{what} at step {self.step}: stopped before updating, "
                                f"no weights saved; {kept}")

    def train_step(self) -> None:
        """One update; a non-finite loss or gradient stops every rank before the update."""
        opts, step = self.opts, self.step
        codes, mask, cond = make_batch(self.cfg, self.model, self.train_utts, opts, step,
                                       self.rank, self.device)
        for group in self.opt.param_groups:
            group["lr"] = opts.lr_at(step)
        with self.amp or torch.autocast("cpu", enabled=False):
            logits = self.net(codes, cond)
        loss = masked_loss(logits, codes, mask)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), opts.grad_clip)
        # The step's one host sync: loss and gradient norm together, before the update. Under
        # DDP the gradients are averaged over the ranks, so a non-finite loss on any rank makes
        # the gradient norm non-finite on every rank: all raise here, with no extra collective.
        loss_v, gnorm_v = torch.stack([loss.detach().float(), gnorm.detach().float()]).tolist()
        if not math.isfinite(loss_v):
            raise self.diverged(f"loss is {loss_v}")
        if not math.isfinite(gnorm_v):
            raise self.diverged(f"gradient norm is {gnorm_v}")
        self.opt.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        self.acc_loss += loss_v / LN2
        self.acc_n += 1

    def after_step(self) -> None:
        """Rank 0: the log row, validation and last.pt, each when its interval comes round."""
        opts, step = self.opts, self.step
        if step % opts.log_every == 0 or step == opts.max_steps:
            self.log_row()
        if opts.eval_every and self.val_utts and step % opts.eval_every == 0:
            bits = self.validate()
            self.bar.write(f"step {step}: val " + ", ".join(f"{k} {v:.3f}" for k, v in bits.items())
                           + " bits/sample")
        if opts.ckpt_every and step % opts.ckpt_every == 0:
            self.save(self.last_path)

    def stop_reason(self, stop: StopFlag, deadline: float | None) -> str | None:
        """Why every rank stops after this step (stop_at, a signal, the time limit), or None.
        stop_at is the same on every rank; signals and the clock are per rank, so with several
        ranks they are compared in one collective every STOP_EVERY steps (not every step)."""
        if self.opts.stop_at and self.step >= self.opts.stop_at:
            return f"stop_at {self.opts.stop_at}"
        reason = None
        if stop.signum is not None:
            reason = signal.Signals(stop.signum).name
        elif deadline and time.time() > deadline:
            reason = "time limit"
        if self.world == 1:
            return reason
        if self.step % STOP_EVERY and self.step != self.opts.max_steps:
            return None
        return (reason or "peer stopped") if any_rank(reason is not None, self.world, self.device) else None

    def run(self) -> dict:
        """Train to max_steps or a stop; every rank stops at the same step. The summary."""
        opts = self.opts
        deadline = self.t_start + opts.max_minutes * 60 if opts.max_minutes else None
        self.bar = tqdm(total=opts.max_steps, initial=self.step, desc="train", unit="step",
                        disable=not (self.main_proc and opts.progress), dynamic_ncols=True)
        self.model.train()
        self.acc_loss, self.acc_n, self.t_log = 0.0, 0, time.time()
        with StopFlag() as stop:
            while self.step < opts.max_steps:
                self.train_step()
                self.bar.update(1)
                if self.main_proc:
                    self.after_step()
                self.stopped = self.stop_reason(stop, deadline)
                if self.stopped:
                    break
            self.bar.close()
            if self.main_proc:
                self.finish(stop)
        if self.world > 1:
            torch.distributed.barrier()
        return {"step": self.step, "stopped": self.stopped, "metrics": self.metrics,
                "out": str(self.out), "best_val_bits": self.best, "model": self.shipped}

    # -------------------------------------------------------- the end (rank 0)

    def finish(self, stop: StopFlag) -> None:
        """last.pt first (the end state is safe), then the long final evaluation, best.pt if
        validation never wrote one, and the loss plot."""
        if self.saved_step != self.step:
            self.save(self.last_path)
        if not self.stopped and self.opts.final_eval and self.corpus.test:
            self.final_evaluation(stop)
        if not self.best_path.exists():
            self.save(self.best_path, self.metrics)
        plot_log(self.log_path, self.out / "loss.png")

    def final_evaluation(self, stop: StopFlag) -> None:
        """The full test split per level (the shipped weights; with an EMA also the raw ones),
        logged and saved in last.pt; a signal skips the rest."""
        raw = {}
        scored = [(self.shipped, self.metrics)] + ([(self.model, raw)] if self.ema is not None else [])
        for lv in self.levels:
            for model, into in scored:
                if stop.signum is not None:
                    self.stopped, self.metrics = signal.Signals(stop.signum).name, {}
                    return
                r = evaluate_nll(model, self.corpus.test, lv, 16, self.device)
                into[lv] = {"bits_per_sample": r["bits_per_sample"], "per_digit": r["per_digit"]}
        row = {"kind": "final", "step": self.step,
               "bits": {k: v["bits_per_sample"] for k, v in self.metrics.items()}}
        if raw:
            row["raw_bits"] = {k: v["bits_per_sample"] for k, v in raw.items()}
        append_log(self.log_path, row)
        self.save(self.last_path, self.metrics)


def train(cfg: WaveNetConfig, opts: TrainOptions, corpus: Corpus | None = None,
          resume: bool = False, init_state: dict | None = None) -> dict:
    """Train (or resume) and return a summary dict (with the trained `model`).

    `init_state` (a state dict for `cfg`) warm-starts a new run: its weights, but a fresh
    optimizer, LR schedule, step count and log (fine-tuning, or a second round of training).

    Rank 0 logs to <out>/train.jsonl and writes <out>/last.pt and best.pt. A fresh run
    refuses a folder that already holds last.pt (resume it instead); it starts a new log.
    """
    return Trainer(cfg, opts, corpus, resume, init_state).run()
