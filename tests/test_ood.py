"""OOD detection: AUROC, the built-in OOD sets, the batch typicality test, batched scoring, CLI."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import synth_speechlike

from wavetyp import ood
from wavetyp.analysis import ood_sets, ood_stats
from wavetyp.analysis.ood_run import score_sets
from wavetyp.core.audio import SILENCE_CODE, mu_law_decode, mu_law_encode, rms_dbfs
from wavetyp.core.checkpoint import load_model
from wavetyp.core.conditioning import CondSpec
from wavetyp.core.errors import UsageError
from wavetyp.core.scoring import length_batches, score_codes

SR = 8000


# ------------------------------------------------------------------ AUROC

def brute_auroc(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(((b[None, :] > a[:, None]) + 0.5 * (b[None, :] == a[:, None])).mean())


def test_auroc_known_inputs():
    assert ood_stats.auroc([1, 2, 3], [4, 5]) == 1.0          # perfect separation
    assert ood_stats.auroc([4, 5], [1, 2, 3]) == 0.0          # reversed
    assert ood_stats.auroc([2, 2, 2], [2, 2]) == 0.5          # all tied
    assert ood_stats.auroc([1, 2], [2, 3]) == pytest.approx(0.875)   # one tie among four pairs
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 6, 40), rng.integers(2, 8, 25)   # many ties
    assert ood_stats.auroc(a, b) == pytest.approx(brute_auroc(a, b))
    assert ood_stats.auroc([0.0, 1.0], [np.inf, np.nan]) == 1.0   # unscorable counts as anomalous


def test_detector_scores_are_higher_when_more_anomalous():
    d = ood_stats.detector_scores(nll=[4.0, 1.0], gap=[0.0, -2.0], z=[0.5, -30.0], h_hat=4.0)
    assert set(d) == set(ood_stats.DETECTORS)
    assert list(d["nll"]) == [4.0, 1.0]          # likelihood: the low-NLL file looks normal
    assert list(d["abs_gap"]) == [0.0, 2.0] and list(d["abs_z"]) == [0.5, 30.0]
    assert list(d["abs_nll_hhat"]) == [0.0, 3.0]


# ------------------------------------------------------------------ built-in OOD sets

def test_synthesized_sets_count_length_level():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1000, 12000, 50)        # some below 0.25 s, some above 1 s
    source = [mu_law_encode(0.1 * rng.standard_normal(n)).numpy() for n in lengths]
    sets = ood_sets.synthesize_sets(source, SR, n_per_set=12, seed=3)
    assert list(sets) == list(ood_sets.SYNTH_SETS)
    for name, items in sets.items():
        assert len(items) == 12, name
        assert len({it.name for it in items}) == 12
        for it in items:
            assert it.codes.dtype == np.int64 and it.codes.min() >= 0 and it.codes.max() <= 255
            if name not in ("reversed", "speedup-1.5x"):
                assert 0.25 * SR <= len(it.codes) <= 1.0 * SR, name
    assert all((it.codes == SILENCE_CODE).all() for it in sets["silence"])

    def level(it):
        return rms_dbfs(mu_law_decode(torch.as_tensor(it.codes)).numpy())

    for name, target in (("noise-60dBFS", -60.0), ("noise-10dBFS", -10.0),
                         ("tone-200Hz", ood_sets.TONE_RMS_DBFS), ("tone-1kHz", ood_sets.TONE_RMS_DBFS)):
        assert all(abs(level(it) - target) < 1.0 for it in sets[name]), name
    for name, hz in (("tone-200Hz", 200), ("tone-1kHz", 1000)):
        w = mu_law_decode(torch.as_tensor(sets[name][0].codes)).numpy()
        peak = np.argmax(np.abs(np.fft.rfft(w))) * SR / len(w)
        assert abs(peak - hz) < 5
    clicks = mu_law_decode(torch.as_tensor(sets["clicks"][0].codes)).numpy()
    loud = np.flatnonzero(np.abs(clicks) > 0.1)
    assert 0.25 * ood_sets.CLICK_RATE_HZ[0] <= len(loud) and (np.abs(clicks) < 1e-3).mean() > 0.9
    # transformed recordings: exactly a reversed source file, and 1/1.5 of a source length
    srcs = {s.tobytes() for s in source}
    assert all(it.codes[::-1].tobytes() in srcs for it in sets["reversed"])
    src_len = set(map(int, lengths))
    assert all(any(abs(len(it.codes) - n / 1.5) <= 2 for n in src_len) for it in sets["speedup-1.5x"])
    # deterministic, and each set independent of which others are made
    again = ood_sets.synthesize_sets(source, SR, n_per_set=12, seed=3, sets=("noise-10dBFS",))
    assert np.array_equal(again["noise-10dBFS"][5].codes, sets["noise-10dBFS"][5].codes)
    other = ood_sets.synthesize_sets(source, SR, n_per_set=12, seed=4, sets=("noise-10dBFS",))
    assert not np.array_equal(other["noise-10dBFS"][5].codes, sets["noise-10dBFS"][5].codes)


# ------------------------------------------------------------------ batch typicality test

@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_bootstrap_threshold_gives_about_alpha_false_positives(alpha):
    rng = np.random.default_rng(0)
    draw = lambda n: rng.gamma(9.0, 0.5, n)                 # skewed, like per-file NLLs
    h_hat = draw(3000).mean()
    pool, fresh = draw(4000), draw(4000)                    # same distribution, disjoint
    for m in (1, 5, 10):
        thr = ood_stats.bootstrap_threshold(pool, h_hat, m, alpha, n_boot=20000,
                                      rng=np.random.default_rng(m))
        fpr = ood_stats.flag_rate(fresh, h_hat, m, thr, n_batches=20000, rng=np.random.default_rng(9))
        assert abs(fpr - alpha) < max(0.4 * alpha, 0.006), (m, fpr)
    # a shifted distribution is caught more often with bigger batches
    shifted = draw(2000) + 2.0
    rates = []
    for m in (1, 5, 10):
        thr = ood_stats.bootstrap_threshold(pool, h_hat, m, alpha, 5000, np.random.default_rng(1))
        rates.append(ood_stats.flag_rate(shifted, h_hat, m, thr, 4000, np.random.default_rng(2)))
    assert rates[0] < rates[1] < rates[2] and rates[2] > 0.8


def test_batch_statistics_shapes_and_per_file_weighting():
    v = np.array([1.0, 2.0, 3.0, 10.0])
    assert np.array_equal(ood_stats.batch_statistics(v, 2.0, 1, 5, np.random.default_rng(0)),
                          np.abs(v - 2.0))                         # M=1 enumerates the files
    s = ood_stats.batch_statistics(v, 4.0, 4, 7, np.random.default_rng(0))
    assert s.shape == (7,) and np.allclose(s, 0.0)                 # without replacement: all 4
    assert ood_stats.batch_statistics(v, 0.0, 9, 3, np.random.default_rng(0)).shape == (3,)


def test_evaluate_numbers_on_synthetic_scores():
    rng = np.random.default_rng(0)

    def fs(nll, gap):
        return [ood_stats.FileScore("x", f"f{i}", 100, a, a - g, g, 10 * g, -20.0)
                for i, (a, g) in enumerate(zip(nll, gap))]

    speech = lambda n: fs(rng.normal(4.5, 0.3, n), rng.normal(0.0, 0.05, n))
    quiet = fs(rng.normal(0.5, 0.1, 40), rng.normal(-0.4, 0.05, 40))
    res = ood_stats.evaluate(speech(200), {"quiet": quiet}, speech(150), speech(150), 0.05, (1, 5),
                       n_boot=2000, n_batches=500)
    a = res["auroc"]["quiet"]
    assert a["nll"] == 0.0 and a["abs_gap"] == 1.0 and a["abs_nll_hhat"] == 1.0
    assert res["batch_test"]["detection"]["quiet"]["5"] == 1.0
    assert res["batch_test"]["fpr_in"]["1"] < 0.15
    text = " ".join(ood_stats.reading(res))
    assert "finds 1 of 1 OOD sets more normal than speech" in text
    assert "AUROC 0.00" in text and "100% of its files are more likely" in text


# ------------------------------------------------------------------ scoring

@pytest.mark.parametrize("conditioning", ["none", "mel"])
def test_batched_padded_scoring_matches_one_file_at_a_time(tiny_ckpt, conditioning):
    model, _ = load_model(tiny_ckpt)
    items = [ood_sets.Item(f"f{i}", mu_law_encode(synth_speechlike(s, seed=i)).numpy())
             for i, s in enumerate((0.05, 0.11, 0.08, 0.2))]
    got = score_sets(model, {"t": items}, conditioning, max_samples=4000)["t"]
    for it, g in zip(items, got):
        spec = CondSpec(mel_from="self", mel_codes=torch.as_tensor(it.codes)) \
            if conditioning == "mel" else None
        ref = score_codes(model, it.codes, spec).summary()
        assert g.set == "t" and g.name == it.name and g.n == len(it.codes)
        assert g.mean_nll_bits == pytest.approx(ref.mean_nll_bits, abs=1e-4)
        assert g.gap_bits == pytest.approx(ref.gap_bits, abs=1e-4)
        assert g.z == pytest.approx(ref.z, rel=1e-3, abs=1e-3)
    assert length_batches([5, 1, 4, 2], max_samples=8) == [[1, 3], [2], [0]]


def test_mel_conditioning_needs_a_mel_checkpoint(tmp_path):
    from conftest import save_tiny_checkpoint
    model, _ = load_model(save_tiny_checkpoint(tmp_path / "nomel.pt", n_mels=0))
    items = {"t": [ood_sets.Item("a", np.full(300, SILENCE_CODE))]}
    with pytest.raises(UsageError, match="no mel conditioning"):
        score_sets(model, items, "mel")
    with pytest.raises(UsageError, match="unknown conditioning 'mel-self'"):
        score_sets(model, items, "mel-self")


# ------------------------------------------------------------------ CLI

def write_wavs(folder, n, seed0=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(str(folder / f"{i}_x_{i}.wav"), synth_speechlike(0.15 + 0.02 * i, seed=seed0 + i), SR)
    return folder


def cli(tiny_ckpt, out, *extra):
    return ood.main(["--checkpoint", str(tiny_ckpt), "--out", str(out), "--per-set", "3",
                     "--bootstrap", "200", "--eval-batches", "50", "--quiet", *extra])


def test_cli_end_to_end_with_unreadable_file(tiny_ckpt, tmp_path, capsys):
    inn = write_wavs(tmp_path / "in", 5)
    (inn / "broken.wav").write_bytes(b"RIFF not really a wav file")
    ref = write_wavs(tmp_path / "ref", 4, seed0=10)
    extra = tmp_path / "hum"
    extra.mkdir()
    sf.write(str(extra / "hum.wav"), 0.2 * np.sin(np.arange(1600) * 0.3), SR)
    out = tmp_path / "ood"
    assert cli(tiny_ckpt, out, "--in", str(inn), "--ref", str(ref), "--ood", str(extra)) == 0
    cap = capsys.readouterr()
    assert "broken.wav" in cap.err and "skipped" in cap.err
    assert "likelihood threshold" in cap.out
    for f in ("ood.md", "ood.json", "index.html", "hist_nll.png", "hist_gap.png"):
        assert (out / f).stat().st_size > 0, f
    doc = json.loads((out / "ood.json").read_text())
    res = doc["results"]
    assert list(res["auroc"]) == list(ood_sets.SYNTH_SETS) + ["hum"]
    for v in res["auroc"].values():
        assert set(v) == set(ood_stats.DETECTORS) and all(0.0 <= x <= 1.0 for x in v.values())
    assert res["stats"]["in"]["files"] == 5 and res["stats"]["silence"]["files"] == 3
    assert set(res["batch_test"]["fpr_in"]) == {"1", "5", "10"}
    assert res["batch_test"]["h_files"] == 2 and res["batch_test"]["pool_files"] == 2
    assert [p.endswith("broken.wav") for p, _ in doc["skipped"]] == [True]
    page = (out / "index.html").read_text()
    assert "<table>" in page and "hist_nll.png" in page and "broken.wav" in page
    assert "AUROC" in (out / "ood.md").read_text()
    assert len(list((out / "examples").glob("*.wav"))) == len(ood_sets.SYNTH_SETS) + 2
    # an existing run is not replaced silently
    assert cli(tiny_ckpt, out, "--in", str(inn), "--ref", str(ref)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli(tiny_ckpt, out, "--in", str(inn), "--ref", str(ref), "--sets", "clicks",
               "silence", "--ood", str(extra), str(extra / "hum.wav"), "--overwrite",
               "--batch-sizes", "1", "2") == 0
    doc = json.loads((out / "ood.json").read_text())
    assert list(doc["results"]["auroc"]) == ["silence", "clicks", "hum", "hum-2"]
    assert list(doc["results"]["batch_test"]["fpr_in"]) == ["1", "2"]


@pytest.mark.parametrize("case", ["empty-in", "empty-ood", "missing", "bad-alpha", "no-sets",
                                  "no-mel"])
def test_cli_bad_input_is_one_line_exit_2(tiny_ckpt, tmp_path, capsys, case):
    from conftest import save_tiny_checkpoint
    empty = tmp_path / "empty"
    empty.mkdir()
    inn = write_wavs(tmp_path / "in", 2)
    nomel = save_tiny_checkpoint(tmp_path / "nomel.pt", n_mels=0)
    args = {"empty-in": ["--in", str(empty), "--ref", str(inn)],
            "empty-ood": ["--in", str(inn), "--ref", str(inn), "--ood", str(empty)],
            "missing": ["--in", str(tmp_path / "nope"), "--ref", str(inn)],
            "bad-alpha": ["--in", str(inn), "--ref", str(inn), "--alpha", "1.5"],
            "no-sets": ["--in", str(inn), "--ref", str(inn), "--no-builtin"],
            "no-mel": ["--in", str(inn), "--ref", str(inn), "--conditioning", "mel",
                       "--checkpoint", str(nomel)]}[case]
    assert cli(tiny_ckpt, tmp_path / "o", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    if case == "no-mel":
        assert err == "error: this checkpoint has no mel conditioning (use --conditioning none)"
    assert not (tmp_path / "o" / "ood.json").exists()


# ------------------------------------------------------------ the gap and joint batch tests

def _synthetic(rng, n, nll_mean, gap_mean, sd=0.05):
    return rng.normal(nll_mean, sd, n), rng.normal(gap_mean, sd / 2, n)


def test_gap_test_sees_what_the_nll_test_misses_and_the_reverse():
    """Per-file statistics with a known answer: a set whose NLL matches H_hat but whose gap
    does not is caught by the gap test and missed by the NLL test; a set with the training
    gap but another NLL level is the reverse; in-distribution batches are flagged at about
    alpha by all three tests."""
    from wavetyp.analysis.ood_stats import (
        batch_statistics,
        bootstrap_threshold,
        typicality_flag_rates,
        typicality_null,
    )
    rng = np.random.default_rng(0)
    pool_nll, pool_gap = _synthetic(rng, 400, 4.0, 0.0)
    h_hat, g_hat = float(pool_nll.mean()), float(pool_gap.mean())
    sets = {"gap-shift": _synthetic(rng, 200, 4.0, -0.08), "nll-shift": _synthetic(rng, 200, 4.15, 0.0),
            "in": _synthetic(rng, 400, 4.0, 0.0)}
    m, alpha = 5, 0.05
    null = typicality_null(pool_nll, pool_gap, h_hat, g_hat, m, alpha, 4000, np.random.default_rng(1))
    thr = bootstrap_threshold(pool_nll, h_hat, m, alpha, 4000, np.random.default_rng(2))
    rates = {}
    for name, (nll, gap) in sets.items():
        nll_rate = float(np.mean(batch_statistics(nll, h_hat, m, 2000, np.random.default_rng(3)) > thr))
        gap_rate, joint_rate = typicality_flag_rates(null, nll, gap, m, 2000, np.random.default_rng(4))
        rates[name] = (nll_rate, gap_rate, joint_rate)
    assert rates["gap-shift"][1] > 0.9 and rates["gap-shift"][0] < 0.2 and rates["gap-shift"][2] > 0.9
    assert rates["nll-shift"][0] > 0.9 and rates["nll-shift"][1] < 0.2 and rates["nll-shift"][2] > 0.9
    assert all(0.01 <= r <= 0.10 for r in rates["in"]), rates["in"]


def test_typicality_tests_are_seeded():
    from wavetyp.analysis.ood_stats import typicality_flag_rates, typicality_null
    rng = np.random.default_rng(5)
    nll, gap = _synthetic(rng, 100, 4.0, 0.0)
    runs = []
    for _ in range(2):
        null = typicality_null(nll, gap, 4.0, 0.0, 5, 0.05, 500, np.random.default_rng(7))
        runs.append((null.gap_threshold, null.joint_threshold,
                     typicality_flag_rates(null, nll + 0.1, gap, 5, 300, np.random.default_rng(8))))
    assert runs[0] == runs[1]
