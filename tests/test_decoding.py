"""Decoding pieces from the literature (min-p, epsilon, eta, mirostat) on hand-made
distributions: the exact codes kept, and mirostat's feedback reaching its target."""
import math

import numpy as np
import pytest
import torch
from conftest import tiny_config

from wavetyp.core.decoding import (
    DecodeSettings,
    MirostatState,
    apply_epsilon_cutoff,
    apply_eta_cutoff,
    apply_min_p,
    apply_mirostat,
    encode_settings,
    entropy_bits,
    process_logits,
)
from wavetyp.core.generate import generate
from wavetyp.core.model import WaveNet

P4 = [0.5, 0.3, 0.15, 0.05]


def logits_of(probs):
    return torch.log(torch.tensor([probs + [0.0] * (256 - len(probs))]).clamp_min(1e-30))


def kept(logits):
    return torch.isfinite(logits[0]).nonzero().flatten().tolist()


def test_min_p_keeps_codes_above_a_fraction_of_the_top():
    lg = logits_of(P4)
    assert kept(apply_min_p(lg, torch.tensor([0.5]))) == [0, 1]        # >= 0.25
    assert kept(apply_min_p(lg, torch.tensor([0.09]))) == [0, 1, 2, 3]  # >= 0.045
    assert kept(apply_min_p(lg, torch.tensor([1.0]))) == [0]


def test_epsilon_cutoff_keeps_codes_above_epsilon_and_at_least_the_top():
    lg = logits_of(P4)
    assert kept(apply_epsilon_cutoff(lg, torch.tensor([0.1]))) == [0, 1, 2]
    assert kept(apply_epsilon_cutoff(lg, torch.tensor([0.6]))) == [0]   # nothing reaches it


def test_eta_cutoff_threshold_follows_the_entropy():
    lg = logits_of(P4)
    h = -sum(p * math.log(p) for p in P4)                               # nats
    for eta in (0.1, 0.2, 0.5):
        thr = min(eta, math.sqrt(eta) * math.exp(-h))
        assert kept(apply_eta_cutoff(lg, torch.tensor([eta]))) == [i for i, p in enumerate(P4) if p >= thr]
    flat = logits_of([1 / 256] * 256)                                   # high entropy: tiny threshold
    assert len(kept(apply_eta_cutoff(flat, torch.tensor([0.5])))) == 256


def test_mirostat_cut_is_by_untempered_surprise():
    raw = logits_of(P4)
    mu = torch.tensor([-math.log2(0.15) + 1e-6])                        # keeps p >= 0.15
    assert kept(apply_mirostat(raw / 0.5, raw, mu)) == [0, 1, 2]
    assert kept(apply_mirostat(raw, raw, torch.tensor([0.0]))) == [0]   # the top code always stays


def test_each_filter_works_per_stream_in_one_batch():
    lg = logits_of(P4).expand(4, -1)
    dec = encode_settings([DecodeSettings(1.0), DecodeSettings(1.0, min_p=0.5),
                           DecodeSettings(1.0, epsilon_cutoff=0.1), DecodeSettings(1.0, eta_cutoff=0.2)])
    out = process_logits(lg, dec)
    assert [torch.isfinite(r).sum().item() for r in out] == [256, 2, 3, 3]   # the first: no filter


@pytest.mark.parametrize("target", [3.0, 4.0, 5.5])
def test_mirostat_running_surprise_converges_to_its_target(target):
    """A stationary distribution (256 codes, Zipf-like: entropy ~6.3 bits, top code 2.6 bits):
    the mean surprise of the sampled codes over the last half of 4000 steps is within 0.1 bit
    of a reachable target."""
    g = torch.Generator().manual_seed(0)
    p = 1.0 / torch.arange(1, 257, dtype=torch.float64)
    raw = torch.log(p / p.sum()).float()[None]
    dec = encode_settings([DecodeSettings(1.0, mirostat_tau=target, mirostat_eta=0.1)])
    state = MirostatState(dec)
    surprises = []
    for _ in range(4000):
        mu = state.current(raw)
        probs = process_logits(raw, dec, mu).softmax(-1)
        code = torch.multinomial(probs, 1, generator=g)[:, 0]
        surprises.append(-raw[0, code].item() / math.log(2))
        state.update(raw, code)
    assert abs(np.mean(surprises[2000:]) - target) < 0.1
    assert entropy_bits(raw).item() > target          # the cut is what lowers the surprise


def test_mirostat_gap_variant_holds_the_gap_on_the_model(tiny_model):
    """Aimed at the model's own entropy + gap, the controller holds the logged gap there (it
    controls exactly that quantity); a positive gap is out of reach of a cut."""
    sets = [DecodeSettings(1.0, mirostat_gap=0.0), DecodeSettings(1.0, mirostat_gap=-0.5)]
    a, b = generate(tiny_model, sets, 3000, seed=1)
    assert abs(a.summary().gap_bits) < 0.05
    assert abs(b.summary().gap_bits + 0.5) < 0.1
    assert np.isfinite(a.sampled_nll_bits).all()


def test_new_settings_validate_and_name_themselves():
    for bad in (dict(min_p=0), dict(min_p=1.5), dict(epsilon_cutoff=1.0), dict(eta_cutoff=0),
                dict(mirostat_tau=-1), dict(mirostat_tau=3, mirostat_gap=0), dict(mirostat_gap=0, mirostat_eta=0)):
        with pytest.raises(ValueError):
            DecodeSettings(**bad)
    assert DecodeSettings(1.0, min_p=0.05).name == "tau1-minp0.05"
    assert DecodeSettings(1.0, mirostat_gap=0.0).name == "tau1-mirostatgap0"
    assert DecodeSettings(0.7, mirostat_tau=4, mirostat_eta=0.2).name == "tau0.7-mirostat4-lr0.2"


def test_untruncated_streams_keep_their_codes_beside_new_filters():
    """A plain tau = 1 stream draws the same codes whether or not a filtered stream shares its
    batch (per-stream noise; the filters touch only their own rows)."""
    torch.manual_seed(0)
    model = WaveNet(tiny_config()).eval()
    alone = generate(model, [DecodeSettings(1.0), DecodeSettings(0.5)], 300, seed=4)
    mixed = generate(model, [DecodeSettings(1.0), DecodeSettings(0.5, min_p=0.1)], 300, seed=4)
    assert np.array_equal(alone[0].codes, mixed[0].codes)
