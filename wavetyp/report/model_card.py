"""The model card (checkpoints/README.md) of an exported checkpoint: config, data, every
training round, test-split NLL per conditioning level and digit."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from wavetyp.core.checkpoint import load_model
from wavetyp.core.conditioning import DIGIT_NAMES, LEVEL_TEXT


def round_line(i: int, ckpt: dict, run_dir: Path) -> tuple[str, int, float]:
    """One training round of the card: (markdown line, steps, wall seconds)."""
    a, c = ckpt.get("train_args", {}), ckpt.get("config", {})
    steps, wall = int(ckpt.get("step") or 0), float(ckpt.get("wall_seconds") or 0.0)
    line = (f"- round {i} (`{run_dir}`): {steps} steps; batch {a.get('batch_size')} x {a.get('crop')} "
            f"samples (random crops, padding masked); AdamW peak lr {a.get('lr')}, {a.get('warmup')} warmup "
            f"steps, cosine decay over {a.get('max_steps')} steps; seed {a.get('seed')}; "
            f"conditioning dropout digit/speaker/mel {c.get('p_drop_digit')}/{c.get('p_drop_speaker')}/"
            f"{c.get('p_drop_mel')}; "
            f"{wall / 60:.0f} minutes with {a.get('threads') or 'default'} torch thread(s)")
    return line, steps, wall


def model_card(ckpt: dict, results: list[dict], run_dir: Path, shipped: Path, notes: str = "",
               earlier: list[tuple[dict, Path]] = ()) -> str:
    """Markdown model card; every number comes from the checkpoint, the log or `results`.

    `earlier`: (checkpoint, run folder) of the rounds this run was warm-started from
    (`train --init-from`), oldest first, so steps and wall time add up over all rounds.
    """
    cfg = ckpt["config"]
    args = ckpt.get("train_args", {})
    from wavetyp.core.runtime import cpu_model
    from wavetyp.training.log import read_log
    log = read_log(run_dir / "train.jsonl")
    train_rows = [r for r in log if r.get("kind") == "train"]
    model, _ = load_model(shipped)
    rounds = [round_line(i + 1, c, d) for i, (c, d) in enumerate(list(earlier) + [(ckpt, run_dir)])]
    lines = [
        "# Model card: `wavetyp-fsdd.pt`", "",
        "A WaveNet over 8-bit mu-law audio trained on the Free Spoken Digit Dataset (FSDD).",
        "One checkpoint, three conditioning levels (conditioning dropout during training).", "",
        "## Model", "",
        f"- parameters: {model.num_parameters:,}; receptive field: {model.receptive_field} samples "
        f"({model.receptive_field / cfg['sample_rate'] * 1000:.0f} ms at {cfg['sample_rate']} Hz)",
        f"- {cfg['n_stacks']} stacks x {cfg['layers_per_stack']} layers (dilations 1..{2 ** (cfg['layers_per_stack'] - 1)}), "
        f"kernel {cfg['kernel_size']}, residual {cfg['residual_channels']}, gate {cfg['gate_channels']} x 2, "
        f"skip {cfg['skip_channels']}, head {cfg['head_channels']}",
        f"- conditioning: digit (0-9), speaker ({', '.join(cfg['speakers'])}), log-mel "
        f"({cfg['n_mels']} bands, n_fft {cfg['n_fft']}, hop {cfg['hop_length']}); dropout in the "
        f"last round's training (each round's is listed below): digit {cfg['p_drop_digit']}, speaker {cfg['p_drop_speaker']}, mel {cfg['p_drop_mel']}",
        f"- weights stored as {ckpt.get('dtype', 'float32')} (loaded as float32); config stored as a plain dict",
        "", "## Data and training", "",
        "- data: FSDD recordings (CC BY-SA 4.0, Zohar Jackson and contributors), official split: "
        "takes 5-49 train (2,700 files), 0-4 test (300 files); 8 kHz, 8-bit mu-law",
        *[r[0] for r in rounds],
        f"- in all: {sum(r[1] for r in rounds)} steps, {sum(r[2] for r in rounds) / 60:.0f} minutes of "
        f"training (device setting `{args.get('device', 'auto')}`); this card was written on "
        f"{cpu_model()} with {torch.cuda.device_count()} CUDA device(s)",
        f"- last logged training loss: {train_rows[-1]['loss_bits']:.3f} bits/sample" if train_rows else "",
        "", "## Test-split NLL (bits/sample, all 300 test files, every real sample)", "",
        "| conditioning | bits/sample |", "| --- | --- |",
    ]
    for r in results:
        lines.append(f"| {r['level']} ({LEVEL_TEXT[r['level']]}) | {r['bits_per_sample']:.3f} |")
    lines += ["", "Per digit:", "", "| digit | " + " | ".join(r["level"] for r in results) + " |",
              "| --- |" + " --- |" * len(results)]
    for d in range(10):
        lines.append(f"| {d} {DIGIT_NAMES[d]} | " +
                     " | ".join(f"{r['per_digit'].get(d, float('nan')):.3f}" for r in results) + " |")
    lines += ["", "Reference points on the same split (measured earlier, from the issue): bigram "
              "(first-order Markov) 5.45, xz 5.43, a 534k-parameter unconditioned WaveNet after 12 "
              "CPU minutes 4.58 bits/sample.", ""]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    lines += ["## Training options stored in the checkpoint", "", "```json",
              json.dumps(args, indent=1, sort_keys=True), "```", ""]
    return "\n".join(l for l in lines if l is not None)


KEPT_SECTIONS = ("## Recognizer",)    # written by other tools: kept when the card is rewritten


def with_kept_sections(new_card: str, old_card: str) -> str:
    """The new WaveNet card plus the sections of the old one that other tools own (the
    recognizer's), so exporting a checkpoint never drops them."""
    kept = []
    for head in KEPT_SECTIONS:
        i = old_card.find("\n" + head)
        if i >= 0:
            j = old_card.find("\n## ", i + 1)
            kept.append(old_card[i + 1: j if j >= 0 else None].rstrip("\n"))
    return new_card.rstrip("\n") + "".join("\n\n" + k for k in kept) + "\n"
