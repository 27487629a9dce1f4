"""A compact WaveNet over 8-bit mu-law codes, with optional global and local conditioning.

The model returns logits (never samples). `forward(codes)` gives, for every position t,
the logits of codes[:, t] given codes[:, :t] (the input is shifted right by one, starting
from the silence code), so a whole file can be scored in one parallel pass.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio

from wavetyp.core import faststack
from wavetyp.core.audio import N_CODES, SILENCE_CODE, mu_law_decode
from wavetyp.core.conditioning import Conditioning


@dataclass
class WaveNetConfig:
    """Everything needed to rebuild a model; stored in every checkpoint as a plain dict."""
    sample_rate: int = 8000
    layers_per_stack: int = 10         # dilations 1, 2, ..., 2**(layers_per_stack-1)
    n_stacks: int = 2
    kernel_size: int = 2
    residual_channels: int = 64
    gate_channels: int = 64            # channels of each gate half (tanh and sigmoid)
    skip_channels: int = 128
    head_channels: int = 128
    # global conditioning: digit 0..n_digits-1 and speaker names; 0 / [] disable them
    n_digits: int = 10
    speakers: list[str] = field(default_factory=list)
    global_dim: int = 32
    # local conditioning: log-mel frames upsampled to the sample rate; n_mels=0 disables
    n_mels: int = 40
    n_fft: int = 512
    hop_length: int = 128
    mel_channels: int = 64
    # position in the utterance: a learned table of position_frames rows at mel-frame
    # resolution (hop_length samples apart) added to every layer's gate input, so the model
    # knows how far into the utterance a sample is beyond its receptive field; positions past
    # the table read its last row. 0 disables it (and every older checkpoint has none).
    position_frames: int = 0
    position_dim: int = 16
    # conditioning dropout during training (each kind dropped independently per example)
    p_drop_digit: float = 0.2
    p_drop_speaker: float = 0.2
    p_drop_mel: float = 0.5

    def __post_init__(self):
        if self.kernel_size < 2:
            raise ValueError("kernel_size must be >= 2 (a dilated layer needs a past tap)")
        if self.layers_per_stack < 1 or self.n_stacks < 1:
            raise ValueError("need at least one layer")
        if self.position_frames < 0 or (self.position_frames and self.position_dim < 1):
            raise ValueError("position_frames must be >= 0 and position_dim >= 1")

    @property
    def n_layers(self) -> int:
        return self.layers_per_stack * self.n_stacks

    @property
    def dilations(self) -> list[int]:
        return [2**i for i in range(self.layers_per_stack)] * self.n_stacks

    @property
    def receptive_field(self) -> int:
        # Each layer sees (kernel_size - 1) * dilation more past samples; +1 for the
        # sample itself. With the one-sample input shift, x_t depends on x_{t-RF}..x_{t-1}.
        return 1 + sum((self.kernel_size - 1) * d for d in self.dilations)

    @property
    def n_params(self) -> int:
        return WaveNet(self).num_parameters   # small: building it is cheap

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "WaveNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**d)


class WaveNet(nn.Module):
    # the weights a position table adds: a warm start from a model without one lacks them
    POSITION_WEIGHTS = ("pos_emb.weight", "pos_proj.weight", "pos_proj.bias")

    def __init__(self, cfg: WaveNetConfig):
        super().__init__()
        self.cfg = cfg
        R, G, S, L = cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.n_layers
        self.embed = nn.Embedding(N_CODES, R)
        # Channels-last throughout ((B, T, C) tensors, nn.Linear): one GEMM per layer over the
        # concatenated taps [x_{t-(k-1)d}, ..., x_{t-d}, x_t] is ~2x faster on CPU than Conv1d.
        self.dilated = nn.ModuleList(nn.Linear(cfg.kernel_size * R, 2 * G) for _ in range(L))
        # one linear per layer gives both the residual (first R) and skip (last S) outputs
        self.res_skip = nn.ModuleList(nn.Linear(G, R + S) for _ in range(L))
        self.head1 = nn.Linear(S, cfg.head_channels)
        self.head2 = nn.Linear(cfg.head_channels, N_CODES)
        # global conditioning: the extra last row of each table means "no label"
        self.digit_emb = nn.Embedding(cfg.n_digits + 1, cfg.global_dim) if cfg.n_digits else None
        self.speaker_emb = (nn.Embedding(len(cfg.speakers) + 1, cfg.global_dim)
                            if cfg.speakers else None)
        has_global = self.digit_emb is not None or self.speaker_emb is not None
        self.global_proj = nn.Linear(cfg.global_dim, L * 2 * G) if has_global else None
        # local conditioning: mel frames -> small conv net at frame rate -> per-layer 2G
        if cfg.n_mels:
            self.melspec = torchaudio.transforms.MelSpectrogram(
                sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                n_mels=cfg.n_mels, f_min=0.0, f_max=cfg.sample_rate / 2, center=True,
                pad_mode="constant", power=2.0)
            C = cfg.mel_channels
            self.mel_net = nn.Sequential(nn.Conv1d(cfg.n_mels, C, 3, padding=1), nn.Tanh(),
                                         nn.Conv1d(C, C, 3, padding=1), nn.Tanh())
            self.mel_null = nn.Parameter(torch.zeros(C))   # features when mel is absent
            self.mel_proj = nn.Linear(C, L * 2 * G)
        else:
            self.melspec = self.mel_net = self.mel_null = self.mel_proj = None
        # position in the utterance -> per-layer 2G at frame rate, added to the mel frames.
        # pos_proj starts at zero, so weights warm-started from a model without it compute
        # the same function until training moves it.
        if cfg.position_frames:
            self.pos_emb = nn.Embedding(cfg.position_frames, cfg.position_dim)
            self.pos_proj = nn.Linear(cfg.position_dim, L * 2 * G)
            nn.init.zeros_(self.pos_proj.weight)
            nn.init.zeros_(self.pos_proj.bias)
        else:
            self.pos_emb = self.pos_proj = None

    # ------------------------------------------------------------ properties
    @property
    def receptive_field(self) -> int:
        return self.cfg.receptive_field

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------ conditioning
    def log_mel(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T) codes -> (B, n_mels, T // hop + 1) log-mel frames of the decoded audio.

        Frame f is centred on sample f * hop_length (center=True, zero padding).
        """
        if self.melspec is None:
            raise ValueError("this model has no mel conditioning (n_mels=0)")
        wave = mu_law_decode(codes).to(self.head2.weight.device)
        mel = self.melspec(wave.float())
        return (torch.log(mel.clamp_min(1e-5)) + 4.0) / 4.0   # roughly in [-2, 2]

    def global_bias(self, cond: Conditioning, batch: int) -> torch.Tensor | None:
        """(B, L, 2G) per-layer gate bias from digit/speaker labels, or None."""
        if self.global_proj is None:
            return None
        g = 0
        for emb, lab in ((self.digit_emb, cond.digit), (self.speaker_emb, cond.speaker)):
            if emb is None:
                continue
            none = emb.num_embeddings - 1
            if lab is None:
                lab = torch.full((batch,), none, dtype=torch.long, device=emb.weight.device)
            lab = torch.where(lab < 0, torch.full_like(lab, none), lab)
            g = g + emb(lab)
        return self.global_proj(g).view(batch, self.cfg.n_layers, -1)

    def local_frames(self, cond: Conditioning, batch: int) -> torch.Tensor | None:
        """(B, L, F, 2G) per-layer gate input at frame rate (frame f centred on sample f * hop)
        from mel frames and the position in the utterance, or None (the model has neither).

        With position on there are at least position_frames frames: the mel frames' gate input
        (mel_null's, one frame, when mel is absent) is extended by repeating its last frame,
        which is what the lerp's clamp to the last frame read before, so the mel part is
        unchanged; each frame then adds the position table's row for its sample.
        """
        if self.mel_proj is None and self.pos_proj is None:
            return None
        out = None
        if self.mel_proj is not None:
            if cond.mel is None:
                feats = self.mel_null.view(1, -1, 1).expand(batch, -1, 1)
            else:
                feats = self.mel_net(cond.mel)
                if cond.mel_present is not None:
                    keep = cond.mel_present.view(-1, 1, 1)
                    feats = torch.where(keep, feats, self.mel_null.view(1, -1, 1).to(feats.dtype))
            out = self.mel_proj(feats.transpose(1, 2))                 # (B, F, L*2G)
            extra = self.cfg.position_frames - out.shape[1] if self.pos_proj is not None else 0
            if extra > 0:     # repeated after the projection: the same values as without position
                out = torch.cat([out, out[:, -1:].expand(-1, extra, -1)], 1)
        if self.pos_proj is not None:
            pos = self.position_bias(cond.start, batch,
                                     self.cfg.position_frames if out is None else out.shape[1])
            out = pos if out is None else out + pos
        return out.view(batch, -1, self.cfg.n_layers, 2 * self.cfg.gate_channels).transpose(1, 2)

    def position_bias(self, start: torch.Tensor | None, batch: int, n_frames: int) -> torch.Tensor:
        """(B, n_frames, L*2G): the position table read at row f + start / hop for frame f
        (lerped between rows when start is not a multiple of hop, clamped to the last row)."""
        hop, dev = self.cfg.hop_length, self.pos_emb.weight.device
        if start is None:
            start = torch.zeros(batch, dtype=torch.long, device=dev)
        start = start.to(device=dev, dtype=torch.long).reshape(-1).expand(batch)
        samples = start[:, None] + hop * torch.arange(n_frames, device=dev)   # (B, F)
        r0, r1, alpha = self.frame_weights(samples, hop, self.cfg.position_frames)
        e0, e1 = self.pos_emb(r0), self.pos_emb(r1)
        return self.pos_proj(torch.lerp(e0, e1, alpha[..., None].to(e0.dtype)))

    @staticmethod
    def frame_weights(positions: torch.Tensor, hop: int, n_frames: int):
        """Linear interpolation between frame centres: (f0, f1, alpha) for each position."""
        f0 = torch.div(positions, hop, rounding_mode="floor").clamp_max(n_frames - 1)
        f1 = (f0 + 1).clamp_max(n_frames - 1)
        alpha = (positions - f0 * hop).float().div(hop).clamp(0.0, 1.0)
        return f0, f1, alpha

    # ------------------------------------------------------------ parallel pass
    def forward(self, codes: torch.Tensor, cond: Conditioning | None = None) -> torch.Tensor:
        """(B, T) codes -> (B, T, 256) logits; logits[:, t] predict codes[:, t] from codes[:, :t]."""
        cond = cond or Conditioning()
        B = codes.shape[0]
        inputs = F.pad(codes[:, :-1], (1, 0), value=SILENCE_CODE)   # shift right by one
        h = self.embed(inputs)                                       # (B, T, R)
        gbias = self.global_bias(cond, B)
        frames = self.local_frames(cond, B)
        if faststack.applies(h):   # CPU training: the same loop with its own backward
            weights = [w for lin, rs in zip(self.dilated, self.res_skip)
                       for w in (lin.weight, lin.bias, rs.weight, rs.bias)]
            skip = faststack.ResidualStack.apply(h, gbias, frames, self.cfg.hop_length,
                                                 tuple(self.cfg.dilations), *weights)
        else:
            skip = self.residual_loop(h, gbias, frames)
        return self.head2(F.relu(self.head1(F.relu(skip))))

    def residual_loop(self, h: torch.Tensor, gbias: torch.Tensor | None,
                      frames: torch.Tensor | None) -> torch.Tensor:
        """(B, T, R) embedded inputs -> (B, T, S) sum of every layer's skip output."""
        B, T, _ = h.shape
        R, G, k = self.cfg.residual_channels, self.cfg.gate_channels, self.cfg.kernel_size
        if frames is not None:
            pos = torch.arange(T, device=h.device)
            f0, f1, alpha = self.frame_weights(pos, self.cfg.hop_length, frames.shape[2])
            alpha = alpha[:, None]
        skip = 0
        for l, (d, lin, rs) in enumerate(zip(self.cfg.dilations, self.dilated, self.res_skip)):
            # causal dilated taps: x_{t - j*d} for j = k-1 .. 0, zeros before the start
            padded = F.pad(h, (0, 0, (k - 1) * d, 0))
            taps = torch.cat([padded[:, j * d: j * d + T] for j in range(k)], dim=-1)
            z = lin(taps)
            if gbias is not None:
                z = z + gbias[:, l, None, :]
            if frames is not None:
                fl = frames[:, l]                                    # (B, F, 2G)
                z = z + torch.lerp(fl[:, f0], fl[:, f1], alpha.to(fl.dtype))
            a = torch.tanh(z[..., :G]) * torch.sigmoid(z[..., G:])
            out = rs(a)
            h = h + out[..., :R]
            skip = skip + out[..., R:]
        return skip


def nll_bits(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Per-sample negative log2-likelihood, (B, T), from (B, T, 256) logits."""
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), codes.reshape(-1),
                         reduction="none")
    return ce.view(codes.shape) / math.log(2.0)
