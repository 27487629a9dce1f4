"""The residual stack with its own backward (faststack.py) against the plain autograd loop."""
import pytest
import torch
from conftest import tiny_config

from wavetyp.core import faststack as faststack
from wavetyp.core.conditioning import Conditioning
from wavetyp.core.model import WaveNet


def forward_backward(model, codes, cond, fast: bool, monkeypatch):
    """Logits and every parameter's gradient of a fixed nonlinear function of the logits."""
    monkeypatch.setenv("WAVETYP_FASTSTACK", "1" if fast else "0")
    model.zero_grad(set_to_none=True)
    logits = model(codes, cond)
    (logits.sin() * torch.linspace(0, 1, logits.shape[-1], dtype=logits.dtype)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def assert_same(model, codes, cond, monkeypatch, rtol):
    plain_out, plain_g = forward_backward(model, codes, cond, False, monkeypatch)
    fast_out, fast_g = forward_backward(model, codes, cond, True, monkeypatch)
    assert fast_out.shape == plain_out.shape
    torch.testing.assert_close(fast_out, plain_out, rtol=rtol, atol=rtol)
    assert fast_g.keys() == plain_g.keys()
    for name, g in plain_g.items():
        scale = g.abs().max().clamp_min(1e-12)
        err = ((fast_g[name] - g).abs().max() / scale).item()
        assert err < rtol, f"{name}: relative gradient error {err:.2e}"


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_unconditioned_matches_autograd_loop(kernel_size, monkeypatch):
    torch.manual_seed(0)
    cfg = tiny_config(kernel_size=kernel_size, n_digits=0, speakers=[], n_mels=0)
    model = WaveNet(cfg).double().train()
    codes = torch.randint(0, 256, (3, 120))
    assert_same(model, codes, None, monkeypatch, rtol=1e-10)


def test_every_conditioning_kind_matches(monkeypatch):
    """Labels (some absent), mel frames (dropped for one stream): gradients reach every table."""
    torch.manual_seed(1)
    model = WaveNet(tiny_config()).double().train()
    codes = torch.randint(0, 256, (3, 100))
    cond = Conditioning(digit=torch.tensor([1, -1, 7]), speaker=torch.tensor([0, 1, -1]),
                        mel=model.log_mel(codes).double(),
                        mel_present=torch.tensor([True, False, True]))
    assert_same(model, codes, cond, monkeypatch, rtol=1e-10)
    _, grads = forward_backward(model, codes, cond, True, monkeypatch)
    for name in ("digit_emb.weight", "speaker_emb.weight", "mel_proj.weight", "mel_null"):
        assert grads[name].abs().sum() > 0, name


def test_float32_and_shifts_longer_than_the_input(monkeypatch):
    """A sequence shorter than the largest tap shift (zero taps only) in float32."""
    torch.manual_seed(2)
    model = WaveNet(tiny_config(layers_per_stack=5, n_mels=0)).train()   # dilation 16
    codes = torch.randint(0, 256, (2, 12))
    assert_same(model, codes, Conditioning(digit=torch.tensor([3, 4])), monkeypatch, rtol=1e-4)


def test_gradcheck_of_the_function_itself():
    torch.manual_seed(3)
    B, T, R, G, S, k, dil, hop = 2, 9, 3, 2, 4, 3, (1, 2, 4), 4
    dd = dict(dtype=torch.double)
    h0 = torch.randn(B, T, R, **dd, requires_grad=True)
    gbias = torch.randn(B, len(dil), 2 * G, **dd, requires_grad=True)
    frames = torch.randn(B, len(dil), T // hop + 1, 2 * G, **dd, requires_grad=True)
    weights = []
    for _ in dil:
        weights += [torch.randn(2 * G, k * R, **dd), torch.randn(2 * G, **dd),
                    torch.randn(R + S, G, **dd), torch.randn(R + S, **dd)]
    weights = [w.requires_grad_() for w in weights]
    assert torch.autograd.gradcheck(
        lambda h, g, f, *w: faststack.ResidualStack.apply(h, g, f, hop, dil, *w),
        (h0, gbias, frames, *weights))


@pytest.mark.parametrize("T,F", [(64, 5), (70, 5), (64, 9), (70, 9), (50, 1), (16, 1), (3, 4)])
def test_frame_interpolation_equals_the_gather_and_lerp(T, F):
    """frames_add_ and frames_grad against WaveNet.frame_weights + lerp, with frames that
    end before, at, or after the audio."""
    torch.manual_seed(5)
    hop, B, C = 16, 2, 3
    fr = torch.randn(B, F, C, dtype=torch.double, requires_grad=True)
    f0, f1, alpha = WaveNet.frame_weights(torch.arange(T), hop, F)
    ref = torch.lerp(fr[:, f0], fr[:, f1], alpha[:, None].double())
    out = torch.zeros(B, T, C, dtype=torch.double)
    faststack.frames_add_(out, fr.detach(), hop)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-12, atol=1e-12)
    g = torch.randn(B, T, C, dtype=torch.double)
    (want,) = torch.autograd.grad(ref, fr, g)
    torch.testing.assert_close(faststack.frames_grad(g, F, hop), want, rtol=1e-12, atol=1e-12)


def test_used_only_where_it_should_be(monkeypatch):
    h = torch.zeros(1, 4, 8)
    monkeypatch.setenv("WAVETYP_FASTSTACK", "1")
    assert faststack.applies(h)
    with torch.no_grad():
        assert not faststack.applies(h)          # scoring and sampling keep the plain loop
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not faststack.applies(h)
    monkeypatch.setenv("WAVETYP_FASTSTACK", "0")
    assert not faststack.applies(h)


def test_a_few_training_steps_follow_the_same_path(monkeypatch):
    """Three AdamW steps from the same start: the losses agree to float32 rounding."""
    losses = {}
    for fast in (False, True):
        monkeypatch.setenv("WAVETYP_FASTSTACK", "1" if fast else "0")
        torch.manual_seed(4)
        model = WaveNet(tiny_config(n_mels=0)).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        codes = torch.randint(0, 256, (2, 64))
        cond = Conditioning(digit=torch.tensor([1, 2]), speaker=torch.tensor([0, -1]))
        run = []
        for _ in range(3):
            loss = torch.nn.functional.cross_entropy(model(codes, cond).reshape(-1, 256),
                                                     codes.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses[fast] = run
    assert losses[True][2] < losses[True][0]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


# ------------------------------------------------------------------ the fused gate

def test_fused_gate_equals_the_eager_passes():
    """The torch.compile'd gate (one loop forward, one backward) against the eager ops,
    on an odd number of rows."""
    torch.manual_seed(6)
    z = torch.randn(1001, 2 * 24) * 3
    da = torch.randn(1001, 24)
    ts_e, a_e = faststack.gate_forward_eager(z.clone())
    ts_f, a_f = faststack.gate_forward(z.clone(), min_elements=0)
    torch.testing.assert_close(ts_f, ts_e, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a_f, a_e, rtol=1e-6, atol=1e-6)
    dz_e = faststack.gate_backward_eager(da.clone(), ts_e)
    dz_f = faststack.gate_backward(da.clone(), ts_e, min_elements=0)
    torch.testing.assert_close(dz_f, dz_e, rtol=1e-6, atol=1e-6)
    # and the gate's own derivative, from autograd on tanh * sigmoid
    zz = z.clone().requires_grad_()
    (torch.tanh(zz[:, :24]) * torch.sigmoid(zz[:, 24:])).backward(da)
    torch.testing.assert_close(dz_f, zz.grad, rtol=1e-5, atol=1e-5)


def test_stack_with_the_fused_gate_matches_autograd_loop(monkeypatch):
    monkeypatch.setattr(faststack, "FUSE_MIN_ELEMENTS", 0)
    torch.manual_seed(7)
    model = WaveNet(tiny_config(kernel_size=3)).train()
    codes = torch.randint(0, 256, (2, 90))
    cond = Conditioning(digit=torch.tensor([2, -1]), mel=model.log_mel(codes))
    assert_same(model, codes, cond, monkeypatch, rtol=1e-4)


def test_fused_gate_switch_and_fallback(monkeypatch):
    """WAVETYP_FUSED_GATE=0 keeps the eager passes; a failed compile warns once and falls
    back to them for good."""
    z = torch.randn(64, 8)
    calls = []
    monkeypatch.setattr(faststack, "_run_fused", lambda *a: calls.append(a))
    monkeypatch.setenv("WAVETYP_FUSED_GATE", "0")
    faststack.gate_forward(z.clone(), min_elements=0)
    assert calls == []
    monkeypatch.undo()

    def broken():
        raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(faststack, "_fused", None)
    monkeypatch.setattr(faststack, "_fused_gate", broken)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        ts, a = faststack.gate_forward(z.clone(), min_elements=0)
    want_ts, want_a = faststack.gate_forward_eager(z.clone())
    torch.testing.assert_close(ts, want_ts)
    torch.testing.assert_close(a, want_a)
    assert faststack._fused is False
    assert not faststack._use_fused(z, 0)         # no second attempt
