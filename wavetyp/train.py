"""`python -m wavetyp.train`: train a WaveNet (CPU, CUDA, or several GPUs via torchrun)."""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from wavetyp.core.checkpoint import config_from, deepen_state, read_checkpoint
from wavetyp.core.checks import HelpFormatter, check_count, check_output_dir, check_positive, run_cli
from wavetyp.core.errors import UsageError
from wavetyp.core.model import WaveNetConfig
from wavetyp.core.runtime import distributed_env, keep_freed_memory, pick_device
from wavetyp.data.corpus import Corpus
from wavetyp.data.load import load_corpus
from wavetyp.training.loop import TrainingDiverged, TrainOptions, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.train",
        description="Train a wavetyp WaveNet. Multi-GPU: torchrun --nproc_per_node N -m wavetyp.train ...",
        formatter_class=HelpFormatter)
    d = TrainOptions()
    p.add_argument("--out", default=None, help="run folder; none given: checkpoints/run-<time>")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/last.pt exactly (its schedule, data and seed)")
    p.add_argument("--init-from", default=None, metavar="CKPT",
                   help="new run starting from this checkpoint's weights and config "
                        "(fresh optimizer, schedule and log): fine-tuning or a second round")
    p.add_argument("--position-frames", type=int, default=None, metavar="N",
                   help="> 0: a learned position-in-utterance table of N rows, one per mel "
                        "hop (16 ms for the shipped model), added to every layer's gate input "
                        "(later positions read its last row); with --init-from it is added to "
                        "the checkpoint's model at zero, so training starts from the same "
                        "function; none given: no table, or with --init-from the checkpoint's")
    p.add_argument("--add-stacks", type=int, default=None, metavar="N",
                   help="with --init-from: append N stacks of dilated layers (dilations 1, 2, ... "
                        "again: a longer receptive field) after the checkpoint's, their outputs "
                        "at zero, so training starts from the same function; none given: the checkpoint's stacks")
    p.add_argument("--dataset", default=d.dataset,
                   help="fsdd, or a torchaudio corpus (see `python -m wavetyp.data --help`)")
    p.add_argument("--data-dir", default=None, help="corpus folder (FSDD: see `wavetyp.data --help`)")
    p.add_argument("--max-steps", type=int, default=None,
                   help=f"length of the run and its LR schedule; none given: {d.max_steps}, "
                        "or with --resume the run's own")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this many minutes")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="training crops per step")
    p.add_argument("--crop", type=int, default=d.crop, help="samples per training crop")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW; warmup, then cosine decay)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="linear warmup steps")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the weights and of every batch")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay,
                   help="> 0: also keep a moving average of the weights with this decay per step "
                        "(e.g. 0.999); validation, best.pt, the final evaluation and export use it")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="0 disables validation")
    p.add_argument("--eval-files", type=int, default=d.eval_files,
                   help="test files in the fixed validation subset")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="0: only at the end")
    p.add_argument("--log-every", type=int, default=d.log_every, help="train.jsonl row every N steps")
    p.add_argument("--no-final-eval", action="store_true", help="skip the full test-split evaluation")
    p.add_argument("--device", default=d.device, help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads; none given: torch's choice")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to train.jsonl)")
    m = WaveNetConfig()
    g = p.add_argument_group("model (ignored with --resume or --init-from: the checkpoint's config is used)")
    g.add_argument("--layers", type=int, default=m.layers_per_stack, help="layers per stack")
    g.add_argument("--stacks", type=int, default=m.n_stacks, help="stacks of dilated layers")
    g.add_argument("--kernel-size", type=int, default=m.kernel_size, help="taps per dilated layer")
    g.add_argument("--residual", type=int, default=m.residual_channels, help="residual channels")
    g.add_argument("--gate", type=int, default=m.gate_channels, help="channels of each gate half")
    g.add_argument("--skip", type=int, default=m.skip_channels, help="skip channels")
    g.add_argument("--head", type=int, default=m.head_channels, help="hidden channels of the output head")
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
    check_count("--add-stacks", a.add_stacks, 1)
    for name in ("warmup", "eval_every", "eval_files", "ckpt_every", "n_mels", "position_frames"):
        check_count("--" + name.replace("_", "-"), getattr(a, name), 0)
    check_count("--kernel-size", a.kernel_size, 2)
    check_positive("--lr", a.lr)
    if not 0.0 <= a.ema_decay < 1.0:
        raise UsageError(f"--ema-decay must be in [0, 1), got {a.ema_decay}")
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
    if a.resume and a.position_frames is not None:
        raise UsageError("--position-frames cannot change a run being resumed; start a new round "
                         "with --init-from instead")
    if a.add_stacks is not None and a.resume:
        raise UsageError("--add-stacks cannot change a run being resumed; start a new round "
                         "with --init-from CKPT --add-stacks N instead")
    if a.add_stacks is not None and not a.init_from:
        raise UsageError("--add-stacks needs --init-from CKPT (the model it deepens); for a new "
                         "model give --stacks")
    if a.resume and a.init_from:
        raise UsageError("--resume and --init-from exclude each other (resume continues a run; "
                         "--init-from starts a new one)")


def dropout_overrides(a) -> dict:
    """The --p-drop-* values given on the command line, as WaveNetConfig fields."""
    return {f"p_drop_{k}": getattr(a, f"p_drop_{k}") for k in ("digit", "speaker", "mel")
            if hasattr(a, f"p_drop_{k}")}


def warm_start_config(a, ckpt: dict) -> WaveNetConfig:
    """--init-from: the checkpoint's config with the training-time dropout overrides, --add-stacks
    more stacks (see deepen_state), and a position table added (zero-initialised, see WaveNet)
    when --position-frames asks for one."""
    cfg = replace(config_from(ckpt, a.init_from), **dropout_overrides(a))   # same weights fit
    if a.add_stacks:
        cfg = replace(cfg, n_stacks=cfg.n_stacks + a.add_stacks)
    if a.position_frames is None or a.position_frames == cfg.position_frames:
        return cfg
    if cfg.position_frames:
        raise UsageError(f"--init-from {a.init_from} has a position table of {cfg.position_frames} "
                         f"frames; --position-frames {a.position_frames} cannot change it")
    return replace(cfg, position_frames=a.position_frames)


def new_config(a, corpus: Corpus) -> WaveNetConfig:
    """The model config from the command line, sized to the corpus (speakers, sample rate)."""
    try:
        return WaveNetConfig(layers_per_stack=a.layers, n_stacks=a.stacks, kernel_size=a.kernel_size,
                             residual_channels=a.residual, gate_channels=a.gate, skip_channels=a.skip,
                             head_channels=a.head, n_mels=a.n_mels,
                             position_frames=a.position_frames or 0,
                             n_digits=0 if a.no_digit or a.dataset != "fsdd" else 10,
                             speakers=[] if a.no_speaker else list(corpus.speakers),
                             sample_rate=corpus.sample_rate, **dropout_overrides(a))
    except ValueError as e:
        raise UsageError(f"bad model settings: {e}") from None


def main(argv=None) -> int:
    p = build_parser()

    def body(a):
        check_args(a)
        main_proc = distributed_env()[1] == 0
        out = a.out or f"checkpoints/run-{time.strftime('%Y%m%d-%H%M%S')}"
        if not a.resume:
            check_output_dir(out)                 # fail fast, before reading any data
        opts = TrainOptions(out=out, max_steps=a.max_steps, max_minutes=a.max_minutes,
                            batch_size=a.batch_size, crop=a.crop, lr=a.lr, warmup=a.warmup,
                            seed=a.seed, eval_every=a.eval_every, eval_files=a.eval_files,
                            ckpt_every=a.ckpt_every, log_every=a.log_every, device=a.device,
                            compile=a.compile, threads=a.threads, dataset=a.dataset,
                            data_dir=a.data_dir, progress=not a.no_progress,
                            final_eval=not a.no_final_eval, ema_decay=a.ema_decay)
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
                cfg, init_state = warm_start_config(a, ckpt), ckpt["model"]
                if a.add_stacks:                  # old function, more layers (all keys mapped)
                    init_state = deepen_state(init_state, config_from(ckpt, a.init_from), cfg,
                                              a.seed, a.init_from)
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
