"""Listening by recognizer (analysis.listening, report.listening_page, the listen CLI): plan
sizes, the cluster bootstrap, the log-mel distance, one rendered item on a tiny model, and
`python -m wavetyp.listen --quick` on a tiny checkpoint and a synthetic FSDD-style folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import save_tiny_checkpoint, synth_speechlike

from wavetyp import listen
from wavetyp.analysis import listening as L
from wavetyp.analysis.recognizer import DigitNet, RecognizerConfig, save_recognizer
from wavetyp.core.audio import mu_law_encode
from wavetyp.data.corpus import Corpus, Utterance

SR = 8000
SPEAKERS = ["alice", "bob"]


def synth_corpus(takes: int = 3, seconds: float = 0.2) -> Corpus:
    """Every digit by both tiny_config speakers, `takes` test takes each."""
    test, i = [], 0
    for d in range(10):
        for s, spk in enumerate(SPEAKERS):
            for k in range(takes):
                w = synth_speechlike(seconds, SR, seed=i % 5)
                test.append(Utterance(f"{d}_{spk}_{k}", mu_law_encode(w), d, s))
                i += 1
    return Corpus("fsdd", SR, list(SPEAKERS), [], test)


@pytest.fixture
def tiny_recognizer():
    torch.manual_seed(0)
    return DigitNet(RecognizerConfig(channels=[8, 8], speakers=[])).eval()


# ------------------------------------------------------------------ the plan

def test_default_plan_meets_the_issue_minimums(tiny_model):
    items = L.plan_items(tiny_model, synth_corpus(), L.ListenPlan())
    counts = L.plan_counts(items, L.ALL_SETTINGS)
    for level in ("label", "speaker"):
        assert counts[level]["units"] == 10
        per_digit = {}
        for it in items:
            if it.level == level:
                per_digit[it.digit] = per_digit.get(it.digit, 0) + it.reps
        assert all(n >= 5 for n in per_digit.values()) and len(per_digit) == 10
        assert all(counts[level]["renders"][s.name] >= 50 for s in L.ALL_SETTINGS)
    voc = [it for it in items if it.level == "vocoder"]
    assert counts["vocoder"]["units"] == len(voc) >= 20
    assert all(sum(it.digit == d for it in voc) == 2 for d in range(10))
    assert all(it.reps >= 2 and it.recording is not None for it in voc)
    # the two recordings of a digit come from different speakers
    assert all(len({it.unit.split("_")[1] for it in voc if it.digit == d}) == 2 for d in range(10))
    # every sweep setting and every new one, beam on some conditions of each level
    names = [s.name for s in L.ALL_SETTINGS]
    for want in ("greedy", "tau0.1", "tau1", "tau1-topp0.9", "tau1-typicalp0.9", "tau1-minp0.05",
                 "tau1-eps0.0003", "tau1-eta0.0003", "tau1-mirostat4", "tau1-mirostatgap0",
                 "tau1-mirostatgap-0.3", "tau1-mirostatgap0.3"):
        assert want in names
    assert all(counts[lv]["renders"][L.BEAM] >= 1 for lv in counts)


def test_settings_are_grouped_by_kind_without_loss():
    groups = L.group_settings(L.ALL_SETTINGS)
    flat = [s for g in groups for s in g]
    assert sorted(s.name for s in flat) == sorted(s.name for s in L.ALL_SETTINGS)
    kinds = [{L.setting_kind(s) for s in g} for g in groups]
    assert all(len(k) == 1 for k in kinds)
    assert [k.pop() for k in kinds] == ["temperature", "sorting", "cutoff", "mirostat"]


def test_plan_refuses_unknown_levels_and_too_few_recordings(tiny_model):
    from wavetyp.core.errors import UsageError
    with pytest.raises(UsageError, match="unknown level"):
        L.plan_items(tiny_model, synth_corpus(1), L.ListenPlan(levels=("nope",)))
    with pytest.raises(UsageError, match="wanted"):
        L.plan_items(tiny_model, synth_corpus(1), L.ListenPlan(levels=("vocoder",), recordings=3))


# ------------------------------------------------------------------ statistics and distances

def test_cluster_bootstrap_contains_the_mean_and_is_seeded():
    rng = np.random.default_rng(1)
    units = np.repeat(np.arange(10), 5)
    values = rng.normal(units * 0.1, 1.0)
    m, lo, hi, n = L.cluster_bootstrap(values, units, seed=3)
    unit_means = [values[units == u].mean() for u in range(10)]
    assert n == 10 and m == pytest.approx(np.mean(unit_means))
    assert lo < m < hi
    assert L.cluster_bootstrap(values, units, seed=3) == (m, lo, hi, n)
    assert L.cluster_bootstrap(values, units, seed=4)[1:3] != (lo, hi)
    # NaN values are ignored, units without values dropped; one unit: a point
    v = values.copy()
    v[units == 0] = np.nan
    assert L.cluster_bootstrap(v, units)[3] == 9
    assert L.cluster_bootstrap([1.0, 3.0], ["a", "a"]) == (2.0, 2.0, 2.0, 1)
    assert np.isnan(L.cluster_bootstrap([np.nan], ["a"])[0])


def test_aggregate_has_one_cell_per_level_and_setting():
    rows = [{"level": lv, "unit": f"u{i % 3}", "setting": s, **{m: float(i) for m in L.MEASURES}}
            for lv in ("label", "vocoder") for s in ("greedy", "tau1") for i in range(6)]
    cells = L.aggregate(rows, n_boot=200)
    assert [(c["level"], c["setting"]) for c in cells] == [
        ("label", "greedy"), ("label", "tau1"), ("vocoder", "greedy"), ("vocoder", "tau1")]
    for c in cells:
        assert c["renders"] == 6 and c["units"] == 3
        for m in L.MEASURES:
            assert c[m]["low"] <= c[m]["mean"] <= c[m]["high"]


def test_mel_distance_is_zero_for_identical_audio_and_grows_with_noise():
    w = synth_speechlike(0.5, SR, seed=2)
    assert L.mel_distance_db(w, w, SR) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(w)).astype(np.float32)
    d = [L.mel_distance_db(w + a * noise, w, SR) for a in (0.001, 0.01, 0.1)]
    assert 0 < d[0] < d[1] < d[2]
    # the level counts: the same audio 6 dB quieter is about 6 dB away (less where floored)
    assert 4.0 < L.mel_distance_db(0.5 * w, w, SR) <= 20 * np.log10(2) + 1e-9


# ------------------------------------------------------------------ rendering and the report

def test_render_item_measures_every_render(tiny_model, tiny_recognizer):
    plan = L.ListenPlan(levels=("label", "vocoder"), digits=(6,), renders=2, seconds=0.01,
                        recordings=1, draws=2, beam_items=1, beam_seconds=0.005, vocoder_seconds=0.01)
    items = L.plan_items(tiny_model, synth_corpus(1), plan)
    settings = [L.ALL_SETTINGS[0], L.ALL_SETTINGS[6], L.NEW_SETTINGS[0], L.NEW_SETTINGS[-1]]
    rows = L.run_plan(tiny_model, items, settings, tiny_recognizer, seed=5)
    assert len(rows) == 2 * (len(settings) * 2 + 1)
    for r in rows:
        assert 0.0 <= r["p_digit"] <= 1.0 and r["accuracy"] in (0.0, 1.0)
        assert np.isfinite(r["gap_bits"]) and 0.0 <= r["silence_frac"] <= 1.0
        assert np.isfinite(r["mel_db"]) == (r["level"] == "vocoder")
    assert sum(r["setting"] == L.BEAM for r in rows) == 2
    again = L.run_plan(tiny_model, items, settings, tiny_recognizer, seed=5)
    assert [r["p_digit"] for r in again] == [r["p_digit"] for r in rows]


def make_fsdd(root) -> str:
    rec = root / "recordings"
    rec.mkdir(parents=True)
    for d in (0, 6, 7):
        for spk in SPEAKERS:
            for k in (0, 1, 5):
                sf.write(str(rec / f"{d}_{spk}_{k}.wav"), synth_speechlike(0.2, SR, seed=d % 5), SR)
    return str(root)


def test_quick_cli_writes_table_json_and_figure(tmp_path, tiny_recognizer, capsys):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt")
    rec = tmp_path / "rec.pt"
    save_recognizer(tiny_recognizer, rec)
    out = tmp_path / "out"
    args = ["--checkpoint", str(ckpt), "--recognizer", str(rec), "--data-dir", make_fsdd(tmp_path / "fsdd"),
            "--out", str(out), "--quick", "--seconds", "0.01", "--vocoder-seconds", "0.01",
            "--beam-seconds", "0.005", "--settings", "greedy,tau1,tau1-topp0.9,tau1-mirostatgap0",
            "--bootstrap", "100", "--no-progress"]
    assert listen.main(args) == 0
    printed = capsys.readouterr().out
    assert "| level | setting |" in printed and "tau1-mirostatgap0" in printed
    data = json.loads((out / "listening.json").read_text())
    assert {c["level"] for c in data["cells"]} == {"label", "speaker", "vocoder"}
    assert len(data["rows"]) == 3 * 3 * 4 + 3        # 3 levels x 3 digits x 4 settings + 3 beams
    assert (out / "listening.png").stat().st_size > 10_000
    assert "| vocoder | greedy |" in (out / "listening.md").read_text()
    # nothing is overwritten silently; --combine pools earlier runs into one report
    assert listen.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    both = tmp_path / "both"
    assert listen.main(["--combine", str(out / "listening.json"), "--out", str(both), "--bootstrap", "100"]) == 0
    assert json.loads((both / "listening.json").read_text())["cells"] == data["cells"]


def test_cli_rejects_bad_settings(capsys):
    assert listen.main(["--settings", "tau7", "--out", "/tmp/x-never"]) == 2
    assert "unknown setting" in capsys.readouterr().err


def test_paired_differences_are_taken_unit_by_unit():
    rows = []
    for u in range(6):
        for s, shift in (("tau1", 0.0), ("greedy", -0.5), ("same", 0.0)):
            for k in range(3):
                v = float(u) + k + shift                    # large spread between units
                rows.append({"level": "label", "unit": f"u{u}", "setting": s,
                             **{m: v for m in L.MEASURES}})
    diffs = {d["setting"]: d for d in L.paired_differences(rows, n_boot=300)}
    assert set(diffs) == {"greedy", "same"}
    g = diffs["greedy"]["gap_bits"]
    assert g["mean"] == pytest.approx(-0.5) and g["low"] == pytest.approx(-0.5) and g["high"] == pytest.approx(-0.5)
    assert diffs["same"]["p_digit"]["mean"] == 0.0 and diffs["same"]["p_digit"]["units"] == 6
