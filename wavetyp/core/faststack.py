"""The residual stack with a hand-written backward, for training on the CPU.

Autograd's generic backward of the plain layer loop spends about 40% of a CPU training step
outside the matrix products: a zero-filled gradient buffer and a copy for every tap slice
and channel split, then accumulations. `ResidualStack` does the same arithmetic with
exactly the GEMMs needed (2 per layer forward, 4 backward), writing into output buffers
reused by every layer, and interpolates the mel frames one hop at a time (frames_add_)
instead of gathering a frame row per sample. For big batches the gate's elementwise passes
run as one torch.compile'd loop each way (gate_forward / gate_backward). Used by
`WaveNet.forward` when `applies()`; tests/test_faststack.py checks outputs and gradients
against the plain loop.
"""
from __future__ import annotations

import logging
import warnings

import torch

from wavetyp.core.runtime import switch_on

_aten = torch.ops.aten

# The gate's elementwise passes, fused by torch.compile into one loop forward and one
# backward, only for tensors this big (rows x 2G elements): below it the eager passes are
# cheap and a compile (seconds, once per process; cached on disk) would not pay off.
FUSE_MIN_ELEMENTS = 1 << 21


def enabled() -> bool:
    """Not switched off with WAVETYP_FASTSTACK=0 (then training uses the plain autograd loop)."""
    return switch_on("WAVETYP_FASTSTACK")


def fuse_enabled() -> bool:
    """Not switched off with WAVETYP_FUSED_GATE=0 (then the gate runs as eager passes)."""
    return switch_on("WAVETYP_FUSED_GATE")


def applies(h: torch.Tensor) -> bool:
    """Use the hand-written stack? CPU, gradients wanted, no autocast, not switched off."""
    return (h.device.type == "cpu" and torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and enabled())


def fill_taps(X: torch.Tensor, dilation: int, k: int, R: int) -> None:
    """X (B, T, k*R) holds x_t in its last R channels; write the shifted taps x_{t-(k-1-j)d}
    (zeros before the start) into the first (k-1)*R channels."""
    T = X.shape[1]
    h = X[..., (k - 1) * R:]
    for j in range(k - 1):
        shift = (k - 1 - j) * dilation
        tap = X[..., j * R:(j + 1) * R]
        if shift >= T:
            tap.zero_()
            continue
        tap[:, :shift].zero_()
        tap[:, shift:].copy_(h[:, :T - shift])


def interp_weights(hop: int, dtype) -> torch.Tensor:
    """(2, hop): weights of frame f and f+1 for the hop positions f*hop + r (r = 0..hop-1)."""
    w1 = torch.arange(hop, dtype=dtype) / hop
    return torch.stack([1 - w1, w1])


def frames_add_(z: torch.Tensor, fr: torch.Tensor, hop: int) -> None:
    """z (B, T, C) += fr (B, F, C) linearly interpolated between frame centres f*hop
    (clamped to the last frame), as `WaveNet.frame_weights` + lerp, without index gathers."""
    B, T, C = z.shape
    F = fr.shape[1]
    w = interp_weights(hop, z.dtype)
    n = min(T // hop, F - 1)                          # whole hops that have a next frame
    if n:
        zb = z[:, :n * hop].view(B, n, hop, C)
        zb.addcmul_(fr[:, :n, None], w[0, :, None])
        zb.addcmul_(fr[:, 1:n + 1, None], w[1, :, None])
    rest = z[:, n * hop:]
    if rest.shape[1] == 0:
        return
    if n < F - 1:                                     # a part of one hop, next frame exists
        r = rest.shape[1]
        rest.addcmul_(fr[:, n:n + 1], w[0, :r, None]).addcmul_(fr[:, n + 1:n + 2], w[1, :r, None])
    else:                                             # past the last frame centre: that frame
        rest.add_(fr[:, F - 1:F])


def frames_grad(dz: torch.Tensor, F: int, hop: int) -> torch.Tensor:
    """The gradient of `frames_add_` with respect to fr: (B, T, C) -> (B, F, C)."""
    B, T, C = dz.shape
    g = dz.new_zeros(B, F, C)
    w = interp_weights(hop, dz.dtype)
    n = min(T // hop, F - 1)
    if n:
        both = torch.matmul(w, dz[:, :n * hop].view(B, n, hop, C))    # (B, n, 2, C)
        g[:, :n] += both[:, :, 0]
        g[:, 1:n + 1] += both[:, :, 1]
    rest = dz[:, n * hop:]
    if rest.shape[1]:
        if n < F - 1:
            r = rest.shape[1]
            g[:, n:n + 2] += torch.matmul(w[:, :r], rest)
        else:
            g[:, F - 1] += rest.sum(1)
    return g


# ------------------------------------------------------------------ the gate

def gate_forward_eager(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z (N, 2G) gate input (overwritten) -> ts = [tanh half | sigmoid half] and a = t * s.

    tanh(x) = 2 sigmoid(2x) - 1: one sigmoid over the whole contiguous z is ~2x cheaper on
    the CPU than tanh and sigmoid over the two strided halves."""
    G = z.shape[1] // 2
    z[:, :G].mul_(2.0)
    ts = torch.sigmoid(z)
    ts[:, :G].mul_(2.0).sub_(1.0)
    return ts, ts[:, :G] * ts[:, G:]


def gate_backward_eager(da: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """da (N, G) gradient wrt a (overwritten), ts from the forward -> dz (N, 2G)."""
    G = ts.shape[1] // 2
    t, s = ts[:, :G], ts[:, G:]
    dz = torch.empty_like(ts)
    _aten.tanh_backward.grad_input(da * s, t, grad_input=dz[:, :G])
    da.mul_(t)
    _aten.sigmoid_backward.grad_input(da, s, grad_input=dz[:, G:])
    return dz


def _gate_forward_pure(z):
    G = z.shape[1] // 2
    t = 2.0 * torch.sigmoid(2.0 * z[:, :G]) - 1.0
    s = torch.sigmoid(z[:, G:])
    return torch.cat([t, s], 1), t * s


def _gate_backward_pure(da, ts):
    G = ts.shape[1] // 2
    t, s = ts[:, :G], ts[:, G:]
    return torch.cat([da * s * (1.0 - t * t), da * t * s * (1.0 - s)], 1)


_fused: tuple | bool | None = None   # None: not built yet; (forward, backward); False: failed


def _fused_gate():
    """The compiled (forward, backward) pair, built on first use (compiled at first call)."""
    global _fused
    if _fused is None:
        # Inductor imports torch.utils.cpp_extension, which warns "No CUDA runtime is found"
        # on a CUDA build without a GPU: irrelevant to this CPU kernel, alarming in a training log
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        # dynamic shapes: one compile serves every batch x crop size and gate width
        _fused = (torch.compile(_gate_forward_pure, dynamic=True),
                  torch.compile(_gate_backward_pure, dynamic=True))
    return _fused


def _use_fused(x: torch.Tensor, min_elements: int | None) -> bool:
    limit = FUSE_MIN_ELEMENTS if min_elements is None else min_elements
    return x.numel() >= limit and fuse_enabled() and _fused is not False


def _run_fused(which: int, eager, args):
    """Call the compiled function; if compiling fails (no C++ compiler, say), warn once and
    use the eager passes from then on."""
    global _fused
    try:
        return _fused_gate()[which](*args)
    except Exception as e:                                  # noqa: BLE001 - any compile failure
        _fused = False
        warnings.warn(f"fused gate unavailable ({type(e).__name__}: {e}); using eager ops "
                      "(set WAVETYP_FUSED_GATE=0 to skip the attempt)", RuntimeWarning)
        return eager(*args)


def gate_forward(z: torch.Tensor, min_elements: int | None = None):
    """`gate_forward_eager`, fused into one compiled loop for big inputs."""
    if _use_fused(z, min_elements):
        return _run_fused(0, gate_forward_eager, (z,))
    return gate_forward_eager(z)


def gate_backward(da: torch.Tensor, ts: torch.Tensor, min_elements: int | None = None):
    """`gate_backward_eager`, fused into one compiled loop for big inputs."""
    if _use_fused(ts, min_elements):
        return _run_fused(1, gate_backward_eager, (da, ts))
    return gate_backward_eager(da, ts)


# ------------------------------------------------------------------ the stack

class ResidualStack(torch.autograd.Function):
    """(B, T, R) embedded inputs -> (B, T, S) sum of the skip outputs of every layer.

    Per layer l with dilation d: z = [x_{t-(k-1)d} .. x_t] @ Wd^T + bd (+ zc[l]);
    a = tanh(z[:G]) * sigmoid(z[G:]); o = a @ Wrs^T + brs; x <- x + o[:R]; skip += o[R:].
    Conditioning terms added to each layer's gate input (either may be None):
    gbias (B, L, 2G) from the labels, and frames (B, L, F, 2G) at frame rate, interpolated
    to the sample rate inside (frames_add_) rather than materialised for all layers at once.
    weights: Wd, bd, Wrs, brs for every layer, in order.
    """

    @staticmethod
    def forward(ctx, h0, gbias, frames, hop, dilations, *weights):
        B, T, R = h0.shape
        N, L = B * T, len(dilations)
        k = weights[0].shape[1] // R
        G2 = weights[0].shape[0]
        G, S = G2 // 2, weights[2].shape[0] - R
        skip = h0.new_zeros(N, S)
        # one buffer each for z and o, reused by every layer: a fresh 10-50 MB tensor per GEMM
        # page-faults its memory in again whenever malloc cannot hand back the same block
        z_buf, o_buf = h0.new_empty(N, G2), h0.new_empty(N, R + S)
        X = h0.new_empty(B, T, k * R)
        X[..., (k - 1) * R:] = h0
        saved = []
        for l, d in enumerate(dilations):
            Wd, bd, Wrs, brs = weights[4 * l: 4 * l + 4]
            fill_taps(X, d, k, R)
            z = torch.addmm(bd, X.view(N, k * R), Wd.t(), out=z_buf)
            if gbias is not None:
                z.view(B, T, G2).add_(gbias[:, l, None])
            if frames is not None:
                frames_add_(z.view(B, T, G2), frames[:, l], hop)
            ts, a = gate_forward(z)                   # ts = [tanh half | sigmoid half], kept
            del z
            o = torch.addmm(brs, a, Wrs.t(), out=o_buf)   # (N, R + S)
            skip.add_(o[:, R:])
            saved += [X, ts, a]
            if l + 1 < L:                             # next layer's input goes straight into its taps
                Xn = h0.new_empty(B, T, k * R)
                torch.add(X[..., (k - 1) * R:], o[:, :R].view(B, T, R), out=Xn[..., (k - 1) * R:])
                X = Xn
            del o
        ctx.save_for_backward(*saved, *weights)
        ctx.dilations, ctx.shape = dilations, (B, T, R, k, G, S)
        ctx.hop = hop
        ctx.gbias_shape = None if gbias is None else gbias.shape
        ctx.frames_shape = None if frames is None else frames.shape
        return skip.view(B, T, S)

    @staticmethod
    def backward(ctx, g_skip):
        B, T, R, k, G, S = ctx.shape
        N, L = B * T, len(ctx.dilations)
        tensors = ctx.saved_tensors
        acts, weights = tensors[:3 * L], tensors[3 * L:]
        # Go = [grad wrt this layer's residual output | grad wrt its skip output]; the skip
        # half is the same for every layer, the residual half is carried down the stack
        # (zero at the top: the last layer's residual output is unused).
        Go = g_skip.new_empty(N, R + S)
        Go[:, R:] = g_skip.reshape(N, S)
        Go[:, :R].zero_()
        gb_skip = Go[:, R:].sum(0)
        gh = Go[:, :R].view(B, T, R)
        g_gbias = (g_skip.new_empty(ctx.gbias_shape)
                   if ctx.gbias_shape is not None and ctx.needs_input_grad[1] else None)
        g_frames = (g_skip.new_empty(ctx.frames_shape)
                    if ctx.frames_shape is not None and ctx.needs_input_grad[2] else None)
        grads = [None] * (4 * L)
        da_buf, dX_buf = g_skip.new_empty(N, G), g_skip.new_empty(N, k * R)   # reused per layer
        for l in reversed(range(L)):
            d = ctx.dilations[l]
            X, ts, a = acts[3 * l: 3 * l + 3]
            Wd, Wrs = weights[4 * l], weights[4 * l + 2]
            grads[4 * l + 2] = Go.t().mm(a)                               # dWrs (R+S, G)
            grads[4 * l + 3] = torch.cat([Go[:, :R].sum(0), gb_skip])     # dbrs
            dz = gate_backward(torch.mm(Go, Wrs, out=da_buf), ts)         # (N, 2G)
            grads[4 * l] = dz.t().mm(X.view(N, k * R))                    # dWd (2G, kR)
            grads[4 * l + 1] = dz.sum(0)
            if g_gbias is not None:
                torch.sum(dz.view(B, T, 2 * G), 1, out=g_gbias[:, l])
            if g_frames is not None:
                g_frames[:, l] = frames_grad(dz.view(B, T, 2 * G), ctx.frames_shape[2], ctx.hop)
            dX = torch.mm(dz, Wd, out=dX_buf).view(B, T, k * R)
            del dz
            # grad wrt this layer's input: the residual path plus every tap, shifted back
            gh.add_(dX[..., (k - 1) * R:])
            for j in range(k - 1):
                shift = (k - 1 - j) * d
                if shift < T:
                    gh[:, :T - shift].add_(dX[:, shift:, j * R:(j + 1) * R])
            del dX
        return (gh.clone(), g_gbias, g_frames, None, None, *grads)
