"""Per-step metrics and the typicality summary."""
import math

import numpy as np
import torch

from wavetyp.core.typicality import step_stats, summarize


def test_uniform_distribution_stats():
    logits = torch.zeros(5, 256)
    nll, ent, var = step_stats(logits, torch.arange(5))
    assert torch.allclose(nll, torch.full((5,), 8.0)) and torch.allclose(ent, torch.full((5,), 8.0))
    assert torch.allclose(var, torch.zeros(5), atol=1e-5)


def test_point_mass_has_zero_entropy():
    logits = torch.full((1, 256), -1e4)
    logits[0, 7] = 0
    nll, ent, var = step_stats(logits, torch.tensor([7]))
    assert nll.item() < 1e-6 and ent.item() < 1e-6 and var.item() < 1e-6


def test_two_point_distribution_varentropy():
    p = torch.zeros(1, 256)
    p[0, 0], p[0, 1] = 0.75, 0.25
    logits = torch.log(p.clamp_min(1e-30))
    nll, ent, var = step_stats(logits, torch.tensor([1]))
    s0, s1 = -math.log2(0.75), -math.log2(0.25)
    h = 0.75 * s0 + 0.25 * s1
    assert abs(nll.item() - 2.0) < 1e-5 and abs(ent.item() - h) < 1e-5
    assert abs(var.item() - (0.75 * (s0 - h) ** 2 + 0.25 * (s1 - h) ** 2)) < 1e-4


def test_z_is_standard_normal_for_ancestral_samples():
    """Sample from random categorical distributions: z over many sequences ~ N(0, 1)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 400, 256, generator=g) * 2
    gumbel = -torch.log(-torch.log(torch.rand(logits.shape, generator=g)))
    x = (logits + gumbel).argmax(-1)                   # exact samples (Gumbel-max)
    nll, ent, var = step_stats(logits, x)
    zs = [summarize(nll[i], ent[i], var[i]).z for i in range(200)]
    assert abs(np.mean(zs)) < 0.25 and 0.8 < np.std(zs) < 1.2
    # argmax sequences are far below the entropy: the mode is not typical
    s = summarize(*step_stats(logits[0], logits[0].argmax(-1)))
    assert s.gap_bits < -1 and s.z < -10 and not s.in_typical_set


def test_summary_flags_and_mask():
    s = summarize([3.0, 3.0], [3.05, 2.95], [1.0, 1.0], epsilon=0.1)
    assert s.in_typical_set and abs(s.gap_bits) < 1e-12
    s = summarize([1.0, 9.0], [3.0, 3.0], [1.0, 1.0], mask=[True, False])
    assert s.n == 1 and s.gap_bits == -2.0
