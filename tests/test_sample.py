"""The sample and score CLIs: outputs, rescoring from WAV, naming, conditioning checks."""
import json

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_speechlike

from wavetyp import sample, score
from wavetyp.core.checkpoint import load_model
from wavetyp.core.conditioning import make_cond_spec
from wavetyp.core.scoring import score_files


def run_sample(tiny_ckpt, out, *extra):
    return sample.main(["--checkpoint", str(tiny_ckpt), "--out", str(out), "--seconds", "0.1",
                        "--num", "2", "--no-plot", *extra])


def test_sample_writes_wav_npz_json_and_rescoring_reproduces_logs(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "s"
    assert run_sample(tiny_ckpt, out, "--temperature", "0", "0.7", "1.0", "--digit", "six",
                      "--speaker", "bob") == 0
    table = capsys.readouterr().out
    assert "greedy" in table and "tau0.7" in table and "typical?" in table
    summary = json.loads(next(out.glob("*.json")).read_text())
    assert len(summary["samples"]) == 6
    model, _ = load_model(tiny_ckpt)
    spec = make_cond_spec(model, "6", "bob")
    for row in summary["samples"]:
        wav, npz = out / f"{row['name']}.wav", np.load(out / f"{row['name']}.npz")
        assert sf.info(str(wav)).subtype == "PCM_16"
        assert set(npz.files) >= {"codes", "nll_bits", "entropy_bits", "varentropy_bits2",
                                  "sampled_nll_bits", "settings"}
        (res,), skipped = score_files(model, [wav], spec)
        assert not skipped
        assert np.array_equal(res.codes, npz["codes"])
        assert np.abs(res.nll_bits - npz["nll_bits"]).max() <= 1e-3
        assert np.abs(res.entropy_bits - npz["entropy_bits"]).max() <= 1e-3


def test_same_seed_same_output_and_runs_are_not_overwritten(tiny_ckpt, tmp_path):
    out = tmp_path / "s"
    assert run_sample(tiny_ckpt, out, "--temperature", "0.8") == 0
    assert run_sample(tiny_ckpt, out, "--temperature", "0.8") == 0
    runs = sorted(out.glob("*.json"))
    assert len(runs) == 2                                   # second run got a new name
    a, b = (json.loads(r.read_text())["samples"][0]["name"] for r in runs)
    assert np.array_equal(np.load(out / f"{a}.npz")["codes"], np.load(out / f"{b}.npz")["codes"])
    assert run_sample(tiny_ckpt, out, "--name", "fixed") == 0
    assert run_sample(tiny_ckpt, out, "--name", "fixed") == 2  # explicit name: refused
    assert run_sample(tiny_ckpt, out, "--name", "fixed", "--overwrite") == 0


def test_vocoder_and_prime_modes(tiny_ckpt, tmp_path):
    ref = tmp_path / "ref.wav"
    sf.write(str(ref), synth_speechlike(0.15), 8000)
    out = tmp_path / "v"
    assert sample.main(["--checkpoint", str(tiny_ckpt), "--out", str(out), "--num", "1",
                        "--mel-from", str(ref), "--no-plot"]) == 0
    row = json.loads(next(out.glob("*.json")).read_text())["samples"][0]
    assert abs(row["seconds"] - 0.15) < 1e-3              # length follows the recording
    assert sample.main(["--checkpoint", str(tiny_ckpt), "--out", str(out), "--num", "1",
                        "--prime", str(ref), "--prime-ms", "50", "--seconds", "0.1",
                        "--name", "primed", "--no-plot"]) == 0
    npz = np.load(next(out.glob("primed*.npz")))
    assert int(npz["prime_len"]) == 400


def test_beam_and_plot(tiny_ckpt, tmp_path):
    out = tmp_path / "b"
    assert sample.main(["--checkpoint", str(tiny_ckpt), "--out", str(out), "--beam", "2",
                        "--seconds", "0.02"]) == 0
    assert len(list(out.glob("*.wav"))) == 1 and len(list(out.glob("*.png"))) == 1


@pytest.mark.parametrize("args,msg", [
    (["--temperature", "-1"], "--temperature must be"),
    (["--temperature", "nan"], "--temperature must be"),
    (["--top-p", "1.5"], "--top-p must be in"),
    (["--top-k", "0"], "--top-k must be"),
    (["--seconds", "0"], "--seconds must be"),
    (["--digit", "eleven"], "unknown digit"),
    (["--speaker", "zed"], "unknown speaker"),
    (["--mel-from", "/nonexistent.wav"], "no such file"),
])
def test_bad_arguments_give_one_line_errors(tiny_ckpt, tmp_path, capsys, args, msg):
    assert run_sample(tiny_ckpt, tmp_path / "x", *args) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_score_cli_on_folder_skips_bad_files(tiny_ckpt, tmp_path, capsys):
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(str(d / "a.wav"), synth_speechlike(0.1), 8000)
    (d / "bad.wav").write_bytes(b"not audio")
    js = tmp_path / "scores.json"
    assert score.main(["--checkpoint", str(tiny_ckpt), str(d), "--json", str(js)]) == 0
    rows = json.loads(js.read_text())
    assert len(rows["files"]) == 1 and len(rows["skipped"]) == 1
    assert "skipped" in capsys.readouterr().err
