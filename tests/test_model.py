"""The WaveNet: causality, receptive field, conditioning, config round trip."""
import pytest
import torch
from conftest import tiny_config

from wavetyp.core.conditioning import Conditioning
from wavetyp.core.model import WaveNet, WaveNetConfig, nll_bits


def test_receptive_field_formula():
    # the public reference config: kernel 3, dilations 1..128 twice -> 1021 samples
    cfg = WaveNetConfig(layers_per_stack=8, n_stacks=2, kernel_size=3)
    assert cfg.receptive_field == 1021
    assert WaveNetConfig(layers_per_stack=10, n_stacks=2, kernel_size=2).receptive_field == 2047


def test_causal_and_receptive_field_exact(tiny_model):
    cfg = tiny_model.cfg
    rf = cfg.receptive_field
    x = torch.randint(0, 256, (1, 3 * rf))
    base = tiny_model(x)
    t = 2 * rf
    # changing x_t changes no logit at positions <= t (logits[t] predicts x_t from the past) ...
    y = x.clone()
    y[0, t] = (y[0, t] + 77) % 256
    out = tiny_model(y)
    assert torch.equal(out[0, : t + 1], base[0, : t + 1])
    # ... but changes the logits exactly at t+1 .. t+rf, and nothing after
    diff = (out - base).abs().amax(-1)[0]
    assert (diff[t + 1: t + rf + 1] > 0).all()
    assert (diff[t + rf + 1:] == 0).all()


def test_logits_shape_and_nll(tiny_model):
    x = torch.randint(0, 256, (2, 50))
    logits = tiny_model(x)
    assert logits.shape == (2, 50, 256)
    bits = nll_bits(logits, x)
    assert bits.shape == (2, 50) and (bits > 0).all()


def test_conditioning_changes_output_and_none_means_absent(tiny_model):
    x = torch.randint(0, 256, (2, 80))
    base = tiny_model(x)
    lab = tiny_model(x, Conditioning(digit=torch.tensor([3, 3]), speaker=torch.tensor([0, 1])))
    assert not torch.allclose(base, lab)
    # -1 labels are the 'no label' row: identical to passing nothing
    none = tiny_model(x, Conditioning(digit=torch.tensor([-1, -1]), speaker=torch.tensor([-1, -1])))
    assert torch.allclose(base, none)
    mel = tiny_model.log_mel(x)
    assert mel.shape == (2, tiny_model.cfg.n_mels, 80 // tiny_model.cfg.hop_length + 1)
    with_mel = tiny_model(x, Conditioning(mel=mel))
    dropped = tiny_model(x, Conditioning(mel=mel, mel_present=torch.tensor([False, False])))
    assert not torch.allclose(base, with_mel)
    assert torch.allclose(base, dropped, atol=1e-6)


def test_config_round_trip_and_unknown_keys():
    cfg = tiny_config()
    d = cfg.to_dict()
    assert WaveNetConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown config keys: bogus"):
        WaveNetConfig.from_dict({**d, "bogus": 1})
    assert cfg.n_params == WaveNet(cfg).num_parameters > 0


def test_unconditioned_model_has_no_conditioning_parameters():
    m = WaveNet(tiny_config(n_digits=0, speakers=[], n_mels=0))
    assert m.global_proj is None and m.mel_proj is None
    assert m(torch.randint(0, 256, (1, 20))).shape == (1, 20, 256)
