"""The machine listener: a small log-mel CNN that says which digit (and which FSDD speaker)
a waveform speaks, so generated renders can be scored by what they say.

Every input, recording or render, goes through the same path: mu-law waveform -> trim silence
by an energy rule relative to the file's own peak -> remove DC -> centre it in a fixed
one-second window (zero padding, or a centre crop) -> log-mel in dB relative to the
utterance's own maximum (floored `top_db` below it). The last step makes the features
independent of the input level, so the model judges speech, not loudness or the renderer's
leading/trailing silence. Training (augmentation, evaluation) lives in recognizer_train.py.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wavetyp.core.audio import mu_law_decode, mu_law_encode
from wavetyp.core.checkpoint import save_atomic
from wavetyp.core.errors import CheckpointError

FORMAT = "wavetyp-recognizer"
VERSION = 1
SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "recognizer.pt"
SILENT_DB = -200.0          # frame level of digital silence (rms 0 clipped), dBFS


@dataclass
class RecognizerConfig:
    """Features and network of the recognizer; stored in the checkpoint as a plain dict."""
    sample_rate: int = 8000
    window_seconds: float = 1.0      # fixed input length after trimming (pad or centre-crop)
    trim_frame: int = 160            # 20 ms frames for the silence rule
    trim_hop: int = 80
    trim_db: float = 30.0            # keep frames within this many dB of the file's loudest frame
    trim_margin: int = 1             # frames kept on either side of the first/last loud frame
    n_fft: int = 256
    win_length: int = 200            # 25 ms
    hop_length: int = 80             # 10 ms
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float = 4000.0
    top_db: float = 80.0             # feature floor below the utterance's own maximum
    channels: list[int] = field(default_factory=lambda: [64, 96, 128])
    kernel_size: int = 5
    dropout: float = 0.2
    n_digits: int = 10
    speakers: list[str] = field(default_factory=list)   # empty: no speaker head

    @property
    def window(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RecognizerConfig:
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise ValueError(f"unknown config key(s): {', '.join(extra)}")
        return cls(**d)


# ------------------------------------------------------------------ waveform preprocessing

def as_mu_law(wave) -> np.ndarray:
    """A float waveform as the project stores audio: clipped to [-1, 1], through 8-bit mu-law."""
    return mu_law_decode(mu_law_encode(np.asarray(wave, dtype=np.float32))).numpy()


def frame_db(wave: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """RMS level (dBFS) of each frame; a wave shorter than a frame is one frame."""
    w = np.asarray(wave, dtype=np.float64)
    if len(w) < frame:
        w = np.pad(w, (0, frame - len(w)))
    frames = np.lib.stride_tricks.sliding_window_view(w, frame)[::hop]
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return np.maximum(20.0 * np.log10(np.maximum(rms, 1e-10)), SILENT_DB)


def trim_bounds(wave: np.ndarray, cfg: RecognizerConfig) -> tuple[int, int]:
    """(start, end) sample indices of the speech: from the first to the last frame whose level
    is within cfg.trim_db of the file's loudest frame, plus cfg.trim_margin frames either side.

    The rule only compares frames of the same file, so a gain change moves nothing, and
    silence added around a file is cut off again (to the frame grid, cfg.trim_hop samples).
    """
    db = frame_db(wave, cfg.trim_frame, cfg.trim_hop)
    loud = np.flatnonzero(db >= db.max() - cfg.trim_db)
    first = max(int(loud[0]) - cfg.trim_margin, 0)
    last = min(int(loud[-1]) + cfg.trim_margin, len(db) - 1)
    return first * cfg.trim_hop, min(last * cfg.trim_hop + cfg.trim_frame, len(wave))


def trim(wave: np.ndarray, cfg: RecognizerConfig) -> np.ndarray:
    """The speech part of `wave` (see trim_bounds), DC removed."""
    a, b = trim_bounds(wave, cfg)
    seg = np.asarray(wave[a:b], dtype=np.float32)
    return seg - np.float32(seg.mean(dtype=np.float64)) if len(seg) else seg


def fit_window(seg: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """`seg` placed in a zero window of n samples, or an n-sample crop of it: centred, or at a
    random place with `rng` (training)."""
    out = np.zeros(n, dtype=np.float32)
    room = abs(n - len(seg))
    start = room // 2 if rng is None else int(rng.integers(0, room + 1))
    if len(seg) >= n:
        out[:] = seg[start:start + n]
    else:
        out[start:start + len(seg)] = seg
    return out


def prepare(wave: np.ndarray, cfg: RecognizerConfig, rng: np.random.Generator | None = None) -> np.ndarray:
    """One waveform -> the fixed-length, trimmed model input (the same for every source)."""
    return fit_window(trim(np.asarray(wave, dtype=np.float32), cfg), cfg.window, rng)


# ------------------------------------------------------------------ features and model

class LogMel(nn.Module):
    """(B, window) waves -> (B, n_mels, frames) log-mel, dB relative to each utterance's
    maximum, floored top_db below it, scaled to [-1, 1]: the same for any input level."""

    def __init__(self, cfg: RecognizerConfig):
        super().__init__()
        import torchaudio
        self.top_db = cfg.top_db
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
            hop_length=cfg.hop_length, f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels,
            power=2.0)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        db = 10.0 * torch.log10(self.mel(waves).clamp_min(1e-12))
        top = db.amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, top - self.top_db) - top          # in [-top_db, 0]
        return db / (self.top_db / 2) + 1.0


class DigitNet(nn.Module):
    """Log-mel bands as channels of 1-D convolutions over time (conv, batch norm, ReLU, 2x
    max-pool but the last), then mean + max pooling over time, dropout, a linear head per task.
    (1-D over time rather than 2-D over the spectrogram: about 4x faster on a busy CPU.)"""

    def __init__(self, cfg: RecognizerConfig):
        super().__init__()
        self.cfg = cfg
        self.features = LogMel(cfg)
        blocks, c_in = [], cfg.n_mels
        for i, c in enumerate(cfg.channels):
            blocks += [nn.Conv1d(c_in, c, cfg.kernel_size, padding=cfg.kernel_size // 2, bias=False),
                       nn.BatchNorm1d(c), nn.ReLU()]
            if i < len(cfg.channels) - 1:
                blocks.append(nn.MaxPool1d(2))
            c_in = c
        self.body = nn.Sequential(*blocks)
        self.drop = nn.Dropout(cfg.dropout)
        self.digit_head = nn.Linear(2 * c_in, cfg.n_digits)
        self.speaker_head = nn.Linear(2 * c_in, len(cfg.speakers)) if cfg.speakers else None

    def forward(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, window) prepared waves -> (digit logits, speaker logits or None)."""
        h = self.body(self.features(waves))
        h = self.drop(torch.cat([h.mean(-1), h.amax(-1)], dim=1))
        return self.digit_head(h), (self.speaker_head(h) if self.speaker_head is not None else None)


# ------------------------------------------------------------------ inference

@torch.no_grad()
def predict(model: DigitNet, waves, batch: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """Float waveforms at cfg.sample_rate -> (digit probabilities (N, 10), speaker
    probabilities (N, S) or None). Each wave is prepared (trimmed, windowed) first."""
    model.eval()
    device = next(model.parameters()).device
    digits, speakers = [], []
    for i in range(0, len(waves), batch):
        x = torch.from_numpy(np.stack([prepare(w, model.cfg) for w in waves[i:i + batch]]))
        d, s = model(x.to(device))
        digits.append(F.softmax(d, -1).cpu().numpy())
        if s is not None:
            speakers.append(F.softmax(s, -1).cpu().numpy())
    n_d, n_s = model.cfg.n_digits, len(model.cfg.speakers)
    d_all = np.concatenate(digits) if digits else np.zeros((0, n_d), np.float32)
    s_all = (np.concatenate(speakers) if speakers else np.zeros((0, n_s), np.float32)) if n_s else None
    return d_all, s_all


def recognize(model: DigitNet, waves, batch: int = 64) -> np.ndarray:
    """Float waveforms -> digit probabilities, shape (N, 10)."""
    return predict(model, waves, batch)[0]


def top_k(probs: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """The k most likely classes of one probability row, most likely first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), float(probs[i])) for i in order]


def confusion_matrix(true, pred, n: int = 10) -> list[list[int]]:
    """Rows: true class, columns: predicted class (plain ints, checkpoint-friendly)."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m.tolist()


# ------------------------------------------------------------------ checkpoint

def save_recognizer(model: DigitNet, path, **extra) -> None:
    """Write a plain-data checkpoint: format tag, config dict, float32 weights, and `extra`
    (metrics, training arguments, wall time: numbers, strings, lists, dicts)."""
    save_atomic({"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(),
                 "model": model.state_dict(), **extra}, path)


def read_recognizer(path=None) -> dict:
    """Load a recognizer checkpoint with weights_only=True (none: the shipped one) and check
    its tag; every problem is one CheckpointError line."""
    path = Path(path) if path else SHIPPED
    if not path.is_file():
        hint = " (train one with `python -m wavetyp.recognize --train OUT`)" if path == SHIPPED else ""
        raise CheckpointError(f"checkpoint {path} {'is a folder' if path.is_dir() else 'not found'}{hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # torch.load raises many types for bad files; all mean the same
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}); "
                              "truncated, corrupt, or not plain data") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a recognizer checkpoint (format {got!r}, expected {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: recognizer format version {ckpt.get('version')!r}, "
                              f"this wavetyp reads version {VERSION}")
    return ckpt


def load_recognizer(path=None, device: str | torch.device = "cpu") -> tuple[DigitNet, dict]:
    """(model in eval mode on `device`, checkpoint dict) from a recognizer checkpoint."""
    ckpt = read_recognizer(path)
    where = path or SHIPPED
    try:
        model = DigitNet(RecognizerConfig.from_dict(dict(ckpt["config"])))
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{where}: config and weights do not fit ({first[:200]})") from None
    return model.to(device).eval(), ckpt
