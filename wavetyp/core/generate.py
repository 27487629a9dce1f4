"""Generation: streams sampled side by side, beam search, teacher-forced logits.

Logging: at every step the NLL of the chosen code, the entropy and the varentropy are
taken from the model's UNTEMPERED distribution p_t, because the typical set is defined
by p, not by the distribution we happened to sample from. `sampled_nll_bits` is the
NLL under the processed (tempered/truncated) distribution actually sampled.
Temperature/greedy/top-k/top-p/typical-p chunks run in the fused C++ loop (cstep.py);
without it, temperature/greedy chunks run in the scripted loop (fastloop.py) and truncating
settings step in Python through the warpers (decoding.py), as min-p, epsilon, eta and
mirostat always do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from tqdm import tqdm

from wavetyp.core.audio import N_CODES, SILENCE_CODE, mu_law_decode, rms_dbfs
from wavetyp.core.cache import GenerationCache
from wavetyp.core.conditioning import Conditioning, CondSpec
from wavetyp.core.cstep import fused_loop, fused_step
from wavetyp.core.decoding import DecodeBatch, DecodeSettings, MirostatState, encode_settings, process_logits
from wavetyp.core.fastloop import scripted_run_steps
from wavetyp.core.model import WaveNet
from wavetyp.core.runtime import step_threads
from wavetyp.core.typicality import (
    DEFAULT_EPSILON,
    TypicalitySummary,
    chosen_nll_bits,
    step_stats,
    summarize,
)

CHUNK = 256   # steps between vectorized bookkeeping (stats, progress, noise refills)


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


def gumbel_noise(u: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Gumbel noise from uniform draws u (n, B, V), times scale (B, 1): 0 on greedy rows. The
    fused C++ loop does the same operations in place, per stream group (cstep.cpp)."""
    return -torch.log(-torch.log(u.clamp_(1e-10, 1.0 - 1e-7))) * scale


def _log_chunk(logs, lg, codes, c0, c1, r0, B, P, dec, mu, stats=None):
    """The vectorized bookkeeping of a chunk: stats of the untempered distribution and the NLL
    under the processed one (mu: mirostat's cut per step, or None; NaN on teacher-forced steps),
    computed here unless the fused loop gave them (stats). Steps c0..c1 sit in rows r0.. of
    codes and logs (r0 = c0, or 0 when streaming one chunk at a time)."""
    n = c1 - c0
    if stats is None:
        chunk_logits, chunk_codes = lg[:n], codes[r0:r0 + n]
        nll, ent, var = step_stats(chunk_logits, chunk_codes)
        snll = chosen_nll_bits(process_logits(chunk_logits.reshape(-1, N_CODES), dec.repeat(n), mu),
                               chunk_codes.reshape(-1)).view(n, B)
        snll[: max(0, min(P, c1) - c0)] = float("nan")   # teacher-forced steps were not sampled
        stats = (nll, ent, var, snll)
    for key, val in zip(("nll", "ent", "var", "snll"), stats):
        logs[key][r0:r0 + n] = val.cpu()


def generate(model: WaveNet, settings: list[DecodeSettings], n_samples: int,
             cond: Conditioning | None = None, prime: torch.Tensor | None = None,
             seed: int = 0, progress: bool = False, chunk: int = CHUNK,
             threads: int | None = None, weights: str = "fp32",
             sink=None) -> list[GenerationResult]:
    """Generate len(settings) streams of n_samples codes side by side, one setting per stream.

    prime: (B, P) codes teacher-forced as the first P outputs (the model continues after).
    Sampling is Gumbel-max over the processed logits: argmax(logits' + g) ~ softmax(logits').
    threads: torch threads for the step loop (default: 1 below 64 streams); the fused C++ loop
    runs the streams in two groups on two cores from 2 streams up, unless threads == 1.
    weights: "bf16" runs the fused C++ step with its weight matrices rounded to bfloat16 (faster;
    the codes and logs are then those of that rounded model: rescore them to compare).
    sink: streaming. Called after every chunk as sink(t0, codes, logs): that chunk's codes
    (steps t0.., B) int64 and logs {"nll", "ent", "var", "snll"} (steps, B) float32, on the
    host, valid until the next call. Nothing is kept, so memory stays flat in n_samples, and
    the result is []. The codes are the same as without a sink.
    """
    with step_threads(len(settings), threads), torch.inference_mode():
        return _generate(model, settings, n_samples, cond, prime, seed, progress, chunk, weights, sink,
                         groups=1 if threads == 1 else None)


def fast_loop_applies(dec: DecodeBatch) -> bool:
    """Temperature and greedy streams run whole chunks in the scripted loop (fastloop.py),
    which reads the same encoding as the warpers; truncating settings step through them."""
    return not dec.truncating


def _python_chunk(cache, run_steps, c0, c1, x, lg_rows, code_rows, noise_rows, dec, score,
                  prime_rows, P, miro, mu_rows):
    """One chunk without the fused step: the scripted loop (temperature / greedy: run_steps)
    or a Python loop over the warpers (every other setting). Returns the last code."""
    if run_steps is not None:
        x = run_steps(cache.state, c0, c1, x, lg_rows, code_rows, noise_rows, dec.inv_tau, score,
                      prime_rows, P)
        cache.t = c1
        return x
    for t in range(c0, c1):
        out = cache.step(x, out=lg_rows[t - c0])
        x = code_rows[t - c0]
        if t < P:
            x.copy_(prime_rows[t])
            continue
        mu = None
        if miro:
            mu = mu_rows[t - c0]
            mu.copy_(miro.current(out))
        torch.argmax(process_logits(out, dec, mu) + noise_rows[t - c0], dim=-1, out=x)
        if miro:
            miro.update(out, x)
    return x


def _generate(model, settings, n_samples, cond, prime, seed, progress, chunk, weights, sink=None,
              groups=None):
    B = len(settings)
    if B == 0 or n_samples <= 0:
        raise ValueError("need at least one stream and n_samples > 0")
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    dec = encode_settings(settings, dev)
    fast = fast_loop_applies(dec)
    P = 0 if prime is None else int(prime.shape[1])
    if prime is not None:
        prime = prime.to(dev).long().expand(B, -1)
    cache = GenerationCache(model, B, cond)
    fused = fused_loop(cache, dec, model.cfg.dilations, weights, groups)   # the C++ loop, where it applies
    rows = n_samples if sink is None else min(chunk, n_samples)     # streaming: one chunk
    codes = torch.empty(rows, B, dtype=torch.long, device=dev)
    logs = {k: torch.empty(rows, B) for k in ("nll", "ent", "var", "snll")}   # host
    lg = torch.empty(chunk, B, N_CODES, device=dev)
    score = torch.empty(B, N_CODES, device=dev)
    x = torch.full((B,), SILENCE_CODE, dtype=torch.long, device=dev)
    bar = tqdm(total=n_samples * B, disable=not progress, unit="smp", unit_scale=True,
               desc=f"generating {B}x{n_samples}", dynamic_ncols=True)
    lg_rows = list(lg.unbind(0))            # per-step row views: made once, not sliced per step
    prime_rows = (prime.t().contiguous() if prime is not None
                  else torch.zeros(0, B, dtype=torch.long, device=dev))
    run_steps = scripted_run_steps() if fused is None else None
    miro = MirostatState(dec) if dec.any_mirostat else None
    mu_rows = torch.full((chunk, B), float("inf"), device=dev) if miro else None   # mu per step
    for c0 in range(0, n_samples, chunk):
        c1 = min(n_samples, c0 + chunk)
        r0, r1 = (c0, c1) if sink is None else (0, c1 - c0)       # the chunk's rows in codes/logs
        u = torch.rand((c1 - c0, B, N_CODES), generator=gen, device=dev)
        stats = None
        if fused is not None:   # temperature, greedy, top-k, top-p, typical-p: one C++ call
            stats = torch.empty(4, c1 - c0, B, device=dev)   # noise and step statistics: in C++
            x = fused(c0, c1, x, lg, codes[r0:r1], u, prime_rows, P, stats=stats, uniform=True)
            cache.t = c1
        else:
            noise = gumbel_noise(u, dec.noise)
            x = _python_chunk(cache, run_steps if fast else None, c0, c1, x, lg_rows,
                              list(codes[r0:r1].unbind(0)), list(noise.unbind(0)), dec, score,
                              prime_rows, P, miro, mu_rows)
        mu = mu_rows[: c1 - c0].reshape(-1) if miro else None
        _log_chunk(logs, lg, codes, c0, c1, r0, B, P, dec, mu, stats)
        if sink is not None:
            sink(c0, codes[r0:r1].cpu(), {k: v[r0:r1] for k, v in logs.items()})
        bar.update((c1 - c0) * B)
    bar.close()
    if sink is not None:
        return []
    codes = codes.cpu()
    return [GenerationResult(codes[:, b].numpy(), logs["nll"][:, b].numpy(), logs["ent"][:, b].numpy(),
                             logs["var"][:, b].numpy(), logs["snll"][:, b].numpy(), settings[b], P)
            for b in range(B)]


@torch.inference_mode()
def teacher_forced_logits(model: WaveNet, codes: torch.Tensor,
                          cond: Conditioning | None = None) -> torch.Tensor:
    """Run the cache over known codes (B, T) -> (B, T, 256) logits (for exactness checks)."""
    B, T = codes.shape
    dev = next(model.parameters()).device
    codes = codes.to(dev)
    cache = GenerationCache(model, B, cond)
    out = torch.empty(T, B, N_CODES, device=dev)
    x = torch.full((B,), SILENCE_CODE, dtype=torch.long, device=dev)
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
    rep = Conditioning(**{f.name: None if v is None else v.expand(width, *v.shape[1:]).contiguous()
                          for f in fields(cond) for v in [getattr(cond, f.name)]})
    dev = next(model.parameters()).device
    cache = GenerationCache(model, width, rep)
    step = fused_step(cache, model.cfg.dilations) or cache.step     # the C++ step where it applies
    scores = torch.full((width,), float("-inf"), device=dev)
    scores[0] = 0.0                                   # all beams start identical: use beam 0
    parents = torch.empty(n_samples, width, dtype=torch.long, device=dev)
    tokens = torch.empty(n_samples, width, dtype=torch.long, device=dev)
    stats = torch.empty(3, n_samples, width, device=dev)
    x = torch.full((width,), SILENCE_CODE, dtype=torch.long, device=dev)
    for t in tqdm(range(n_samples), disable=not progress, desc=f"beam search W={width}", unit="smp"):
        logits = step(x)
        logp = torch.log_softmax(logits.float(), -1)
        top, flat = (scores[:, None] + logp).view(-1).topk(width)
        parent, tok = flat // N_CODES, flat % N_CODES
        nll, ent, var = step_stats(logits[parent], tok)
        parents[t], tokens[t], stats[:, t] = parent, tok, torch.stack([nll, ent, var])
        cache.reorder(parent)
        scores, x = top, tok
    # backtrack the best final beam, on the host (one copy, not one sync per step)
    parents, tokens, stats = parents.cpu(), tokens.cpu(), stats.cpu()
    b = int(scores.argmax())
    path = torch.empty(n_samples, dtype=torch.long)   # host
    st = torch.empty(3, n_samples)                    # host
    for t in range(n_samples - 1, -1, -1):
        path[t], st[:, t] = tokens[t, b], stats[:, t, b]
        b = int(parents[t, b])
    res = GenerationResult(path.numpy(), st[0].numpy(), st[1].numpy(), st[2].numpy(),
                           np.full(n_samples, np.nan, dtype=np.float32),
                           DecodeSettings(temperature=0.0), 0,
                           info={"beam": width, "log2_prob": float(scores.max()) / math.log(2)})
    return res


# ================================================================ rendering to audio

@dataclass
class Rendered:
    name: str
    result: GenerationResult
    wave: np.ndarray
    rms_dbfs: float
    cond: CondSpec

    def row(self, sample_rate: int) -> dict:
        s = self.result.summary()
        return {"name": self.name, "settings": self.result.settings.name,
                "conditioning": self.cond.label, "seconds": len(self.wave) / sample_rate,
                "rms_dbfs": self.rms_dbfs, "summary": s.to_dict(), **self.result.info}


def render(model: WaveNet, settings: list[DecodeSettings], n_samples: int, cond: CondSpec,
           seed: int = 0, prime: torch.Tensor | None = None, beam: int | None = None,
           prefix: str = "", progress: bool = False, weights: str = "fp32") -> list[Rendered]:
    """Generate one stream per entry of `settings` (or one beam search) and decode to audio;
    weights: the fused step's weights (see generate)."""
    if beam:
        results = [beam_search(model, beam, n_samples, cond.build(model, 1), progress=progress)]
    else:
        results = generate(model, settings, n_samples, cond.build(model, len(settings)),
                           prime=None if prime is None else prime[None], seed=seed, progress=progress,
                           weights=weights)
    out, seen = [], {}
    for r in results:
        wave = mu_law_decode(torch.from_numpy(r.codes)).numpy()
        tag = f"beam{beam}" if beam else r.settings.name
        seen[tag] = seen.get(tag, -1) + 1            # <setting>-<i>: i counts within a setting
        out.append(Rendered(f"{prefix}{tag}-{seen[tag]}", r, wave, rms_dbfs(wave), cond))
    return out
