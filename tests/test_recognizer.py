"""The spoken-digit recognizer (analysis/recognizer*.py) and its CLI (`python -m wavetyp.recognize`):
level-invariant features, one trimming rule, plain-data checkpoints, the CLI's output and errors,
and, with FSDD present, the shipped model's accuracy on the test split."""
import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import synth_speechlike

from wavetyp.analysis.recognizer import (
    FORMAT,
    SHIPPED,
    DigitNet,
    LogMel,
    RecognizerConfig,
    as_mu_law,
    confusion_matrix,
    fit_window,
    load_recognizer,
    prepare,
    read_recognizer,
    recognize,
    save_recognizer,
    top_k,
    trim,
    trim_bounds,
)
from wavetyp.analysis.recognizer_train import (
    CONDITIONS,
    TrainSettings,
    perturb,
    speech_power,
    train_recognizer,
)
from wavetyp.core.audio import SILENCE_CODE, load_codes, mu_law_decode, mu_law_encode
from wavetyp.core.errors import CheckpointError
from wavetyp.data.corpus import Utterance
from wavetyp.data.fsdd import FSDD_NAME, recordings_dir
from wavetyp.recognize import build_parser, main

CFG = RecognizerConfig(speakers=["alice", "bob"])
TINY = RecognizerConfig(speakers=["alice", "bob"], channels=[8, 8], n_mels=16)


def speech(seed=0, peak=0.3):
    w = synth_speechlike(0.5, seed=seed)
    return (w * (peak / np.abs(w).max())).astype(np.float32)


# ------------------------------------------------------------------ features and trimming

@pytest.mark.parametrize("gain", [10 ** (-12 / 20), 0.1, 10 ** (12 / 20)])
def test_features_do_not_depend_on_the_input_level(gain):
    w = speech()
    assert trim_bounds(w * gain, CFG) == trim_bounds(w, CFG)
    mel = LogMel(CFG)
    x = torch.from_numpy(np.stack([prepare(w, CFG), prepare(w * gain, CFG)]))
    f = mel(x)
    assert f.shape == (2, CFG.n_mels, CFG.window // CFG.hop_length + 1)
    assert float(f.min()) >= -1.0 and float(f.max()) == pytest.approx(1.0)
    torch.testing.assert_close(f[1], f[0], atol=2e-4, rtol=0)


def test_trimming_cuts_the_silence_around_speech():
    w = speech()
    a, b = trim_bounds(w, CFG)
    on = np.flatnonzero(np.abs(w) > 0)
    reach = CFG.trim_frame + CFG.trim_margin * CFG.trim_hop     # a frame touching it, plus the margin
    assert 0 <= on[0] - a < reach and 0 < b - on[-1] <= reach
    assert abs(trim(w, CFG).mean()) < 1e-6                        # DC removed


@pytest.mark.parametrize("pad_value", [0.0, float(mu_law_decode(torch.tensor([SILENCE_CODE]))[0])])
def test_a_padded_copy_trims_like_the_original(pad_value):
    """Silence added around a file (exact zeros, or mu-law 'silence' as renders have) is cut
    off again: on the frame grid the same samples remain, off it at most a hop differs."""
    w = as_mu_law(speech())
    k = 7 * CFG.trim_hop
    padded = np.concatenate([np.full(k, pad_value, np.float32), w, np.full(3 * k, pad_value, np.float32)])
    np.testing.assert_array_equal(trim(padded, CFG), trim(w, CFG))
    odd = np.concatenate([np.full(k + 37, pad_value, np.float32), w])
    assert abs(len(trim(odd, CFG)) - len(trim(w, CFG))) <= CFG.trim_hop
    np.testing.assert_array_equal(prepare(padded, CFG), prepare(w, CFG))


def test_fit_window_centres_pads_and_crops():
    seg = np.arange(1, 5, dtype=np.float32)
    np.testing.assert_array_equal(fit_window(seg, 8), [0, 0, 1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(fit_window(np.arange(10, dtype=np.float32), 4), [3, 4, 5, 6])
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = fit_window(seg, 8, rng)
        assert sorted(out[out > 0]) == [1, 2, 3, 4]
    assert fit_window(np.zeros(0, np.float32), 4).tolist() == [0, 0, 0, 0]


def test_perturbations_keep_the_file_format_and_the_snr():
    w = as_mu_law(speech())
    rng = np.random.default_rng(0)
    loud = perturb(w, "gain +12 dB", CFG, rng)
    assert np.abs(loud).max() <= 1.0 and np.allclose(as_mu_law(loud), loud)
    noisy = perturb(w, "noise 20 dB SNR", CFG, rng)
    snr = 10 * np.log10(speech_power(w, CFG) / np.mean((noisy - w).astype(np.float64) ** 2))
    assert 19.0 < snr < 21.0
    assert set(CONDITIONS) == {"clean", "gain +12 dB", "gain -12 dB", "noise 20 dB SNR"}


def test_top_k_and_confusion_matrix():
    assert top_k(np.array([0.1, 0.6, 0.3]), 2) == [(1, pytest.approx(0.6)), (2, pytest.approx(0.3))]
    m = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], 3)
    assert m == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


# ------------------------------------------------------------------ model, training, checkpoints

def tiny_set(n=12):
    return [Utterance(f"{i % 2}_x_{i}", mu_law_encode(speech(i % 3)), digit=i % 2, speaker=i % 2)
            for i in range(n)]


def test_training_is_seeded_and_recognize_gives_probabilities():
    s = TrainSettings(epochs=1, batch_size=6)
    a, hist = train_recognizer(tiny_set(), TINY, s, progress=False)
    b, _ = train_recognizer(tiny_set(), TINY, s, progress=False)
    assert len(hist) == 1 and np.isfinite(hist[0]["loss"])
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=0)
    p = recognize(a, [speech(0), speech(1)[:1000]])
    assert p.shape == (2, 10) and np.allclose(p.sum(1), 1.0, atol=1e-5)


def test_checkpoint_round_trip_is_plain_data(tmp_path):
    torch.manual_seed(0)
    model = DigitNet(TINY).eval()
    save_recognizer(model, tmp_path / "r.pt", metrics={"accuracy": 0.5, "confusion": [[1, 0], [0, 1]]})
    ckpt = torch.load(tmp_path / "r.pt", weights_only=True)
    assert ckpt["format"] == FORMAT and isinstance(ckpt["config"], dict)
    again, _ = load_recognizer(tmp_path / "r.pt")
    w = [speech(0), speech(2)]
    np.testing.assert_allclose(recognize(again, w), recognize(model, w), atol=1e-6)


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(bytes(range(256)))
    torch.save({"format": "wavetyp-checkpoint", "version": 1}, tmp_path / "other.pt")
    torch.save({"format": FORMAT, "version": 1, "config": {"n_mels": 40, "bogus": 1}, "model": {}},
               tmp_path / "badcfg.pt")
    for name, says in [("junk.pt", "not a readable"), ("other.pt", "not a recognizer checkpoint"),
                       ("badcfg.pt", "do not fit"), ("missing.pt", "not found")]:
        with pytest.raises(CheckpointError, match=says) as e:
            load_recognizer(tmp_path / name)
        assert "\n" not in str(e.value)


def test_the_shipped_checkpoint_is_small_plain_data_and_documented():
    assert SHIPPED.is_file() and SHIPPED.stat().st_size <= 2 * 2**20
    ckpt = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert ckpt is not None and read_recognizer()["format"] == FORMAT
    assert ckpt["metrics"]["accuracy"] >= 0.97
    assert len(ckpt["metrics"]["confusion"]) == 10
    model, _ = load_recognizer()
    assert model.cfg.n_digits == 10


# ------------------------------------------------------------------ CLI

@pytest.fixture
def tiny_ckpt(tmp_path):
    torch.manual_seed(0)
    save_recognizer(DigitNet(TINY).eval(), tmp_path / "tiny.pt")
    return tmp_path / "tiny.pt"


def write(path, seed=0):
    sf.write(str(path), speech(seed), 8000)
    return path


LINE = re.compile(r"^(\S+)\s+(\d)\s+(\d\.\d{3})\s+(\d \d\.\d{3}), (\d \d\.\d{3}), (\d \d\.\d{3})\s")


def test_cli_prints_digit_probability_top3_and_accuracy_from_names(tmp_path, tiny_ckpt, capsys):
    d = tmp_path / "renders"
    d.mkdir()
    write(d / "3_greedy.wav"), write(d / "7-beam.wav", 1), write(d / "noname.wav", 2)
    js = tmp_path / "out.json"
    assert main([str(d), "--checkpoint", str(tiny_ckpt), "--json", str(js), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [LINE.match(line) for line in out[1:4]]
    assert all(rows) and [r.group(1) for r in rows] == ["3_greedy.wav", "7-beam.wav", "noname.wav"]
    for r in rows:
        probs = [float(t.split()[1]) for t in r.group(4, 5, 6)]
        assert probs == sorted(probs, reverse=True) and float(r.group(3)) == probs[0]
        assert int(r.group(2)) == int(r.group(4).split()[0])
    assert re.match(r"accuracy: \d/2 = \d+\.\d% .*1 without one", out[-1])
    res = json.loads(js.read_text())
    assert [f["expected"] for f in res["files"]] == [3, 7, None] and res["accuracy"]["known"] == 2


def test_cli_expect_counts_every_file(tmp_path, tiny_ckpt, capsys):
    files = [str(write(tmp_path / f"x{i}.wav", i)) for i in range(3)]
    assert main(files + ["--checkpoint", str(tiny_ckpt), "--expect", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and re.match(r"accuracy: \d/3 = ", out[-1])


def one_error_line(code, err, says):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert says in lines[0], lines[0]


def test_cli_bad_input_is_one_line_exit_2(tmp_path, tiny_ckpt, capsys):
    (tmp_path / "notaudio.wav").write_text("hello, not audio")
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    ck = ["--checkpoint", str(tiny_ckpt)]
    cases = [([str(tmp_path / "notaudio.wav")] + ck, "not readable as audio"),
             ([str(tmp_path / "nope.wav")] + ck, "no such file"),
             ([str(tmp_path / "empty")] + ck, "no audio files found"),
             ([str(write(tmp_path / "a.wav")), "--checkpoint", str(tmp_path / "junk.pt")], "not a readable"),
             ([str(tmp_path / "a.wav"), "--expect", "12"] + ck, "--expect must be a digit"),
             (ck, "give audio files"),
             (["--train", str(tiny_ckpt)], "exists"),
             ([str(tmp_path / "a.wav"), "--train", str(tmp_path / "new.pt")], "takes no FILE_OR_DIR"),
             (["fsdd:not-a-name"] + ck, "expected fsdd:")]
    for argv, says in cases:
        code = main(argv)
        one_error_line(code, capsys.readouterr().err, says)


def test_cli_help_explains_every_flag_once():
    parser = build_parser()
    assert not [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert not [a.help for a in parser._actions if a.help and re.search(r"\bdefault\b", a.help.lower())]
    flat = re.sub(r"\s+", " ", parser.format_help())
    assert "(default: None)" not in flat and "(default: False)" not in flat
    assert [a.default for a in parser._actions if "--device" in a.option_strings] == ["auto"]


# ------------------------------------------------------------------ the shipped model on FSDD

def test_the_shipped_model_is_at_least_97_percent_right_on_the_test_split(fsdd_dir):
    """Every third file of the official test split (takes 0-4), read the way the CLI reads it."""
    rec = recordings_dir(fsdd_dir)
    test = sorted(p for p in rec.glob("*.wav") if (m := FSDD_NAME.match(p.name)) and int(m.group(3)) < 5)
    assert len(test) == 300
    subset = test[::3]
    waves = [mu_law_decode(load_codes(p, 8000)).numpy() for p in subset]
    model, _ = load_recognizer()
    pred = recognize(model, waves).argmax(1)
    true = np.array([int(p.name[0]) for p in subset])
    assert np.mean(pred == true) >= 0.97, confusion_matrix(true, pred)
