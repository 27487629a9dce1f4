"""Every CLI answers bad input with one `error: ...` line and exit code 2, never a traceback
(`--debug` shows it); outputs are never overwritten silently; bad data files are skipped.

Each case runs in process (`module.main(argv)`, milliseconds); one case per core CLI also runs
as a real subprocess (`python -m wavetyp.X`) in the default suite, all of them with `-m slow`.
"""
import importlib
import importlib.util
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import save_tiny_checkpoint, synth_speechlike
from test_train import TINY_CLI, cli_env, make_data_dir, one_torch_thread  # noqa: F401 (autouse)


def cli_module(name: str) -> str:
    """The module whose main() is `python -m wavetyp.<name>` (a package runs its __main__)."""
    return f"wavetyp.{name}.__main__" if name == "data" else f"wavetyp.{name}"


HAS = {m: importlib.util.find_spec(f"wavetyp.{m}") is not None for m in ("demo", "ood")}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Inputs shared by the cases: a tiny checkpoint, good/bad audio, a regular file, data."""
    d = tmp_path_factory.mktemp("cli")
    save_tiny_checkpoint(d / "tiny.pt")
    (d / "afile").write_text("a regular file, not a folder")
    (d / "garbage.pt").write_bytes(bytes(range(256)) * 2)
    (d / "notaudio.wav").write_text("hello, not audio")
    sf.write(str(d / "ref.wav"), synth_speechlike(0.1), 8000)
    (d / "noaudio").mkdir()
    (d / "noaudio" / "0_alice_0.wav").write_text("not audio either")
    make_data_dir(d / "data", seconds=0.1)
    return d


# (module, arguments, expected text of the error line); `{d}` is the files folder.
SAMPLE = ["--checkpoint", "{d}/tiny.pt", "--seconds", "0.05", "--num", "1", "--no-plot", "--out", "{d}/o"]
SCORE = ["--checkpoint", "{d}/tiny.pt", "{d}/ref.wav"]
EVALUATE = ["--checkpoint", "{d}/tiny.pt", "--data-dir", "{d}/data"]
TRAIN = ["--out", "{d}/run", "--data-dir", "{d}/data", "--no-progress", "--max-steps", "1",
         "--batch-size", "1", "--crop", "200", "--eval-every", "0", "--no-final-eval", *TINY_CLI]
CASES = [
    ("sample", SAMPLE + ["--temperature", "-1"], "--temperature must be >= 0, got -1.0"),
    ("sample", SAMPLE + ["--temperature", "nan"], "--temperature must be >= 0, got nan"),
    ("sample", SAMPLE + ["--temperature", "0.5", "inf"], "--temperature must be >= 0, got inf"),
    ("sample", SAMPLE + ["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
    ("sample", SAMPLE + ["--top-p", "1.5"], "--top-p must be in (0, 1], got 1.5"),
    ("sample", SAMPLE + ["--typical-p", "-0.1"], "--typical-p must be in (0, 1]"),
    ("sample", SAMPLE + ["--top-k", "0"], "--top-k must be >= 1, got 0"),
    ("sample", SAMPLE + ["--seconds", "0"], "--seconds must be > 0"),
    ("sample", SAMPLE + ["--seconds", "-2"], "--seconds must be > 0"),
    ("sample", SAMPLE + ["--seconds", "nan"], "--seconds must be > 0"),
    ("sample", SAMPLE + ["--num", "0"], "--num must be > 0"),
    ("sample", SAMPLE + ["--beam", "0"], "--beam must be >= 1"),
    ("sample", SAMPLE + ["--digit", "eleven"], "unknown digit 'eleven'"),
    ("sample", SAMPLE + ["--digit", "10"], "unknown digit '10'"),
    ("sample", SAMPLE + ["--speaker", "zed"], "unknown speaker 'zed' (this checkpoint knows: alice, bob)"),
    ("sample", SAMPLE + ["--checkpoint", "{d}/missing.pt"], "checkpoint {d}/missing.pt not found"),
    ("sample", SAMPLE + ["--checkpoint", "{d}/garbage.pt"], "{d}/garbage.pt: "),
    ("sample", SAMPLE + ["--checkpoint", "{d}/data"], "is a folder, not a file"),
    ("sample", SAMPLE + ["--mel-from", "{d}/missing.wav"], "{d}/missing.wav: no such file"),
    ("sample", SAMPLE + ["--mel-from", "{d}/notaudio.wav"], "{d}/notaudio.wav: not readable as audio"),
    ("sample", SAMPLE + ["--prime", "{d}/notaudio.wav"], "{d}/notaudio.wav: not readable as audio"),
    ("sample", SAMPLE + ["--out", "{d}/afile/sub"], "{d}/afile is a file, not a folder"),
    ("score", SCORE + ["--checkpoint", "{d}/missing.pt"], "checkpoint {d}/missing.pt not found"),
    ("score", SCORE + ["--checkpoint", "{d}/garbage.pt"], "{d}/garbage.pt: "),
    ("score", SCORE + ["--digit", "11"], "unknown digit '11'"),
    ("score", SCORE + ["--speaker", "zed"], "unknown speaker 'zed'"),
    ("score", SCORE + ["{d}/missing.wav"], "{d}/missing.wav: no such file or folder"),
    ("score", ["--checkpoint", "{d}/tiny.pt", "{d}/noaudio"], "none of the given files could be read"),
    ("score", SCORE + ["--npz-dir", "{d}/afile/npz"], "is a file, not a folder"),
    ("evaluate", EVALUATE + ["--checkpoint", "{d}/missing.pt"], "checkpoint {d}/missing.pt not found"),
    ("evaluate", EVALUATE + ["--checkpoint", "{d}/garbage.pt"], "{d}/garbage.pt: "),
    ("evaluate", EVALUATE + ["--data-dir", "{d}/missing"], "--data-dir {d}/missing: no such folder"),
    ("evaluate", EVALUATE + ["--data-dir", "{d}/noaudio"], "{d}/noaudio: no usable audio files"),
    ("evaluate", EVALUATE + ["--limit", "0"], "--limit must be >= 1"),
    ("evaluate", EVALUATE + ["--json", "{d}/afile/r.json"], "is a file, not a folder"),
    ("data", ["--data-dir", "{d}/missing"], "--data-dir {d}/missing: no such folder"),
    ("data", ["--data-dir", "{d}/noaudio"], "{d}/noaudio: no usable audio files (1 skipped)"),
    ("data", ["--data-dir", "{d}/data", "--dataset", "nonsense"], "unknown dataset 'nonsense'"),
    ("train", TRAIN + ["--max-steps", "0"], "--max-steps must be >= 1, got 0"),
    ("train", TRAIN + ["--lr", "nan"], "--lr must be > 0, got nan"),
    ("train", TRAIN + ["--lr", "-1"], "--lr must be > 0"),
    ("train", TRAIN + ["--batch-size", "0"], "--batch-size must be >= 1"),
    ("train", TRAIN + ["--crop", "-5"], "--crop must be >= 1"),
    ("train", TRAIN + ["--kernel-size", "1"], "--kernel-size must be >= 2"),
    ("train", TRAIN + ["--log-every", "0"], "--log-every must be >= 1"),
    ("train", TRAIN + ["--ckpt-every", "-1"], "--ckpt-every must be >= 0"),
    ("train", TRAIN + ["--threads", "0"], "--threads must be >= 1"),
    ("train", TRAIN + ["--max-minutes", "0"], "--max-minutes must be > 0"),
    ("train", TRAIN + ["--device", "bogus"], "unknown device 'bogus'"),
    ("train", TRAIN + ["--out", "{d}/afile/run"], "{d}/afile is a file, not a folder"),
    ("train", TRAIN + ["--data-dir", "{d}/missing"], "--data-dir {d}/missing: no such folder"),
    ("train", TRAIN + ["--data-dir", "{d}/noaudio"], "{d}/noaudio: no usable audio files"),
    ("train", TRAIN + ["--out", "{d}/norun", "--resume"], "{d}/norun/last.pt not found"),
    ("train", ["--resume"], "--resume needs --out"),
    ("demo", ["--checkpoint", "{d}/tiny.pt", "--seconds", "0", "--out", "{d}/demo"], "--seconds must be > 0"),
    ("demo", ["--checkpoint", "{d}/missing.pt", "--out", "{d}/demo"], "checkpoint {d}/missing.pt not found"),
    ("demo", ["--checkpoint", "{d}/tiny.pt", "--out", "{d}/afile/demo"], "{d}/afile is a file, not a folder"),
    ("ood", ["--checkpoint", "{d}/missing.pt", "--out", "{d}/ood"], "checkpoint {d}/missing.pt not found"),
    ("ood", ["--checkpoint", "{d}/tiny.pt", "--out", "{d}/afile/ood"], "{d}/afile is a file, not a folder"),
]
# these also run as real subprocesses in the default suite (each costs an interpreter
# start, several seconds on a busy machine); every case does with -m slow
DEFAULT_SUBPROCESS = {("sample", "--temperature must be >= 0, got nan"),
                      ("score", "unknown digit '11'"),
                      ("evaluate", "checkpoint {d}/missing.pt not found"),
                      ("data", "{d}/noaudio: no usable audio files (1 skipped)"),
                      ("train", "--lr must be > 0, got nan")}


def case_id(i, case):
    mod, args, _ = case
    return f"{mod}-{i}-" + "_".join(a.strip("-") for a in args[-2:] if "{d}" not in a)[:30]


def fill(args, d):
    return [a.replace("{d}", str(d)) for a in args]


def skip_missing(mod):
    if mod in HAS and not HAS[mod]:
        pytest.skip(f"wavetyp.{mod} does not exist in this checkout")


def error_lines(stderr: str) -> list[str]:
    """Non-empty lines of stderr; progress bars (\\r-separated) count as lines too."""
    return [line for line in re.split(r"[\r\n]", stderr) if line.strip()]


def assert_one_error_line(code, stderr, expected):
    errors = [line for line in error_lines(stderr) if line.startswith("error:")]
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert len(errors) == 1 and errors[0] == error_lines(stderr)[-1], stderr
    assert expected in errors[0], errors[0]


@pytest.mark.parametrize("i", range(len(CASES)), ids=[case_id(i, c) for i, c in enumerate(CASES)])
def test_bad_input_in_process(files, capsys, i):
    mod, args, expected = CASES[i]
    skip_missing(mod)
    code = importlib.import_module(cli_module(mod)).main(fill(args, files))
    assert_one_error_line(code, capsys.readouterr().err, expected.replace("{d}", str(files)))


@pytest.mark.parametrize("i", [pytest.param(i, marks=() if (c[0], c[2]) in DEFAULT_SUBPROCESS
                                            else pytest.mark.slow) for i, c in enumerate(CASES)],
                         ids=[case_id(i, c) for i, c in enumerate(CASES)])
def test_bad_input_as_subprocess(files, i):
    mod, args, expected = CASES[i]
    skip_missing(mod)
    r = subprocess.run([sys.executable, "-m", f"wavetyp.{mod}", *fill(args, files)],
                       capture_output=True, text=True, env=cli_env(), timeout=300)
    assert_one_error_line(r.returncode, r.stderr, expected.replace("{d}", str(files)))


@pytest.mark.parametrize("mod", ["sample", "score", "evaluate", "data", "train", "demo", "ood"])
def test_debug_shows_the_traceback(files, mod):
    """With --debug the same errors propagate (so the traceback shows)."""
    skip_missing(mod)
    i = next(k for k, c in enumerate(CASES) if c[0] == mod and "missing" in " ".join(c[1]))
    with pytest.raises(Exception, match="missing"):
        importlib.import_module(cli_module(mod)).main(fill(CASES[i][1], files) + ["--debug"])


def test_argparse_type_errors_exit_2(capsys):
    from wavetyp import sample
    with pytest.raises(SystemExit) as info:
        sample.main(["--temperature", "abc"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "invalid float value: 'abc'" in err and "Traceback" not in err


# ------------------------------------------------------------ nothing is overwritten silently

def test_sample_with_explicit_name_is_not_overwritten(files, tmp_path):
    from wavetyp import sample
    args = fill(SAMPLE, files)[:-1] + [str(tmp_path / "s"), "--name", "take"]
    assert sample.main(args) == 0
    before = (tmp_path / "s/take/summary.json").read_bytes()
    r = subprocess.run([sys.executable, "-m", "wavetyp.sample", *args, "--seed", "1"],
                       capture_output=True, text=True, env=cli_env(), timeout=300)
    assert_one_error_line(r.returncode, r.stderr, "take exists; pass --overwrite")
    assert (tmp_path / "s/take/summary.json").read_bytes() == before
    assert sample.main(args + ["--seed", "1", "--overwrite"]) == 0
    assert json.loads((tmp_path / "s/take/summary.json").read_text())["seed"] == 1


def test_train_refuses_to_restart_over_a_run(files, tmp_path, capsys):
    from wavetyp import train
    args = fill(TRAIN, files)
    args[args.index("--out") + 1] = str(tmp_path / "run")
    assert train.main(args) == 0
    capsys.readouterr()
    assert train.main(args) == 2
    assert_one_error_line(2, capsys.readouterr().err, "last.pt exists: pass --resume")


# ------------------------------------------------------------ data folders with bad files

def write_bad_files(folder):
    """One of each: corrupt header, empty, zero frames, not audio, NaN samples."""
    good = folder / "0_alice_5.wav"
    (folder / "1_bob_7.wav").write_bytes(good.read_bytes()[:30])          # corrupt (torn header)
    (folder / "1_alice_8.wav").write_bytes(b"")                           # empty file
    sf.write(str(folder / "1_bob_8.wav"), np.zeros(0, np.float32), 8000)  # valid header, 0 frames
    (folder / "1_alice_9.wav").write_text("just text")                   # not audio
    nan = synth_speechlike(0.1)
    nan[100] = np.nan
    sf.write(str(folder / "1_bob_9.wav"), nan, 8000, subtype="FLOAT")     # NaN inside
    return ["1_bob_7.wav", "1_alice_8.wav", "1_bob_8.wav", "1_alice_9.wav", "1_bob_9.wav"]


def test_bad_files_are_skipped_and_reported(tmp_path, capsys):
    from wavetyp.data import __main__ as data_cli
    data = make_data_dir(tmp_path / "data", seconds=0.1)
    bad = write_bad_files(data)
    assert data_cli.main(["--summary", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^files\s+12$", out, re.M) and re.search(r"^skipped\s+5$", out, re.M)
    reported = {line.split(":")[0].strip().rsplit("/", 1)[-1]: line for line in out.splitlines()
                if line.startswith("  ")}
    assert sorted(reported) == sorted(bad)
    assert "empty" in reported["1_alice_8.wav"] and "zero-length" in reported["1_bob_8.wav"]
    assert "NaN" in reported["1_bob_9.wav"] and "not readable" in reported["1_alice_9.wav"]


def test_folder_with_only_bad_files_is_one_line_naming_it(tmp_path, capsys):
    from wavetyp.data import __main__ as data_cli
    data = tmp_path / "bad"
    make_data_dir(data, seconds=0.05)
    bad = set(write_bad_files(data))
    for p in data.iterdir():
        if p.name not in bad:
            p.unlink()
    code = data_cli.main(["--data-dir", str(data)])
    assert_one_error_line(code, capsys.readouterr().err, f"{data}: no usable audio files (5 skipped)")


def test_real_fsdd_summary(fsdd_dir):
    r = subprocess.run([sys.executable, "-m", "wavetyp.data", "--summary", "--data-dir", str(fsdd_dir)],
                       capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for pattern in (r"^files\s+3000$", r"^train/test\s+2700 / 300$", r"^speakers\s+6 \(",
                    r"^minutes\s+21\.9$", r"^skipped\s+0$"):
        assert re.search(pattern, r.stdout, re.M), (pattern, r.stdout)


def test_check_new_file_refuses_silent_overwrite(tmp_path):
    """The helper for CLIs that write one named file (e.g. a --json report)."""
    from wavetyp.core.checks import check_new_file
    from wavetyp.core.errors import UsageError
    target = tmp_path / "r.json"
    assert check_new_file(target) == target
    target.write_text("{}")
    with pytest.raises(UsageError, match="r.json exists; pass --overwrite"):
        check_new_file(target)
    assert check_new_file(target, overwrite=True) == target
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_new_file(tmp_path / "f" / "r.json")
