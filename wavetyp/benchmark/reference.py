"""The reference point for `python -m wavetyp.bench`: a WaveNet written the way the widely
used public PyTorch implementations write it, so both can be timed in one run on one machine.

Same model as the issue describes: 256-class one-hot mu-law input, a causal input convolution,
16 dilated layers in 2 stacks (dilations 1..128 twice), kernel 3, residual 64, gate 2 x 64
(separate tanh "filter" and sigmoid "gate" convolutions), skip 64, a ReLU-1x1-ReLU-1x1 head,
no conditioning: 565,632 parameters, receptive field 1021 samples.

Its parallel pass and training step are written in that style (channels-first nn.Conv1d
everywhere, one module call per convolution). Its sampler does, per step, the work that the
public r9y9/wavenet_vocoder (master) does in its `incremental_forward`, so that the reference
column is not slower than the implementation it stands for:

  * `forward` is the parallel pass: (B, 256, T) one-hot -> (B, 256, T) logits, where
    logits[..., t] predict the code at t + 1 from the inputs up to t;
  * `step` is the cached ("fast") incremental pass. As in r9y9/wavenet_vocoder, each dilated
    convolution keeps an input buffer (batch, time, channels) of the last (k-1)*d + 1 inputs,
    shifted in place by one slot per step; its k dilated taps are flattened and multiplied
    by the convolution's weight reshaped once to (out, k * in) ("linearized"); the filter and
    gate halves come out of that one product and are split; every 1x1 convolution (input,
    skip, residual, head) is one matrix product on the (batch, channels) activations.
    Weights are linearized once per `generate` call (r9y9/wavenet_vocoder caches them until
    the next backward), so training between calls cannot leave them stale;
  * `generate` samples every stream in one call per step (softmax over the batch's logits,
    one torch.multinomial for all streams; r9y9/wavenet_vocoder draws from a
    OneHotCategorical over the batch, which calls the same kernel) and feeds the samples back
    one-hot; `generate_naive` recomputes a full forward pass over the last receptive-field
    window for every sample;
  * `train_step` is forward + cross-entropy + backward + Adam.

Differences from r9y9/wavenet_vocoder that remain are in the model, not the sampler: no
weight normalisation (its synthesis removes it before sampling anyway), no sqrt(0.5) and
sqrt(1/layers) scalings of the residual and skip sums, no dropout call, filter and gate as
two 64-channel convolutions in the parallel pass (it uses one 128-channel convolution), and a
temperature divide before the softmax. The sampler's seeded generator replaces the global
one, and the generated codes are written into one preallocated tensor instead of a list of
one-hot steps stacked at the end.

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


@dataclass
class _LayerState:
    """One residual layer's incremental state: its input buffer and linearized weights."""
    dilation: int
    buffer: torch.Tensor           # (B, (k-1)*d + 1, R): the inputs its dilated taps reach
    gate_weight: torch.Tensor      # (2G, k*R): filter rows, then gate rows
    gate_bias: torch.Tensor
    res_weight: torch.Tensor       # (R, G)
    res_bias: torch.Tensor
    skip_weight: torch.Tensor      # (S, G)
    skip_bias: torch.Tensor
    half: int                      # G


@dataclass
class IncrementalState:
    """Everything `ReferenceWaveNet.step` needs, built once per generation call."""
    layers: list[_LayerState]
    start: tuple[torch.Tensor, torch.Tensor]     # (R, 256) weight, bias
    end_1: tuple[torch.Tensor, torch.Tensor]
    end_2: tuple[torch.Tensor, torch.Tensor]


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
    def init_state(self, batch: int) -> IncrementalState:
        """Zeroed input buffers (the zeros the parallel pass pads with) and linearized weights."""
        cfg, p = self.cfg, self.start_conv.weight
        k, R, G = cfg.kernel_size, cfg.residual_channels, cfg.gate_channels

        def lin(conv: nn.Conv1d) -> torch.Tensor:
            # (out, in, k) -> (out, k * in), matching a (B, k, in) tap block flattened per row
            return conv.weight.detach().transpose(1, 2).reshape(conv.out_channels, -1)

        layers = []
        for l, d in enumerate(self.dilations):
            fc, gc = self.filter_convs[l], self.gate_convs[l]
            layers.append(_LayerState(
                dilation=d,
                buffer=torch.zeros(batch, (k - 1) * d + 1, R, device=p.device, dtype=p.dtype),
                gate_weight=torch.cat([lin(fc), lin(gc)]),              # (2G, k * R)
                gate_bias=torch.cat([fc.bias, gc.bias]).detach(),
                res_weight=lin(self.residual_convs[l]), res_bias=self.residual_convs[l].bias.detach(),
                skip_weight=lin(self.skip_convs[l]), skip_bias=self.skip_convs[l].bias.detach(),
                half=G))
        head = [(lin(c), c.bias.detach()) for c in (self.start_conv, self.end_conv_1, self.end_conv_2)]
        return IncrementalState(layers, *head)

    @staticmethod
    def step(x: torch.Tensor, state: IncrementalState) -> torch.Tensor:
        """(B, 256) one-hot of the latest code -> (B, 256) logits of the next one.

        Per layer: shift the layer's input buffer by one in place, write the new input into
        its last slot, take the k dilated taps, and run the filter and gate halves as one
        matrix product on the flattened taps; the 1x1 convolutions are matrix products too.
        """
        x = F.linear(x, *state.start)
        skip = 0
        for st in state.layers:
            buf = st.buffer
            buf[:, :-1] = buf[:, 1:].clone()
            buf[:, -1] = x
            taps = buf[:, ::st.dilation].reshape(buf.shape[0], -1)          # (B, k * R)
            f, g = F.linear(taps, st.gate_weight, st.gate_bias).split(st.half, dim=1)
            z = torch.tanh(f) * torch.sigmoid(g)
            skip = F.linear(z, st.skip_weight, st.skip_bias) + skip
            x = F.linear(z, st.res_weight, st.res_bias) + x
        h = F.linear(F.relu(skip), *state.end_1)
        return F.linear(F.relu(h), *state.end_2)

    @torch.no_grad()
    def teacher_forced_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Run `step` over known codes (B, T) -> (B, 256, T), comparable with `forward`."""
        B, T = codes.shape
        state = self.init_state(B)
        out = [self.step(F.one_hot(codes[:, t], self.cfg.n_classes).to(state.start[0].dtype),
                         state) for t in range(T)]
        return torch.stack(out, dim=2)

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, batch: int, n_samples: int, temperature: float = 1.0,
                 seed: int = 0) -> torch.Tensor:
        """Ancestral sampling with the input buffers: (batch, n_samples) codes.

        Every step samples all streams in one call (softmax over the batch's logits, one
        torch.multinomial for the whole batch) and feeds the samples back one-hot."""
        dev = self.start_conv.weight.device
        gen = torch.Generator(device=dev).manual_seed(seed)
        state = self.init_state(batch)
        x = torch.full((batch,), SILENCE, dtype=torch.long, device=dev)
        inp = F.one_hot(x, self.cfg.n_classes).to(state.start[0].dtype)       # (B, 256)
        out = torch.empty(batch, n_samples, dtype=torch.long, device=dev)
        for t in range(n_samples):
            logits = self.step(inp, state)
            probs = F.softmax(logits / temperature, dim=1)
            x = torch.multinomial(probs, 1, generator=gen)                    # (B, 1)
            out[:, t] = x.squeeze(1)
            inp = torch.zeros_like(probs).scatter_(1, x, 1.0)
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
