"""The incremental cache ("fast WaveNet"): ring buffers of every layer's past inputs.

Every dilated layer needs its own input at t - j*d for the k-1 past taps. Those are known
before the step starts, so one gather fetches the past taps of all layers and one batched
matmul turns them into every layer's gate input (layers with dilation >= FAR_CHUNK know
them FAR_CHUNK steps ahead and do this once per chunk); within the step each layer then
does one small matmul for the current tap, the gate, and one residual matmul, and one
matmul at the end sums every layer's skip output. Work per step is O(layers), independent
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

FAR_CHUNK = 8  # steps whose past taps far layers fetch at once (measured: `python -m wavetyp.bench`)


class GenerationCache:
    """Ring buffers of every layer's past inputs plus preallocated step buffers.

    `step(x)` consumes the codes x_{t-1} (B,) and returns the logits for x_t (B, 256):
    exactly what the parallel forward pass gives at position t.
    """

    @torch.no_grad()   # plain tensors (not inference tensors), so step() works in any mode
    def __init__(self, model: WaveNet, batch: int, cond: Conditioning | None = None,
                 far_chunk: int | None = None):
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
        # "Far" layers (dilation >= C) have every past tap of the next C steps in the buffer
        # already (lag >= d >= C), so their past-tap matmuls run once per C steps, as one
        # (C*B)-row matmul instead of C one-row ones: at batch 1 each weight matrix is then
        # read once per C steps. "Near" layers (dilation < C) do theirs every step.
        far_chunk = FAR_CHUNK if far_chunk is None else far_chunk
        C = far_chunk if 2 <= far_chunk <= self.P // 2 else 0
        near = [l for l, d in enumerate(cfg.dilations) if not C or d < C]
        far = [l for l, d in enumerate(cfg.dilations) if C and d >= C]
        self.far = far                                   # reorder() and tests need it
        # gate-input bias: constant (no mel), or per step lerped between mel frames
        mel = bias_all.dim() == 4                           # (F, L, B, 2G) frames vs (L, B, 2G)
        zeros = lambda n: torch.zeros(n, batch, 2 * G, device=dev, dtype=dt)  # noqa: E731
        empty = torch.zeros(0, device=dev, dtype=dt)
        if mel:
            frames_near, frames_far = bias_all[:, near].contiguous(), bias_all[:, far].contiguous()
            bias_near, bias_far = zeros(len(near)), zeros(len(far))
            chunk_bias = torch.zeros(1, device=dev, dtype=dt)          # mel bias added per step
        else:
            frames_near = frames_far = bias_far = empty
            bias_near = bias_all[near].contiguous()
            chunk_bias = bias_all[far].repeat(1, max(C, 1), 1)         # (Lf, C*B, 2G)
        t = torch.arange(self.P, device=dev)

        def rows(layers, steps):
            """Gather table: start time (mod P) -> flat buf rows of every past tap, ordered
            (layer, step, lag) so one gather fetches all of them."""
            d = torch.tensor([cfg.dilations[l] for l in layers], device=dev, dtype=torch.long)
            base_rows = torch.tensor(layers, device=dev, dtype=torch.long) * self.P
            lag = torch.arange(1, k, device=dev)
            s = torch.arange(steps, device=dev)
            pos = (t[:, None, None, None] + s[None, None, :, None]
                   - lag[None, None, None, :] * d[None, :, None, None]) % self.P
            return (pos + base_rows[None, :, None, None]).reshape(self.P, -1).contiguous()

        def past_layout(n_layers, steps):
            """Buffers for one gather and its matmul view (Ln, steps*B, (k-1)R). That is a view
            of the gather at B = 1 or k = 2 (`.view` raises otherwise); else a copy reorders it."""
            g = torch.zeros(n_layers * steps * (k - 1), batch, R, device=dev, dtype=dt)
            src = g.view(n_layers, steps, k - 1, batch, R).transpose(2, 3)   # (Ln, s, B, k-1, R)
            if batch == 1 or k == 2:
                return g, src.reshape(n_layers, steps * batch, (k - 1) * R), None
            past = torch.zeros(n_layers, steps * batch, (k - 1) * R, device=dev, dtype=dt)
            return g, past, (past.view(n_layers, steps, batch, k - 1, R), src)

        gathered_near, past_near, copy_near = past_layout(len(near), 1)
        zpre_near = zeros(len(near))
        if far:
            gathered_far, past_far, copy_far = past_layout(len(far), C)
            zpre_far = torch.zeros(len(far), C, batch, 2 * G, device=dev, dtype=dt)
            zstep_far = zeros(len(far)) if mel else empty              # mel: this step's bias
        else:
            gathered_far = past_far = zpre_far = zstep_far = empty
            copy_far = None
        # preallocated step buffers
        H = torch.zeros(L + 1, batch, R, device=dev, dtype=dt)      # layer inputs (+ last out)
        A = torch.zeros(batch, L, G + 1, device=dev, dtype=dt)       # gate outputs, + ones
        A[:, :, G] = 1.0
        z = torch.zeros(batch, 2 * G, device=dev, dtype=dt)
        self.t = 0

        # Every view the step uses, made once: at batch 1 a step is ~80 tiny kernels, and
        # re-slicing per step (select/slice dispatches) used to cost as much as the math.
        def layer_views(j):
            zp = {l: zpre_near[i] for i, l in enumerate(near)}
            for i, l in enumerate(far):
                zp[l] = zstep_far[i] if mel else zpre_far[i, j]
            return [(zp[l], H[l], w_cur[l], A[:, l, :G], A[:, l], w_res[l], H[l + 1])
                    for l in range(L)]

        self.state = StepState(
            P=self.P, C=max(C, 1), hop=cfg.hop_length, mel=mel, has_far=bool(far),
            flat=self.buf.view(L * self.P, batch, R), slots=list(self.buf.unbind(1)),
            rows_near=list(rows(near, 1).unbind(0)), gathered_near=gathered_near,
            copy_near=list(copy_near or ()), past_near=past_near, w_past_near=w_past[near].contiguous(),
            bias_near=bias_near, frames_near=frames_near, zpre_near=zpre_near,
            rows_far=list(rows(far, C).unbind(0)) if far else [], gathered_far=gathered_far,
            copy_far=list(copy_far or ()), past_far=past_far, w_past_far=w_past[far].contiguous(),
            chunk_bias=chunk_bias, zpre_far=zpre_far,
            zpre_far_flat=zpre_far.view(len(far), C * batch, 2 * G) if far else empty,
            frames_far=frames_far, bias_far=bias_far, zstep_far=zstep_far,
            embed=model.embed.weight.detach(), h0=H[0],
            layers=[layer_views(j) for j in range(max(C, 1))],             # one list per step of a chunk
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
        that the views made in __init__ stay valid."""
        self.buf.copy_(self.buf.index_select(2, index))
        if self.far:   # far layers' precomputed chunk belongs to the old streams too
            zf = self.state.zpre_far
            zf.copy_(zf.index_select(2, index))

