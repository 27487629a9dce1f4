"""The benchmark package's GPU-correctness rules, checked on the CPU: timers wait for the
device being measured, the precision policy (TF32 off for exactness, the stated setting for
timings), tensors built on the model's device; and the CLI's --speed-paths mode."""
import json

import pytest
import torch

from wavetyp import bench
from wavetyp.benchmark import measure, sections, speed_paths, subjects
from wavetyp.benchmark.report import format_report, machine_info, precision_note
from wavetyp.benchmark.run import start_report
from wavetyp.core import cstep, faststack


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_sync_waits_for_the_device_being_measured(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    measure.sync("cuda:1")
    assert calls == [torch.device("cuda:1")]
    measure.sync(torch.device("cuda", 2))
    assert calls[-1] == torch.device("cuda:2")
    calls.clear()
    measure.sync("cpu")
    assert calls == []
    measure.timed(lambda: None, "cuda:1")         # before and after the timed call
    assert calls == [torch.device("cuda:1")] * 2


class FlagSubject:
    """A stand-in subject recording the TF32 flags each of its parts ran under."""
    gen_threads_own_policy = True
    n_params, receptive_field, sample_rate, config = 1, 1, 8000, {}

    def __init__(self):
        self.seen = {}

    def flags(self):
        return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32

    def exactness(self, extra):
        self.seen["exactness"] = self.flags()
        return 0.0

    def incremental(self, batch, n):
        self.seen["incremental"] = self.flags()

    def naive(self, batch, n):
        self.seen["naive"] = self.flags()

    def train_step(self, batch, length):
        def step():
            self.seen["train"] = self.flags()
        return step


def test_precision_policy_tf32_off_for_exactness_stated_setting_for_timings():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    subj = FlagSubject()
    measure.measure_section(subj, measure.Plan.quick(), "cpu", "flags")
    timing = (measure.TIMING_TF32["matmul"], measure.TIMING_TF32["cudnn"])
    assert subj.seen == {"exactness": (False, False), "incremental": timing, "naive": timing,
                         "train": timing}
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    # the report states it on a CUDA device (and says nothing of TF32 on the CPU)
    assert precision_note("cpu") is None and "tf32_for_timings" not in machine_info("cpu")
    note = precision_note("cuda:0")
    assert "TF32 while timing" in note and "exactness checked with TF32 off" in note
    assert machine_info("cuda:0")["tf32_for_timings"] == measure.TIMING_TF32
    report = start_report(sections.BenchOptions(device="cuda:0", quick=True), (), False)
    assert note in report["notes"]
    report.update(ratios={}, reference=None)
    assert f"note: {note}" in format_report(report)


class DeviceCheckingTorch:
    """torch as subjects.py sees it, except that its tensor factories and Generator record
    every call that names no device."""
    FACTORIES = ("randint", "arange", "full", "ones", "zeros", "empty", "Generator")

    def __init__(self):
        self.missing = []

    def __getattr__(self, name):
        real = getattr(torch, name)
        if name not in self.FACTORIES:
            return real

        def checked(*a, **k):
            if "device" not in k:
                self.missing.append(name)
            return real(*a, **k)
        return checked


def test_subjects_build_their_tensors_on_the_models_device(monkeypatch, tiny_model):
    """Every factory call made by subjects.py names a device (CPU here; on a GPU the same
    calls put the tensors on it)."""
    fake = DeviceCheckingTorch()
    monkeypatch.setattr(subjects, "torch", fake)
    own = subjects.WavetypSubject(tiny_model, "cpu")
    assert own.exactness(4) <= measure.EXACT_TOL
    own.naive(2, 2)
    own.train_step(2, 64)()
    ref = subjects.ReferenceSubject(subjects.QUICK_REFERENCE_CONFIG, "cpu")
    ref.exactness(4)
    ref.train_step(2, 64)()
    assert not fake.missing, fake.missing


def test_sample_cli_runs_on_the_benchs_device():
    argv = sections.sample_cli_argv(None, sections.BenchOptions(device="cpu"), measure.Plan.quick(), "o")
    assert argv[argv.index("--device") + 1] == "cpu"


def test_cli_speed_paths_on_a_tiny_checkpoint(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "paths.json"
    assert bench.main(["--speed-paths", "--quick", "--checkpoint", str(tiny_ckpt), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("speed-only paths, one-process A/B")
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 6 and all(r["gain"] > 0 for r in result["rows"])
    assert "sampling B=1: fused C++ step (samples/s)" in text
    assert all(r["path"] in text for r in result["rows"])
    assert result["checkpoint_note"] == f"checkpoint {tiny_ckpt}"


def test_speed_paths_off_arms_switch_the_paths_off():
    """The A/B's off arms act as WAVETYP_FASTSTACK=0 / WAVETYP_FUSED_GATE=0 would, without
    touching the environment, and switch back on after."""
    h = torch.zeros(1, 4, 8, requires_grad=True)
    off = lambda name, fn: speed_paths._with(faststack, name, speed_paths._off, fn)   # noqa: E731
    assert faststack.applies(h) and not off("enabled", lambda: faststack.applies(h))
    assert faststack.applies(h)
    assert faststack.fuse_enabled() and not off("fuse_enabled", lambda: faststack.fuse_enabled())
    assert not off("fuse_enabled", lambda: faststack._use_fused(h, 0))
    assert faststack.fuse_enabled()
    assert cstep.enabled() and not speed_paths._with(cstep, "enabled", speed_paths._off,
                                                                lambda: cstep.enabled())
    assert cstep.enabled()
