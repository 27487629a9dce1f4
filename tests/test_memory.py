"""Long sampling keeps memory flat: the cache is a fixed ring buffer, logs are preallocated;
a render that cannot fit is refused before it starts (core/memory.py)."""
import json
import subprocess
import sys
import time

import pytest
import torch
from conftest import save_tiny_checkpoint, tiny_config

from wavetyp import sample
from wavetyp.core import memory
from wavetyp.core.errors import UsageError

SCRIPT = r"""
import json, resource, sys, time, torch
sys.path.insert(0, "tests")
from conftest import tiny_config
from wavetyp.core.model import WaveNet
from wavetyp.core.decoding import DecodeSettings
from wavetyp.core.generate import generate
torch.manual_seed(0)
model = WaveNet(tiny_config()).eval()
out = {}
for seconds in (float(s) for s in sys.argv[1:]):
    t = time.time()
    r = generate(model, [DecodeSettings(1.0)], int(seconds * 8000), seed=0)[0]
    out[str(seconds)] = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                         "wall_s": time.time() - t, "n": len(r.codes)}
print(json.dumps(out))
"""


def rss_after(*seconds):
    res = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, seconds)], capture_output=True,
                         text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_rss_growth_is_small_for_longer_samples():
    """1 s then 4 s: peak RSS grows by far less than the cache would if it kept history."""
    r = rss_after(1, 4)
    assert r["4.0"]["n"] == 32000
    growth = r["4.0"]["rss_mb"] - r["1.0"]["rss_mb"]
    assert growth < 40, r


@pytest.mark.slow
def test_sixty_seconds_of_audio_finishes_with_flat_memory():
    r = rss_after(6, 60)
    assert r["60.0"]["n"] == 480000
    # the per-step logs themselves are ~24 bytes/sample (11.5 MB for 60 s); allow a margin
    assert r["60.0"]["rss_mb"] - r["6.0"]["rss_mb"] < 30, r


# ------------------------------------------------------------------ the estimate before a render

def test_estimate_grows_linearly_with_length_and_streams():
    cfg = tiny_config()
    one, two = memory.render_bytes(cfg, 1, 8000), memory.render_bytes(cfg, 1, 16000)
    per = memory.HOST_STEP_BYTES + memory.PLOT_BYTES + memory.DEVICE_STEP_BYTES
    assert one.per_sample == per and two.total() - one.total() == 8000 * per
    four = memory.render_bytes(cfg, 4, 8000)
    assert four.total() == 4 * one.total()                  # cache and buffers are per stream too
    bare = memory.render_bytes(cfg, 1, 8000, plot=False)
    assert one.total() - bare.total() == 8000 * memory.PLOT_BYTES
    mel = memory.render_bytes(cfg, 1, 8000, mel_samples=8000)
    assert mel.device > one.device and mel.host == one.host
    beam = memory.render_bytes(cfg, 1, 8000, beam=4)
    assert beam.total() > 4 * memory.BEAM_BYTES * 8000
    assert memory.human(2.5e9) == "2.5 GB" and memory.human(512) == "512 B"
    assert memory.human(8.4e15) == "8.4 PB"


def test_check_fits_refuses_in_one_line_naming_need_and_room():
    est = memory.Estimate(host=2 * 10**9, device=10**9, per_sample=56)
    have = {"cpu": 4 * 10**9, "cuda": 5 * 10**8}
    avail = lambda d: have[torch.device(d).type]  # noqa: E731
    memory.check_fits(est, "cpu", "x", "y", available=avail)          # 3 GB of 4: fits
    have["cpu"] = 3 * 10**9
    with pytest.raises(UsageError) as e:                               # 3 GB > 90 % of 3
        memory.check_fits(est, "cpu", "rendering 1 stream(s)", "ask for less", available=avail)
    msg = str(e.value)
    assert msg == ("rendering 1 stream(s) needs about 3.0 GB of memory (56 bytes per sample and "
                   "stream), 3.0 GB is available: ask for less") and "\n" not in msg
    have["cpu"] = 10**12                                              # the host has room, the GPU not
    with pytest.raises(UsageError, match=r"needs about 1.0 GB of memory on cuda \(56 bytes"):
        memory.check_fits(est, "cuda", "x", "y", available=avail)
    memory.check_fits(est, "cpu", "x", "y", available=lambda d: None)  # unknown: never refused
    assert memory.available_bytes("cpu") is None or memory.available_bytes("cpu") > 10**7


@pytest.mark.parametrize("args, says", [
    (["--seconds", "1e9"], "of disk space for its files"),           # streamed: flat memory
    (["--num", "100000", "--seconds", "100"], "of "),               # memory here, disk elsewhere
])
def test_sample_refuses_a_render_that_cannot_fit_before_it_starts(tmp_path, capsys, args, says):
    """The issue's two cases used to end in a raw "can't allocate memory" traceback; both are
    long enough to stream, so memory stays flat, but the files cannot fit on the disk."""
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt")
    t0 = time.time()
    rc = sample.main(["--checkpoint", str(ckpt), "--device", "cpu", "--out", str(tmp_path / "out"),
                      *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: rendering ") and "needs about" in err[0] and says in err[0]
    assert "is available: ask for fewer --num" in err[0] or "is free in " in err[0]
    assert not any((tmp_path / "out").iterdir())                      # no run folder was made
    assert time.time() - t0 < 60


def test_disk_check_refuses_files_that_cannot_fit(tmp_path):
    assert memory.file_bytes(2, 8000) == 2 * 8000 * memory.FILE_BYTES
    assert memory.file_bytes(2, 8000, stream=True) > memory.file_bytes(2, 8000)
    memory.check_disk(10**6, tmp_path, "x", "y")
    with pytest.raises(UsageError, match=rf"^r needs about 1.0 PB of disk space for its files, .* is free in {tmp_path}: h$"):
        memory.check_disk(10**15, tmp_path, "r", "h")


def test_a_streamed_render_needs_nothing_that_grows_with_its_length():
    cfg = tiny_config()
    short, long = (memory.render_bytes(cfg, 2, n, stream=True) for n in (8000, 8000 * 3600))
    assert short.total() == long.total() == memory.render_bytes(cfg, 2, 1, plot=False).device - 2 * 8
    assert long.per_sample == 0


STREAM_SCRIPT = r"""
import json, resource, sys, tempfile, torch
sys.path.insert(0, "tests")
from pathlib import Path
from conftest import tiny_config
from wavetyp.core.conditioning import CondSpec
from wavetyp.core.decoding import DecodeSettings
from wavetyp.core.model import WaveNet
from wavetyp.report.sample_stream import stream_run
torch.manual_seed(0)
model = WaveNet(tiny_config()).eval()
out = {}
for seconds in (float(s) for s in sys.argv[1:]):
    rows, _ = stream_run(model, [DecodeSettings(1.0)] * 4, int(seconds * 8000), CondSpec(), 0, None,
                         Path(tempfile.mkdtemp()), progress=False)
    out[str(seconds)] = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                         "seconds": rows[0]["seconds"]}
print(json.dumps(out))
"""


def test_streamed_renders_keep_memory_flat():
    """Four streams of 1 s, then of 8 s, written to disk as they are generated: the in-memory
    run would keep ~4 x 64000 x 48 bytes = 12 MB more for the longer one; streamed, it keeps
    nothing (this tiny model, one stream: 547.7 / 548.3 / 549.0 MB peak at 10 / 100 / 300 s)."""
    res = subprocess.run([sys.executable, "-c", STREAM_SCRIPT, "1", "8"], capture_output=True,
                         text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["8.0"]["seconds"] == 8.0
    assert r["8.0"]["rss_mb"] - r["1.0"]["rss_mb"] < 4, r
