"""Incremental generation: exactness, decoding pieces, seeding, priming, beams."""
import math

import numpy as np
import pytest
import torch
from conftest import tiny_config

from wavetyp.core.audio import SILENCE_CODE
from wavetyp.core.cache import GenerationCache
from wavetyp.core.conditioning import Conditioning
from wavetyp.core.decoding import (
    DecodeSettings,
    apply_top_k,
    apply_top_p,
    apply_typical_p,
    encode_settings,
    process_logits,
)
from wavetyp.core.generate import beam_search, generate, teacher_forced_logits
from wavetyp.core.model import WaveNet
from wavetyp.core.typicality import step_stats


def conditionings(model, codes):
    B = codes.shape[0]
    mel = model.log_mel(codes)
    return {
        "none": None,
        "digit": Conditioning(digit=torch.arange(B) % 10),
        "speaker": Conditioning(speaker=torch.arange(B) % 2),
        "label": Conditioning(torch.arange(B) % 10, torch.arange(B) % 2),
        "mel": Conditioning(mel=mel),
        "all+dropped-mel": Conditioning(torch.arange(B) % 10, torch.arange(B) % 2, mel,
                                        torch.arange(B) % 2 == 0),
    }


@pytest.mark.parametrize("kernel_size,batch", [(2, 1), (2, 3), (3, 1), (3, 3)])
def test_incremental_equals_parallel_for_every_conditioning(kernel_size, batch):
    """Both layouts of the cache's past taps (a view at batch 1 or kernel 2, else a per-step
    copy), for every conditioning."""
    torch.manual_seed(1)
    model = WaveNet(tiny_config(kernel_size=kernel_size)).eval()
    codes = torch.randint(0, 256, (batch, 3 * model.cfg.receptive_field + 17))
    for name, cond in conditionings(model, codes).items():
        with torch.no_grad():
            par = model(codes, cond)
        inc = teacher_forced_logits(model, codes, cond)
        err = (par - inc).abs().max().item()
        assert err <= 1e-4, (name, err)


def position_model(n_mels: int = 8, kernel_size: int = 2, frames: int = 6) -> WaveNet:
    """A tiny model with a position table that matters (pos_emb and pos_proj random)."""
    torch.manual_seed(4)
    model = WaveNet(tiny_config(position_frames=frames, n_mels=n_mels, kernel_size=kernel_size)).eval()
    with torch.no_grad():
        model.pos_proj.weight.normal_()
        model.pos_proj.bias.normal_()
    return model


def position_conditionings(model, codes):
    """Position from 0 and from crop starts (one not a multiple of hop), with labels and mel."""
    B, hop = codes.shape[0], model.cfg.hop_length
    start = (torch.arange(B) * (3 * hop + 5)).long()
    out = {"position-from-0": None, "labels+start": Conditioning(torch.arange(B) % 10, start=start)}
    if model.cfg.n_mels:
        mel = model.log_mel(codes)
        out["mel"] = Conditioning(mel=mel)
        out["all+dropped-mel+start"] = Conditioning(torch.arange(B) % 10, torch.arange(B) % 2, mel,
                                                    torch.arange(B) % 2 == 0, start)
        out["short-mel+start"] = Conditioning(mel=mel[..., :2], start=start)
    return out


@pytest.mark.parametrize("n_mels,kernel_size,batch", [(8, 2, 1), (8, 3, 3), (0, 2, 2)])
def test_incremental_equals_parallel_with_a_position_table(n_mels, kernel_size, batch):
    """Past the table's end (T > position_frames * hop) too; without mel the table alone gives
    the frames."""
    model = position_model(n_mels, kernel_size)
    T = 2 * model.cfg.position_frames * model.cfg.hop_length + 37
    assert T > model.cfg.receptive_field
    codes = torch.randint(0, 256, (batch, T))
    for name, cond in position_conditionings(model, codes).items():
        with torch.no_grad():
            par = model(codes, cond)
        inc = teacher_forced_logits(model, codes, cond)
        err = (par - inc).abs().max().item()
        assert err <= 1e-4, (name, err)


def test_scripted_sampling_loop_equals_the_python_one(tiny_model, monkeypatch):
    """The TorchScript chunk loop and the plain-Python one give the same codes and logs
    (mel conditioning, priming, greedy and tempered streams); the fused C++ step, which would
    take these settings, is off (tests/test_cstep.py ties it to the TorchScript loop)."""
    from wavetyp.core import fastloop as fastloop
    monkeypatch.setenv("WAVETYP_CSTEP", "0")
    scripted = fastloop.scripted_run_steps()
    assert isinstance(scripted, torch.jit.ScriptFunction)      # the fast path is really on here
    codes = torch.randint(0, 256, (1, 400))
    cond = Conditioning(digit=torch.tensor([3, 3, 3]), mel=tiny_model.log_mel(codes).expand(3, -1, -1))
    settings = [DecodeSettings(0.0), DecodeSettings(1.0), DecodeSettings(0.6)]
    runs = []
    for fn in (scripted, fastloop.run_steps):
        monkeypatch.setattr("wavetyp.core.generate.scripted_run_steps", lambda fn=fn: fn)
        runs.append(generate(tiny_model, settings, 400, cond=cond, prime=codes[:, :50], seed=5))
    for a, b in zip(*runs):
        assert np.array_equal(a.codes, b.codes) and np.array_equal(a.nll_bits, b.nll_bits)
    assert np.array_equal(runs[0][0].codes[:50], codes[0, :50].numpy())


def test_generated_codes_rescore_identically(tiny_model):
    """Stats logged while sampling equal those of the parallel pass over the same codes."""
    res = generate(tiny_model, [DecodeSettings(1.0), DecodeSettings(0.5)], 300, seed=3)
    for r in res:
        with torch.no_grad():
            logits = tiny_model(torch.from_numpy(r.codes)[None])[0]
        nll, ent, var = step_stats(logits, torch.from_numpy(r.codes))
        assert np.allclose(r.nll_bits, nll.numpy(), atol=1e-4)
        assert np.allclose(r.entropy_bits, ent.numpy(), atol=1e-4)
        assert np.allclose(r.varentropy_bits2, var.numpy(), atol=1e-3)


def test_same_seed_same_codes_different_seed_different(tiny_model):
    s = [DecodeSettings(1.0), DecodeSettings(0.7, top_p=0.9)]
    a = generate(tiny_model, s, 200, seed=7)
    b = generate(tiny_model, s, 200, seed=7)
    c = generate(tiny_model, s, 200, seed=8)
    assert all(np.array_equal(x.codes, y.codes) for x, y in zip(a, b))
    assert not np.array_equal(a[0].codes, c[0].codes)


def test_greedy_stream_is_the_argmax_path_and_per_stream_settings_mix(tiny_model):
    res = generate(tiny_model, [DecodeSettings(0.0), DecodeSettings(1.0), DecodeSettings(0.5)], 150, seed=0)
    greedy = torch.from_numpy(res[0].codes)
    with torch.no_grad():
        logits = tiny_model(greedy[None])[0]
    assert torch.equal(logits.argmax(-1), greedy)
    assert np.all(res[0].sampled_nll_bits == 0)          # a point mass: log2(1) = 0
    assert not np.array_equal(res[0].codes, res[1].codes)


def test_sampled_nll_is_under_the_tempered_distribution(tiny_model):
    r = generate(tiny_model, [DecodeSettings(0.5)], 100, seed=0)[0]
    with torch.no_grad():
        logits = tiny_model(torch.from_numpy(r.codes)[None])[0]
    logq = torch.log_softmax(logits / 0.5, -1).gather(-1, torch.from_numpy(r.codes)[:, None])[:, 0]
    assert np.allclose(r.sampled_nll_bits, (-logq / math.log(2)).numpy(), atol=1e-3)


def test_gumbel_sampling_matches_the_distribution(tiny_model):
    """Many streams, one step: code frequencies follow softmax(logits / tau)."""
    n = 4000
    res = generate(tiny_model, [DecodeSettings(2.0)] * n, 1, seed=0)
    first = np.array([r.codes[0] for r in res])
    with torch.no_grad():
        logits = tiny_model(torch.full((1, 1), SILENCE_CODE))[0, 0]
    p = torch.softmax(logits / 2.0, -1).numpy()
    freq = np.bincount(first, minlength=256) / n
    assert np.abs(freq - p).sum() / 2 < 0.1              # total variation distance


def test_fast_loop_codes_equal_the_warpers(tiny_model, monkeypatch):
    """One encoding of the settings: the scripted chunk loop (greedy and tempered streams) and
    the reference path (process_logits + Gumbel-max, one step at a time) pick the same codes
    and log the same arrays, with priming. (The fused C++ step is off here: test_cstep.py.)"""
    monkeypatch.setenv("WAVETYP_CSTEP", "0")
    settings = [DecodeSettings(0.0), DecodeSettings(0.3), DecodeSettings(0.7), DecodeSettings(1.0)]
    prime = torch.randint(0, 256, (1, 30))
    runs = []
    for fast in (True, False):
        monkeypatch.setattr("wavetyp.core.generate.fast_loop_applies", lambda dec, fast=fast: fast)
        runs.append(generate(tiny_model, settings, 600, prime=prime, seed=3))
    for a, b in zip(*runs):
        assert np.array_equal(a.codes, b.codes), a.settings.name
        for key in ("nll_bits", "entropy_bits", "sampled_nll_bits"):
            assert np.array_equal(getattr(a, key), getattr(b, key), equal_nan=True), key
    assert len(set(runs[0][0].codes[30:].tolist())) < len(set(runs[0][3].codes[30:].tolist()))


def test_encoding_flags_come_from_the_settings():
    """The filter flags are derived once, host side, from the settings (no device sync)."""
    dec = encode_settings([DecodeSettings(0.0), DecodeSettings(0.5, top_p=0.9)])
    assert dec.any_greedy and dec.any_top_p and not dec.any_top_k and not dec.any_typical_p
    assert dec.truncating and dec.inv_tau[:, 0].tolist() == [1.0, 2.0] and dec.noise[:, 0].tolist() == [0, 1]
    plain = encode_settings([DecodeSettings(1.0, top_k=256, top_p=1.0)])   # neutral values: no filter
    assert not plain.truncating and not plain.any_greedy


def test_filters_keep_the_right_codes():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05] + [1e-9] * 252]))
    k = apply_top_k(logits, torch.tensor([2]))
    assert torch.isfinite(k[0]).sum() == 2
    p = apply_top_p(logits, torch.tensor([0.7]))          # 0.5 < 0.7 <= 0.8: keeps 2
    assert torch.isfinite(p[0]).sum() == 2 and torch.isfinite(p[0, :2]).all()
    p1 = apply_top_p(logits, torch.tensor([1.0]))
    assert torch.isfinite(p1).all()
    t = apply_typical_p(logits, torch.tensor([0.2]))      # keeps the code closest to the entropy
    assert torch.isfinite(t[0]).sum() >= 1
    dec = encode_settings([DecodeSettings(0.0), DecodeSettings(1.0, top_k=3)])
    both = process_logits(logits.expand(2, -1), dec)
    assert torch.isfinite(both[0]).sum() == 1 and torch.isfinite(both[1]).sum() == 3


def test_invalid_settings_are_rejected():
    for bad in (dict(temperature=-1), dict(temperature=float("nan")), dict(top_k=0),
                dict(top_p=0), dict(top_p=1.5), dict(typical_p=-0.1)):
        with pytest.raises(ValueError):
            DecodeSettings(**bad)


def test_priming_teacher_forces_the_start(tiny_model):
    prime = torch.randint(0, 256, (40,))
    r = generate(tiny_model, [DecodeSettings(1.0)], 100, prime=prime[None], seed=0)[0]
    assert np.array_equal(r.codes[:40], prime.numpy()) and r.prime_len == 40
    assert np.isnan(r.sampled_nll_bits[:40]).all() and np.isfinite(r.sampled_nll_bits[40:]).all()
    assert r.summary().n == 60


def test_cache_memory_is_flat_in_length(tiny_model):
    cache = GenerationCache(tiny_model, 2)
    size0 = cache.buf.numel()
    x = torch.full((2,), SILENCE_CODE)
    for _ in range(5 * cache.P):
        cache.step(x)
    assert cache.buf.numel() == size0 and cache.P >= tiny_model.cfg.receptive_field // 2


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_beam_reorder_of_the_live_rows_equals_reordering_everything(kernel_size, monkeypatch):
    """GenerationCache.reorder moves only the rows a later step can read; a beam search with
    the whole buffer reordered every step gives the same result."""
    torch.manual_seed(7)
    model = WaveNet(tiny_config(kernel_size=kernel_size)).eval()
    cond = Conditioning(digit=torch.tensor([4]), mel=model.log_mel(torch.randint(0, 256, (1, 300))))
    fast = beam_search(model, 3, 300, cond)

    def reorder_all(self, index):
        self.buf.copy_(self.buf.index_select(2, index))
    monkeypatch.setattr(GenerationCache, "reorder", reorder_all)
    full = beam_search(model, 3, 300, cond)
    assert np.array_equal(fast.codes, full.codes) and np.array_equal(fast.nll_bits, full.nll_bits)
    assert fast.info == full.info


def test_beam_search_finds_at_least_the_greedy_likelihood(tiny_model):
    n = 60
    greedy = generate(tiny_model, [DecodeSettings(0.0)], n)[0]
    beam = beam_search(tiny_model, 4, n)
    assert beam.nll_bits.sum() <= greedy.nll_bits.sum() + 1e-3
    assert abs(-beam.info["log2_prob"] - beam.nll_bits.sum()) < 1e-2
    # the path's logged stats are those of the parallel pass over it
    with torch.no_grad():
        logits = tiny_model(torch.from_numpy(beam.codes)[None])[0]
    nll, _, _ = step_stats(logits, torch.from_numpy(beam.codes))
    assert np.allclose(beam.nll_bits, nll.numpy(), atol=1e-3)


def test_reorder_continues_the_chosen_streams_histories():
    """After reorder(index), stream i continues exactly as if it had always been stream
    index[i] (its ring buffer)."""
    torch.manual_seed(2)
    model = WaveNet(tiny_config(kernel_size=3)).eval()
    codes = torch.randint(0, 256, (3, 61))
    index = torch.tensor([2, 0, 0])
    cache = GenerationCache(model, 3)
    x = torch.full((3,), SILENCE_CODE)
    with torch.no_grad():
        for t in range(41):                      # 41: the reorder lands mid-chunk
            cache.step(x)
            x = codes[:, t]
        cache.reorder(index)
        got = torch.stack([cache.step(x := codes[index, t - 1]) for t in range(41, 61)], 1)
        # got[:, i] is the prediction at time 41 + i; the caller fed codes[index, 40 + i]
    want = teacher_forced_logits(model, codes[index])[:, 41:61]
    assert (got - want).abs().max().item() <= 1e-4


def test_step_frame_interpolation_equals_the_reference():
    """The sampler's per-step mel interpolation (fastloop._lerp_frames) against the parallel
    pass's WaveNet.frame_weights + lerp, past the last frame too (the third copy, in the
    training stack, is tied to the same reference in tests/test_faststack.py)."""
    from wavetyp.core.fastloop import _lerp_frames
    hop, F = 4, 5
    frames = torch.randn(F, 3, 2, 6)
    T = hop * F + 7
    f0, f1, alpha = WaveNet.frame_weights(torch.arange(T), hop, F)
    want = torch.lerp(frames[f0], frames[f1], alpha.view(-1, 1, 1, 1))
    out = torch.empty(3, 2, 6)
    for t in range(T):
        assert torch.equal(_lerp_frames(frames, t, hop, out), want[t]), t
