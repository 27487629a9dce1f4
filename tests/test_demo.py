"""The demo sweep (`python -m wavetyp.demo --quick` on a tiny model and a tiny synthetic
FSDD-style corpus), its metrics, the static report's links, and a headless-Chromium check
that every <audio> and <img> of index.html actually loads."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pytest
import soundfile as sf
import torch
from browser import Browser, find_chromium
from conftest import save_tiny_checkpoint

from wavetyp import demo
from wavetyp.analysis import measures, sweep
from wavetyp.core.audio import mu_law_decode
from wavetyp.data.corpus import Corpus
from wavetyp.report import demo_inspector, demo_page, demo_plots, demo_reading, demo_rows, plots
from wavetyp.report import demo_run as demo_run_mod

SR = 8000
CHROMIUM = "/usr/bin/chromium"
ROW_KEYS = ("name", "level", "condition", "setting", "seconds", "samples", "rms_dbfs",
            "silence_frac", "silent", "mean_nll_bits", "mean_entropy_bits", "gap_bits", "z",
            "in_typical_set", "fric_rule", "fric_frames", "fric_per_s", "ref_fric_per_s",
            "fric_band_db", "fric_flatness", "ref_flatness", "fric_frames_compared", "wav",
            "spec_png", "trace_png")
ALWAYS_NUMERIC = ("seconds", "rms_dbfs", "silence_frac", "mean_nll_bits", "mean_entropy_bits",
                  "gap_bits", "fric_per_s", "ref_fric_per_s")


def synth_word(seconds: float, seed: int) -> np.ndarray:
    """A harmonic 'vowel' then a high-passed noise 'fricative' (energy mostly above 2 kHz)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    w = np.zeros(n, np.float32)
    a, b = n // 8, n // 2
    f0 = 110 + 15 * seed
    w[a:b] = 0.3 * np.sin(2 * np.pi * f0 * t[a:b]) + 0.1 * np.sin(2 * np.pi * 3 * f0 * t[a:b])
    w[b:b + n // 4] = 0.15 * np.diff(rng.standard_normal(n // 4 + 1))
    return w


def make_corpus(root: Path) -> Path:
    """FSDD-style names; indices 0-4 are the test split. Speakers match tiny_config's."""
    rec = root / "recordings"
    rec.mkdir(parents=True)
    i = 0
    for d in (6, 7, 5, 1):
        for spk in ("alice", "bob"):
            for k in (0, 1, 7):
                sf.write(str(rec / f"{d}_{spk}_{k}.wav"), synth_word(0.3, i), SR)
                i += 1
    return root


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    corpus = make_corpus(root / "fsdd")
    ckpt = save_tiny_checkpoint(root / "tiny.pt")
    out = root / "out"
    args = ["--checkpoint", str(ckpt), "--data-dir", str(corpus), "--out", str(out), "--quick",
            "--seconds", "0.2", "--seed", "3"]
    assert demo.main(args) == 0
    return {"out": out, "args": args, "metrics": json.loads((out / "metrics.json").read_text())}


class Refs(HTMLParser):
    """Collects src/href attributes and <audio>/<img> counts."""

    def __init__(self):
        super().__init__()
        self.refs, self.audio, self.img = [], 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.audio += tag == "audio"
        self.img += tag == "img"
        for k in ("src", "href"):
            if a.get(k):
                self.refs.append(a[k])


def parse_refs(page: Path) -> Refs:
    p = Refs()
    p.feed(page.read_text())
    return p


# ------------------------------------------------------------------ the run and its files

def test_quick_demo_writes_one_complete_row_per_render(demo_run):
    m, out = demo_run["metrics"], demo_run["out"]
    rows, conds = m["rows"], m["conditions"]
    assert {c["level"] for c in conds} == {"uncond", "label", "speaker", "vocoder"}
    n_settings = len(sweep.SETTINGS) + len(sweep.LITERATURE)
    assert len(rows) == sum(n_settings + (1 if c["beam_samples"] else 0) for c in conds)
    assert sum(1 for c in conds if c["beam_samples"]) >= 1
    names = [r["name"] for r in rows]
    assert len(set(names)) == len(names)
    for c in conds:  # every condition rendered every setting: the sweep's, then the literature's
        got = [r["setting"] for r in rows if r["condition"] == c["id"] and not r["beam"]]
        assert got == [s.name for s in sweep.SETTINGS + sweep.LITERATURE]
    for r in rows:
        missing = [k for k in ROW_KEYS if k not in r]
        assert not missing, (r["name"], missing)
        for k in ALWAYS_NUMERIC:
            assert isinstance(r[k], (int, float)) and np.isfinite(r[k]), (r["name"], k, r[k])
        assert abs(r["gap_bits"] - (r["mean_nll_bits"] - r["mean_entropy_bits"])) < 1e-6
        assert r["silent"] == (r["silence_frac"] >= measures.SILENT_FRACTION)
        assert r["fric_rule"] == ("aligned" if r["level"] == "vocoder" else "distribution")
        if r["fric_rule"] == "distribution":
            assert r["fric_band_db"] is not None
        wave, sr = sf.read(str(out / r["wav"]))
        assert sr == SR and len(wave) == r["samples"]
        assert r["samples"] == round(r["seconds"] * SR)
    # every render and reference file is in the manifest and on disk
    for f in m["files"]:
        assert (out / f).is_file(), f
    assert not (out / ".staging").exists()
    md = (out / "metrics.md").read_text()
    for r in rows:
        assert f"| {r['condition']} | {r['setting']} |" in md


def test_literature_rows_carry_their_settings_and_their_own_seed(demo_run):
    """min-p, epsilon, eta, mirostat and mirostat-gap (at G < 0, 0 and > 0) are rows of every
    condition, at tau 1, with their filter values; their call is seeded apart from the sweep's."""
    m = demo_run["metrics"]
    rows, seed = m["rows"], m["meta"]["seed"]
    lit = sweep.LITERATURE
    assert m["meta"]["literature_settings"] == [s.name for s in lit]
    gaps = [s.mirostat_gap for s in lit if s.mirostat_gap is not None]
    assert 0.0 in gaps and min(gaps) < 0 < max(gaps)
    assert all(any(getattr(s, k) is not None for s in lit)
               for k in ("min_p", "epsilon_cutoff", "eta_cutoff", "mirostat_tau"))
    for ci, c in enumerate(m["conditions"]):
        by_name = {r["setting"]: r for r in rows if r["condition"] == c["id"]}
        for s in lit:
            r = by_name[s.name]
            assert r["temperature"] == 1.0 and r["beam"] is None
            for k in sweep.FILTER_FIELDS:
                want = getattr(s, k) if (k != "mirostat_eta" or s.mirostat) else None
                assert r[k] == want, (r["name"], k)
            assert r["seed"] == seed + ci + sweep.LITERATURE_SEED_OFFSET
            assert not demo_rows.is_temperature_row(r) and demo_rows.is_literature_row(r)
        for s in sweep.SETTINGS:
            r = by_name[s.name]
            assert r["seed"] == seed + ci and not demo_rows.is_literature_row(r)
            assert r["top_p"] == s.top_p and r["typical_p"] == s.typical_p
            assert all(r[k] is None for k in demo_rows.LITERATURE_FILTERS + ("mirostat_eta",))
    md = (demo_run["out"] / "metrics.md").read_text()
    page = (demo_run["out"] / "index.html").read_text()
    assert "## Decoding from the literature" in md and "Decoding from the literature" in page
    for s in lit:
        assert f"| {s.name} |" in md.split("## Decoding from the literature")[1].split("## Rules")[0]


def test_sweep_rows_are_the_same_without_the_literature_rows(demo_run, tmp_path, monkeypatch):
    """The literature's settings render in their own generate() call: a run without them gives
    the sweep's rows (codes, metrics, thumbnails) unchanged, field by field and byte by byte."""
    monkeypatch.setattr(sweep, "LITERATURE", [])
    monkeypatch.setattr(demo_run_mod, "LITERATURE", [])
    out = tmp_path / "without"
    args = list(demo_run["args"])
    args[args.index("--out") + 1] = str(out)
    assert demo.main(args) == 0
    without = json.loads((out / "metrics.json").read_text())
    full = {r["name"]: r for r in demo_run["metrics"]["rows"]}
    assert without["rows"] and len(full) > len(without["rows"])
    for r in without["rows"]:
        assert r == full[r["name"]], r["name"]
        for k in ("wav", "spec_png", "trace_png"):
            assert (out / r[k]).read_bytes() == (demo_run["out"] / r[k]).read_bytes(), r[k]
    assert without["conditions"] == demo_run["metrics"]["conditions"]
    assert {r["name"] for r in without["rows"]} == {n for n, r in full.items()
                                                    if not demo_rows.is_literature_row(r)}


def test_index_html_references_only_existing_relative_files(demo_run):
    out, rows = demo_run["out"], demo_run["metrics"]["rows"]
    page = out / "index.html"
    refs = parse_refs(page)
    assert refs.audio >= len(rows) and refs.img >= 2 * len(rows) + 2
    groups = {g["id"]: g for g in inspector_meta(out)["groups"]}
    names = {t["id"]: t["name"] for t in inspector_meta(out)["tracks"]}
    for ref in refs.refs:
        assert not re.match(r"^[a-z]+:", ref) and not ref.startswith("/"), ref
        path, _, frag = ref.partition("#")
        assert (out / path).is_file(), f"index.html points at missing {ref}"
        if frag:                          # a place in the inspector: that group and track exist
            assert path == demo_inspector.INSPECTOR, ref
            q = parse_qs(frag)
            assert q["group"][0] in groups, ref
            assert q["track"][0] in {names[t] for t in groups[q["group"][0]]["tracks"]}, ref
    text = page.read_text()
    for r in rows:
        assert r["wav"] in text and r["spec_png"] in text and r["trace_png"] in text
    assert "typical_set.png" in text and "temperature_curves.png" in text and "spec_scale.png" in text
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 8e6


def inspector_meta(out: Path) -> dict:
    text = (out / demo_inspector.INSPECTOR).read_text()
    return json.loads(re.search(r'<script type="application/json" id="inspector-meta">(.*?)</script>',
                                text, re.DOTALL).group(1).replace("<\\/", "</"))


def test_every_greedy_tau07_tau1_render_links_to_its_inspector_view(demo_run):
    """inspector.html is built beside index.html; each render it shows (greedy, tau 0.7, tau 1)
    and each vocoder recording links to #group=<condition>&track=<name>, the page holds exactly
    those tracks, with the codes of the WAV files and the sampler's own logs."""
    out, m = demo_run["out"], demo_run["metrics"]
    meta, page = inspector_meta(out), (out / "index.html").read_text()
    assert "inspector.html" in m["files"]
    insp = m["meta"]["inspector"]
    assert insp["page"] == "inspector.html" and insp["tracks"] == len(meta["tracks"])
    assert insp["bytes"] == (out / "inspector.html").stat().st_size
    shown = [r for r in m["rows"] if r["setting"] in ("greedy", "tau0.7", "tau1")]
    assert len(shown) == 3 * len(m["conditions"])
    for r in m["rows"]:
        if r not in shown:
            assert "inspector" not in r, r["name"]
            continue
        href = f"inspector.html#group={r['condition']}&track={r['setting']}"
        assert r["inspector"] == href
        assert page.count(f'href="{href.replace("&", "&amp;")}"') >= 3     # spectrogram, traces, text
        (t,) = [t for t in meta["tracks"] if t["group"] == r["condition"] and t["name"] == r["setting"]]
        assert t["kind"] == "render" and t["T"] == r["samples"] and t["source"] == r["wav"]
        assert t["rescore_check"] is not None and t["rescore_check"] < 1e-3   # logs = rescoring
    recordings = [t for t in meta["tracks"] if t["kind"] == "recording"]
    vocoder = [c for c in m["conditions"] if c["level"] == "vocoder"]
    assert vocoder and len(recordings) == len(vocoder)
    for c in vocoder:
        (t,) = [t for t in recordings if t["group"] == c["id"]]
        assert c["listen"]["inspector"] == f"inspector.html#group={c['id']}&track=recording+{c['listen']['name']}"
        assert t["name"] == f"recording {c['listen']['name']}"
    assert len(meta["tracks"]) == len(shown) + len(recordings)


def test_the_page_tells_the_story_first_and_folds_the_rules_and_the_table(demo_run):
    text = (demo_run["out"] / "index.html").read_text()
    order = ['class="story"', "temperature_curves.png", 'class="strip"', 'class="toys"',
             "What the numbers say", "img/typical_set.png", 'id="level-', "By setting"]
    at = [text.index(k) for k in order]
    assert at == sorted(at), dict(zip(order, at))
    strip = text[text.index('class="strip"'):text.index('class="toys"')]
    heads = re.findall(r"<th>(.*?)</th>", strip)
    assert heads == ["recording", "greedy", "tau0.7", "tau1"]            # a vocoder row
    assert strip.count("<audio") == 4 and strip.count("inspector.html#group=vocoder-") >= 4
    details = re.findall(r"<details><summary>(.*?)</summary>(.*?)</details>", text, re.DOTALL)
    assert [d[0].split(":")[0] for d in details] == ["How it was measured", "All measurements"]
    lit = 1 if demo_page.literature_rows(demo_run["metrics"]["rows"]) else 0  # its own table
    assert 'class="metrics"' in details[1][1] and text.count("<table class=\"metrics\"") == 2 + lit
    rules = demo_reading.rules_text(demo_run["metrics"]["meta"])
    assert html.escape(rules[0]) in details[0][1]
    # without the inspector (--no-inspector, or it failed) the page links nowhere
    res = json.loads(json.dumps(demo_run["metrics"]))
    res["meta"]["inspector"] = None
    for r in res["rows"] + [c["listen"] for c in res["conditions"] if c.get("listen")]:
        r.pop("inspector", None)
    assert "inspector.html" not in demo_page.build_index_html(res)


def test_a_failed_inspector_leaves_a_note_and_no_links(monkeypatch, tmp_path):
    def broken(*a, **k):
        raise RuntimeError("out of memory\nsecond line")
    monkeypatch.setattr(demo_run_mod, "build_demo_inspector", broken)
    rows, conds, notes = [{"condition": "c", "setting": "greedy"}], [{"id": "c", "listen": {"name": "x"}}], []
    assert demo_run_mod.inspector_section(None, [], tmp_path, rows, conds, {}, False, notes) is None
    assert "inspector" not in rows[0] and "inspector" not in conds[0]["listen"]
    assert notes == ["inspector page failed (RuntimeError: out of memory): no links to it"]


def test_reference_recordings_are_copied_with_their_licence(demo_run):
    """The report is committed, so every link must resolve inside it: the recordings played
    beside the renders are copied unchanged into recordings/ (at most 5), with FSDD's
    attribution beside them and the licence next to every player; no render is a copy of a
    recording."""
    out, m = demo_run["out"], demo_run["metrics"]
    rec = (out.parent / "fsdd" / "recordings").resolve()
    listens = [c["listen"] for c in m["conditions"] if c.get("listen")]
    assert listens
    copied = sorted((out / demo_run_mod.RECORDINGS).glob("*.wav"))
    assert 1 <= len(copied) <= demo_run_mod.MAX_RECORDINGS == 5
    assert {lis["wav"] for lis in listens} == {f"recordings/{p.name}" for p in copied}
    for p in copied:
        assert p.read_bytes() == (rec / p.name).read_bytes(), p
        assert f"recordings/{p.name}" in m["files"]
    credit = (out / demo_run_mod.ATTRIBUTION).read_text()
    for text in ("Free Spoken Digit Dataset", "Zohar Jackson and contributors", "CC BY-SA 4.0",
                 "https://github.com/Jakobovski/free-spoken-digit-dataset"):
        assert text in credit
    assert all(f"`{p.name}`" in credit for p in copied)
    assert demo_run_mod.ATTRIBUTION in m["files"]
    page = (out / "index.html").read_text()
    assert page.count("CC BY-SA 4.0") >= len(listens)
    strip = page[page.index('class="strip"'):page.index('class="toys"')]     # the A/B strip at the top
    assert strip.count(f'href="{demo_run_mod.ATTRIBUTION}"') == 1
    assert page.count(f'href="{demo_run_mod.ATTRIBUTION}"') == len(listens) + 1
    recordings = {p.read_bytes() for p in rec.glob("*.wav")}
    waves = [sf.read(str(p))[0] for p in rec.glob("*.wav")]
    for f in (out / "audio").rglob("*.wav"):
        assert f.read_bytes() not in recordings, f
        w = sf.read(str(f))[0]
        assert not any(len(w) == len(r) and np.allclose(w, r, atol=2e-2) for r in waves), f


def test_at_most_five_recordings_are_copied(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    names = [f"6_x_{i}" for i in range(7)]
    for n in names:
        (rec / f"{n}.wav").write_bytes(n.encode())
    corpus = Corpus("fsdd", SR, ["x"], [], [], root=str(rec))
    stage, copied = tmp_path / "stage", []
    stage.mkdir()
    got = [demo_run_mod.copy_recording(corpus, n, stage, copied) for n in names + names[:1]]
    assert got[:5] == [f"recordings/{n}.wav" for n in names[:5]] and got[5:7] == [None, None]
    assert got[7] == "recordings/6_x_0.wav" and copied == names[:5]
    assert sorted(p.name for p in (stage / "recordings").iterdir()) == [f"{n}.wav" for n in names[:5]]
    assert demo_run_mod.copy_recording(Corpus("fsdd", SR, [], [], [], root=None), "a", stage, []) is None


def test_ood_link_only_when_the_page_would_be_committed(demo_run, tmp_path):
    assert "out-of-distribution" not in (demo_run["out"] / "index.html").read_text()
    out = tmp_path / "samples" / "demo"
    out.mkdir(parents=True)
    assert demo_run_mod.ood_link(out) is None                     # no page: no link
    page = tmp_path / "samples" / "ood" / "index.html"
    page.parent.mkdir()
    page.write_text("<html></html>")
    assert demo_run_mod.ood_link(out) == "../ood/index.html"       # beside the report
    if shutil.which("git") is None:
        pytest.skip("git not installed: the ignored-page case did not run")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("samples/*\n!samples/demo/\n")
    assert demo_run_mod.ood_link(out) is None                     # never committed: no link
    page_html = demo_page.build_index_html({"meta": {}, "rows": [], "conditions": []}, None, None)
    assert "out-of-distribution" not in page_html


def test_header_states_the_training_steps_in_all(demo_run, tmp_path):
    meta = {"checkpoint": "shipped", "checkpoint_step": 1500, "training_steps": 9550}
    text = demo_page.checkpoint_text(meta)
    assert text.startswith("Shipped checkpoint, 9,550 training steps in all") and "1,500" in text
    html_page = demo_page.build_index_html({"meta": meta, "rows": [], "conditions": []})
    assert "9,550 training steps in all" in html_page and "(step 1500)" not in html_page
    assert "9,550 training steps in all" in demo_page.metrics_markdown({"meta": meta, "rows": []})
    # the shipped checkpoint's model card gives the total; its own step counts one round
    from wavetyp.core.checkpoint import SHIPPED, read_checkpoint, total_training_steps
    card = (SHIPPED.parent / "README.md").read_text()
    total = int(re.search(r"^- in all: (\d+) steps", card, re.MULTILINE).group(1))
    assert total_training_steps() == total > read_checkpoint()["step"]
    # no card naming the file: unknown, and the page falls back to the file's own step
    other = tmp_path / "x.pt"
    (tmp_path / "README.md").write_text("# Model card: `wavetyp-fsdd.pt`\n- in all: 9 steps\n")
    assert total_training_steps(other) is None
    assert demo_run["metrics"]["meta"]["training_steps"] is None
    assert "(step 0)" in (demo_run["out"] / "index.html").read_text()


def test_existing_report_is_not_overwritten_silently(demo_run, capsys):
    out = demo_run["out"]
    before = (out / "index.html").stat().st_mtime_ns
    capsys.readouterr()
    assert demo.main(demo_run["args"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--overwrite" in err[0]
    assert (out / "index.html").stat().st_mtime_ns == before


@pytest.mark.parametrize("extra, msg", [
    (["--seconds", "-1"], "--seconds must be > 0"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_bad_arguments_give_one_line_errors(tmp_path, capsys, extra, msg):
    ckpt = save_tiny_checkpoint(tmp_path / "t.pt")
    assert demo.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]


def test_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    assert demo.main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not found" in err[0]


def test_publish_replaces_the_previous_run_and_keeps_foreign_files(tmp_path):
    out = tmp_path / "out"
    (out / "audio").mkdir(parents=True)
    (out / "audio" / "stale.wav").write_text("old")
    (out / "index.html").write_text("old")
    (out / "keep.txt").write_text("not ours")
    (out / "metrics.json").write_text(json.dumps({"files": ["audio/stale.wav", "index.html",
                                                            "../outside.txt", "metrics.json"]}))
    (tmp_path / "outside.txt").write_text("never touched")
    stage = out / ".staging"
    (stage / "audio").mkdir(parents=True)
    for f in ("audio/new.wav", "index.html", "metrics.json"):
        (stage / f).write_text("new")
    demo_run_mod.publish(stage, out, ["audio/new.wav", "index.html", "metrics.json"])
    assert not (out / "audio" / "stale.wav").exists()
    assert (out / "audio" / "new.wav").read_text() == "new"
    assert (out / "index.html").read_text() == "new"
    assert (out / "keep.txt").exists() and (tmp_path / "outside.txt").exists()


# ------------------------------------------------------------------ the reading

def _row(setting, temp, gap, silent, band, level="label", cond="c1", **kw):
    return {"name": f"{cond}__{setting}", "level": level, "level_title": level, "condition": cond,
            "setting": setting, "temperature": temp, "top_p": None, "typical_p": None,
            "beam": None, "rms_dbfs": -20.0, "silence_frac": 1.0 if silent else 0.1,
            "silent": silent, "mean_nll_bits": 5 + gap, "mean_entropy_bits": 5.0, "gap_bits": gap,
            "z": gap * 10, "in_typical_set": abs(gap) <= 0.1, "fric_band_db": band,
            "fric_flatness": 0.5, "ref_flatness": 0.6, "fric_per_s": 10.0, "ref_fric_per_s": 12.0,
            **kw}


def test_temperature_curves_leave_out_every_filtered_row(demo_run):
    """A literature row is at tau 1 but is not plain sampling: the curves, the plot's lines and
    the reading's tau 1 stay those of the temperature rows (mirostat_gap 0 is a filter too)."""
    rows = [_row("tau0.5", 0.5, -0.3, False, -5.0), _row("tau1", 1.0, 0.01, False, 1.0)]
    lit = [_row("tau1-mirostatgap0", 1.0, -2.0, True, -50.0, mirostat_gap=0.0, mirostat_eta=0.1),
           _row("tau1-minp0.1", 1.0, -3.0, True, -60.0, min_p=0.1),
           _row("tau1-eps0.0003", 1.0, -3.0, True, -60.0, epsilon_cutoff=3e-4)]
    for key in ("gap_bits", "fric_band_db"):
        assert demo_rows.temperature_curve(rows + lit, "label", key) == demo_rows.temperature_curve(rows, "label", key)
    assert demo_rows.temperature_curve(rows + lit, "label", "gap_bits") == [(0.5, -0.3), (1.0, 0.01)]
    assert not any(demo_rows.is_temperature_row(r) for r in lit)
    assert all(demo_rows.is_literature_row(r) for r in lit)
    old = {k: v for k, v in rows[1].items() if k not in ("top_p", "typical_p")}  # an older metrics.json
    assert demo_rows.is_temperature_row(old) and not demo_rows.is_literature_row(old)
    m = demo_run["metrics"]
    plain = [r for r in m["rows"] if demo_rows.is_temperature_row(r)]
    assert {r["setting"] for r in plain} == {s.name for s in sweep.SETTINGS
                                             if s.top_p is None and s.typical_p is None}


def test_reading_of_the_literature_rows_is_built_from_the_numbers():
    rows = [_row("tau1", 1.0, 0.0, False, 1.0),
            _row("tau1-mirostatgap-0.5", 1.0, -0.49, True, -20.0, mirostat_gap=-0.5),
            _row("tau1-mirostatgap0", 1.0, -0.01, False, -1.0, mirostat_gap=0.0),
            _row("tau1-mirostatgap0.25", 1.0, 0.002, False, 0.5, mirostat_gap=0.25),
            _row("tau1-minp0.1", 1.0, -0.2, False, -3.0, min_p=0.1)]
    text = " ".join(demo_reading.reading({"meta": {}, "rows": rows}))
    assert "tau1-minp0.1: gap -0.200, z -2.0, silent frames 10%" in text
    assert "Plain tau 1.0: gap +0.000" in text
    assert "within ±0.05 bits/sample of G: -0.5 (-0.490), +0 (-0.010); missed: +0.25 (+0.002)" in text
    # the other way round when the numbers say so
    rows[3] = _row("tau1-mirostatgap0.25", 1.0, 0.26, False, 0.5, mirostat_gap=0.25)
    rows[1] = _row("tau1-mirostatgap-0.5", 1.0, -0.1, False, 0.5, mirostat_gap=-0.5)
    text = " ".join(demo_reading.reading({"meta": {}, "rows": rows}))
    assert "+0 (-0.010), +0.25 (+0.260); missed: -0.5 (-0.100)" in text
    assert "literature" not in " ".join(demo_reading.reading({"meta": {}, "rows": rows[:1]}))
    table = demo_page.literature_md(rows)
    assert "| tau1-mirostatgap0 | 1 | -0.010 | -0.1 | 10% | 0 | 1 |" in table
    assert table.splitlines()[-1].startswith("| tau 1.0 (plain) | 1 | +0.000 |")
    assert demo_page.literature_md(rows[:1]).count("\n") == 1      # header only: no such rows


def test_reading_is_built_from_the_numbers():
    rows = [_row("greedy", 0.0, -1.0, True, -40.0), _row("tau0.5", 0.5, -0.3, False, -5.0),
            _row("tau1", 1.0, 0.0, False, 1.0)]
    text = " ".join(demo_reading.reading({"meta": {}, "rows": rows}))
    assert "greedy in 1 of 1 condition" in text
    assert "between tau 0.5 (-0.300) and tau 1 (+0.000)" in text
    assert "-40.0 dB with greedy and +1.0 dB with tau 1" in text and "rises at every step" in text
    # the same code says the opposite when the numbers say so: nothing is hard-coded
    flipped = [_row("greedy", 0.0, 0.0, False, 1.0), _row("tau0.5", 0.5, -0.3, False, -5.0),
               _row("tau1", 1.0, -1.0, True, -40.0)]
    text = " ".join(demo_reading.reading({"meta": {}, "rows": flipped}))
    assert "tau1 in 1 of 1 condition" in text and "greedy in" not in text
    assert "falls at every step" in text and "falls below" in text


# ------------------------------------------------------------------ the pictures

def sine(amplitude, seconds=0.5, hz=1000.0):
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def test_spectrograms_share_one_dbfs_scale():
    """0 dBFS is a full-scale sine's peak bin; halving the amplitude is -6 dB; every picture is
    drawn with the same limits, so near-silence stays dark instead of being rescaled."""
    full, half = plots.spectrogram_dbfs(sine(1.0)), plots.spectrogram_dbfs(sine(0.5))
    assert abs(full.max()) < 0.1 and full.max() - half.max() == pytest.approx(20 * np.log10(2), abs=0.01)
    from matplotlib.figure import Figure
    ax = Figure().subplots()
    rng = np.random.default_rng(0)                  # a near-silent render: codes 127..129 at random
    mu_silence = mu_law_decode(torch.as_tensor(rng.integers(127, 130, 4000))).numpy()
    for wave in (sine(1.0), sine(1e-3), mu_silence):
        im = plots.draw_spectrogram(ax, wave, SR)
        assert im.get_clim() == plots.SPEC_DBFS
    lo, hi = plots.SPEC_DBFS                        # 95 % of its pixels in the darkest fifth
    assert np.percentile(plots.spectrogram_dbfs(mu_silence), 95) < lo + 0.2 * (hi - lo)
    assert np.percentile(plots.spectrogram_dbfs(sine(0.1)), 99) > hi - 20  # a loud tone is bright


def test_thumbnails_have_axis_titles_and_show_the_gap_on_one_scale(tmp_path):
    from PIL import Image
    th = demo_plots.Thumbnails()
    ent = np.full(4000, 2.0)
    nll = ent - 0.5                                   # greedy-like: half a bit below H
    nll[1000:1400] = ent[1000:1400] - 5.0             # far below the y range: drawn at its edge
    th.traces(nll, ent, SR, tmp_path / "t.png")
    top, bottom = th.trace_axes
    assert (top.get_ylabel(), bottom.get_ylabel(), bottom.get_xlabel()) == ("bits", "gap", "s")
    assert bottom.get_ylim() == plots.GAP_YLIM and plots.GAP_YLIM[0] < -0.5 < -0.1 < plots.GAP_YLIM[1]
    (band,) = [p for p in bottom.patches if p.get_height() == pytest.approx(0.2)]
    assert band.get_y() == pytest.approx(-0.1)                      # the typical band, shaded
    (line,) = bottom.get_lines()[1:]
    y = line.get_ydata()
    assert y[3000] == pytest.approx(-0.5) and y.min() == plots.GAP_YLIM[0]   # clipped, not rescaled
    th.spectrogram(sine(0.5), SR, tmp_path / "s.png")
    assert (th.spec_ax.get_ylabel(), th.spec_ax.get_xlabel()) == ("kHz", "s")
    for f in ("t.png", "s.png"):
        im = Image.open(tmp_path / f)
        assert im.size == (288, 153) and im.mode == "P"


def test_the_typical_set_figure_plots_gap_by_setting_with_a_visible_band(tmp_path):
    rows = [_row("greedy", 0.0, -0.5, True, -40.0), _row("greedy", 0.0, -0.7, True, -40.0, cond="c2"),
            _row("tau0.7", 0.7, -0.2, False, -5.0), _row("tau1", 1.0, 0.02, False, 1.0, level="vocoder")]
    fig = demo_plots.plot_typical_scatter(rows, tmp_path / "g.png", 0.1)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["greedy", "tau0.7", "tau1"]
    (band,) = ax.patches
    assert (band.get_y(), band.get_height()) == (pytest.approx(-0.1), pytest.approx(0.2))
    lo, hi = ax.get_ylim()
    assert lo < -0.7 and hi > 0.1 and (hi - lo) < 2.0              # zoomed on the gaps, not 0-6 bits
    means = sorted(round(ln.get_ydata()[0], 3) for ln in ax.get_lines() if len(ln.get_ydata()) == 2
                   and ln.get_ydata()[0] == ln.get_ydata()[1] and ln.get_xdata()[0] != ln.get_xdata()[1]
                   and ln.get_color() == "k" and ln.get_linewidth() > 1)
    assert means == [-0.6, -0.2, 0.02]
    xs = {tuple(c.get_offsets()[:, 0].round(2)) for c in ax.collections}
    assert all(-0.5 < x < 0.5 or 0.5 < x < 1.5 or 1.5 < x < 2.5 for xx in xs for x in xx)
    assert (tmp_path / "g.png").is_file()


# ------------------------------------------------------------------ the page in a browser

PAGE_STATE_JS = """(() => {
  const audio = [...document.querySelectorAll('audio')].map(a => ({src: a.getAttribute('src'),
      readyState: a.readyState, duration: isFinite(a.duration) ? a.duration : null,
      error: a.error ? a.error.code : null}));
  const img = [...document.images].map(i => ({src: i.getAttribute('src'),
      naturalWidth: i.naturalWidth, complete: i.complete}));
  const pending = audio.filter(a => a.readyState < 1 && a.error === null).length
                + img.filter(i => !i.complete).length;
  return {audio, img, pending, ready: document.readyState};
})()"""


def test_report_loads_in_headless_chromium(demo_run, tmp_path):
    exe = find_chromium()
    if exe is None:
        pytest.skip("headless Chromium not installed (CI installs it with `apt-get install -y chromium`); "
                    "the browser check of index.html did not run")
    page = demo_run["out"] / "index.html"
    assert "</body>" in page.read_text()
    shot = tmp_path / "index.png"
    with Browser(exe, tmp_path / "chromium-profile", 1200, 2000) as browser:
        browser.open(page.resolve().as_uri())
        browser.wait_for("document.readyState === 'complete'", timeout=60)
        browser.evaluate("document.querySelectorAll('audio').forEach(a => a.load())")
        state = browser.wait_for(f"(s => s.pending === 0 ? s : null)({PAGE_STATE_JS})", timeout=60)
        state = state or browser.evaluate(PAGE_STATE_JS)
        browser.screenshot(shot)
    refs = parse_refs(page)
    assert len(state["audio"]) == refs.audio > 0 and len(state["img"]) == refs.img > 0
    bad_audio = [a for a in state["audio"] if not (a["readyState"] >= 1 and (a["duration"] or 0) > 0)]
    bad_img = [i for i in state["img"] if not i["naturalWidth"] > 0]
    assert not bad_audio, f"{len(bad_audio)} <audio> did not load: {bad_audio[:3]}"
    assert not bad_img, f"{len(bad_img)} <img> did not load: {bad_img[:3]}"
    assert shot.is_file() and shot.stat().st_size > 10_000