"""The incremental cache ("fast WaveNet"): ring buffers of every layer's past inputs.

Every dilated layer needs its own input at t - j*d for the k-1 past taps. Those are known
before the step starts, so one gather fetches the past taps of all layers and one batched
matmul turns them into every layer's gate input; within the step each layer then does one
small matmul for the current tap, the gate, and one residual matmul, and one matmul at the
end sums every layer's skip output. Work per step is O(layers), independent
of the receptive field and of how much has been generated; memory is flat in length. The
step itself lives in fastloop.py. The cache is a class the caller owns.
"""
from __future__ import annotations

import math

import torch

from wavetyp.core.audio import N_CODES
from wavetyp.core.conditioning import Conditioning
from wavetyp.core.fastloop import StepState, step_core
from wavetyp.core.model import WaveNet


class GenerationCache:
    """Ring buffers of every layer's past inputs plus preallocated step buffers.

    `step(x)` consumes the codes x_{t-1} (B,) and returns the logits for x_t (B, 256):
    exactly what the parallel forward pass gives at position t.
    """

    @torch.no_grad()   # plain tensors (not inference tensors), so step() works in any mode
    def __init__(self, model: WaveNet, batch: int, cond: Conditioning | None = None):
        cfg = model.cfg
        p = next(model.parameters())
        dev, dt = p.device, p.dtype
        self.B, self.L, self.k = batch, cfg.n_layers, cfg.kernel_size
        R, G, S = cfg.residual_channels, cfg.gate_channels, cfg.skip_channels
        self.R, self.G = R, G
        k, L = self.k, self.L
        # sigmoid(z) = (1 + tanh(z/2)) / 2: halving the sigmoid half of every gate input lets
        # one tanh serve both halves; the remaining 1/2 is folded into the res/skip weights.
        half = torch.ones(2 * G, device=dev, dtype=dt)
        half[G:] = 0.5
        W = torch.stack([m.weight for m in model.dilated]) * half[None, :, None]  # (L, 2G, kR)
        w_cur = W[:, :, (k - 1) * R:].transpose(1, 2).contiguous()                # (L, R, 2G)
        # past taps: column block j of W multiplies x_{t-(k-1-j)d}; lag m = k-1-j = 1..k-1
        w_past = torch.cat([W[:, :, (k - 1 - m) * R:(k - m) * R].transpose(1, 2)
                            for m in range(1, k)], 1).contiguous()                 # (L, (k-1)R, 2G)
        # Each layer's gate output a_l gets a constant 1 appended (A[:, l, G] = 1), so one
        # addmm gives h_{l+1} = h_l + a_l W_res + b_res, and one matmul over all layers'
        # [a_l, 1] gives the summed skip outputs plus their biases.
        w_res, w_skip = [], []
        for m in model.res_skip:
            w_aug = torch.cat([m.weight.t() * 0.5, m.bias[None]], 0)                 # (G+1, R+S)
            w_res.append(w_aug[:, :R])
            w_skip.append(w_aug[:, R:])
        w_res = torch.stack(w_res).contiguous()                                      # (L, G+1, R)
        w_skip = torch.cat(w_skip, 0).contiguous()                                   # (L*(G+1), S)

        # conditioning -> per-step gate bias (L, B, 2G), already scaled like the weights
        cond = cond or Conditioning()
        base = torch.stack([m.bias for m in model.dilated])[:, None, :].expand(L, batch, 2 * G)
        g = model.global_bias(cond, batch)
        if g is not None:
            base = base + g.transpose(0, 1)
        frames = model.local_frames(cond, batch)                      # (B, L, F, 2G) or None
        if frames is not None:                                        # (F, L, B, 2G)
            bias_all = ((frames.permute(2, 1, 0, 3) + base.unsqueeze(0)) * half).contiguous()
        else:                                                         # (L, B, 2G)
            bias_all = (base * half).contiguous()

        # ring buffer of layer inputs: position t % P holds every layer's input at time t
        max_lag = (k - 1) * max(cfg.dilations)
        self.P = 1 << max(1, math.ceil(math.log2(max_lag + 1)))
        self.buf = torch.zeros(L, self.P, batch, R, device=dev, dtype=dt)
        # gate-input bias: constant (no mel), or per step lerped between mel frames
        mel = bias_all.dim() == 4                           # (F, L, B, 2G) frames vs (L, B, 2G)
        if mel:
            frames, bias = bias_all, torch.zeros(L, batch, 2 * G, device=dev, dtype=dt)
        else:
            frames, bias = torch.zeros(0, device=dev, dtype=dt), bias_all
        # gather table: time (mod P) -> flat buf rows of every layer's past taps, (layer, lag)
        t = torch.arange(self.P, device=dev)
        d = torch.tensor(cfg.dilations, device=dev, dtype=torch.long)
        lag = torch.arange(1, k, device=dev)
        # live rows (beam reorder): layer l still reads its last (k-1)*d_l inputs, no older ones
        self._live_layer = torch.cat([torch.full(((k - 1) * dl,), l, device=dev, dtype=torch.long)
                                      for l, dl in enumerate(cfg.dilations)])
        self._live_back = torch.cat([torch.arange(1, (k - 1) * dl + 1, device=dev)
                                     for dl in cfg.dilations])
        pos = (t[:, None, None] - lag[None, None, :] * d[None, :, None]) % self.P
        rows = (pos + torch.arange(L, device=dev)[None, :, None] * self.P).reshape(self.P, -1)
        # one gather and its matmul view (L, B, (k-1)R): a view of the gather at B = 1 or
        # k = 2 (`.view` raises otherwise); else a per-step copy reorders it
        gathered = torch.zeros(L * (k - 1), batch, R, device=dev, dtype=dt)
        src = gathered.view(L, k - 1, batch, R).transpose(1, 2)               # (L, B, k-1, R)
        if batch == 1 or k == 2:
            past, copy = src.reshape(L, batch, (k - 1) * R), []
        else:
            past = torch.zeros(L, batch, (k - 1) * R, device=dev, dtype=dt)
            copy = [past.view(L, batch, k - 1, R), src]
        zpre = torch.zeros(L, batch, 2 * G, device=dev, dtype=dt)
        # preallocated step buffers
        H = torch.zeros(L + 1, batch, R, device=dev, dtype=dt)      # layer inputs (+ last out)
        A = torch.zeros(batch, L, G + 1, device=dev, dtype=dt)       # gate outputs, + ones
        A[:, :, G] = 1.0
        z = torch.zeros(batch, 2 * G, device=dev, dtype=dt)
        self.t = 0
        # Every view the step uses, made once: at batch 1 a step is ~80 tiny kernels, and
        # re-slicing per step (select/slice dispatches) used to cost as much as the math.
        self.state = StepState(
            P=self.P, hop=cfg.hop_length, mel=mel,
            flat=self.buf.view(L * self.P, batch, R), slots=list(self.buf.unbind(1)),
            rows=list(rows.contiguous().unbind(0)), gathered=gathered, copy=copy, past=past,
            w_past=w_past, bias=bias, frames=frames, zpre=zpre,
            embed=model.embed.weight.detach(), h0=H[0],
            layers=[(zpre[l], H[l], w_cur[l], A[:, l, :G], A[:, l], w_res[l], H[l + 1]) for l in range(L)],
            z=z, z_tanh=z[:, :G], z_sig=z[:, G:], h_in=H[:L], a_flat=A.view(batch, -1),
            w_skip=w_skip, skip=torch.zeros(batch, S, device=dev, dtype=dt),
            w_h1=model.head1.weight.t().contiguous(), b_h1=model.head1.bias.expand(batch, -1).contiguous(),
            h1=torch.zeros(batch, cfg.head_channels, device=dev, dtype=dt),
            w_h2=model.head2.weight.t().contiguous(), b_h2=model.head2.bias.expand(batch, -1).contiguous())

    def step(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Feed x_{t-1} (B,) int64; return logits for x_t (B, 256) (written into `out` if given)."""
        if out is None:
            out = torch.empty(self.B, N_CODES, dtype=self.state.z.dtype, device=self.state.z.device)
        step_core(self.state, self.t, x, out)
        self.t += 1
        return out

    def reorder(self, index: torch.Tensor) -> None:
        """Make stream i continue stream index[i]'s history (beam search), in place so
        that the views made in __init__ stay valid. Only the rows a later step can still read
        move (each layer's last (k-1)*d inputs, ~RF rows instead of all L*P): an older row is
        overwritten before it is read again."""
        rows = (self._live_layer * self.P + (self.t - self._live_back) % self.P) * self.B
        flat = self.buf.view(-1, self.R)                                  # (L*P*B, R)
        src = (rows[:, None] + index[None, :]).view(-1)
        dst = (rows[:, None] + torch.arange(self.B, device=rows.device)[None, :]).view(-1)
        flat.index_copy_(0, dst, flat.index_select(0, src))
