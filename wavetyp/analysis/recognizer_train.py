"""Training and evaluation of the recognizer (recognizer.py).

Training uses the FSDD training split only (takes 5-49). Each example is augmented the way
inputs differ in practice, then goes through the one input path (`prepare`): a random gain
of up to +-12 dB, white noise at 10-40 dB SNR on half of them, extra silence around some (as
renders have), then 8-bit mu-law (clipping included) like every file the CLI reads.
Evaluation reports test-split accuracy, the confusion matrix, and accuracy on the test
recordings made 12 dB louder (clipping where they overflow), 12 dB quieter, and with white
noise 20 dB below the power of the trimmed speech.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from wavetyp.analysis.recognizer import (
    DigitNet,
    RecognizerConfig,
    as_mu_law,
    confusion_matrix,
    predict,
    prepare,
    trim,
)
from wavetyp.core.audio import mu_law_decode

CONDITIONS = ("clean", "gain +12 dB", "gain -12 dB", "noise 20 dB SNR")


@dataclass
class TrainSettings:
    """Optimisation and augmentation of one training run (stored in the checkpoint)."""
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3                 # peak of a one-cycle schedule (AdamW)
    weight_decay: float = 1e-2
    label_smoothing: float = 0.05
    speaker_weight: float = 0.5      # weight of the speaker loss beside the digit loss
    gain_db: float = 12.0            # training gains uniform in +-gain_db
    p_noise: float = 0.5             # share of examples with white noise added
    snr_min_db: float = 10.0
    snr_max_db: float = 40.0
    p_pad: float = 0.3               # share of examples with extra silence around them
    max_pad_seconds: float = 0.3
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ perturbations

def speech_power(wave: np.ndarray, cfg: RecognizerConfig) -> float:
    """Mean square of the trimmed speech: the reference for signal-to-noise ratios."""
    seg = trim(wave, cfg)
    return max(float(np.mean(seg.astype(np.float64) ** 2)) if len(seg) else 0.0, 1e-12)


def with_noise(wave: np.ndarray, snr_db: float, power: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise `snr_db` below `power`, over the whole waveform."""
    sigma = math.sqrt(power / 10 ** (snr_db / 10))
    return (wave + sigma * rng.standard_normal(len(wave))).astype(np.float32)


def with_gain(wave: np.ndarray, db: float) -> np.ndarray:
    return (wave * np.float32(10 ** (db / 20))).astype(np.float32)


def augment(wave: np.ndarray, power: float, s: TrainSettings, cfg: RecognizerConfig,
            rng: np.random.Generator) -> np.ndarray:
    """One random training variant of a (mu-law decoded) recording."""
    w = wave
    if rng.random() < s.p_pad:
        most = int(s.max_pad_seconds * cfg.sample_rate)
        w = np.pad(w, (int(rng.integers(0, most + 1)), int(rng.integers(0, most + 1))))
    gain = float(rng.uniform(-s.gain_db, s.gain_db))
    w = with_gain(w, gain)
    if rng.random() < s.p_noise:
        snr = float(rng.uniform(s.snr_min_db, s.snr_max_db))
        w = with_noise(w, snr, power * 10 ** (gain / 10), rng)
    return as_mu_law(w)


def perturb(wave: np.ndarray, condition: str, cfg: RecognizerConfig, rng: np.random.Generator) -> np.ndarray:
    """A test recording under one of CONDITIONS, stored as 8-bit mu-law like any input file."""
    if condition == "clean":
        return wave
    if condition.startswith("gain "):
        return as_mu_law(with_gain(wave, float(condition.split()[1])))
    if condition == "noise 20 dB SNR":
        return as_mu_law(with_noise(wave, 20.0, speech_power(wave, cfg), rng))
    raise ValueError(f"unknown condition {condition!r}; one of {', '.join(CONDITIONS)}")


# ------------------------------------------------------------------ training

def waves_of(utterances) -> list[np.ndarray]:
    """Corpus utterances (mu-law codes) -> float waveforms."""
    return [mu_law_decode(u.codes).numpy() for u in utterances]


def train_recognizer(train, cfg: RecognizerConfig, s: TrainSettings,
                     progress: bool = True) -> tuple[DigitNet, list[dict]]:
    """Train on `train` (Utterances with digit and speaker labels) -> (model in eval mode,
    per-epoch history of loss and training accuracy on the augmented examples)."""
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    waves = waves_of(train)
    power = [speech_power(w, cfg) for w in waves]
    digits = torch.tensor([u.digit for u in train])
    speakers = torch.tensor([u.speaker for u in train])
    model = DigitNet(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    per_epoch = math.ceil(len(train) / s.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=s.epochs * per_epoch,
                                                pct_start=0.2)
    history = []
    bar = tqdm(range(s.epochs), desc="training recognizer", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = rng.permutation(len(train))
        loss_sum, correct = 0.0, 0
        for i in range(0, len(order), s.batch_size):
            idx = order[i:i + s.batch_size]
            x = torch.from_numpy(np.stack([prepare(augment(waves[j], power[j], s, cfg, rng), cfg, rng)
                                           for j in idx]))
            d_logits, s_logits = model(x)
            loss = F.cross_entropy(d_logits, digits[idx], label_smoothing=s.label_smoothing)
            if s_logits is not None:
                loss = loss + s.speaker_weight * F.cross_entropy(
                    s_logits, speakers[idx], label_smoothing=s.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((d_logits.argmax(1) == digits[idx]).sum())
        history.append({"epoch": epoch + 1, "loss": loss_sum / len(train),
                        "train_accuracy": correct / len(train)})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", acc=f"{history[-1]['train_accuracy']:.3f}")
    return model.eval(), history


# ------------------------------------------------------------------ evaluation

def evaluate(model: DigitNet, test, seed: int = 0) -> dict:
    """Test-split accuracy, confusion matrix (rows true, columns predicted), speaker accuracy,
    and digit accuracy under each of CONDITIONS (noise seeded by `seed`)."""
    cfg = model.cfg
    waves = waves_of(test)
    true = np.array([u.digit for u in test])
    out = {"n_test": len(test), "robustness": {}}
    for condition in CONDITIONS:
        rng = np.random.default_rng(seed)
        d_probs, s_probs = predict(model, [perturb(w, condition, cfg, rng) for w in waves])
        pred = d_probs.argmax(1)
        out["robustness"][condition] = float(np.mean(pred == true))
        if condition == "clean":
            out["accuracy"] = float(np.mean(pred == true))
            out["confusion"] = confusion_matrix(true, pred, cfg.n_digits)
            if s_probs is not None:
                spk = np.array([u.speaker for u in test])
                out["speaker_accuracy"] = float(np.mean(s_probs.argmax(1) == spk))
    out["clipped_at_plus_12_db"] = int(sum(np.abs(w).max() * 10 ** (12 / 20) > 1.0 for w in waves))
    return out


def format_confusion(matrix) -> str:
    """A plain-text confusion matrix: rows are the true digit, columns the recognized one."""
    n = len(matrix)
    lines = ["true\\said " + " ".join(f"{j:>3}" for j in range(n))]
    lines += [f"{i:>9} " + " ".join(f"{v:>3}" for v in row) for i, row in enumerate(matrix)]
    return "\n".join(lines)


def format_metrics(m: dict) -> str:
    """The figures `--train` prints: accuracy, speaker accuracy, robustness, confusion."""
    lines = [f"test-split digit accuracy: {m['accuracy']:.1%} ({m['n_test']} files)"]
    if "speaker_accuracy" in m:
        lines.append(f"test-split speaker accuracy: {m['speaker_accuracy']:.1%}")
    lines.append("robustness (digit accuracy on the test split):")
    lines += [f"  {c:<16} {acc:.1%}" for c, acc in m["robustness"].items()]
    lines.append(f"  ({m['clipped_at_plus_12_db']} of {m['n_test']} recordings clip at +12 dB)")
    lines.append("confusion matrix (rows: spoken digit, columns: recognized digit):")
    lines.append(format_confusion(m["confusion"]))
    return "\n".join(lines)
