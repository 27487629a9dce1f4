"""Long sampling keeps memory flat: the cache is a fixed ring buffer, logs are preallocated."""
import json
import subprocess
import sys

import pytest

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
