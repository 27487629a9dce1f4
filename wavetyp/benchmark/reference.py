"""The reference point for `python -m wavetyp.bench`: a WaveNet written the way the widely
used public PyTorch implementations write it, so both can be timed in one run on one machine.

Same model as the issue describes: 256-class one-hot mu-law input, a causal input convolution,
16 dilated layers in 2 stacks (dilations 1..128 twice), kernel 3, residual 64, gate 2 x 64
(separate tanh "filter" and sigmoid "gate" convolutions), skip 64, a ReLU-1x1-ReLU-1x1 head,
no conditioning: 565,632 parameters, receptive field 1021 samples.

Written in that style on purpose (channels-first nn.Conv1d everywhere, one module call per
convolution), but plainly and without deliberate slowdowns:

  * `forward` is the parallel pass: (B, 256, T) one-hot -> (B, 256, T) logits, where
    logits[..., t] predict the code at t + 1 from the inputs up to t;
  * `step` is the cached ("fast") incremental pass those projects use: every layer keeps a
    queue of its last (kernel-1)*dilation + 1 inputs, updated each step with torch.cat of the
    shifted queue and the new input; the layer's dilated convolutions then run on the queue
    (one output position). Work per step is O(layers), but each layer costs a handful of
    small torch calls;
  * `generate` samples with softmax + torch.multinomial per step and one-hot re-encodes the
    sampled value as the next input; `generate_naive` recomputes a full forward pass over the
    last receptive-field window for every sample;
  * `train_step` is forward + cross-entropy + backward + Adam.

The input convolution has kernel size 1 (a causal convolution trivially), which is what makes
the parameter count and the receptive field come out as stated (a kernel-2 input convolution
would give ~582k parameters and 1022 samples).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

N_CLASSES = 256
SILENCE = 128          # mu-law code of 0.0 (the same value as wavetyp.audio.SILENCE_CODE)


@dataclass(frozen=True)
class ReferenceConfig:
    layers_per_stack: int = 8          # dilations 1, 2, ..., 128
    n_stacks: int = 2
    kernel_size: int = 3
    residual_channels: int = 64
    gate_channels: int = 64            # per half: 64 tanh ("filter") + 64 sigmoid ("gate")
    skip_channels: int = 64
    end_channels: int = 64
    n_classes: int = N_CLASSES
    sample_rate: int = 8000

    @property
    def dilations(self) -> list[int]:
        return [2**i for i in range(self.layers_per_stack)] * self.n_stacks

    @property
    def receptive_field(self) -> int:
        """Input samples that one output sees: the current one plus (k-1)*d per layer."""
        return 1 + sum((self.kernel_size - 1) * d for d in self.dilations)


class ReferenceWaveNet(nn.Module):
    def __init__(self, cfg: ReferenceConfig = ReferenceConfig()):
        super().__init__()
        self.cfg = cfg
        C, R, G, S, E, k = (cfg.n_classes, cfg.residual_channels, cfg.gate_channels,
                            cfg.skip_channels, cfg.end_channels, cfg.kernel_size)
        self.dilations = cfg.dilations
        self.start_conv = nn.Conv1d(C, R, kernel_size=1)
        self.filter_convs = nn.ModuleList()
        self.gate_convs = nn.ModuleList()
        self.residual_convs = nn.ModuleList()
        self.skip_convs = nn.ModuleList()
        for d in self.dilations:
            self.filter_convs.append(nn.Conv1d(R, G, kernel_size=k, dilation=d))
            self.gate_convs.append(nn.Conv1d(R, G, kernel_size=k, dilation=d))
            self.residual_convs.append(nn.Conv1d(G, R, kernel_size=1))
            self.skip_convs.append(nn.Conv1d(G, S, kernel_size=1))
        self.end_conv_1 = nn.Conv1d(S, E, kernel_size=1)
        self.end_conv_2 = nn.Conv1d(E, C, kernel_size=1)

    @property
    def receptive_field(self) -> int:
        return self.cfg.receptive_field

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------ one residual block
    def _block(self, l: int, x_in: torch.Tensor, residual: torch.Tensor, dilation: int):
        """Gated unit over x_in (holding the dilated past) -> (new residual, skip)."""
        fc, gc = self.filter_convs[l], self.gate_convs[l]
        f = torch.tanh(F.conv1d(x_in, fc.weight, fc.bias, dilation=dilation))
        g = torch.sigmoid(F.conv1d(x_in, gc.weight, gc.bias, dilation=dilation))
        z = f * g
        skip = self.skip_convs[l](z)
        return self.residual_convs[l](z) + residual, skip

    def _head(self, skip: torch.Tensor) -> torch.Tensor:
        return self.end_conv_2(F.relu(self.end_conv_1(F.relu(skip))))

    # ------------------------------------------------------------ parallel pass
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 256, T) one-hot -> (B, 256, T) logits; logits[..., t] predict code t + 1."""
        x = self.start_conv(x)
        skip = 0
        k = self.cfg.kernel_size
        for l, d in enumerate(self.dilations):
            padded = F.pad(x, ((k - 1) * d, 0))              # causal: zeros before the start
            x, s = self._block(l, padded, x, d)
            skip = s + skip
        return self._head(skip)

    # ------------------------------------------------------------ cached incremental pass
    def init_queues(self, batch: int) -> list[torch.Tensor]:
        """Per-layer input queues, zero-filled (the same zeros the parallel pass pads with)."""
        p = self.start_conv.weight
        return [torch.zeros(batch, self.cfg.residual_channels, (self.cfg.kernel_size - 1) * d + 1,
                            device=p.device, dtype=p.dtype) for d in self.dilations]

    def step(self, x: torch.Tensor, queues: list[torch.Tensor]) -> torch.Tensor:
        """(B, 256, 1) one-hot of the latest code -> (B, 256) logits of the next one.

        Each layer's queue is shifted by one (dropping the oldest input) and the new input
        appended; the layer's kernel then runs over the k taps it sees (queue[..., ::d]),
        giving exactly one output position.
        """
        x = self.start_conv(x)
        skip = 0
        for l, d in enumerate(self.dilations):
            queues[l] = torch.cat([queues[l][:, :, 1:], x], dim=2)
            # The taps are sliced out first rather than running the dilated convolution over
            # the whole queue: for batch 1, torch routes a dilated Conv1d to the generic
            # aten::slow_conv_dilated2d kernel, about 5x slower per step. Same result.
            x, s = self._block(l, queues[l][:, :, ::d], x, 1)
            skip = s + skip
        return self._head(skip).squeeze(2)

    @torch.no_grad()
    def teacher_forced_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Run `step` over known codes (B, T) -> (B, 256, T), comparable with `forward`."""
        B, T = codes.shape
        queues = self.init_queues(B)
        out = [self.step(F.one_hot(codes[:, t:t + 1], self.cfg.n_classes).float().transpose(1, 2),
                         queues) for t in range(T)]
        return torch.stack(out, dim=2)

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, batch: int, n_samples: int, temperature: float = 1.0,
                 seed: int = 0) -> torch.Tensor:
        """Ancestral sampling with the queues: (batch, n_samples) codes."""
        dev = self.start_conv.weight.device
        gen = torch.Generator(device=dev).manual_seed(seed)
        queues = self.init_queues(batch)
        x = torch.full((batch,), SILENCE, dtype=torch.long, device=dev)
        out = torch.empty(batch, n_samples, dtype=torch.long, device=dev)
        for t in range(n_samples):
            inp = F.one_hot(x, self.cfg.n_classes).float().unsqueeze(2)     # (B, 256, 1)
            logits = self.step(inp, queues)
            probs = F.softmax(logits / temperature, dim=1)
            x = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            out[:, t] = x
        return out

    @torch.no_grad()
    def generate_naive(self, batch: int, n_samples: int, temperature: float = 1.0,
                       seed: int = 0) -> torch.Tensor:
        """Sampling without a cache: a full forward pass over the last RF inputs per sample."""
        dev = self.start_conv.weight.device
        gen = torch.Generator(device=dev).manual_seed(seed)
        window = torch.full((batch, self.receptive_field), SILENCE, dtype=torch.long, device=dev)
        out = torch.empty(batch, n_samples, dtype=torch.long, device=dev)
        for t in range(n_samples):
            inp = F.one_hot(window, self.cfg.n_classes).float().transpose(1, 2)
            logits = self(inp)[:, :, -1]
            probs = F.softmax(logits / temperature, dim=1)
            x = torch.multinomial(probs, 1, generator=gen)
            window = torch.cat([window[:, 1:], x], dim=1)
            out[:, t] = x.squeeze(1)
        return out


def train_step(model: ReferenceWaveNet, opt: torch.optim.Optimizer, codes: torch.Tensor) -> float:
    """One step on (B, T) codes: one-hot input, predict each next code; returns the loss."""
    x = F.one_hot(codes, model.cfg.n_classes).float().transpose(1, 2).contiguous()
    logits = model(x)
    loss = F.cross_entropy(logits[:, :, :-1], codes[:, 1:])
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()
