"""The GPU round (`python -m wavetyp.gpu_round`): its CPU dry run end to end, the runner's
timeouts, failures and time budget, the forked launcher, and the GPU plan's commands."""
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from wavetyp import gpu_round
from wavetyp.benchmark.gpu_round import (
    DRY,
    GPU,
    STEP_NAMES,
    Launcher,
    Plan,
    Step,
    run_command,
    run_plan,
    sigterm_resume,
)

PY = sys.executable


def quiet(*_):
    pass


def test_dry_run_runs_every_step_in_order(fsdd_dir, tmp_path, capsys):
    out = tmp_path / "round"
    assert gpu_round.main([str(out), "--dry-run", "--data-dir", str(fsdd_dir)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]
    assert [s["name"] for s in steps] == list(STEP_NAMES)
    for s in steps:
        assert s["rc"] == 0 and not s["timed_out"] and s["skipped"] is None, (s["name"], s["output"])
        assert s["command"] and s["seconds"] >= 0 and len(s["output"]) <= 2000
    by = {s["name"]: s for s in steps}
    if not torch.cuda.is_available():
        assert "skipped" in by["cuda-tests"]["output"] and "failed" not in by["cuda-tests"]["output"]
    assert "resumed to step 30 of 30" in by["train-sigterm-resume"]["output"]
    assert "stopped (time limit)" in by["train-round"]["output"]
    assert summary["dry_run"] and summary["device"] == "cpu" and summary["environment"]["torch"]
    sampling = json.loads((out / "sampling.json").read_text())
    assert [r["streams"] for r in sampling["rows"]] == [1, 16]
    assert all(r["samples_per_s"] > 0 for r in sampling["rows"])
    levels = [r["level"] for r in json.loads((out / "round" / "eval.json").read_text())]
    assert levels == ["none", "label", "mel", "all"]
    for f in ("bench.json", "score.json", "demo/index.html", "ood/index.html", "samples/beam"):
        assert (out / f).exists(), f
    table = capsys.readouterr().out
    assert all(name in table for name in STEP_NAMES) and "16 ok, 0 FAILED" in table


def test_a_failing_or_hanging_step_is_recorded_and_the_next_one_runs(tmp_path):
    steps = [Step("hang", [PY, "-c", "import time; print('started', flush=True); time.sleep(60)"], 1.0),
             Step("fail", [PY, "-c", "import sys; print('bad input'); sys.exit(3)"], 30.0),
             Step("fine", [PY, "-c", "print('\\r10%\\r100%\\ndone')"], 30.0)]
    res = run_plan(steps, tmp_path, 300, echo=quiet)
    assert [r["name"] for r in res] == ["hang", "fail", "fine"]
    assert res[0]["timed_out"] and res[0]["rc"] is None and "started" in res[0]["output"]
    assert res[0]["seconds"] < 20
    assert res[1]["rc"] == 3 and not res[1]["timed_out"] and "bad input" in res[1]["output"]
    assert res[2]["rc"] == 0 and res[2]["output"] == "100%\ndone\n"     # progress redraws collapsed
    assert (tmp_path / "logs" / "fail.log").read_text() == "bad input\n"


def test_the_budget_keeps_the_time_promised_to_later_steps(tmp_path):
    """A step that would eat into the training round's promised time is skipped, not run."""
    steps = [Step("early", [PY, "-c", "import time; time.sleep(60)"], 60.0),
             Step("round", [PY, "-c", "print('round')"], 30.0, promise_s=1000.0)]
    res = run_plan(steps, tmp_path, 1003.0, skip=(), echo=quiet)
    assert res[0]["skipped"] == "the time budget is spent" and res[0]["rc"] is None
    assert res[1]["rc"] == 0 and "round" in res[1]["output"]
    res = run_plan(steps[1:], tmp_path, 1003.0, skip={"round"}, echo=quiet)
    assert res[0]["skipped"] == "--skip" and res[0]["rc"] is None


def test_forked_steps_run_like_subprocesses(tmp_path):
    """The dry run's launcher: `python -c/-m` in a process forked from a preloaded server gives
    the same exit codes and output, and a timeout stops it."""
    launcher = Launcher(preload=True, threads=1)
    rc, _, timed_out, output = run_command(
        [PY, "-c", "import sys, torch; print('hi', sys.argv[1], torch.get_num_threads()); sys.exit(3)", "x"],
        60, tmp_path / "c.log", launcher)
    assert (rc, timed_out, output) == (3, False, "hi x 1\n")
    rc, _, _, output = run_command([PY, "-m", "wavetyp.gpu_round", str(tmp_path / "new"), "--minutes", "0"],
                                   60, tmp_path / "m.log", launcher)
    assert rc == 2 and output.strip() == "error: --minutes must be > 0, got 0.0"
    rc, seconds, timed_out, _ = run_command([PY, "-c", "import time; time.sleep(60)"], 1,
                                            tmp_path / "t.log", launcher)
    assert rc is None and timed_out and seconds < 20


def test_the_resume_check_fails_a_run_that_ends_before_the_signal(tmp_path):
    fake = Step("train-sigterm-resume", [PY, "-c", "print('finished at step 5')", "--out",
                                         str(tmp_path / "run"), "--max-steps", "5", "--device", "cpu"], 30)
    r = sigterm_resume(fake, 30, tmp_path / "r.log", Launcher())
    assert r["rc"] == 1 and "finished before the signal" in r["output"]
    assert "[SIGTERM once last.pt exists]" in r["command"]


def parse_with_the_cli(argv: list[str]) -> None:
    """Parse a `python -m wavetyp.X ...` step with that CLI's own parser (where it has one)."""
    mod = importlib.import_module(argv[2])
    if hasattr(mod, "build_parser"):
        mod.build_parser().parse_args(argv[3:])


def test_the_gpu_plan_runs_the_issue_s_commands():
    out = Path("/tmp/gpu-round-plan")
    gpu = Plan(out, "ck.pt", "cuda", GPU, 3.0).steps()
    dry = Plan(out, "tiny.pt", "cpu", DRY, 0.03).steps()
    assert [s.name for s in gpu] == [s.name for s in dry] == list(STEP_NAMES)
    cmd = {s.name: " ".join(s.argv) for s in gpu}
    assert ("-m wavetyp.train --init-from ck.pt --out /tmp/gpu-round-plan/round --max-minutes 3 "
            "--device cuda --eval-every 0 --no-final-eval") in cmd["train-round"]
    assert "--batch-size 64 --lr 3e-4 --warmup 50" in cmd["train-round"]
    assert cmd["evaluate-round"].endswith("--checkpoint /tmp/gpu-round-plan/round/last.pt --device cuda "
                                          "--conditioning each --json /tmp/gpu-round-plan/round/eval.json")
    assert "-m pytest -q -m cuda" in cmd["cuda-tests"] and cmd["cuda-tests"].endswith("tests/test_cuda.py")
    assert "--prime fsdd:7_lucas_1" in cmd["sample-prime"]
    assert "--mel-from fsdd:6_theo_0" in cmd["sample-mel-from"]
    assert "--greedy" in cmd["sample-greedy"] and "--beam 4" in cmd["sample-beam"]
    assert "--top-p 0.9" in cmd["sample-top-p"] and "--typical-p 0.9" in cmd["sample-typical-p"]
    assert "-m wavetyp.demo" in cmd["demo"] and "--quick --out /tmp/gpu-round-plan/demo" in cmd["demo"]
    assert all("--device cuda" in c for n, c in cmd.items() if n not in ("cuda-tests", "sampling"))
    spec = json.loads(gpu[STEP_NAMES.index("sampling")].argv[-1])
    assert [list(r[:2]) for r in spec["runs"]] == [["cuda", [1, 16, 256]], ["cpu", [1, 16]]]
    for s in gpu + dry:                      # every flag exists in the CLI it is given to
        if s.argv[1] == "-m" and s.argv[2].startswith("wavetyp."):
            parse_with_the_cli(s.argv)
    # the promised time of the round and its evaluation fits the 9-minute budget with room
    promised = sum(s.promise_s for s in gpu)
    assert 3 * 60 < promised <= 9 * 60 - 150
    rnd = gpu[STEP_NAMES.index("train-round")]
    assert rnd.timeout >= 3 * 60 + 60 and rnd.promise_s >= 3 * 60


def test_the_cli_refuses_with_one_line(tmp_path, monkeypatch, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("")
    assert gpu_round.main([str(used), "--dry-run"]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_round.main([str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no CUDA device") and "\n" not in err
    assert not (tmp_path / "new").exists()
    assert gpu_round.main([str(tmp_path / "new"), "--budget-minutes", "-1"]) == 2
    with pytest.raises(SystemExit):
        gpu_round.main([str(tmp_path / "new"), "--skip", "no-such-step"])
    monkeypatch.setattr(gpu_round, "environment", lambda: {"gpu": "a GPU"})
    assert gpu_round.main([str(tmp_path / "new"), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "not found" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_the_gpu_mode_runs_its_plan_as_subprocesses(tmp_path, monkeypatch, capsys):
    """The GPU path's wiring on a machine pretending to have a GPU: one real step as a plain
    subprocess (which then fails: no CUDA here) and the rest skipped, all in summary.json."""
    if torch.cuda.is_available():
        pytest.skip("a real GPU is here: python -m wavetyp.gpu_round runs the real thing")
    monkeypatch.setattr(gpu_round, "environment", lambda: {"gpu": "a GPU", "torch": torch.__version__})
    out = tmp_path / "round"
    skip = [n for n in STEP_NAMES if n != "sample-greedy"]
    assert gpu_round.main([str(out), "--minutes", "1", "--skip", *skip]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["dry_run"] and summary["device"] == "cuda" and summary["minutes"] == 1
    by = {s["name"]: s for s in summary["steps"]}
    assert [s["name"] for s in summary["steps"]] == list(STEP_NAMES)
    assert all(by[n]["skipped"] == "--skip" for n in skip)
    greedy = by["sample-greedy"]
    assert greedy["rc"] == 2 and "CUDA" in greedy["output"] and "--device cuda" in greedy["command"]
    assert "1 FAILED" in capsys.readouterr().out
