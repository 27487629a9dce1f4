"""Fast incremental generation: a ring-buffer cache, decoding pieces over logits, beam search.

The cache ("fast WaveNet"): every dilated layer needs its own input at t - j*d for the
k-1 past taps. Those are known before the step starts, so one gather fetches the past
taps of all layers and one batched matmul turns them into every layer's gate input
(layers with dilation >= 8 even know them 8 steps ahead and do this once per 8 steps);
within the step each layer then does one small matmul for the current tap, the gate,
and one residual matmul, and one matmul at the end sums every layer's skip output. Work
per step is O(layers), independent of the receptive field and of how much has been
generated; memory is flat in length. The step itself lives in fastloop.py, where
temperature/greedy sampling runs a whole chunk of steps in TorchScript.

Logging: at every step the NLL of the chosen code, the entropy and the varentropy are
taken from the model's UNTEMPERED distribution p_t, because the typical set is defined
by p, not by the distribution we happened to sample from. `sampled_nll_bits` is the
NLL under the processed (tempered/truncated) distribution actually sampled.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from .audio import N_CODES, SILENCE_CODE
from .fastloop import StepState, scripted_run_steps, step_core
from .model import Conditioning, WaveNet
from .typicality import DEFAULT_EPSILON, TypicalitySummary, chosen_nll_bits, step_stats, summarize

CHUNK = 256   # steps between vectorized bookkeeping (stats, progress, noise refills)
FAR_CHUNK = 8  # steps whose past taps far layers fetch at once (measured: `python -m wavetyp.bench`)


# ================================================================ decoding pieces

@dataclass(frozen=True)
class DecodeSettings:
    """One stream's decoding: temperature 0 means greedy (argmax); None/1.0 disable a filter."""
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        for name in ("top_p", "typical_p"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0 < v <= 1):
                raise ValueError(f"{name} must be in (0, 1], got {v}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def name(self) -> str:
        if self.greedy:
            return "greedy"
        parts = [f"tau{self.temperature:g}"]
        for k in ("top_k", "top_p", "typical_p"):
            if getattr(self, k) is not None:
                parts.append(f"{k.replace('_', '')}{getattr(self, k):g}")
        return "-".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


def settings_tensors(settings: list[DecodeSettings], device="cpu") -> dict[str, torch.Tensor]:
    """Per-stream settings as tensors (B,), with neutral values where a filter is off."""
    return {
        "temperature": torch.tensor([s.temperature for s in settings], device=device),
        "top_k": torch.tensor([s.top_k or N_CODES for s in settings], device=device),
        "top_p": torch.tensor([s.top_p or 1.0 for s in settings], device=device),
        "typical_p": torch.tensor([s.typical_p or 1.0 for s in settings], device=device),
    }


NEG_INF = float("-inf")


def apply_temperature(logits, temperature):
    """logits / tau per row; tau = 0 rows are left as they are (greedy takes the argmax)."""
    t = temperature.to(logits.dtype).unsqueeze(-1)
    return logits / torch.where(t > 0, t, torch.ones_like(t))


def apply_greedy(logits, temperature):
    """tau = 0 rows become a point mass on their argmax (0 there, -inf elsewhere)."""
    rows = temperature == 0
    if not bool(rows.any()):
        return logits
    point = torch.full_like(logits, NEG_INF).scatter(-1, logits.argmax(-1, keepdim=True), 0.0)
    return torch.where(rows.unsqueeze(-1), point, logits)


def apply_top_k(logits, top_k):
    """Keep the k largest logits per row (k = 256 keeps all)."""
    kth = logits.sort(-1, descending=True).values.gather(-1, (top_k.long() - 1).clamp(0, N_CODES - 1).unsqueeze(-1))
    return logits.masked_fill(logits < kth, NEG_INF)


def apply_top_p(logits, top_p):
    """Nucleus: keep the smallest set of most likely codes whose probability reaches p."""
    sorted_logits, order = logits.sort(-1, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs                 # mass strictly before each code
    p = top_p.to(probs.dtype).unsqueeze(-1)
    drop_sorted = (before >= p) & (p < 1)             # p = 1 keeps everything, despite rounding
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def apply_typical_p(logits, typical_p):
    """Locally typical sampling (Meister et al. 2023): keep codes whose surprisal is closest
    to the entropy until their mass reaches p."""
    logp = logits.log_softmax(-1)
    p = logp.exp()
    ent = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1, keepdim=True)
    dist = (-logp - ent).abs()
    sorted_dist, order = dist.sort(-1)
    sp = p.gather(-1, order)
    before = sp.cumsum(-1) - sp
    tp = typical_p.to(p.dtype).unsqueeze(-1)
    drop_sorted = (before >= tp) & (tp < 1)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def process_logits(logits: torch.Tensor, st: dict[str, torch.Tensor]) -> torch.Tensor:
    """The distribution each stream samples from, as logits (-inf = excluded):
    temperature, then top-k, top-p and typical-p on the tempered distribution, then greedy."""
    out = apply_temperature(logits, st["temperature"])
    if bool((st["top_k"] < N_CODES).any()):
        out = apply_top_k(out, st["top_k"])
    if bool((st["top_p"] < 1).any()):
        out = apply_top_p(out, st["top_p"])
    if bool((st["typical_p"] < 1).any()):
        out = apply_typical_p(out, st["typical_p"])
    return apply_greedy(out, st["temperature"])


def needs_truncation(st: dict[str, torch.Tensor]) -> bool:
    return bool((st["top_k"] < N_CODES).any() or (st["top_p"] < 1).any()
                or (st["typical_p"] < 1).any())


# ================================================================ the cache

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


# ================================================================ results

@dataclass
class GenerationResult:
    """One generated (or teacher-forced) stream and its per-step logs."""
    codes: np.ndarray               # (T,) int64
    nll_bits: np.ndarray            # (T,) under the untempered model distribution
    entropy_bits: np.ndarray        # (T,)
    varentropy_bits2: np.ndarray    # (T,)
    sampled_nll_bits: np.ndarray    # (T,) under the distribution actually sampled
    settings: DecodeSettings
    prime_len: int = 0              # the first prime_len codes were teacher-forced
    info: dict = field(default_factory=dict)

    def summary(self, epsilon: float = DEFAULT_EPSILON) -> TypicalitySummary:
        """Typicality over the generated part (teacher-forced priming excluded)."""
        s = slice(self.prime_len, None)
        return summarize(self.nll_bits[s], self.entropy_bits[s], self.varentropy_bits2[s], epsilon)


def _gumbel(shape, generator, device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


class step_threads:
    """Run the step loop with few threads: per-step matrices are tiny, and on a busy CPU
    a second OpenMP thread costs far more in synchronisation than it gains (measured in
    `python -m wavetyp.bench`). Large batches keep the caller's thread count."""

    def __init__(self, batch: int, threads: int | None = None):
        self.n = threads or (1 if batch < 64 else torch.get_num_threads())

    def __enter__(self):
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


def generate(model: WaveNet, settings: list[DecodeSettings], n_samples: int,
             cond: Conditioning | None = None, prime: torch.Tensor | None = None,
             seed: int = 0, progress: bool = False, chunk: int = CHUNK,
             threads: int | None = None) -> list[GenerationResult]:
    """Generate len(settings) streams of n_samples codes side by side, one setting per stream.

    prime: (B, P) codes teacher-forced as the first P outputs (the model continues after).
    Sampling is Gumbel-max over the processed logits: argmax(logits' + g) ~ softmax(logits').
    threads: torch threads for the step loop (default: 1 below 64 streams).
    """
    with step_threads(len(settings), threads), torch.inference_mode():
        return _generate(model, settings, n_samples, cond, prime, seed, progress, chunk)


def _generate(model, settings, n_samples, cond, prime, seed, progress, chunk):
    B = len(settings)
    if B == 0 or n_samples <= 0:
        raise ValueError("need at least one stream and n_samples > 0")
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    st = settings_tensors(settings, dev)
    truncating = needs_truncation(st)
    inv_tau = torch.where(st["temperature"] > 0, 1.0 / st["temperature"].clamp_min(1e-30),
                          torch.ones_like(st["temperature"])).unsqueeze(-1)
    noise_on = (st["temperature"] > 0).float().unsqueeze(-1)          # greedy rows: no noise
    P = 0 if prime is None else int(prime.shape[1])
    if prime is not None:
        prime = prime.to(dev).long().expand(B, -1)
    cache = GenerationCache(model, B, cond)
    codes = torch.empty(n_samples, B, dtype=torch.long, device=dev)
    logs = {k: torch.empty(n_samples, B) for k in ("nll", "ent", "var", "snll")}
    lg = torch.empty(chunk, B, N_CODES, device=dev)
    score = torch.empty(B, N_CODES, device=dev)
    x = torch.full((B,), SILENCE_CODE, dtype=torch.long, device=dev)
    bar = tqdm(total=n_samples * B, disable=not progress, unit="smp", unit_scale=True,
               desc=f"generating {B}x{n_samples}", dynamic_ncols=True)
    lg_rows = list(lg.unbind(0))            # per-step row views: made once, not sliced per step
    prime_rows = (prime.t().contiguous() if prime is not None
                  else torch.zeros(0, B, dtype=torch.long, device=dev))
    run_steps = scripted_run_steps()
    for c0 in range(0, n_samples, chunk):
        c1 = min(n_samples, c0 + chunk)
        noise = _gumbel((c1 - c0, B, N_CODES), gen, dev) * noise_on
        noise_rows = list(noise.unbind(0))
        code_rows = list(codes[c0:c1].unbind(0))  # per chunk: never one view per sample of the run
        if not truncating:   # temperature / greedy: the whole chunk in one (scripted) call
            x = run_steps(cache.state, c0, c1, x, lg_rows, code_rows, noise_rows, inv_tau, score,
                          prime_rows, P)
            cache.t = c1
        else:
            for t in range(c0, c1):
                out = cache.step(x, out=lg_rows[t - c0])
                x = code_rows[t - c0]
                if t < P:
                    x.copy_(prime_rows[t])
                else:
                    torch.argmax(process_logits(out, st) + noise_rows[t - c0], dim=-1, out=x)
        # vectorized bookkeeping for the chunk: stats of the untempered distribution
        chunk_logits, chunk_codes = lg[: c1 - c0], codes[c0:c1]
        nll, ent, var = step_stats(chunk_logits, chunk_codes)
        flat_st = {k: v.repeat(c1 - c0) for k, v in st.items()}
        snll = chosen_nll_bits(process_logits(chunk_logits.reshape(-1, N_CODES), flat_st),
                               chunk_codes.reshape(-1)).view(c1 - c0, B)
        for key, val in (("nll", nll), ("ent", ent), ("var", var), ("snll", snll)):
            logs[key][c0:c1] = val.cpu()
        if P > c0:  # teacher-forced steps were not sampled
            logs["snll"][c0:min(P, c1)] = float("nan")
        bar.update((c1 - c0) * B)
    bar.close()
    codes = codes.cpu()
    return [GenerationResult(codes[:, b].numpy(), logs["nll"][:, b].numpy(), logs["ent"][:, b].numpy(),
                             logs["var"][:, b].numpy(), logs["snll"][:, b].numpy(), settings[b], P)
            for b in range(B)]


@torch.inference_mode()
def teacher_forced_logits(model: WaveNet, codes: torch.Tensor, cond: Conditioning | None = None,
                          far_chunk: int | None = None) -> torch.Tensor:
    """Run the cache over known codes (B, T) -> (B, T, 256) logits (for exactness checks)."""
    B, T = codes.shape
    cache = GenerationCache(model, B, cond, far_chunk)
    out = torch.empty(T, B, N_CODES)
    x = torch.full((B,), SILENCE_CODE, dtype=torch.long)
    for t in range(T):
        cache.step(x, out=out[t])
        x = codes[:, t]
    return out.transpose(0, 1)


def beam_search(model: WaveNet, width: int, n_samples: int, cond: Conditioning | None = None,
                progress: bool = False) -> GenerationResult:
    """Beam search for the most likely continuation: score = summed log-probability under the
    model. `cond` describes ONE stream; it is repeated across the beams."""
    with step_threads(width), torch.inference_mode():
        return _beam_search(model, width, n_samples, cond, progress)


def _beam_search(model, width, n_samples, cond, progress):
    if width < 1:
        raise ValueError("beam width must be >= 1")
    cond = cond or Conditioning()
    rep = Conditioning(*(None if v is None else v.expand(width, *v.shape[1:]).contiguous()
                         for v in (cond.digit, cond.speaker, cond.mel, cond.mel_present)))
    cache = GenerationCache(model, width, rep)
    scores = torch.full((width,), float("-inf"))
    scores[0] = 0.0                                   # all beams start identical: use beam 0
    parents = torch.empty(n_samples, width, dtype=torch.long)
    tokens = torch.empty(n_samples, width, dtype=torch.long)
    stats = torch.empty(3, n_samples, width)
    x = torch.full((width,), SILENCE_CODE, dtype=torch.long)
    for t in tqdm(range(n_samples), disable=not progress, desc=f"beam search W={width}", unit="smp"):
        logits = cache.step(x)
        logp = torch.log_softmax(logits.float(), -1)
        top, flat = (scores[:, None] + logp).view(-1).topk(width)
        parent, tok = flat // N_CODES, flat % N_CODES
        nll, ent, var = step_stats(logits[parent], tok)
        parents[t], tokens[t], stats[:, t] = parent, tok, torch.stack([nll, ent, var])
        cache.reorder(parent)
        scores, x = top, tok
    # backtrack the best final beam
    b = int(scores.argmax())
    path = torch.empty(n_samples, dtype=torch.long)
    st = torch.empty(3, n_samples)
    for t in range(n_samples - 1, -1, -1):
        path[t], st[:, t] = tokens[t, b], stats[:, t, b]
        b = int(parents[t, b])
    res = GenerationResult(path.numpy(), st[0].numpy(), st[1].numpy(), st[2].numpy(),
                           np.full(n_samples, np.nan, dtype=np.float32),
                           DecodeSettings(temperature=0.0), 0,
                           info={"beam": width, "log2_prob": float(scores.max()) / math.log(2)})
    return res
