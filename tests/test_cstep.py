"""The fused C++ sampling loop: logits equal the parallel pass for every conditioning, codes
equal the TorchScript loop's, and the switch falls back to it."""
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_config
from test_generate import conditionings, position_conditionings, position_model

from wavetyp.core import cstep
from wavetyp.core.audio import N_CODES, SILENCE_CODE
from wavetyp.core.cache import GenerationCache
from wavetyp.core.conditioning import Conditioning
from wavetyp.core.decoding import DecodeSettings, encode_settings, process_logits
from wavetyp.core.generate import generate, gumbel_noise
from wavetyp.core.model import WaveNet
from wavetyp.core.typicality import chosen_nll_bits, step_stats

# Skipped only where there is no C++ compiler at all: with one, a build that fails (a broken
# cstep.cpp) fails these tests instead of skipping them.
COMPILER = shutil.which(os.environ.get("CXX", "c++"))
pytestmark = pytest.mark.skipif(COMPILER is None, reason="no C++ compiler for the fused step")


def test_the_extension_builds_where_there_is_a_compiler():
    assert cstep.extension() is not None, f"cstep.cpp did not build with {COMPILER}"


def fused_teacher_forced(model, codes, cond, chunk=97, weights="fp32"):
    """(B, T, 256) logits from the fused loop with every code primed (teacher forcing)."""
    B, T = codes.shape
    cache = GenerationCache(model, B, cond)
    dec = encode_settings([DecodeSettings(1.0)] * B)
    loop = cstep.FusedLoop(cache, dec, model.cfg.dilations, weights)
    out = torch.empty(T, B, N_CODES)
    codes_t = torch.empty(T, B, dtype=torch.long)
    prime = codes.t().contiguous()
    x = torch.full((B,), SILENCE_CODE, dtype=torch.long)
    for c0 in range(0, T, chunk):          # chunks of odd length: state carries across calls
        c1 = min(T, c0 + chunk)
        x = loop(c0, c1, x, out[c0:c1], codes_t[c0:c1], torch.zeros(c1 - c0, B, N_CODES), prime, T)
    assert torch.equal(codes_t, prime)
    return out.transpose(0, 1)


@pytest.mark.parametrize("kernel_size,batch,width", [(2, 1, 8), (2, 5, 8), (3, 3, 8), (2, 3, 12)])
def test_fused_logits_equal_the_parallel_pass_for_every_conditioning(kernel_size, batch, width):
    """Batch tiles of 4, 2 and 1 rows; widths that are multiples of 8 and not (tails)."""
    torch.manual_seed(2)
    model = WaveNet(tiny_config(kernel_size=kernel_size, residual_channels=width, gate_channels=width,
                                skip_channels=width + 4, head_channels=width * 2)).eval()
    codes = torch.randint(0, 256, (batch, 2 * model.cfg.receptive_field + 150))
    for name, cond in conditionings(model, codes).items():
        with torch.no_grad():
            par = model(codes, cond)
        fused = fused_teacher_forced(model, codes, cond)
        err = (par - fused).abs().max().item()
        assert err <= 1e-4, (name, err)


def test_fused_logits_equal_the_parallel_pass_at_the_shipped_width():
    """The shipped model's widths (64/64/128/128), random weights, labels and mel."""
    torch.manual_seed(3)
    model = WaveNet(tiny_config(residual_channels=64, gate_channels=64, skip_channels=128,
                                head_channels=128)).eval()
    codes = torch.randint(0, 256, (2, 600))
    cond = conditionings(model, codes)["all+dropped-mel"]
    with torch.no_grad():
        par = model(codes, cond)
    assert (par - fused_teacher_forced(model, codes, cond)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("n_mels,batch", [(8, 1), (8, 5), (0, 2)])
def test_fused_logits_equal_the_parallel_pass_with_a_position_table(n_mels, batch):
    """The position table reaches the fused loop through the frames it already lerps, past
    the table's end too."""
    model = position_model(n_mels)
    codes = torch.randint(0, 256, (batch, 2 * model.cfg.position_frames * model.cfg.hop_length + 37))
    for name, cond in position_conditionings(model, codes).items():
        with torch.no_grad():
            par = model(codes, cond)
        err = (par - fused_teacher_forced(model, codes, cond)).abs().max().item()
        assert err <= 1e-4, (name, err)


@pytest.mark.parametrize("batch", [2, 9])
def test_two_stream_groups_equal_one_bit_for_bit(tiny_model, batch):
    """The streams of a chunk split over two threads (as from SPLIT_MIN_STREAMS streams up):
    every stream's logits and codes are bit-identical to one group's, with mel frames, labels,
    priming, mixed settings and chunks carried across calls."""
    codes = torch.randint(0, 256, (1, 600), generator=torch.Generator().manual_seed(2))
    cond = conditionings(tiny_model, codes.expand(batch, -1))["all+dropped-mel"]
    settings = [DecodeSettings(t, top_p=p) for t, p in
                zip([0.0, 1.0, 0.7, 1.3, 0.9] * 2, [1.0, 0.9, 1.0, 1.0, 0.8] * 2)][:batch]
    dec = encode_settings(settings)
    noise = -torch.log(-torch.log(torch.rand(600, batch, N_CODES, generator=torch.Generator().manual_seed(3))))
    prime = codes[0, :50].expand(batch, -1).t().contiguous()
    runs = []
    for groups in (1, 2):
        cache = GenerationCache(tiny_model, batch, cond)
        loop = cstep.FusedLoop(cache, dec, tiny_model.cfg.dilations, groups=groups)
        out, got = torch.empty(600, batch, N_CODES), torch.empty(600, batch, dtype=torch.long)
        x = torch.full((batch,), SILENCE_CODE, dtype=torch.long)
        for c0 in range(0, 600, 256):
            c1 = min(600, c0 + 256)
            x = loop(c0, c1, x, out[c0:c1], got[c0:c1], noise[c0:c1], prime, 50)
        runs.append((out, got))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert cstep.stream_groups(cstep.SPLIT_MIN_STREAMS - 1) == 1


@pytest.mark.parametrize("groups,head_scale", [(1, 1.0), (2, 1.0), (2, 300.0)])
def test_fused_noise_and_statistics_equal_torch(tiny_model, groups, head_scale):
    """uniform=True: each thread turns its streams' uniform draws into Gumbel noise in place,
    bit-identical to generate.gumbel_noise (so the same codes and logits); the step statistics
    written by the loop equal typicality.step_stats on its logits, and the sampled NLL equals
    the one decoding.process_logits defines, to float rounding, also for
    very peaked distributions (head scaled 300x: entropies near 0, exp arguments far below -87)."""
    model = WaveNet(tiny_model.cfg).eval()
    model.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        model.head2.weight.mul_(head_scale)
    batch, n = 5, 300
    settings = [DecodeSettings(t) for t in (0.0, 1.0, 0.7, 1.3, 0.9)]
    dec = encode_settings(settings)
    u = torch.rand(n, batch, N_CODES, generator=torch.Generator().manual_seed(5))
    runs = []
    for uniform in (False, True):
        cache = GenerationCache(model, batch, Conditioning(digit=torch.arange(batch)))
        loop = cstep.FusedLoop(cache, dec, model.cfg.dilations, groups=groups)
        out, got = torch.empty(n, batch, N_CODES), torch.empty(n, batch, dtype=torch.long)
        stats = torch.full((4, n, batch), float("nan"))
        noise = u.clone() if uniform else gumbel_noise(u.clone(), dec.noise)
        x = torch.full((batch,), SILENCE_CODE, dtype=torch.long)
        loop(0, n, x, out, got, noise, torch.zeros(0, batch, dtype=torch.long), 0, stats=stats,
             uniform=uniform)
        runs.append((out, got, stats, noise))
    (out, got, stats, noise), (out2, got2, stats2, noise2) = runs
    assert torch.equal(noise, noise2) and torch.equal(got, got2) and torch.equal(out, out2)
    assert torch.equal(stats, stats2)
    nll, ent, var = step_stats(out, got)
    snll = chosen_nll_bits(process_logits(out.reshape(-1, N_CODES), dec.repeat(n)), got.reshape(-1))
    for mine, ref in zip(stats, (nll, ent, var, snll.view(n, batch))):
        assert torch.allclose(mine, ref, rtol=1e-4, atol=2e-5), (mine - ref).abs().max()
    spread = (out.max(-1).values - out.min(-1).values).max()             # the case is what it claims
    assert (ent.min() < 0.05 and spread > 87) if head_scale > 1 else ent.min() > 0.5
    assert noise[:, 0].abs().max() == 0 and noise[:, 1:].abs().min() > 0   # greedy row: no noise


def generate_both(model, settings, n, monkeypatch, **kw):
    runs = []
    for switch in ("1", "0"):
        monkeypatch.setenv("WAVETYP_CSTEP", switch)
        runs.append(generate(model, settings, n, **kw))
    return runs


def test_fused_codes_equal_the_torchscript_loop(tiny_model, monkeypatch):
    """Greedy and tempered streams, labels, mel and priming: the same codes for the same seed
    (the logits differ only by float summation order, far below any score gap here), and
    the logs agree to float rounding."""
    codes = torch.randint(0, 256, (1, 700), generator=torch.Generator().manual_seed(0))
    cond = conditionings(tiny_model, codes.expand(4, -1))["all+dropped-mel"]
    settings = [DecodeSettings(0.0), DecodeSettings(1.0), DecodeSettings(0.7), DecodeSettings(1.3)]
    fused, plain = generate_both(tiny_model, settings, 700, monkeypatch, cond=cond,
                                 prime=codes[:, :40], seed=11)
    for a, b in zip(fused, plain):
        assert np.array_equal(a.codes, b.codes)
        assert np.allclose(a.nll_bits, b.nll_bits, atol=1e-4)
        assert np.allclose(a.entropy_bits, b.entropy_bits, atol=1e-4)
        assert np.isnan(a.sampled_nll_bits[:40]).all() and not np.isnan(a.sampled_nll_bits[40:]).any()
        assert np.allclose(a.sampled_nll_bits, b.sampled_nll_bits, atol=1e-4, equal_nan=True)
    assert np.array_equal(fused[0].codes[:40], codes[0, :40].numpy())


def test_fused_codes_equal_at_the_shipped_width(monkeypatch):
    torch.manual_seed(4)
    model = WaveNet(tiny_config(residual_channels=64, gate_channels=64, skip_channels=128,
                                head_channels=128)).eval()
    fused, plain = generate_both(model, [DecodeSettings(0.7)] * 3 + [DecodeSettings(0.0)], 1500,
                                 monkeypatch, seed=1)
    assert all(np.array_equal(a.codes, b.codes) for a, b in zip(fused, plain))


def test_filtered_codes_equal_the_warper_loop(tiny_model, monkeypatch):
    """Top-k, top-p, typical-p, combinations, and plain streams side by side: the codes of the
    Python warper loop (decoding.process_logits each step), and its sampled-distribution NLL.
    That NLL is recomputed from each loop's logits after the chunk, and the two loops' logits
    differ by float rounding (~1e-6), which moves a filter's cut where a code sits on its
    boundary to that precision: here 1 step of 5,400 (typical-p 0.5, 0.013 bits), so the
    assertion allows 1 % of the steps."""
    settings = [DecodeSettings(0.8, top_k=5), DecodeSettings(1.0, top_p=0.8),
                DecodeSettings(1.2, top_k=20, top_p=0.6), DecodeSettings(0.0, top_k=3),
                DecodeSettings(0.9), DecodeSettings(1.0, top_k=1), DecodeSettings(1.0, typical_p=0.9),
                DecodeSettings(1.3, typical_p=0.5), DecodeSettings(1.1, top_k=30, top_p=0.95, typical_p=0.8)]
    cond = Conditioning(digit=torch.arange(len(settings)) % 10)
    fused, plain = generate_both(tiny_model, settings, 600, monkeypatch, cond=cond, seed=2)
    for a, b in zip(fused, plain):
        assert np.array_equal(a.codes, b.codes), a.settings.name
        assert np.allclose(a.nll_bits, b.nll_bits, atol=1e-4)
        assert np.mean(np.abs(a.sampled_nll_bits - b.sampled_nll_bits) > 1e-3) <= 0.01, a.settings.name
    assert len(set(fused[1].codes.tolist())) > 1


def test_switch_and_other_filters_fall_back(tiny_model, monkeypatch):
    cache = GenerationCache(tiny_model, 1)
    temp = encode_settings([DecodeSettings(0.7)])
    assert cstep.applies(cache, temp)
    assert cstep.applies(cache, encode_settings([DecodeSettings(0.7, top_k=9, top_p=0.9, typical_p=0.9)]))
    for other in (dict(min_p=0.1), dict(epsilon_cutoff=0.01), dict(eta_cutoff=0.01),
                  dict(mirostat_tau=3.0)):
        assert not cstep.applies(cache, encode_settings([DecodeSettings(0.7), DecodeSettings(1.0, **other)]))
    monkeypatch.setenv("WAVETYP_CSTEP", "0")
    assert cstep.fused_loop(cache, temp, tiny_model.cfg.dilations) is None
    r = generate(tiny_model, [DecodeSettings(0.7)], 300, seed=0)[0]        # the TorchScript loop
    monkeypatch.setenv("WAVETYP_CSTEP", "1")
    assert np.array_equal(r.codes, generate(tiny_model, [DecodeSettings(0.7)], 300, seed=0)[0].codes)


def test_build_name_keys_the_instruction_set(monkeypatch):
    monkeypatch.setattr(cstep, "cpu_flags", lambda: {"sse2"})
    assert cstep.isa_flags() == [] and "_generic_" in cstep.build_name()
    monkeypatch.setattr(cstep, "cpu_flags", lambda: {"avx2", "fma", "sse2"})
    assert cstep.isa_flags() == ["-mavx2", "-mfma"] and "_avx2_" in cstep.build_name()


def width16_model(seed):
    torch.manual_seed(seed)
    return WaveNet(tiny_config(residual_channels=16, gate_channels=16, skip_channels=32,
                               head_channels=32)).eval()


def test_weights_pack_into_panels_of_16_columns():
    """fp32: (..., K, N) -> (..., N/16, K, 16), zero-padded; bf16: the rounded weights in pairs."""
    w = torch.randn(3, 5, 20)
    p = cstep.pack_weights(w)                                             # (3, 2, 5, 16)
    assert p.shape == (3, 2, 5, 16)
    flat = p.transpose(-3, -2).reshape(3, 5, 32)
    assert torch.equal(flat[..., :20], w) and not flat[..., 20:].any()
    w = torch.randn(3, 5, 48)
    words = cstep.pack_weights(w, bf16=True).long() & 0xFFFFFFFF          # (3, 3, 5, 8)
    assert words.shape == (3, 3, 5, 8)
    bits = torch.cat([words & 0xFFFF, words >> 16], -1)                   # columns j, then j + 8
    bits = bits.transpose(-3, -2).reshape(3, 5, 48) << 16
    unpacked = torch.where(bits >= 2**31, bits - 2**32, bits).to(torch.int32).view(torch.float32)
    assert torch.equal(unpacked, w.to(torch.bfloat16).float())
    with pytest.raises(ValueError, match="multiples of 16"):
        cstep.pack_weights(torch.randn(4, 24), bf16=True)


def test_bf16_step_equals_the_parallel_pass_of_the_rounded_model():
    """bf16 weights change the model, not the arithmetic: the fused bf16 step's logits equal the
    parallel pass of the same model with its four weight matrices rounded to bfloat16."""
    model = width16_model(5)
    rounded = WaveNet(model.cfg).eval()
    rounded.load_state_dict(model.state_dict())
    with torch.no_grad():
        for lin in [*rounded.dilated, *rounded.res_skip, rounded.head1, rounded.head2]:
            lin.weight.copy_(lin.weight.to(torch.bfloat16).float())
    codes = torch.randint(0, 256, (3, 400))
    for name in ("none", "all+dropped-mel"):
        cond = conditionings(model, codes)[name]
        with torch.no_grad():
            par, exact = rounded(codes, cond), model(codes, cond)
        fused = fused_teacher_forced(model, codes, cond, weights="bf16")
        assert (par - fused).abs().max().item() <= 1e-4, name
        assert (exact - fused).abs().max().item() > 1e-4          # it is a different model


def test_bf16_weights_need_the_fused_step(monkeypatch):
    model = width16_model(6)
    r = generate(model, [DecodeSettings(0.7), DecodeSettings(0.9, top_p=0.9)], 200, seed=0, weights="bf16")
    assert all(len(x.codes) == 200 for x in r)
    with pytest.raises(ValueError, match="min-p"):
        generate(model, [DecodeSettings(1.0, min_p=0.1)], 10, weights="bf16")
    with pytest.raises(ValueError, match="multiples of 16"):
        generate(WaveNet(tiny_config(gate_channels=12)).eval(), [DecodeSettings(1.0)], 10, weights="bf16")
    monkeypatch.setenv("WAVETYP_CSTEP", "0")
    with pytest.raises(ValueError, match="off or unavailable"):
        generate(model, [DecodeSettings(1.0)], 10, weights="bf16")


def test_a_failed_build_says_so_in_one_line_and_falls_back(tiny_model, monkeypatch, capsys):
    import torch.utils.cpp_extension as cpp

    def no_compiler(**kw):
        raise RuntimeError("Error building extension: c++: command not found\nmore")
    monkeypatch.setattr(cstep, "_EXT", None)
    monkeypatch.setattr(cpp, "load", no_compiler)
    monkeypatch.setattr(cstep, "_built", lambda name: True)
    r = generate(tiny_model, [DecodeSettings(0.7)], 50, seed=0)[0]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: fused C++ sampling step unavailable (RuntimeError")
    assert cstep.extension() is None and capsys.readouterr().err == ""      # said once
    monkeypatch.setenv("WAVETYP_CSTEP", "0")
    assert np.array_equal(r.codes, generate(tiny_model, [DecodeSettings(0.7)], 50, seed=0)[0].codes)


def test_beam_search_through_the_fused_step_equals_the_cache_step(monkeypatch):
    """Beam search's steps run through FusedStep: the same beam as GenerationCache.step's."""
    from wavetyp.core.generate import beam_search
    torch.manual_seed(8)
    model = WaveNet(tiny_config(kernel_size=3)).eval()
    cond = Conditioning(speaker=torch.tensor([1]), mel=model.log_mel(torch.randint(0, 256, (1, 500))))
    cache = GenerationCache(model, 3, None)
    assert isinstance(cstep.fused_step(cache, model.cfg.dilations), cstep.FusedStep)
    fused = beam_search(model, 3, 500, cond)
    monkeypatch.setenv("WAVETYP_CSTEP", "0")
    assert cstep.fused_step(cache, model.cfg.dilations) is None
    plain = beam_search(model, 3, 500, cond)
    assert np.array_equal(fused.codes, plain.codes)
    assert np.allclose(fused.nll_bits, plain.nll_bits, atol=1e-4)
    assert abs(fused.info["log2_prob"] - plain.info["log2_prob"]) < 1e-3
