"""Training survives faults: exact resume (in process and after kill -9), NaN/Inf stops,
SIGINT/SIGTERM saves and exits 0, and two gloo processes end with identical weights.

Everything uses a tiny model and a few synthetic utterances, so each test takes seconds.
"""
import dataclasses
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
from conftest import synth_speechlike, tiny_config

from wavetyp import train as train_mod
from wavetyp.core.audio import mu_law_encode
from wavetyp.core.checkpoint import ema_weights, export_weights, read_checkpoint
from wavetyp.core.errors import UsageError
from wavetyp.data.corpus import Corpus, Utterance
from wavetyp.training import loop as train_loop
from wavetyp.training import state as train_state
from wavetyp.training.log import read_log
from wavetyp.training.loop import TrainingDiverged, TrainOptions, train

REPO = Path(__file__).resolve().parent.parent
SPEAKERS = ["alice", "bob"]
# the CLI flags that build the same tiny model shape as tiny_config() (mel settings aside)
TINY_CLI = ["--layers", "3", "--stacks", "2", "--residual", "8", "--gate", "8", "--skip", "8",
            "--head", "16", "--n-mels", "8"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: several times faster for tiny models on a busy 2-core machine,
    and bit-identical runs. The previous setting is restored for the other test files."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------ helpers (also used by other test files)

def synth_corpus(n_train: int = 6, n_test: int = 2, seconds: float = 0.15) -> Corpus:
    """A few speech-like utterances, speakers alice/bob, digits 0..9 in turn."""
    utts = [Utterance(f"{i % 10}_{SPEAKERS[i % 2]}_{i}",
                      mu_law_encode(synth_speechlike(seconds, seed=i)), i % 10, i % 2)
            for i in range(n_train + n_test)]
    return Corpus("synth", 8000, list(SPEAKERS), utts[:n_train], utts[n_train:])


def make_data_dir(folder: Path, seconds: float = 0.3) -> Path:
    """An FSDD-style folder of `{digit}_{alice|bob}_{index}.wav` (index 0: test, 5-6: train)."""
    folder.mkdir(parents=True, exist_ok=True)
    for digit in range(2):
        for s, spk in enumerate(SPEAKERS):
            for i in (0, 5, 6):
                sf.write(str(folder / f"{digit}_{spk}_{i}.wav"),
                         synth_speechlike(seconds, seed=digit * 7 + s * 3 + i), 8000,
                         subtype="PCM_16")
    return folder


def fast_options(out, **kw) -> TrainOptions:
    """Tiny batches, a checkpoint every 2 steps, a log row every step, no evaluation."""
    base = dict(out=str(out), max_steps=8, batch_size=2, crop=256, warmup=3, eval_every=0,
                ckpt_every=2, log_every=1, device="cpu", progress=False, final_eval=False)
    base.update(kw)
    return TrainOptions(**base)


def train_rows(run: Path) -> list[dict]:
    return [r for r in read_log(run / "train.jsonl") if r["kind"] == "train"]


def cli_env() -> dict:
    """Environment for CLI subprocesses: this checkout importable, one thread, no CI extras."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def train_cmd(out, data, *extra) -> list[str]:
    return [sys.executable, "-m", "wavetyp.train", "--out", str(out), "--data-dir", str(data),
            "--batch-size", "4", "--crop", "1000", "--warmup", "5", "--eval-every", "0",
            "--ckpt-every", "2", "--log-every", "1", "--no-final-eval", "--threads", "1",
            "--no-progress", "--seed", "3", *TINY_CLI, *extra]


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def wait_for(cond, timeout: float, proc=None, poll: float = 0.005):
    """Poll until cond() is true; fail if it times out or `proc` exits first."""
    t_end = time.time() + timeout
    while time.time() < t_end:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process exited early ({proc.returncode}): {out}\n{err}")
        time.sleep(poll)
    pytest.fail("timed out waiting")


# ------------------------------------------------------------ exact resume, in process

def test_resume_in_process_matches_uninterrupted(tmp_path):
    """8 steps straight vs 5 steps (paused), then resumed to 8: same losses, LRs and weights."""
    corpus = synth_corpus()
    ref = train(tiny_config(), fast_options(tmp_path / "ref"), corpus)
    paused = train(tiny_config(), fast_options(tmp_path / "run", stop_at=5), corpus)
    assert paused["stopped"] == "stop_at 5" and read_checkpoint(tmp_path / "run/last.pt")["step"] == 5
    resumed = train(tiny_config(), fast_options(tmp_path / "run"), corpus, resume=True)
    assert resumed["step"] == 8 and resumed["stopped"] is None
    a, b = train_rows(tmp_path / "ref"), train_rows(tmp_path / "run")
    assert [r["step"] for r in b] == list(range(1, 9))
    assert [(r["loss_bits"], r["lr"]) for r in a] == [(r["loss_bits"], r["lr"]) for r in b]
    assert weights_equal(ref["model"].state_dict(), resumed["model"].state_dict())
    ca, cb = read_checkpoint(tmp_path / "ref/last.pt"), read_checkpoint(tmp_path / "run/last.pt")
    assert weights_equal(ca["model"], cb["model"])
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert all(weights_equal(sa[i], sb[i]) for i in sa)          # Adam moments and step counts


def test_ema_is_the_moving_average_resumes_exactly_and_is_what_export_ships(tmp_path):
    """--ema-decay: the averaged weights follow ema = d*ema + (1-d)*w after every step (the
    first step copies), survive a pause/resume bit for bit, are what validation scores and
    what export writes (raw on request)."""
    corpus, d = synth_corpus(), 0.9
    ref = train(tiny_config(), fast_options(tmp_path / "ref", ema_decay=d, max_steps=4), corpus)
    ck = read_checkpoint(tmp_path / "ref/last.pt")
    ema, raw = ema_weights(ck), ck["model"]
    assert ema.keys() == raw.keys() and not weights_equal(ema, raw)
    assert weights_equal(ref["model"].state_dict(), ema)       # the run's model is the average
    # the same average by hand, from the raw weights after each step of a step-by-step rerun
    by_hand = None
    for k in range(1, 5):
        train(tiny_config(), fast_options(tmp_path / "steps", max_steps=4, stop_at=k,
                                          ema_decay=d), corpus, resume=k > 1)
        w = read_checkpoint(tmp_path / "steps/last.pt")["model"]
        by_hand = ({n: t.clone() for n, t in w.items()} if by_hand is None else
                   {n: (d * by_hand[n] + (1 - d) * w[n]) if w[n].is_floating_point() else w[n]
                    for n in w})
    assert all(torch.allclose(by_hand[n].float(), ema[n].float(), atol=1e-6) for n in ema)
    assert weights_equal(ema_weights(read_checkpoint(tmp_path / "steps/last.pt")), ema)  # resumed
    exported = export_weights(tmp_path / "ref/last.pt", tmp_path / "e.pt", torch.float32)
    assert exported["weights"] == "ema" and weights_equal(exported["model"], ema)
    raw_out = export_weights(tmp_path / "ref/last.pt", tmp_path / "r.pt", torch.float32, weights="raw")
    assert raw_out["weights"] == "raw" and weights_equal(raw_out["model"], raw)
    with pytest.raises(UsageError, match="--ema-decay must be in"):
        train_mod.check_args(train_mod.build_parser().parse_args(["--ema-decay", "1.0"]))


def test_a_training_step_reads_one_value_set_from_the_device(tmp_path, monkeypatch):
    """Host syncs per step: a GPU->CPU read (.item(), .tolist(), bool()) stalls the pipeline,
    so wavetyp's loop makes one per step (the loss and the gradient norm together, for the
    finiteness check before the update). Counted where wavetyp's own code reads a tensor
    (AdamW's CPU-side step counters are torch's business and never on the device)."""
    counts = {"item": 0, "tolist": 0, "bool": 0}
    steps = 6
    for name, attr in (("item", "item"), ("tolist", "tolist"), ("bool", "__bool__")):
        real = getattr(torch.Tensor, attr)

        def counting(self, *a, _real=real, _name=name, **k):
            caller = sys._getframe(1).f_code.co_filename
            if "wavetyp" in Path(caller).parts and "data" not in Path(caller).parts:
                counts[_name] += 1
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, attr, counting)
    r = train(tiny_config(), fast_options(tmp_path / "run", max_steps=steps, ckpt_every=0,
                                          log_every=100), synth_corpus())
    assert r["step"] == steps
    assert counts["tolist"] == steps and counts["item"] + counts["bool"] <= 2, counts


def test_crash_mid_run_resumes_from_periodic_checkpoint(tmp_path, monkeypatch):
    """A crash at step 7 (last.pt holds step 6) plus a torn log line: resume redoes 7-8 exactly."""
    corpus = synth_corpus()
    ref = train(tiny_config(), fast_options(tmp_path / "ref"), corpus)
    real_loss, calls = train_loop.masked_loss, [0]

    def crash_at_step_7(*args):
        calls[0] += 1
        if calls[0] == 8:                       # the 8th forward is step 7 -> 8
            raise RuntimeError("simulated crash")
        return real_loss(*args)

    monkeypatch.setattr(train_loop, "masked_loss", crash_at_step_7)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_config(), fast_options(tmp_path / "run"), corpus)
    monkeypatch.setattr(train_loop, "masked_loss", real_loss)
    run = tmp_path / "run"
    assert read_checkpoint(run / "last.pt")["step"] == 6 and len(train_rows(run)) == 7
    with open(run / "train.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 8, "loss_b')        # a kill mid-write
    resumed = train(tiny_config(), fast_options(run), corpus, resume=True)
    assert [r["step"] for r in train_rows(run)] == list(range(1, 9))   # 7 redone, not doubled
    assert [r["loss_bits"] for r in train_rows(run)] == [r["loss_bits"] for r in train_rows(tmp_path / "ref")]
    assert weights_equal(ref["model"].state_dict(), resumed["model"].state_dict())


def test_fresh_run_refuses_a_folder_with_a_checkpoint(tmp_path):
    corpus = synth_corpus()
    train(tiny_config(), fast_options(tmp_path / "run", max_steps=2), corpus)
    with pytest.raises(train_loop.UsageError, match="last.pt exists"):
        train(tiny_config(), fast_options(tmp_path / "run", max_steps=2), corpus)


def test_resume_keeps_the_run_schedule_unless_max_steps_is_given(tmp_path):
    """--resume without --max-steps keeps the run's max_steps (so the cosine schedule)."""
    saved = dataclasses.asdict(fast_options(tmp_path, max_steps=8, lr=1e-3, seed=5, stop_at=3))
    caller = fast_options(tmp_path, max_steps=None, lr=9.0, seed=0, device="cpu", threads=2)
    got = train_state.resume_options(caller, saved)
    assert (got.max_steps, got.lr, got.seed, got.stop_at, got.threads) == (8, 1e-3, 5, None, 2)
    assert train_state.resume_options(dataclasses.replace(caller, max_steps=20), saved).max_steps == 20


# ------------------------------------------------------------ NaN / Inf

class _NanGrad(torch.autograd.Function):
    """Identity forward, NaN gradient backward: a finite loss whose gradient blows up."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


@pytest.mark.parametrize("kind,message", [
    ("nan", "loss is nan at step 5"),
    ("inf", "loss is inf at step 5"),
    ("grad", "gradient norm is nan at step 5"),
])
def test_non_finite_loss_stops_naming_the_step_and_keeps_last_good(tmp_path, monkeypatch, kind, message):
    real_loss, calls = train_loop.masked_loss, [0]

    def poisoned(*args):
        calls[0] += 1
        loss = real_loss(*args)
        if calls[0] == 6:                       # the 6th forward: step 5 -> 6
            return {"nan": loss * float("nan"), "inf": loss * float("inf"),
                    "grad": _NanGrad.apply(loss)}[kind]
        return loss

    monkeypatch.setattr(train_loop, "masked_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=message) as info:
        train(tiny_config(), fast_options(run), synth_corpus())
    assert "last.pt (step 4)" in str(info.value) and "\n" not in str(info.value)
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert not (run / "best.pt").exists()                 # nothing written after the blow-up


def test_training_never_saves_non_finite_weights(tmp_path, monkeypatch):
    """Weights that went bad right before a save (a broken optimizer step) are never written."""
    real_step = torch.optim.AdamW.step

    def corrupting_step(self, *a, **k):
        out = real_step(self, *a, **k)
        if self.state and next(iter(self.state.values()))["step"] == 4:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", corrupting_step)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train(tiny_config(), fast_options(tmp_path / "run"), synth_corpus())
    ckpt = read_checkpoint(tmp_path / "run/last.pt")
    assert ckpt["step"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_cli_reports_divergence_in_one_line(tmp_path, monkeypatch, capsys):
    data = make_data_dir(tmp_path / "data")
    monkeypatch.setattr(train_loop, "masked_loss", lambda *a: torch.tensor(float("nan"), requires_grad=True))
    code = train_mod.main(["--out", str(tmp_path / "run"), "--data-dir", str(data), "--max-steps", "4",
                           "--batch-size", "2", "--crop", "400", "--eval-every", "0", "--no-final-eval",
                           "--no-progress", *TINY_CLI])
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("error: loss is nan at step 0") and len(err.strip().splitlines()) == 1
    assert "no checkpoint was written yet" in err and not (tmp_path / "run/last.pt").exists()


def test_init_from_warm_starts_a_new_run_with_the_checkpoint_config(tmp_path, monkeypatch):
    """--init-from: the new run starts from the old weights and config (not the flags'),
    with its own step count, schedule and log; combined with --resume it is refused."""
    data = make_data_dir(tmp_path / "data")
    base = ["--data-dir", str(data), "--batch-size", "2", "--crop", "400", "--eval-every", "0",
            "--no-final-eval", "--no-progress", "--log-every", "1", "--warmup", "1"]
    assert train_mod.main(["--out", str(tmp_path / "a"), "--max-steps", "3", *base, *TINY_CLI]) == 0
    first = read_checkpoint(tmp_path / "a/last.pt")
    seen = {}
    real_train = train_mod.train

    def spy(cfg, opts, corpus=None, resume=False, init_state=None):
        model = train_loop.WaveNet(cfg)
        model.load_state_dict(init_state)
        seen["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_train(cfg, opts, corpus, resume, init_state)

    monkeypatch.setattr(train_mod, "train", spy)
    # --layers 7 is ignored: the model comes from the checkpoint; the conditioning dropout
    # (training-only) can be changed for the new round
    assert train_mod.main(["--out", str(tmp_path / "b"), "--init-from", str(tmp_path / "a/last.pt"),
                           "--max-steps", "2", "--layers", "7", "--p-drop-mel", "0.25", *base]) == 0
    second = read_checkpoint(tmp_path / "b/last.pt")
    assert first["config"]["p_drop_mel"] == 0.5 and second["config"]["p_drop_mel"] == 0.25
    assert {**second["config"], "p_drop_mel": 0.5} == first["config"] and second["step"] == 2
    assert weights_equal(seen["weights"], first["model"])
    assert not weights_equal(second["model"], first["model"])       # it did train
    assert [r["step"] for r in train_rows(tmp_path / "b")] == [1, 2]
    assert train_mod.main(["--out", str(tmp_path / "c"), "--resume", "--init-from",
                           str(tmp_path / "a/last.pt"), *base]) == 2
    # a resumed run continues exactly: its dropout cannot be changed, nor set out of range
    assert train_mod.main(["--out", str(tmp_path / "a"), "--resume", "--p-drop-mel", "0.1", *base]) == 2
    assert train_mod.main(["--out", str(tmp_path / "d"), "--p-drop-digit", "1.5", *base]) == 2
    assert not (tmp_path / "d").exists()


def test_training_batches_condition_on_their_crop_starts():
    """make_batch hands each crop's start to the model (position is never dropped); the
    batch is the one random_batch draws for that step."""
    cfg = tiny_config(position_frames=4)
    model = train_loop.WaveNet(cfg)
    utts = synth_corpus(seconds=0.3).train
    opts = fast_options("unused", batch_size=6, crop=300)
    codes, _, cond = train_loop.make_batch(cfg, model, utts, opts, 5, 0, torch.device("cpu"))
    batch = train_loop.random_batch(utts, 6, 300, train_loop.step_generator(opts.seed, 5, 0))
    assert torch.equal(codes, batch.codes) and torch.equal(cond.start, batch.start)
    assert (cond.start > 0).any()


def warm_start_setup(tmp_path, monkeypatch, *extra):
    """For the --init-from tests: a tiny checkpoint (path and contents), a data folder, the
    flags of a short run, and a spy on the loop's load_weights that records whether the state
    it gets is complete and the weights the run starts from."""
    from conftest import save_tiny_checkpoint
    ckpt_path = save_tiny_checkpoint(tmp_path / "tiny.pt")
    data = make_data_dir(tmp_path / "data")
    base = ["--data-dir", str(data), "--batch-size", "2", "--crop", "400", "--eval-every", "0",
            "--no-final-eval", "--no-progress", "--log-every", "1", "--warmup", "1", *extra]
    seen = {}
    real_load = train_loop.load_weights

    def load_spy(model, state, path, may_lack=()):
        seen["complete"] = state.keys() == model.state_dict().keys()
        real_load(model, state, path, may_lack)
        seen["start"] = {k: v.clone() for k, v in model.state_dict().items()}

    monkeypatch.setattr(train_loop, "load_weights", load_spy)
    return ckpt_path, read_checkpoint(ckpt_path), base, seen


def test_init_from_adds_a_zero_position_table_and_trains_it(tmp_path, monkeypatch):
    """--init-from a checkpoint without a position table plus --position-frames: the
    checkpoint's config with the table, its weights loaded, the table's projection at zero
    (the same function), and three steps train it; a table cannot be changed or resumed into."""
    ckpt_path, first, base, seen = warm_start_setup(tmp_path, monkeypatch)
    real_train = train_mod.train

    def spy(cfg, opts, corpus=None, resume=False, init_state=None):
        seen["cfg"], seen["init"] = cfg, init_state
        return real_train(cfg, opts, corpus, resume, init_state)

    monkeypatch.setattr(train_mod, "train", spy)
    assert train_mod.main(["--out", str(tmp_path / "b"), "--init-from", str(ckpt_path),
                           "--position-frames", "8", "--max-steps", "3", *base]) == 0
    second = read_checkpoint(tmp_path / "b/last.pt")
    assert seen["cfg"].position_frames == 8 and second["config"]["position_frames"] == 8
    assert {**second["config"], "position_frames": 0} == first["config"] and second["step"] == 3
    assert weights_equal(seen["init"], first["model"])
    assert all(torch.equal(seen["start"][k], v) for k, v in first["model"].items())
    assert not seen["start"]["pos_proj.weight"].any() and not seen["start"]["pos_proj.bias"].any()
    assert second["model"]["pos_proj.weight"].abs().sum() > 0          # it trained the table
    # a table already there cannot be resized; a resumed run cannot gain one
    assert train_mod.main(["--out", str(tmp_path / "c"), "--init-from", str(tmp_path / "b/last.pt"),
                           "--position-frames", "4", "--max-steps", "1", *base]) == 2
    assert train_mod.main(["--out", str(tmp_path / "b"), "--resume", "--position-frames", "8",
                           *base]) == 2
    assert train_mod.main(["--out", str(tmp_path / "d"), "--position-frames", "-1", *base]) == 2


def test_init_from_add_stacks_starts_a_deeper_model_at_the_same_function(tmp_path, monkeypatch):
    """--init-from CKPT --add-stacks 1: the checkpoint's config with one more stack, the loop
    loads a complete mapped state (nothing left at the model's own init) equal to deepen_state's,
    three steps train the new layers; refused with --resume, without --init-from, or below 1."""
    from wavetyp.core.checkpoint import config_from, deepen_state
    ckpt_path, first, base, seen = warm_start_setup(tmp_path, monkeypatch, "--seed", "7")
    assert train_mod.main(["--out", str(tmp_path / "b"), "--init-from", str(ckpt_path),
                           "--add-stacks", "1", "--max-steps", "3", *base]) == 0
    second = read_checkpoint(tmp_path / "b/last.pt")
    old_cfg = config_from(first)
    assert second["config"] == {**first["config"], "n_stacks": 3} and second["step"] == 3
    assert seen["complete"]
    mapped = deepen_state(first["model"], old_cfg, dataclasses.replace(old_cfg, n_stacks=3), 7)
    assert weights_equal(seen["start"], mapped)
    new_layer = f"res_skip.{old_cfg.n_layers}.weight"
    assert not seen["start"][new_layer].any() and second["model"][new_layer].abs().sum() > 0
    refused = [["--out", str(tmp_path / "b"), "--resume", "--add-stacks", "1"],
               ["--out", str(tmp_path / "c"), "--add-stacks", "1"],
               ["--out", str(tmp_path / "d"), "--init-from", str(ckpt_path), "--add-stacks", "0"]]
    for args in refused:
        assert train_mod.main([*args, *base]) == 2, args
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_add_stacks_refusals_say_why():
    """The UsageErrors name the conflicting flags."""
    p = train_mod.build_parser()
    with pytest.raises(UsageError, match="--add-stacks needs --init-from"):
        train_mod.check_args(p.parse_args(["--add-stacks", "1"]))
    with pytest.raises(UsageError, match="--add-stacks cannot change a run being resumed"):
        train_mod.check_args(p.parse_args(["--resume", "--out", "x", "--add-stacks", "1"]))


# ------------------------------------------------------------ signals and kill -9

def test_sigterm_saves_checkpoint_and_exits_cleanly(tmp_path):
    """SIGTERM to a CLI run: the step finishes, last.pt is saved, exit 0, resume hint printed."""
    data, run = make_data_dir(tmp_path / "data"), tmp_path / "run"
    proc = subprocess.Popen(train_cmd(run, data, "--max-steps", "100000", "--ckpt-every", "1000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        wait_for(lambda: len(read_log(run / "train.jsonl")) >= 3, 120, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["step"] >= 3 and ckpt["step"] == train_rows(run)[-1]["step"]
    assert f"stopped (SIGTERM) at step {ckpt['step']}" in out
    assert f"--resume --out {run}" in out                   # says how to continue
    assert not list(run.glob(".*.tmp-*"))


def test_sigint_in_process_stops_at_step_boundary_and_saves(tmp_path, monkeypatch):
    """Ctrl-C during step 3: the step completes, last.pt holds step 4, no KeyboardInterrupt."""
    real_loss, calls = train_loop.masked_loss, [0]

    def interrupt_during_step_3(*args):
        calls[0] += 1
        if calls[0] == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return real_loss(*args)

    monkeypatch.setattr(train_loop, "masked_loss", interrupt_during_step_3)
    before = signal.getsignal(signal.SIGINT)
    r = train(tiny_config(), fast_options(tmp_path / "run", ckpt_every=0), synth_corpus())
    assert r["stopped"] == "SIGINT" and r["step"] == 4
    assert read_checkpoint(tmp_path / "run/last.pt")["step"] == 4
    assert signal.getsignal(signal.SIGINT) is before        # the handler is restored


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    """kill -9 at a random step of a CLI run, --resume: the train.jsonl losses (every step)
    and the final weights equal those of an uninterrupted run with the same seed.

    Only the killed run needs its own process; the reference and the resume call the same
    CLI entry point in this process (one thread everywhere, so results are bit-identical)."""
    data = make_data_dir(tmp_path / "data")
    ref_run, run = tmp_path / "ref", tmp_path / "run"
    n_steps = 60
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    kill_after = rng.randint(3, 25)
    victim = subprocess.Popen(train_cmd(run, data, "--max-steps", str(n_steps)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env())

    def kill_at_random_moment():
        t_end = time.time() + 120
        while len(read_log(run / "train.jsonl")) < kill_after and victim.poll() is None \
                and time.time() < t_end:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.03))               # anywhere inside a step, maybe a save
        victim.kill()                                     # SIGKILL: no handler, no cleanup

    killer = threading.Thread(target=kill_at_random_moment)
    killer.start()
    try:   # meanwhile, the uninterrupted reference: the same CLI, in this process
        assert train_mod.main(train_cmd(ref_run, data, "--max-steps", str(n_steps))[3:]) == 0
    finally:
        killer.join()
        victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = train_rows(run)[-1]["step"]
    saved = read_checkpoint(run / "last.pt")["step"]
    assert train_mod.main(train_cmd(run, data, "--resume")[3:]) == 0   # the same CLI, in process
    a, b = train_rows(ref_run), train_rows(run)
    assert [r["step"] for r in b] == list(range(1, n_steps + 1))
    worst = max(abs(x["loss_bits"] - y["loss_bits"]) + abs(x["lr"] - y["lr"]) for x, y in zip(a, b))
    assert worst <= 1e-6
    assert weights_equal(read_checkpoint(ref_run / "last.pt")["model"],
                         read_checkpoint(run / "last.pt")["model"])
    assert not list(run.glob(".*.tmp-*"))                # a temp file of the killed save is gone
    print(f"\nkill -9 figures: killed at step {killed_at} of {n_steps}, last.pt held step {saved}, "
          f"resumed to {b[-1]['step']}; loss at step {saved}: {b[saved - 1]['loss_bits']:.6f} "
          f"(ref {a[saved - 1]['loss_bits']:.6f}), step {saved + 1}: {b[saved]['loss_bits']:.6f} "
          f"(ref {a[saved]['loss_bits']:.6f}), final: {b[-1]['loss_bits']:.6f} "
          f"(ref {a[-1]['loss_bits']:.6f}); max |diff| {worst:.2e}")


# ------------------------------------------------------------ several processes (gloo)

DDP_DRIVER = textwrap.dedent("""
    import hashlib, json, os, socket, sys
    import torch, torch.multiprocessing as mp
    sys.path.insert(0, sys.argv[2])                     # the tests folder
    from wavetyp.training import loop as T
    from wavetyp.core.model import WaveNetConfig
    from test_train import fast_options, synth_corpus

    def rank_main(rank, world, port, out, cfg):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
        saves, real_save = [], T.save_atomic
        T.save_atomic = lambda obj, path: (saves.append(str(path)), real_save(obj, path))[1]
        r = T.train(WaveNetConfig.from_dict(cfg), fast_options(out, max_steps=4, threads=1),
                    synth_corpus(n_train=8))
        state = r["model"].state_dict()
        digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"step": r["step"], "sha": digest, "saves": saves}, f)
        torch.distributed.destroy_process_group()

    if __name__ == "__main__":
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        torch.set_num_threads(1)
        # fork: the ranks share the already imported torch instead of importing it again
        mp.start_processes(rank_main, args=(2, port, sys.argv[1], json.loads(sys.argv[3])),
                           nprocs=2, start_method="fork")
""")


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    """torch DDP over gloo, 2 CPU processes: identical weights; only rank 0 writes files."""
    out = tmp_path / "run"
    out.mkdir()
    driver = tmp_path / "ddp_driver.py"
    driver.write_text(DDP_DRIVER)
    res = subprocess.run([sys.executable, str(driver), str(out), str(Path(__file__).parent),
                          json.dumps(tiny_config().to_dict())],
                         capture_output=True, text=True, env=cli_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["step"] == r1["step"] == 4
    assert r0["sha"] == r1["sha"]
    assert r1["saves"] == [] and r0["saves"]              # only rank 0 writes checkpoints
    assert [r["step"] for r in train_rows(out)] == [1, 2, 3, 4]   # one log, one row per step
    state = read_checkpoint(out / "last.pt")["model"]
    assert hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest() == r0["sha"]


@pytest.mark.slow
def test_torchrun_cli_two_processes(tmp_path):
    """The real launcher: torchrun --nproc_per_node 2 -m wavetyp.train on CPU/gloo."""
    data, run = make_data_dir(tmp_path / "data"), tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *train_cmd(run, data, "--max-steps", "4")[1:]]
    res = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [r["step"] for r in train_rows(run)] == [1, 2, 3, 4]
    assert read_checkpoint(run / "last.pt")["step"] == 4


def test_keep_freed_memory_applies_on_linux_glibc():
    """The trainer's malloc setting (kept freed memory, no per-step page faults) takes effect;
    checked in a fresh process so this test process keeps its default allocator."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "from wavetyp.train import keep_freed_memory as k; "
                          "print(k(), k())"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import platform
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    expected = "True True" if glibc else "False False"
    assert out.stdout.split() == expected.split()
