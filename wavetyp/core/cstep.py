"""The sampling chunk loop fused into one C++ function (cstep.cpp), compiled at first use.

At batch 1 the TorchScript loop (fastloop.py) still launches ~80 small kernels a step, and
their fixed costs dominate; cstep.cpp runs a whole chunk of steps (every layer's products,
the gate, the head, top-k/top-p/typical-p and the Gumbel-max choice) in one call over the
same GenerationCache buffers and folded weights, so it is a drop-in for `fastloop.run_steps`
and for the warper loop on temperature, greedy, top-k, top-p and typical-p streams (min-p,
epsilon, eta and mirostat stay in Python); `FusedStep` serves beam search one step at a
time. It also does the chunk's bookkeeping that would otherwise run on one core after it: the
Gumbel noise from the chunk's uniform draws (the same ATen operations, so the same bits) and
each step's statistics (NLL, entropy, varentropy, sampled NLL). Logits agree with the parallel pass to float rounding (tests/test_cstep.py); codes
equal the other loops' unless two candidates' scores, or a nucleus boundary, tie to within it.

The extension is built once per machine by torch.utils.cpp_extension (cached under
~/.cache/torch_extensions, keyed by the source and by the instruction set it was built for:
-mavx2 -mfma only when this CPU has them). No compiler, or a failed build: a one-line
notice and the TorchScript loop. `WAVETYP_CSTEP=0` switches it off.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
from pathlib import Path

import torch

from wavetyp.core.audio import N_CODES
from wavetyp.core.cache import GenerationCache
from wavetyp.core.decoding import DecodeBatch, DecodeSettings, encode_settings
from wavetyp.core.runtime import cpu_flags, switch_on

SOURCE = Path(__file__).with_name("cstep.cpp")
_EXT: object = None          # None: not tried yet; False: unavailable in this process


def enabled() -> bool:
    """Not switched off with WAVETYP_CSTEP=0 (read at every call)."""
    return switch_on("WAVETYP_CSTEP")


def isa_flags() -> list[str]:
    """Compiler flags for this CPU's vector units (never -march=native: the cached build must
    also run on any other CPU with the same flags)."""
    have = cpu_flags()
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= have else []


def build_name() -> str:
    """The cached build's name: source digest and instruction set."""
    digest = hashlib.sha1(SOURCE.read_bytes()).hexdigest()[:10]
    return f"wavetyp_cstep_{'avx2' if isa_flags() else 'generic'}_{digest}"


def _built(name: str) -> bool:
    """Is this build in torch's extension cache already? (True when that cannot be told.)"""
    try:
        from torch.utils.cpp_extension import _get_build_directory
        return any(Path(_get_build_directory(name, verbose=False)).glob(f"{name}*.so"))
    except Exception:                       # noqa: BLE001 - a private helper: stay quiet
        return True


def extension():
    """The compiled module, or None (build failed or no compiler: said once per process)."""
    global _EXT
    if _EXT is None:
        _EXT = False
        log = logging.getLogger("torch.utils.cpp_extension")   # its CUDA_HOME note is noise here
        level = log.level
        try:
            log.setLevel(logging.ERROR)
            from torch.utils.cpp_extension import _get_build_directory, load
            if not _built(build_name()):
                where = Path(_get_build_directory(build_name(), verbose=False)).parent
                print("note: compiling the fused C++ sampling step (once per machine; a minute or "
                      f"two; cached under {where})", file=sys.stderr, flush=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _EXT = load(name=build_name(), sources=[str(SOURCE)],
                            extra_cflags=["-O3", *isa_flags()], verbose=False)
        except Exception as err:            # noqa: BLE001 - any failure: the TorchScript loop
            print(f"note: fused C++ sampling step unavailable ({type(err).__name__}: "
                  f"{str(err).splitlines()[0][:120] if str(err) else ''}); using the TorchScript loop",
                  file=sys.stderr)
        finally:
            log.setLevel(level)
    return _EXT or None


def supported(dec: DecodeBatch) -> bool:
    """Settings the C++ loop implements: temperature, greedy, top-k, top-p, typical-p (min-p,
    epsilon, eta and mirostat: the warpers)."""
    return not (dec.any_min_p or dec.any_epsilon or dec.any_eta or dec.any_mirostat)


def applies(cache: GenerationCache, dec: DecodeBatch) -> bool:
    """Supported settings, a float32 model on the CPU, not switched off, and a build."""
    z = cache.state.z
    return (supported(dec) and z.device.type == "cpu" and z.dtype == torch.float32
            and enabled() and extension() is not None)


WEIGHTS = ("fp32", "bf16")   # the step's weight matrices: float32, or rounded to bfloat16
# From this many streams up, a chunk's streams run in two groups on two cores (they are
# independent within a chunk; same codes and logits per stream): 1.26x at 2 streams, 1.62-1.68x
# at 4-16 on 2 AMD EPYC cores (docs/performance.md). generate(threads=1) keeps one group.
SPLIT_MIN_STREAMS = 2


def stream_groups(batch: int) -> int:
    """How many threads run a chunk's streams: 2 from SPLIT_MIN_STREAMS streams up where this
    process may use two cores, else 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:           # not Linux
        cores = os.cpu_count() or 1
    return 2 if batch >= SPLIT_MIN_STREAMS and cores >= 2 else 1


def pack_weights(w: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """(..., K, N) float -> the panel layout cstep.cpp reads: (..., N/16, K, 16) float32, N
    zero-padded to a multiple of 16 (every tile then streams its weights in order); or, bf16,
    (..., N/16, K, 8) int32 words of bfloat16 pairs: word j holds column j (low half) and column
    j + 8 (high half) of its panel."""
    *lead, K, N = w.shape
    if bf16 and N % 16:
        raise ValueError(f"bf16 step weights need widths that are multiples of 16, got {N}")
    n16 = -(-N // 16) * 16
    w = torch.nn.functional.pad(w, (0, n16 - N))
    if not bf16:
        return w.reshape(*lead, K, n16 // 16, 16).transpose(-3, -2).contiguous()
    h = w.to(torch.bfloat16).view(torch.int16).long() & 0xFFFF                 # round to nearest even
    h = h.reshape(*lead, K, n16 // 16, 2, 8)
    words = h[..., 0, :] | (h[..., 1, :] << 16)                                # (..., K, N/16, 8)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)   # as int32 bits
    return words.transpose(-3, -2).contiguous()


class FusedLoop:
    """`run_steps` for one GenerationCache: the cache's buffers and folded weights, repacked
    once into the layouts cstep.cpp reads (the ring buffer itself is shared, not copied).
    Weight matrices go in panels of 16 columns (pack_weights); weights="bf16" rounds the four
    of them (not biases, embedding or conditioning) to bfloat16, half the bytes each step
    streams; the arithmetic stays float32."""

    def __init__(self, cache: GenerationCache, dec: DecodeBatch, dilations: list[int],
                 weights: str = "fp32", groups: int | None = None):
        if weights not in WEIGHTS:
            raise ValueError(f"step weights must be one of {WEIGHTS}, got {weights!r}")
        s = cache.state
        L, G = cache.L, cache.G
        self.ext = extension()
        self.cache = cache
        self.groups = stream_groups(cache.B) if groups is None else groups
        self.s = s
        self.buf = cache.buf
        R = cache.R
        wz = torch.cat([s.w_past, torch.stack([lay[2] for lay in s.layers])], 1)   # (L, kR, 2G)
        wz = wz.view(L, -1, R, 2 * G)                                          # (L, k, R, 2G)
        w_res = torch.stack([lay[5] for lay in s.layers])                      # (L, G+1, R)
        w_rs = torch.cat([w_res, s.w_skip.view(L, G + 1, -1)], 2)              # (L, G+1, R+S)
        self.brs = w_rs[:, G].contiguous()
        bf16 = weights == "bf16"
        self.wz, self.wrs, self.wh1, self.wh2 = (pack_weights(w, bf16) for w in
                                                 (wz, w_rs[:, :G], s.w_h1, s.w_h2))
        self.bh1, self.bh2 = s.b_h1[0].contiguous(), s.b_h2[0].contiguous()
        self.dil = torch.tensor(dilations, dtype=torch.long)
        self.inv_tau = dec.inv_tau.reshape(-1).float().contiguous()
        self.top_k = dec.top_k.long().contiguous()
        self.top_p = dec.top_p.float().contiguous()
        self.typical_p = dec.typical_p.float().contiguous()
        self.noise_scale = dec.noise.reshape(-1).float().contiguous()

    def __call__(self, t0: int, t1: int, x: torch.Tensor, logits: torch.Tensor, codes: torch.Tensor,
                 noise: torch.Tensor, prime: torch.Tensor, n_prime: int, stats: torch.Tensor | None = None,
                 uniform: bool = False) -> torch.Tensor:
        """Steps t0 .. t1-1, as fastloop.run_steps: logits[t - t0] and codes[t - t0] written;
        returns the last code (x is updated in place). stats: a (4, t1-t0, B) buffer for each
        step's NLL, entropy and varentropy in bits (typicality.step_stats) and the NLL under the
        distribution sampled from (NaN on primed steps), computed while the logits are hot; or
        None. uniform: `noise` holds the chunk's uniform draws, and the
        streams' threads turn them into Gumbel noise in place (the same bits as generate's
        gumbel_noise), else it is the noise itself."""
        s = self.s
        x = x.clone()           # the caller's x may be a row of its codes: never write into it
        empty = torch.empty(0)
        self.ext.run_chunk(self.buf, self.wz, s.bias, s.frames, s.embed.contiguous(), self.wrs, self.brs,
                           self.wh1, self.bh1, self.wh2, self.bh2, self.dil, t0, t1, s.hop, x, logits,
                           codes, noise if noise.is_contiguous() else noise.contiguous(), self.inv_tau,
                           prime.contiguous(), n_prime, self.top_k, self.top_p, self.typical_p, self.groups,
                           empty if stats is None else stats, self.noise_scale, uniform)
        return x


class FusedStep:
    """GenerationCache.step through the fused loop (beam search): one step's logits for the
    codes x_{t-1}, the cache's clock advanced; the code it would pick is ignored."""

    def __init__(self, cache: GenerationCache, dilations: list[int]):
        B = cache.B
        self.loop = FusedLoop(cache, encode_settings([DecodeSettings(0.0)] * B), dilations,
                              groups=1)   # one step per call: a thread would cost more than it saves
        self.codes = torch.empty(1, B, dtype=torch.long)
        self.noise = torch.zeros(1, B, N_CODES)
        self.prime = torch.zeros(0, B, dtype=torch.long)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        cache = self.loop.cache
        out = torch.empty(1, cache.B, N_CODES)
        self.loop(cache.t, cache.t + 1, x, out, self.codes, self.noise, self.prime, 0)
        cache.t += 1
        return out[0]


def fused_step(cache: GenerationCache, dilations: list[int]) -> FusedStep | None:
    """The fused single step for a float32 CPU cache, or None (then use cache.step)."""
    return FusedStep(cache, dilations) if applies(cache, encode_settings([DecodeSettings(0.0)])) else None


def fused_loop(cache: GenerationCache, dec: DecodeBatch, dilations: list[int],
               weights: str = "fp32", groups: int | None = None) -> FusedLoop | None:
    """The fused loop for this cache and these settings, or None where it does not apply
    (an error for bf16 weights, which only the fused loop has). groups: threads for the
    streams; None: stream_groups' choice."""
    if applies(cache, dec):
        return FusedLoop(cache, dec, dilations, weights, groups)
    if weights != "fp32":
        why = ("the fused C++ step is off or unavailable" if supported(dec) else
               "min-p, epsilon, eta and mirostat run outside the fused C++ step")
        raise ValueError(f"{weights} step weights need the fused C++ step on the CPU ({why})")
    return None
