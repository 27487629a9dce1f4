"""The generation step as one TorchScript-compatible function over preallocated buffers.

At batch 1 a WaveNet step is ~80 kernels of 1-5 us each; the Python around them (argument
parsing, loop bookkeeping) costs about as much again. `run_steps` therefore runs a whole
chunk of sampling steps in TorchScript when it is available (scripted once per process, in
well under a second) and as plain Python otherwise; both run the same code below and give
identical results (tests/test_generate.py). `WAVETYP_JIT=0` forces plain Python.

`GenerationCache` (cache.py) builds the `StepState`; every tensor in it is a buffer or a
view made once, so a step allocates nothing.
"""
import warnings
from typing import List, NamedTuple, Tuple

import torch
from torch import Tensor

from wavetyp.core.runtime import switch_on

# one layer: (zpre_l, h_l, w_cur, a_gate, a_l, w_res, h_next); see GenerationCache
Layer = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


class StepState(NamedTuple):
    """Everything one step touches (GenerationCache builds it; every tensor is a buffer or a
    view made once, so a step allocates nothing)."""
    P: int                      # ring buffer length (a power of two)
    hop: int                    # mel frame hop, for the per-step bias of mel conditioning
    mel: bool
    flat: Tensor                # ring buffer as (L*P, B, R) rows
    slots: List[Tensor]         # slots[p]: the (L, B, R) inputs written at time p (mod P)
    rows: List[Tensor]          # rows[p]: buffer rows of every layer's past taps at time p
    gathered: Tensor
    copy: List[Tensor]          # [] or [dst, src]: reorder the gather for the matmul
    past: Tensor                # (L, B, (k-1)R)
    w_past: Tensor              # (L, (k-1)R, 2G)
    bias: Tensor                # (L, B, 2G) gate bias (constant, or this step's mel bias)
    frames: Tensor              # (F, L, B, 2G) mel-mode bias frames
    zpre: Tensor                # (L, B, 2G) past-tap part of every layer's gate input
    embed: Tensor
    h0: Tensor
    layers: List[Layer]
    z: Tensor
    z_tanh: Tensor
    z_sig: Tensor
    h_in: Tensor
    a_flat: Tensor
    w_skip: Tensor
    skip: Tensor
    w_h1: Tensor
    b_h1: Tensor
    h1: Tensor
    w_h2: Tensor
    b_h2: Tensor


def _lerp_frames(frames: Tensor, t: int, hop: int, out: Tensor) -> Tensor:
    """Mel conditioning: the gate bias at time t, lerped between the frames around it."""
    n = frames.shape[0]
    f0 = min(t // hop, n - 1)
    f1 = min(f0 + 1, n - 1)
    alpha = min(max(float(t - f0 * hop) / hop, 0.0), 1.0)
    return torch.lerp(frames[f0], frames[f1], alpha, out=out)


def step_core(s: StepState, t: int, x: Tensor, out: Tensor) -> None:
    """Feed x_{t-1} (B,) and write the logits for x_t (B, 256) into `out`."""
    p = t % s.P
    bias = s.bias
    if s.mel:
        bias = _lerp_frames(s.frames, t, s.hop, s.bias)
    # every layer's past taps: one gather, one batched matmul
    torch.index_select(s.flat, 0, s.rows[p], out=s.gathered)
    if len(s.copy) > 0:
        s.copy[0].copy_(s.copy[1])
    torch.baddbmm(bias, s.past, s.w_past, out=s.zpre)
    z, zt, zs = s.z, s.z_tanh, s.z_sig
    torch.index_select(s.embed, 0, x, out=s.h0)
    for zpre_l, h_l, w_cur, a_gate, a_l, w_res, h_next in s.layers:
        torch.addmm(zpre_l, h_l, w_cur, out=z)                  # past taps + current tap
        z.tanh_()
        torch.addcmul(zt, zt, zs, out=a_gate)                   # tanh * 2*sigmoid
        torch.addmm(h_l, a_l, w_res, out=h_next)                # h + a W_res + b_res
    s.slots[p].copy_(s.h_in)
    torch.mm(s.a_flat, s.w_skip, out=s.skip)                    # all layers' skips + biases
    s.skip.relu_()
    torch.addmm(s.b_h1, s.skip, s.w_h1, out=s.h1)
    s.h1.relu_()
    torch.addmm(s.b_h2, s.h1, s.w_h2, out=out)


def run_steps(s: StepState, t0: int, t1: int, x: Tensor, logits: List[Tensor],
              codes: List[Tensor], noise: List[Tensor], inv_tau: Tensor, score: Tensor,
              prime: Tensor, n_prime: int) -> Tensor:
    """Steps t0 .. t1-1 of temperature/greedy sampling: code = argmax(logits/tau + noise)
    (Gumbel-max; greedy rows have tau 1 and zero noise), or prime[t] for t < n_prime.
    logits/codes/noise: per-step rows of the chunk. Returns the last code fed back."""
    for t in range(t0, t1):
        i = t - t0
        out = logits[i]
        step_core(s, t, x, out)
        x = codes[i]
        if t < n_prime:
            x.copy_(prime[t])
        else:
            torch.addcmul(noise[i], out, inv_tau, out=score)
            torch.argmax(score, dim=-1, out=x)
    return x


_SCRIPTED = None


def scripted_run_steps():
    """`run_steps` compiled by TorchScript (once per process), or the Python function when
    TorchScript is off (WAVETYP_JIT=0) or unavailable in this torch."""
    global _SCRIPTED
    if _SCRIPTED is None:
        _SCRIPTED = run_steps
        if switch_on("WAVETYP_JIT"):
            try:
                with warnings.catch_warnings():   # torch.jit is deprecated but still the
                    warnings.simplefilter("ignore")   # cheapest way to drop per-op Python
                    _SCRIPTED = torch.jit.script(run_steps)
            except Exception as err:            # noqa: BLE001 - any failure: plain Python
                warnings.warn(f"TorchScript unavailable ({type(err).__name__}); sampling in "
                              "plain Python (slower, same results)")
    return _SCRIPTED
