"""The GPU path: sampler exactness, generation and beam search, bf16 training, --compile and
GPU-saved checkpoints, on a CUDA device.

Every test is marked `cuda` and skips without a CUDA device (the default suite stays green on
CPU machines); `python -m wavetyp.gpu_round` runs them with `-m cuda` on a GPU machine.
Each test's body is a `check_*(device)` function so the same code can be read (and run) on
any device.
"""
import numpy as np
import pytest
import torch
from conftest import synth_speechlike, tiny_config

from wavetyp.core.audio import mu_law_encode
from wavetyp.core.checkpoint import SHIPPED, load_model
from wavetyp.core.conditioning import CONDITIONING_LEVELS, Conditioning, level_conditioning
from wavetyp.core.decoding import DecodeSettings
from wavetyp.core.generate import beam_search, generate, teacher_forced_logits
from wavetyp.core.model import WaveNet
from wavetyp.data.corpus import Corpus, Utterance
from wavetyp.training.loop import masked_loss, train
from wavetyp.training.state import TrainOptions

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DEVICE = "cuda"
LEVELS = [lv for lv in CONDITIONING_LEVELS if lv != "all"]          # none, label, mel


@pytest.fixture(autouse=True)
def no_tf32():
    """Full fp32 matrix products and convolutions: exactness is checked to 1e-4."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def tiny(device, **kw) -> WaveNet:
    torch.manual_seed(0)
    return WaveNet(tiny_config(**kw)).eval().to(device)


def labels(model, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(batch) % 10, torch.arange(batch) % len(model.cfg.speakers)


def check_exactness(model: WaveNet, level: str, batch: int, length: int, device) -> float:
    """Max |incremental - parallel| logit difference at one conditioning level."""
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 256, (batch, length), generator=g).to(device)
    digit, speaker = labels(model, batch)
    cond = level_conditioning(model, level, codes, digit, speaker)
    with torch.no_grad():
        par = model(codes, cond)
    inc = teacher_forced_logits(model, codes, cond)
    assert inc.device.type == torch.device(device).type
    return (par.float() - inc.float()).abs().max().item()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_incremental_equals_parallel_on_the_gpu_tiny(level, kernel_size):
    model = tiny(DEVICE, kernel_size=kernel_size)
    err = check_exactness(model, level, 3, 3 * model.cfg.receptive_field + 17, DEVICE)
    assert err <= 1e-4, (level, kernel_size, err)


@pytest.mark.parametrize("level", LEVELS)
def test_incremental_equals_parallel_on_the_gpu_shipped(level):
    model, _ = load_model(SHIPPED, DEVICE)
    err = check_exactness(model, level, 2, model.cfg.receptive_field + 64, DEVICE)
    assert err <= 1e-4, (level, err)


def check_generate_and_beam(device) -> None:
    """generate() (temperature, greedy, top-p, typical-p; labels + mel + prime) and
    beam_search() end to end: codes come back as host arrays, every log is finite."""
    model = tiny(device)
    prime_codes = mu_law_encode(synth_speechlike(0.1, seed=1))
    mel_codes = mu_law_encode(synth_speechlike(0.1, seed=2))[None]
    settings = [DecodeSettings(0.0), DecodeSettings(0.7), DecodeSettings(1.0, top_p=0.9),
                DecodeSettings(1.0, typical_p=0.9)]
    B, n = len(settings), 600
    digit, speaker = labels(model, B)
    cond = Conditioning(digit.to(device), speaker.to(device),
                        model.log_mel(mel_codes.to(device)).expand(B, -1, -1))
    res = generate(model, settings, n, cond=cond, prime=prime_codes[None, :50], seed=3)
    again = generate(model, settings, n, cond=cond, prime=prime_codes[None, :50], seed=3)
    for r, r2 in zip(res, again, strict=True):
        assert isinstance(r.codes, np.ndarray) and r.codes.shape == (n,)
        assert r.codes.min() >= 0 and r.codes.max() < 256
        assert np.array_equal(r.codes[:50], prime_codes[:50].numpy())
        assert np.isfinite(r.nll_bits).all() and np.isfinite(r.entropy_bits).all()
        assert np.isfinite(r.varentropy_bits2).all() and np.isfinite(r.sampled_nll_bits[50:]).all()
        assert np.array_equal(r.codes, r2.codes)                     # same seed, same codes
    beam = beam_search(model, 4, 300, Conditioning(digit[:1].to(device), speaker[:1].to(device)))
    assert isinstance(beam.codes, np.ndarray) and beam.codes.shape == (300,)
    assert np.isfinite(beam.nll_bits).all() and np.isfinite(beam.entropy_bits).all()
    assert np.isfinite(beam.info["log2_prob"])
    # the beam's score is the summed log-probability of its path under the model
    assert abs(-beam.nll_bits.sum() - beam.info["log2_prob"]) < 1e-2 * max(1.0, beam.nll_bits.sum())


def test_generate_and_beam_search_on_the_gpu():
    check_generate_and_beam(DEVICE)


def check_bf16_training_step(device) -> None:
    """One training step under bf16 autocast (as train.py runs on CUDA): finite loss and
    gradients, and the step changes the weights."""
    torch.manual_seed(0)
    model = WaveNet(tiny_config()).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    codes = torch.randint(0, 256, (4, 2000)).to(device)
    mask = torch.ones(4, 2000, device=device)
    digit, speaker = labels(model, 4)
    cond = level_conditioning(model, "all", codes, digit, speaker)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        logits = model(codes, cond)
    assert logits.dtype == torch.bfloat16
    loss = masked_loss(logits, codes, mask)
    assert torch.isfinite(loss) and 4.0 < loss.item() < 7.0          # ~ln 256 at the start
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) >= len(list(model.parameters())) - 1           # mel_null: unused here
    assert all(torch.isfinite(g).all() for g in grads)
    before = model.head2.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.head2.weight.detach())


def test_bf16_autocast_training_step():
    check_bf16_training_step(DEVICE)


def synthetic_corpus(n: int = 8) -> Corpus:
    utts = [Utterance(f"u{i}", mu_law_encode(synth_speechlike(0.4, seed=i % 4)), i % 10, i % 2)
            for i in range(n)]
    return Corpus("synthetic", 8000, ["alice", "bob"], utts[2:], utts[:2])


def check_training_run(device, tmp_path, compile: bool, steps: int) -> dict:
    """`train` (what `python -m wavetyp.train` calls) for a few steps; last.pt must load with
    a plain torch.load, no map_location, every tensor on the CPU."""
    opts = TrainOptions(out=str(tmp_path / "run"), max_steps=steps, batch_size=4, crop=1000,
                        warmup=1, eval_every=0, ckpt_every=0, log_every=1, device=device,
                        compile=compile, progress=False, final_eval=False)
    r = train(tiny_config(), opts, synthetic_corpus())
    assert r["step"] == steps and r["stopped"] is None
    ckpt = torch.load(tmp_path / "run" / "last.pt", map_location=None, weights_only=True)
    assert ckpt["step"] == steps
    devices = set()

    def walk(x):
        if torch.is_tensor(x):
            devices.add(x.device.type)
        elif isinstance(x, dict):
            [walk(v) for v in x.values()]
        elif isinstance(x, (list, tuple)):
            [walk(v) for v in x]
    walk(ckpt)
    assert devices == {"cpu"}, devices
    assert ckpt["optimizer"]["state"], "the optimizer state was saved"
    model = WaveNet(tiny_config())
    model.load_state_dict(ckpt["model"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    return ckpt


def test_compiled_training_runs_two_steps(tmp_path):
    check_training_run(DEVICE, tmp_path, compile=True, steps=2)


def test_a_checkpoint_saved_on_the_gpu_loads_on_the_cpu(tmp_path):
    ckpt = check_training_run(DEVICE, tmp_path, compile=False, steps=1)
    model, _ = load_model(tmp_path / "run" / "last.pt", "cpu")
    assert next(model.parameters()).device.type == "cpu" and ckpt["config"]["speakers"] == ["alice", "bob"]


def check_pinned_batch(device) -> None:
    """A training batch for a GPU is copied from page-locked memory (so `non_blocking` is
    really asynchronous) and lands on the device with the CPU batch's values."""
    from wavetyp.data.batches import collate
    utts = [Utterance(f"{i}_a_{i}", mu_law_encode(synth_speechlike(0.05, seed=i)), i, 0)
            for i in range(3)]
    cpu = collate(utts, [0, 0, 0], 300)
    seen = []
    real = torch.Tensor.pin_memory

    def spy(self, *a, **k):
        out = real(self, *a, **k)
        seen.append(out.is_pinned())
        return out
    torch.Tensor.pin_memory = spy
    try:
        on = cpu.to(device, pin=True)
    finally:
        torch.Tensor.pin_memory = real
    assert seen == [True] * 5                # codes, mask, digit, speaker, crop start
    assert on.codes.device.type == "cuda" and torch.equal(on.codes.cpu(), cpu.codes)


def test_training_batches_are_pinned_on_the_gpu():
    check_pinned_batch(DEVICE)
