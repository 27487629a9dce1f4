"""The benchmark: the reference-style WaveNet is the issue's model and its cached sampler is
exact; `--quick` runs end to end and writes the documented JSON. No timing is asserted."""
import json
import math
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from wavetyp import bench
from wavetyp.benchmark import measure, subjects
from wavetyp.benchmark.reference import SILENCE, ReferenceConfig, ReferenceWaveNet
from wavetyp.benchmark.reference import train_step as reference_train_step
from wavetyp.benchmark.report import format_report, machine_info
from wavetyp.core.audio import SILENCE_CODE
from wavetyp.core.model import WaveNet

SECTION_KEYS = {"incremental_b1_samples_per_s", "incremental_b16_samples_per_s",
                "naive_b1_samples_per_s", "naive_b16_samples_per_s", "train_samples_per_s",
                "peak_rss_mb", "incremental_b1_ms_per_step", "incremental_b16_ms_per_step",
                "incremental_over_naive_b1", "rtf_incremental_b1", "exact_max_abs_diff"}
SMALL = ReferenceConfig(layers_per_stack=4, n_stacks=2, kernel_size=3, residual_channels=8,
                        gate_channels=8, skip_channels=8, end_channels=16)


def one_hot(codes):
    return F.one_hot(codes, 256).float().transpose(1, 2)


@pytest.fixture(autouse=True)
def one_thread():
    """Per-step loops of tiny convolutions: a second OpenMP thread only adds waiting (and
    stalls badly on a busy machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_reference_is_the_issues_model():
    torch.manual_seed(0)
    model = ReferenceWaveNet()
    assert model.receptive_field == 1021
    assert abs(model.num_parameters - 570_000) < 10_000          # ~570k
    assert model.num_parameters == 565_632
    assert SILENCE == SILENCE_CODE
    # wavetyp's model built with the same widths: same size (no input-conv bias) and RF
    own = WaveNet(subjects.wavetyp_config_like(ReferenceConfig()))
    assert own.num_parameters == model.num_parameters - 64
    assert own.receptive_field == model.receptive_field
    # the receptive field as the gradient sees it: the last output depends on exactly
    # the last 1021 inputs
    x = one_hot(torch.randint(0, 256, (1, 1100))).requires_grad_(True)
    model(x)[0, :, -1].sum().backward()
    seen = (x.grad[0].abs().sum(0) > 0).nonzero().flatten()
    assert len(seen) == 1021 and seen[0] == 1100 - 1021 and seen[-1] == 1099


@pytest.mark.parametrize("cfg, T", [(SMALL, 3 * SMALL.receptive_field + 5), (ReferenceConfig(), 300)])
def test_reference_incremental_equals_its_forward(cfg, T):
    torch.manual_seed(1)
    model = ReferenceWaveNet(cfg).eval()
    codes = torch.randint(0, 256, (2, T))
    with torch.no_grad():
        par = model(one_hot(codes))
    inc = model.teacher_forced_logits(codes)
    assert inc.shape == par.shape == (2, 256, T)
    assert (par - inc).abs().max().item() <= 1e-4


def test_reference_samplers_follow_the_model():
    """Near-greedy sampling: every sampled code is the argmax of the parallel pass over the
    sequence so far, for the cached and the naive sampler alike."""
    torch.manual_seed(2)
    model = ReferenceWaveNet(SMALL).eval()
    with torch.no_grad():                     # well-separated logits: no near-ties at argmax
        model.end_conv_2.weight.mul_(100)
        model.end_conv_2.bias.mul_(100)
    n = 2 * SMALL.receptive_field
    codes = model.generate(3, n, temperature=1e-4, seed=0)
    assert codes.shape == (3, n) and codes.min() >= 0 and codes.max() < 256
    seq = torch.cat([torch.full((3, 1), SILENCE), codes], 1)
    with torch.no_grad():
        par = model(one_hot(seq[:, :-1]))
    assert torch.equal(par.argmax(1), codes)
    assert torch.equal(model.generate(3, 50, seed=5), model.generate(3, 50, seed=5))
    naive = model.generate_naive(2, 20, temperature=1e-4, seed=0)
    window = torch.cat([torch.full((2, SMALL.receptive_field), SILENCE), naive], 1)
    with torch.no_grad():
        par = model(one_hot(window[:, :-1]))[:, :, SMALL.receptive_field - 1:]
    assert torch.equal(par.argmax(1), naive)


def test_reference_samples_every_stream_in_one_call_per_step(monkeypatch):
    """Batched sampling: one multinomial over all streams per step, one code per stream per
    step; the weights are linearized per call, so a changed model is sampled as changed."""
    torch.manual_seed(4)
    model = ReferenceWaveNet(SMALL).eval()
    calls = []
    real = torch.multinomial

    def counting(probs, *a, **k):
        calls.append(tuple(probs.shape))
        return real(probs, *a, **k)

    monkeypatch.setattr(torch, "multinomial", counting)
    codes = model.generate(4, 30, seed=1)
    assert codes.shape == (4, 30) and calls == [(4, 256)] * 30
    state = model.init_state(4)
    assert [tuple(st.buffer.shape) for st in state.layers] == [
        (4, (SMALL.kernel_size - 1) * d + 1, SMALL.residual_channels) for d in SMALL.dilations]
    assert all(st.gate_weight.shape == (2 * SMALL.gate_channels,
                                        SMALL.kernel_size * SMALL.residual_channels)
               for st in state.layers)
    with torch.no_grad():                     # change the model between calls
        model.end_conv_2.weight.normal_().mul_(100)
        model.end_conv_2.bias.zero_()
    greedy = model.generate(2, 40, temperature=1e-4)
    seq = torch.cat([torch.full((2, 1), SILENCE), greedy], 1)
    with torch.no_grad():
        assert torch.equal(model(one_hot(seq[:, :-1])).argmax(1), greedy)


class _StubOriginal:
    """Stands in for wavenet_vocoder.WaveNet's interface (constructor, make_generation_fast_,
    incremental_forward); records what the bench asks of it."""
    made = []

    def __init__(self, out_channels=256, layers=20, stacks=2, residual_channels=512,
                 gate_channels=512, skip_out_channels=512, kernel_size=3, cin_channels=-1,
                 gin_channels=-1, scalar_input=False, use_speaker_embedding=True,
                 weight_normalization=True):
        self.kwargs = dict(locals())
        del self.kwargs["self"]
        self.fast, self.steps = False, 0
        _StubOriginal.made.append(self)

    def make_generation_fast_(self):
        self.fast = True

    def eval(self):
        return self

    def to(self, device):
        return self

    def incremental_forward(self, T=100, softmax=True, quantize=True):
        self.steps += T
        return torch.zeros(1, 256, T)


def test_optional_cross_check_with_wavenet_vocoder(monkeypatch):
    """Not installed: no cross-check. Installed (a stub here): built on the reference's
    model, timed at one stream, reported beside the reference."""
    monkeypatch.setitem(sys.modules, "wavenet_vocoder", None)      # import fails
    subj = subjects.ReferenceSubject(subjects.QUICK_REFERENCE_CONFIG, "cpu")
    assert subj.original() is None
    monkeypatch.setitem(sys.modules, "wavenet_vocoder",
                        types.SimpleNamespace(WaveNet=_StubOriginal, __version__="stub"))
    _StubOriginal.made.clear()
    res = measure.measure_section(subj, measure.Plan.quick(), "cpu", "reference")
    (stub,) = _StubOriginal.made
    rc = subjects.QUICK_REFERENCE_CONFIG
    assert stub.kwargs == dict(out_channels=256, layers=rc.layers_per_stack * rc.n_stacks,
                               stacks=rc.n_stacks, residual_channels=rc.residual_channels,
                               gate_channels=2 * rc.gate_channels,
                               skip_out_channels=rc.skip_channels, kernel_size=rc.kernel_size,
                               cin_channels=-1, gin_channels=-1, scalar_input=False,
                               use_speaker_embedding=False, weight_normalization=False)
    assert stub.fast and stub.steps > 0
    assert res["original_version"] == "stub" and res["original_b1_samples_per_s"] > 0
    assert res["reference_over_original_b1"] > 0
    report = {"machine": machine_info("cpu"), "reference": res, "ratios": {}}
    text = format_report(report)
    assert "wavenet_vocoder B=1 (cross-check)" in text
    assert "cross-check: the installed wavenet_vocoder stub" in text


def test_reference_train_step_learns_something():
    torch.manual_seed(3)
    model = ReferenceWaveNet(SMALL)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    codes = torch.randint(100, 110, (2, 200))
    losses = [reference_train_step(model, opt, codes) for _ in range(15)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def check_report(report):
    assert set(report) >= {"reference", "wavetyp_reference_config", "shipped", "ratios", "machine"}
    for sec in ("reference", "wavetyp_reference_config", "shipped"):
        r = report[sec]
        missing = SECTION_KEYS - set(r)
        assert not missing, (sec, missing)
        for k in SECTION_KEYS:
            assert math.isfinite(r[k]) and r[k] >= 0, (sec, k, r[k])
        assert r["exact_max_abs_diff"] <= 1e-4
        d = r["detail_train"]                   # both implementations get the same warm-up
        assert len(d["warmup_s"]) == 2 and len(d["runs_s"]) >= 1
    for k in ("sample_cli_wall_s", "sample_cli_rtf", "sample_cli_peak_rss_mb"):
        assert report["shipped"][k] > 0
    for k in ("incremental_b1", "incremental_b16", "train"):
        v = report["ratios"][k]
        assert v["ratio"] > 0 and v["target"] in (25.0, 10.0, 1.5) and isinstance(v["pass"], bool)
    v = report["ratios"]["shipped_b1"]
    assert v["pass"] == (v["samples_per_s"] >= v["target"] == 16_000)
    assert {"cpu", "cores", "torch", "threads"} <= set(report["machine"])


def test_quick_bench_writes_documented_json(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench.main(["--quick", "--in-process", "--checkpoint", str(tiny_ckpt), "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.count("PASS") + text.count("MISS") == 4
    assert "incremental B=1" in text and "sample CLI wall" in text
    assert "training steps (s), warm-up | timed:" in text
    check_report(json.loads(out.read_text()))
    # an existing JSON file is not overwritten silently (refused before measuring anything)
    assert bench.main(["--quick", "--json", str(out)]) == 2


def test_exactness_failure_stops_before_timing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(subjects.ReferenceSubject, "exactness", lambda self, extra: 0.5)
    monkeypatch.setattr(measure, "measure_generation", lambda *a, **k: pytest.fail("timed anyway"))
    assert bench.main(["--quick", "--in-process", "--config", "reference"]) == 1
    assert "differ from the parallel pass" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_bench_cli_with_worker_processes(tiny_ckpt, tmp_path):
    """The real command line, one worker process per section (slower: three torch imports)."""
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "wavetyp.bench", "--quick", "--checkpoint",
                        str(tiny_ckpt), "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    check_report(json.loads(out.read_text()))


@pytest.mark.slow
def test_quick_profile_covers_sampling_and_training(tiny_ckpt, capsys):
    assert bench.main(["--quick", "--profile", "--checkpoint", str(tiny_ckpt)]) == 0
    text = capsys.readouterr().out
    for title in ("reference", "wavetyp (ref. config)", "wavetyp (shipped)"):
        assert f"== {title}: 40 steps at B=1" in text
        assert f"== {title}: training step 2 x 256" in text
    assert text.count("matrix products / convolutions") == 3
