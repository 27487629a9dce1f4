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


# ------------------------------------------------------------ position in the utterance

def warm_started_position_model(old: WaveNet, frames: int = 6) -> WaveNet:
    """A model with a position table, every other weight copied from `old` (as --init-from)."""
    from wavetyp.core.checkpoint import load_weights
    torch.manual_seed(5)
    new = WaveNet(WaveNetConfig(**{**old.cfg.to_dict(), "position_frames": frames})).eval()
    load_weights(new, old.state_dict(), may_lack=WaveNet.POSITION_WEIGHTS)
    return new


def test_a_warm_started_position_table_is_the_same_function_until_it_moves(tiny_model):
    """Zero-initialised pos_proj: logits equal the old model's bit for bit, with no mel (one
    mel_null frame extended), fewer mel frames than the table (extended) and more; once
    pos_proj moves, logits beyond the receptive field depend on where the crop starts."""
    new = warm_started_position_model(tiny_model, frames=6)
    assert new.pos_emb.weight.shape == (6, 16) and not new.pos_proj.weight.any()
    x = torch.randint(0, 256, (2, 3 * tiny_model.cfg.receptive_field))
    mel = tiny_model.log_mel(x)
    start = torch.tensor([0, 40])
    for cond in (Conditioning(start=start), Conditioning(digit=torch.tensor([1, 2]), start=start),
                 Conditioning(mel=mel[..., :3], start=start), Conditioning(mel=mel, start=start),
                 Conditioning(mel=mel, mel_present=torch.tensor([True, False]))):
        with torch.no_grad():
            assert torch.equal(new(x, cond), tiny_model(x, Conditioning(
                cond.digit, cond.speaker, cond.mel, cond.mel_present)))
    with torch.no_grad():
        new.pos_proj.weight.normal_()
        hop, rf = new.cfg.hop_length, new.cfg.receptive_field
        at = {s: new(x, Conditioning(start=torch.tensor([s, s]))) for s in (0, 3 * hop + 5, 6 * hop, 9 * hop)}
    assert (at[0][:, rf + 1:] - at[3 * hop + 5][:, rf + 1:]).abs().amax() > 1e-3
    # past the table every position reads its last row: crops starting there are alike
    assert torch.equal(at[6 * hop], at[9 * hop])


def test_position_rows_interpolate_between_frames_and_clamp_to_the_last():
    torch.manual_seed(0)
    m = WaveNet(tiny_config(position_frames=4))
    with torch.no_grad():
        m.pos_proj.weight.normal_()
        m.pos_proj.bias.normal_()
        hop, emb = m.cfg.hop_length, m.pos_emb.weight
        got = m.position_bias(torch.tensor([hop // 4, 0]), 2, 6)      # (B, F, L*2G)
        assert torch.allclose(got[0, 1], m.pos_proj(0.75 * emb[1] + 0.25 * emb[2]), atol=1e-6)
        assert torch.allclose(got[1, 2], m.pos_proj(emb[2]), atol=1e-6)
        assert torch.equal(got[0, 3], got[0, 5]) and torch.equal(got[1, 3], got[1, 5])
        assert torch.equal(m.position_bias(None, 2, 6), m.position_bias(torch.tensor([0, 0]), 2, 6))


def test_position_reaches_the_training_kernel_and_works_without_mel():
    """The CPU training kernel (faststack, gradients on) and the plain loop agree with a
    position table, with mel and without (n_mels=0: the table alone gives the frames), and
    the table gets gradients."""
    for n_mels in (8, 0):
        torch.manual_seed(1)
        m = WaveNet(tiny_config(position_frames=5, n_mels=n_mels))
        with torch.no_grad():
            m.pos_proj.weight.normal_()
        x = torch.randint(0, 256, (2, 200))
        cond = Conditioning(start=torch.tensor([7, 300]))
        with torch.no_grad():
            plain = m(x, cond)
        fast = m(x, cond)
        assert (fast - plain).abs().max() <= 1e-5
        fast.sum().backward()
        assert m.pos_emb.weight.grad.abs().sum() > 0 and m.pos_proj.bias.grad.abs().sum() > 0


def test_position_config_defaults_off_and_checks_its_range():
    d = tiny_config().to_dict()
    assert d["position_frames"] == 0 and WaveNet(tiny_config()).pos_proj is None
    old = {k: v for k, v in d.items() if k not in ("position_frames", "position_dim")}
    assert WaveNetConfig.from_dict(old).position_frames == 0        # checkpoints from before
    with pytest.raises(ValueError, match="position_frames"):
        tiny_config(position_frames=-1)
    with pytest.raises(ValueError, match="position_dim"):
        tiny_config(position_frames=4, position_dim=0)
