"""The inspector: the typical-set finder on hand-made traces, the page builder on a tiny model
(run folders, NPZ files, a demo-like folder), the CLI's errors and help, and the page itself in
headless Chromium (its #selftest seeks through the audio and clicks a track)."""
import base64
import json
import re
import shutil
import zlib

import numpy as np
import pytest
import soundfile as sf
import torch
from browser import Browser, find_chromium
from conftest import synth_speechlike

from wavetyp import inspect as inspect_cli
from wavetyp import sample
from wavetyp.analysis.typical_set import (
    exits,
    find_exits,
    outside_fraction,
    runs,
    window_steps,
    windowed_gap,
    windowed_z,
)
from wavetyp.core.checkpoint import load_model
from wavetyp.core.conditioning import make_cond_spec

SR = 8000
W = 400                                   # 50 ms at 8 kHz


# ------------------------------------------------------------------ the typical-set finder

def flat_trace(T=8000, ent=2.0, var=1.0):
    """nll = H everywhere: gap 0, z 0."""
    return np.full(T, ent), np.full(T, ent), np.full(T, var)


def test_window_is_50_ms_and_sums_are_centred():
    assert window_steps(SR) == W and window_steps(16000, 50) == 800 and window_steps(10, 1) == 1
    g = windowed_gap(np.arange(10.0), np.zeros(10), 4)   # window [t-2, t+2) cut to the array: 7..9 at t=9
    assert g[0] == pytest.approx(0.5) and g[5] == pytest.approx(4.5) and g[9] == pytest.approx(8.0)


def test_a_stretch_of_known_place_and_length_is_found_with_its_times():
    nll, ent, var = flat_trace()
    nll[2000:4000] -= 1.0                 # 250 ms, 1 bit more likely than H at every step
    (s,) = find_exits(nll, ent, var, SR)
    # the centred window holds > 40 of these steps (gap < -0.1) from centre 1841 to 4159
    assert (s.start, s.end) == (1841, 4160)
    assert abs(s.start - 2000) <= W // 2 and abs(s.end - 4000) <= W // 2
    assert s.t0 == pytest.approx(1841 / SR) and s.t1 == pytest.approx(0.52)
    assert s.why == "gap+z"
    assert s.min_gap == pytest.approx(-1.0) and s.peak_z == pytest.approx(-20.0)   # -400 / sqrt(400)
    assert outside_fraction([s], len(nll)) == pytest.approx((4160 - 1841) / 8000)
    assert "0.230-  0.520 s" in s.describe()


def test_typical_traces_give_no_stretch():
    assert find_exits(*flat_trace(), SR) == []
    rng = np.random.default_rng(0)        # ancestral-like: nll - H ~ N(0, varentropy)
    T, v = 16000, 0.25
    ent = 1.0 + rng.random(T)
    nll = ent + rng.normal(0.0, np.sqrt(v), T)
    assert find_exits(nll, ent, np.full(T, v), SR) == []


def test_a_window_with_z_beyond_4_is_found_on_either_side():
    nll, ent, var = flat_trace(var=0.25)
    nll[2000:4000] += 0.3                 # too surprising: gap +0.3 (not below -0.1), z = +12
    (s,) = find_exits(nll, ent, var, SR)
    assert s.why == "z" and s.peak_z == pytest.approx(12.0)
    # z > 4 once the window holds >= 134 of the steps: 0.3 * 134 / sqrt(0.25 * 400) = 4.02
    assert (s.start, s.end) == (1934, 4067)
    nll2, ent2, var2 = flat_trace(var=0.25)
    nll2[5000:5400] -= 0.3
    (s2,) = find_exits(nll2, ent2, var2, SR, epsilon=1.0)     # gap bound out of reach: z alone
    assert s2.why == "z" and s2.peak_z == pytest.approx(-12.0)


def test_prime_is_skipped_and_near_stretches_are_joined():
    nll, ent, var = flat_trace()
    nll[:1000] -= 1.0                     # a teacher-forced prime that is very likely
    assert find_exits(nll, ent, var, SR, skip=1400) == []
    nll, ent, var = flat_trace()
    nll[3000:3100] -= 1.0
    nll[3200:3300] -= 1.0                 # two dips 100 steps apart: their windows overlap
    assert len(find_exits(nll, ent, var, SR)) == 1
    assert runs(np.array([1, 1, 0, 0, 0, 1, 0, 1], bool)) == [(0, 2), (5, 6), (7, 8)]
    assert runs(np.array([1, 1, 0, 0, 0, 1, 0, 1], bool), join=2) == [(0, 2), (5, 8)]
    gw = np.array([0.0, -0.5, -0.5, 0.0, -0.5])
    assert [(s.start, s.end) for s in exits(gw, np.zeros(5), SR, min_steps=2)] == [(1, 3)]


def test_windowed_z_without_variance():
    z = windowed_z(np.array([0.0, 0.0, 1.0, 1.0]), np.zeros(4), np.zeros(4), 2)
    assert z[0] == 0.0 and np.isinf(z[3]) and z[3] > 0     # a sure code missed: infinitely unlikely


# ------------------------------------------------------------------ the page on a tiny model

@pytest.fixture
def tiny_run(tiny_ckpt, tmp_path):
    """A 0.05-s run folder: greedy, tau 0.7 and tau 1 following the mel frames of a recording."""
    rec = tmp_path / "rec.wav"
    sf.write(rec, synth_speechlike(0.05), SR)
    assert sample.main(["--checkpoint", str(tiny_ckpt), "--seconds", "0.05", "--num", "1",
                        "--temperature", "0", "0.7", "1", "--digit", "3", "--mel-from", str(rec),
                        "--out", str(tmp_path / "samples"), "--name", "run", "--no-plot"]) == 0
    return tmp_path / "samples" / "run"


def run_inspect(ckpt, *args):
    return inspect_cli.main([*map(str, args), "--checkpoint", str(ckpt), "--device", "cpu"])


def read_page(path):
    text = path.read_text()
    meta = json.loads(re.search(r'<script type="application/json" id="inspector-meta">(.*?)</script>',
                                text, re.DOTALL).group(1).replace("<\\/", "</"))
    blobs = dict(re.findall(r'<script type="application/octet-stream" id="blob-(\w+)">(.*?)</script>', text, re.DOTALL))
    return text, meta, blobs


def unpack(meta_track, blob):
    raw, out, off = zlib.decompress(base64.b64decode(blob)), {}, 0
    for name, kind, n in meta_track["layout"]:
        dtype = {"f16": "<f2", "u16": "<u2", "u8": np.uint8}[kind]
        size = n * np.dtype(dtype).itemsize
        out[name] = np.frombuffer(raw[off:off + size], dtype)
        off += size
    assert off == len(raw)
    return out


def test_page_from_a_run_folder(tiny_ckpt, tiny_run, tmp_path, capsys):
    out = tmp_path / "page"
    assert run_inspect(tiny_ckpt, tiny_run, "--out", out) == 0
    printed = capsys.readouterr().out
    page = out / "index.html"
    assert f"open {page.resolve().as_uri()}" in printed and str(page) in printed
    assert "where each render leaves the typical set" in printed
    assert re.search(r"greedy-0 \[digit3-mel-rec\]: gap [+-]\d\.\d{3} bits/sample", printed)
    text, meta, blobs = read_page(page)
    assert "http://" not in text and "https://" not in text        # nothing from the network
    assert "<script src" not in text and "<link" not in text
    names = [t["name"] for t in meta["tracks"]]
    assert names == ["greedy-0", "tau0.7-0", "tau1-0", "recording rec"]
    assert len(meta["groups"]) == 1 and len(meta["groups"][0]["tracks"]) == 4   # one time axis
    model, _ = load_model(tiny_ckpt)
    for t in meta["tracks"]:
        a = unpack(t, blobs[t["id"]])
        T = t["T"]
        assert len(a["codes"]) == len(a["nll"]) == len(a["count"]) == T == 400
        start = np.concatenate([[0], np.cumsum(a["count"].astype(np.int64))])
        assert start[-1] == len(a["dcode"]) == len(a["dp"]) and a["count"].max() <= 32 * 2 + 1
        for k in range(T):                # the chosen code is always among the stored ones
            assert a["codes"][k] in a["dcode"][start[k]:start[k + 1]]
        if t["kind"] == "render":
            npz = np.load(tiny_run / f"{t['name']}.npz")
            assert np.array_equal(a["codes"], npz["codes"])
            assert np.allclose(a["nll"], npz["nll_bits"], atol=2e-2, rtol=1e-3)   # float16
            assert t["rescore_check"] < 1e-3                 # rescoring agrees with the sampler
        # the stored probabilities are the model's p_t (1/8-bit steps)
        cond = make_cond_spec(model, 3, None, str(tmp_path / "rec.wav"))
        codes = torch.as_tensor(a["codes"].astype(np.int64))
        with torch.no_grad():
            p = model(codes[None], cond.build(model, 1))[0].softmax(-1).numpy()
        k = T // 2
        cs, ps = a["dcode"][start[k]:start[k + 1]], a["dp"][start[k]:start[k + 1]]
        assert np.allclose(2.0 ** (-ps.astype(float) / 8.0), p[k, cs], rtol=0.045)   # 2^(1/16) - 1
    greedy, tau07, tau1, rec = meta["tracks"]
    assert greedy["q"] == "own" and tau07["q"] == "own" and tau1["q"] == "same" and rec["q"] is None
    g = unpack(greedy, blobs[greedy["id"]])               # greedy samples a point mass
    assert (g["dq"] == 0).sum() == 400 and set(np.unique(g["dq"])) <= {0, 255}
    assert rec["kind"] == "recording" and "nothing was sampled" in rec["q_note"]


def test_npz_input_default_out_and_no_silent_overwrite(tiny_ckpt, tiny_run, capsys):
    npz = tiny_run / "tau1-0.npz"
    assert run_inspect(tiny_ckpt, npz) == 0
    page = tiny_run.parent / "run-inspect" / "index.html"          # beside the input
    assert page.is_file() and not (tiny_run / "index.html").exists()
    _, meta, _ = read_page(page)
    assert [t["name"] for t in meta["tracks"]] == ["tau1-0", "recording rec"]
    capsys.readouterr()
    assert run_inspect(tiny_ckpt, npz) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--overwrite" in err and err.count("\n") == 1
    assert run_inspect(tiny_ckpt, npz, "--overwrite", "--settings", "greedy") == 2   # none left
    assert run_inspect(tiny_ckpt, tiny_run, "--overwrite", "--settings", "greedy", "tau1") == 0
    assert [t["name"] for t in read_page(page)[1]["tracks"]] == ["greedy-0", "tau1-0", "recording rec"]


def test_whole_distributions_can_be_kept(tiny_ckpt, tiny_run, tmp_path):
    """--top-k 256 --mass 1: every code of every step (more than a byte can count)."""
    out = tmp_path / "whole"
    assert run_inspect(tiny_ckpt, tiny_run / "tau0.7-0.npz", "--out", out, "--top-k", "256", "--mass", "1") == 0
    _, meta, blobs = read_page(out / "index.html")
    t = meta["tracks"][0]
    a = unpack(t, blobs[t["id"]])
    assert dict((n, k) for n, k, _ in t["layout"])["count"] == "u16" and (a["count"] == 256).all()
    p = 2.0 ** (-a["dp"].astype(float) / 8.0)
    assert np.allclose(p.reshape(-1, 256).sum(1), 1.0, rtol=0.045)


def test_page_from_a_demo_like_folder(tiny_ckpt, tiny_run, tmp_path, capsys):
    demo = tmp_path / "demo"
    (demo / "audio").mkdir(parents=True)
    rows = []
    for name, setting, tau in (("greedy-0", "greedy", 0.0), ("tau0.7-0", "tau0.7", 0.7), ("tau1-0", "tau1", 1.0)):
        shutil.copy(tiny_run / f"{name}.wav", demo / "audio" / f"label-three__{setting}.wav")
        rows.append({"condition": "label-three", "setting": setting, "temperature": tau, "top_p": None,
                     "typical_p": None, "beam": None, "wav": f"audio/label-three__{setting}.wav"})
    rows.append(dict(rows[1], setting="tau0.5", temperature=0.5))          # not in the default choice
    rows += [dict(r, condition="uncond") for r in rows[:3]]                # same names, another group
    metrics = {"meta": {}, "conditions": [
        {"id": "label-three", "title": "digit three", "conditioning": {"digit": 3, "speaker": None, "mel_from": None}},
        {"id": "uncond", "title": "no conditioning", "conditioning": {"digit": None, "speaker": None, "mel_from": None}}],
               "rows": rows}
    (demo / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "insp-demo"
    assert run_inspect(tiny_ckpt, demo, "--out", out) == 0
    printed = capsys.readouterr().out
    _, meta, _ = read_page(out / "index.html")
    assert [(t["group"], t["setting"]) for t in meta["tracks"]] == [
        ("label-three", "greedy"), ("label-three", "tau0.7"), ("label-three", "tau1"),
        ("uncond", "greedy"), ("uncond", "tau0.7"), ("uncond", "tau1")]
    assert [g["title"] for g in meta["groups"]] == ["label-three: digit three", "uncond: no conditioning"]
    for t in meta["tracks"]:              # each render's own stretches are printed under its name
        line = re.search(rf"^{t['name']} \[{t['group']}\]: .*$", printed, re.MULTILINE).group(0)
        n = len(t["exits"])
        assert (f"{n} stretch(es)" in line) if n else ("no stretch" in line)
    assert run_inspect(tiny_ckpt, demo, "--out", out, "--overwrite", "--settings", "all",
                       "--condition", "label-three") == 0
    assert len(read_page(out / "index.html")[1]["tracks"]) == 4
    capsys.readouterr()
    assert run_inspect(tiny_ckpt, demo, "--out", out, "--overwrite", "--condition", "label-nine") == 2
    assert "unknown condition 'label-nine'" in capsys.readouterr().err


def test_demo_rows_give_back_their_decoding_settings():
    """A demo row's settings round-trip (the literature's filters included), so the overlay q_t
    is the distribution that was sampled; rows of an older metrics.json have those filters off."""
    from wavetyp.analysis.sweep import LITERATURE, SETTINGS, setting_fields
    from wavetyp.report.inspector_inputs import row_settings
    for s in SETTINGS + LITERATURE:
        assert row_settings(setting_fields(s, None)) == s, s.name
    old = {"setting": "tau1-topp0.9", "temperature": 1.0, "top_p": 0.9, "typical_p": None, "beam": None}
    assert row_settings(old).name == "tau1-topp0.9"


@pytest.mark.parametrize("args, says", [
    (["{missing}"], "no such file or folder"),
    (["{empty}"], "neither a sample run folder"),
    (["{run}", "--top-k", "0"], "--top-k must be >= 1"),
    (["{run}", "--mass", "1.5"], "--mass must be in (0, 1]"),
    (["{run}", "--name", "x/page.txt"], "--name must be a file name"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_ckpt, tiny_run, tmp_path, capsys, args, says):
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "run": tiny_run}
    assert run_inspect(tiny_ckpt, *[a.format(**paths) for a in args], "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and says in err and err.count("\n") == 1


def test_help_explains_every_flag_once():
    parser = inspect_cli.build_parser()
    assert not [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert not [a.help for a in parser._actions if a.help and re.search(r"\bdefault\b", a.help.lower())]
    flat = re.sub(r"\s+", " ", parser.format_help())
    assert "(default: None)" not in flat and "(default: False)" not in flat
    assert {"--checkpoint", "--device", "--debug", "--out"} <= {s for a in parser._actions for s in a.option_strings}


# ------------------------------------------------------------------ the page in a browser

def test_page_in_headless_chromium_follows_the_audio_and_seeks_on_click(tiny_ckpt, tiny_run, tmp_path):
    exe = find_chromium()
    if exe is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium; .ci/run does it)")
    out = tmp_path / "page"
    assert run_inspect(tiny_ckpt, tiny_run, "--out", out) == 0
    page = out / "index.html"
    with Browser(exe, tmp_path / "chromium-profile") as browser:
        browser.open(f"{page.resolve().as_uri()}#selftest")
        text = browser.wait_for("(() => { const p = document.querySelector('#selftest[data-done=\"1\"]');"
                                " return p ? p.textContent : null; })()")
        assert text, "the self-test did not finish in 90 s: " + str(browser.evaluate("document.title"))
        res = json.loads(text)
        shot = tmp_path / "inspector.png"
        browser.screenshot(shot)
        # a link from the demo's report: #group=..&track=..&t=.. selects that row, even when
        # only the hash changes in an open page
        browser.evaluate("location.hash = 'group=digit3-mel-rec&track=tau1-0&t=0.025'")
        active = browser.wait_for("(() => { const r = document.querySelector('.row.active');"
                                  " return r && r.dataset.name === 'tau1-0' ? r.dataset.name : null; })()",
                                  timeout=20)
        playing = browser.evaluate("document.getElementById('playing').textContent")
        readout = browser.evaluate("document.querySelector('.row.active .dist').dataset.step")
    assert res["errors"] == [], res["errors"]
    assert res["audio_ready"], res
    checks = res["checks"]
    assert checks["cursor_follows_audio"] and checks["cursor_moved"], res["seek_audio"]
    assert res["seek_audio"]["panel_step"] == res["seek_audio"]["expected_step"]
    assert checks["every_row_follows"]
    assert checks["click_seeks_audio"] and checks["click_puts_cursor"] and checks["click_moves_panel"], res["click"]
    assert checks["hover_tooltip"] and checks["zoom_to_samples"]
    assert res["pass"]
    assert active == "tau1-0" and playing == "audio: tau1-0"
    assert int(readout) == 200                                 # t = 0.025 s at 8 kHz
    assert shot.is_file() and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
