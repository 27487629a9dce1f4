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
    assert "greedy-0" in table and "tau0.7-1" in table and "reading" in table
    assert "Negative gap and z" in table                   # the footer says what they mean
    run = out / "digit6-bob-greedy_tau0.7_tau1-seed0"      # <out>/<run>/<setting>-<i>.*
    summary = json.loads((run / "summary.json").read_text())
    assert [r["name"] for r in summary["samples"]] == [
        "greedy-0", "greedy-1", "tau0.7-0", "tau0.7-1", "tau1-0", "tau1-1"]   # tau 1 asked: no extra
    assert all(r["reading"] for r in summary["samples"])
    model, _ = load_model(tiny_ckpt)
    spec = make_cond_spec(model, "6", "bob")
    for row in summary["samples"]:
        wav, npz = run / f"{row['name']}.wav", np.load(run / f"{row['name']}.npz")
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
    runs = sorted(p.parent for p in out.glob("*/summary.json"))
    assert [r.name for r in runs] == ["none-tau0.8-seed0", "none-tau0.8-seed0-2"]   # a new folder
    for name in ("tau0.8-0", "tau0.8-1", "reference-tau1-0"):
        assert np.array_equal(np.load(runs[0] / f"{name}.npz")["codes"], np.load(runs[1] / f"{name}.npz")["codes"])
    assert run_sample(tiny_ckpt, out, "--name", "fixed") == 0
    assert run_sample(tiny_ckpt, out, "--name", "fixed") == 2  # explicit name: refused
    assert run_sample(tiny_ckpt, out, "--name", "fixed", "--overwrite") == 0


def test_bf16_step_weights_render_close_to_the_fp32_model(tiny_ckpt, tmp_path):
    """--step-weights bf16: recorded in the summary; rescoring its codes with the fp32 model
    moves the logged NLL only a little (docs/performance.md has the shipped model's figures)."""
    from wavetyp.core import cstep
    if cstep.extension() is None:
        pytest.skip("no C++ compiler for the fused step")
    out = tmp_path / "s"
    assert run_sample(tiny_ckpt, out, "--temperature", "0.8", "--step-weights", "bf16", "--name", "b") == 0
    summary = json.loads((out / "b" / "summary.json").read_text())
    assert summary["step_weights"] == "bf16"
    model, _ = load_model(tiny_ckpt)
    (res,), _ = score_files(model, [out / "b" / "tau0.8-0.wav"], make_cond_spec(model))
    logged = np.load(out / "b" / "tau0.8-0.npz")["nll_bits"]
    assert 0 < np.abs(res.nll_bits - logged).mean() < 0.05


def test_vocoder_and_prime_modes(tiny_ckpt, tmp_path):
    ref = tmp_path / "ref.wav"
    sf.write(str(ref), synth_speechlike(0.15), 8000)
    out = tmp_path / "v"
    assert sample.main(["--checkpoint", str(tiny_ckpt), "--out", str(out), "--num", "1",
                        "--mel-from", str(ref), "--no-plot"]) == 0
    row = json.loads(next(out.glob("*/summary.json")).read_text())["samples"][0]
    assert abs(row["seconds"] - 0.15) < 1e-3              # length follows the recording
    assert sample.main(["--checkpoint", str(tiny_ckpt), "--out", str(out), "--num", "1",
                        "--prime", str(ref), "--prime-ms", "50", "--seconds", "0.1",
                        "--name", "primed", "--no-plot"]) == 0
    npz = np.load(out / "primed" / "tau1-0.npz")
    assert int(npz["prime_len"]) == 400


def test_beam_and_plot(tiny_ckpt, tmp_path):
    out = tmp_path / "b"
    assert sample.main(["--checkpoint", str(tiny_ckpt), "--out", str(out), "--beam", "2",
                        "--seconds", "0.02"]) == 0
    assert len(list(out.glob("*/*.wav"))) == 1 and len(list(out.glob("*/traces.png"))) == 1


def test_a_tau1_reference_is_added_for_contrast_and_keeps_the_asked_codes(tiny_ckpt, tmp_path):
    """Without tau = 1 among the settings, a tau = 1 stream is rendered beside them in its own
    batch: the asked-for streams' codes are those of a run without it (--no-reference), and the
    reference's are those of a plain tau = 1 run with the same seed."""
    assert run_sample(tiny_ckpt, tmp_path, "--temperature", "0.5", "--name", "with") == 0
    assert run_sample(tiny_ckpt, tmp_path, "--temperature", "0.5", "--name", "without",
                      "--no-reference") == 0
    assert run_sample(tiny_ckpt, tmp_path, "--temperature", "1", "--num", "1", "--name", "tau1") == 0
    def codes(run, name):
        return np.load(tmp_path / run / f"{name}.npz")["codes"]
    assert sorted(p.stem for p in (tmp_path / "without").glob("*.npz")) == ["tau0.5-0", "tau0.5-1"]
    for name in ("tau0.5-0", "tau0.5-1"):
        assert np.array_equal(codes("with", name), codes("without", name))
    assert np.array_equal(codes("with", "reference-tau1-0"), codes("tau1", "tau1-0"))


def test_readings_name_held_codes_and_silence():
    from wavetyp.report.samples import sound_reading, typicality_reading
    dc = np.full(1000, 102)
    dc[::50] = 30
    assert sound_reading(dc, -41.9) == "near-silent: 98 % one code (code 102: a DC offset)"
    assert "the silence code" in sound_reading(np.full(100, 128), -200.0)
    assert sound_reading(np.arange(1000) % 256, -70.0) == "near-silent (-70 dBFS)"
    assert sound_reading(np.arange(1000) % 256, -20.0) == "sound"
    assert typicality_reading({"gap_bits": -0.3, "in_typical_set": False}).startswith("too likely")
    assert typicality_reading({"gap_bits": 0.02, "in_typical_set": True}) == "typical"


def test_fsdd_names_resolve_wherever_fsdd_is(tmp_path, monkeypatch):
    from wavetyp.core.errors import DataError
    from wavetyp.data.fsdd import resolve_audio_arg
    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    sf.write(str(rec / "6_theo_0.wav"), synth_speechlike(0.05), 8000)
    monkeypatch.setenv("WAVETYP_DATA", str(tmp_path / "fsdd"))
    assert resolve_audio_arg("fsdd:6_theo_0") == str(rec / "6_theo_0.wav")
    assert resolve_audio_arg("some/file.wav") == "some/file.wav"
    with pytest.raises(DataError, match="no recording 6_theo_9.wav"):
        resolve_audio_arg("fsdd:6_theo_9")
    with pytest.raises(DataError, match="expected fsdd:<digit>_<speaker>_<take>"):
        resolve_audio_arg("fsdd:theo")


@pytest.mark.parametrize("args,msg", [
    (["--temperature", "-1"], "--temperature must be"),
    (["--temperature", "nan"], "--temperature must be"),
    (["--top-p", "1.5"], "--top-p must be in"),
    (["--top-k", "0"], "--top-k must be"),
    (["--seconds", "0"], "--seconds must be"),
    (["--digit", "eleven"], "unknown digit"),
    (["--speaker", "zed"], "unknown speaker"),
    (["--mel-from", "/nonexistent.wav"], "no such file"),
    (["--beam", "2", "--step-weights", "bf16"], "--step-weights applies to sampling"),
    (["--min-p", "0.1", "--step-weights", "bf16"], "need the fused C++ step"),
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


# ------------------------------------------------------------------ streamed renders

def streamed_pair(tiny_ckpt, tmp_path, *extra):
    """The same run in memory (--no-plot) and streamed (--stream): their run folders."""
    rec = tmp_path / "rec.wav"
    sf.write(rec, synth_speechlike(0.1), 8000)
    args = ["--temperature", "0", "0.7", "--top-p", "0.9", "--digit", "3", "--prime", str(rec),
            "--prime-ms", "20", *extra]
    assert run_sample(tiny_ckpt, tmp_path / "s", *args, "--name", "memory") == 0
    return tmp_path / "s" / "memory", tmp_path / "s" / "streamed", args


def test_a_streamed_run_writes_the_same_files_as_one_in_memory(tiny_ckpt, tmp_path, capsys):
    """0.1 s = 800 steps = four chunks of 256, with a prime, greedy, a truncating setting (the
    Python step) and the tau 1 reference batch: same codes, logs, audio and summary."""
    mem, st, args = streamed_pair(tiny_ckpt, tmp_path)
    capsys.readouterr()
    assert run_sample(tiny_ckpt, tmp_path / "s", *args, "--name", "streamed", "--stream") == 0
    assert "while rendering (streamed: flat memory, no traces.png)" in capsys.readouterr().out
    a, b = (json.loads((d / "summary.json").read_text()) for d in (mem, st))
    assert b["streamed"] is True and b["interrupted_at"] is None
    assert [r["name"] for r in a["samples"]] == [r["name"] for r in b["samples"]] == [
        "greedy-0", "greedy-1", "tau0.7-topp0.9-0", "tau0.7-topp0.9-1", "reference-tau1-0"]
    for ra, rb in zip(a["samples"], b["samples"]):
        assert ra["sound"] == rb["sound"] and ra["reading"] == rb["reading"]
        assert rb["rms_dbfs"] == pytest.approx(ra["rms_dbfs"], abs=1e-9)
        for k, v in ra["summary"].items():
            assert rb["summary"][k] == (pytest.approx(v, rel=1e-9) if isinstance(v, float) else v), k
        za, zb = np.load(mem / f"{ra['name']}.npz"), np.load(st / f"{rb['name']}.npz")
        assert sorted(za.files) == sorted(zb.files)
        for k in za.files:
            nan = za[k].dtype.kind == "f"                            # sampled NLL: NaN in the prime
            assert za[k].dtype == zb[k].dtype and np.array_equal(za[k], zb[k], equal_nan=nan), k
        assert (mem / f"{ra['name']}.wav").read_bytes() == (st / f"{rb['name']}.wav").read_bytes()
    assert not list(st.glob(".*"))                                   # no partial files left


def test_an_interrupted_streamed_run_keeps_what_it_wrote(tiny_ckpt, tmp_path, capsys, monkeypatch):
    from wavetyp.report import sample_stream
    mem, st, args = streamed_pair(tiny_ckpt, tmp_path)
    write = sample_stream.StreamWriter.__call__

    def ctrl_c_in_third_chunk(self, t0, codes, logs):
        if t0 >= 512:
            raise KeyboardInterrupt
        write(self, t0, codes, logs)
    monkeypatch.setattr(sample_stream.StreamWriter, "__call__", ctrl_c_in_third_chunk)
    capsys.readouterr()
    assert run_sample(tiny_ckpt, tmp_path / "s", *args, "--name", "streamed", "--stream") == 130
    out = capsys.readouterr().out
    assert "interrupted at 0.06 s of 0.10 s: kept what was written, 4 WAV/NPZ pairs" in out
    summary = json.loads((st / "summary.json").read_text())
    assert summary["interrupted_at"] == 512 and len(summary["samples"]) == 4   # no reference
    for row in summary["samples"]:
        z, full = np.load(st / f"{row['name']}.npz"), np.load(mem / f"{row['name']}.npz")
        assert len(z["codes"]) == len(z["nll_bits"]) == 512 and row["seconds"] == 512 / 8000
        assert np.array_equal(z["codes"], full["codes"][:512])       # what it wrote is right
        assert sf.info(str(st / f"{row['name']}.wav")).frames == 512


def test_long_renders_stream_by_themselves_and_beam_does_not(tiny_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sample, "STREAM_SECONDS", 0.05)             # 0.1 s counts as long here
    assert sample.main(["--checkpoint", str(tiny_ckpt), "--out", str(tmp_path / "s"), "--seconds",
                        "0.1", "--num", "1", "--name", "long"]) == 0
    run = tmp_path / "s" / "long"
    assert json.loads((run / "summary.json").read_text())["streamed"] is True
    assert not (run / "traces.png").exists()
    capsys.readouterr()
    assert run_sample(tiny_ckpt, tmp_path / "s", "--beam", "2", "--stream") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--stream does not apply to --beam" in err[0]
