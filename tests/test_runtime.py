"""Device and environment policy (core/runtime.py) and device-correct tensors where a GPU
cannot be tested: what a CPU-only CI can catch of the device bugs."""
import ast
from pathlib import Path

import torch

from wavetyp.core import runtime
from wavetyp.core.checkpoint import on_cpu

CORE = Path(__file__).resolve().parent.parent / "wavetyp" / "core"
FACTORIES = {"full", "empty", "zeros", "ones", "arange", "tensor", "rand", "randn", "randint"}


def test_cuda_without_an_index_is_this_ranks_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert runtime.pick_device("cuda") == torch.device("cuda", 1)
    assert runtime.pick_device("auto") == torch.device("cuda", 1)
    assert runtime.pick_device("cuda:0") == torch.device("cuda", 0)     # an explicit index stays
    monkeypatch.delenv("LOCAL_RANK")
    assert runtime.pick_device("cuda") == torch.device("cuda", 0)


def test_switches_have_defaults_and_read_the_environment(monkeypatch):
    monkeypatch.delenv("WAVETYP_JIT", raising=False)
    assert runtime.switch_on("WAVETYP_JIT")
    monkeypatch.setenv("WAVETYP_JIT", "0")
    assert not runtime.switch_on("WAVETYP_JIT")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert runtime.distributed_env()[:2] == (4, 2)


def test_saved_checkpoints_hold_cpu_tensors():
    out = on_cpu({"model": {"w": torch.ones(2)}, "rng": [torch.zeros(1)], "step": 3})
    assert out["step"] == 3 and out["model"]["w"].device.type == "cpu"
    assert isinstance(out["rng"], list) and out["rng"][0].device.type == "cpu"


def test_every_tensor_factory_in_the_sampler_names_its_device():
    """Static check: in the cache, the sampler and beam search every torch factory call that
    builds a tensor the step loop touches passes device= (a CPU tensor next to CUDA weights is
    the classic device-mixing crash). Host-side buffers are marked `# host`."""
    bad = []
    for name in ("cache.py", "generate.py"):
        src = (CORE / name).read_text()
        lines = src.splitlines()
        for n in ast.walk(ast.parse(src)):
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                    and isinstance(n.func.value, ast.Name) and n.func.value.id == "torch"
                    and n.func.attr in FACTORIES):
                has_device = any(k.arg == "device" for k in n.keywords)
                if not has_device and "# host" not in lines[n.lineno - 1]:
                    bad.append(f"{name}:{n.lineno}: {lines[n.lineno - 1].strip()}")
    assert not bad, "\n".join(bad)


def test_each_rank_joins_on_its_own_gpu_with_a_long_timeout(monkeypatch):
    """Under torchrun on CUDA: set_device(cuda:LOCAL_RANK), device_id passed to the process
    group, and a collective timeout long enough for rank 0's final evaluation."""
    from wavetyp.training import ranks as loop
    calls = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda backend, **kw: calls.update(backend=backend, **kw))
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.update(set_device=d))
    dev = torch.device("cuda", 1)
    assert loop.setup_distributed(dev) == (2, 1)
    assert calls["backend"] == "nccl" and calls["device_id"] == dev and calls["set_device"] == dev
    assert calls["timeout"] >= loop.COLLECTIVE_TIMEOUT and loop.COLLECTIVE_TIMEOUT.total_seconds() > 600
