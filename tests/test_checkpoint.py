"""Checkpoints are data, not code: atomic saves, refused code payloads, one-line errors;
and the warm start of a deeper model (deepen_state)."""
import dataclasses
import os
import subprocess
import sys

import pytest
import torch
from conftest import save_tiny_checkpoint, tiny_config
from test_generate import conditionings, position_model
from test_train import cli_env, fast_options, one_torch_thread, synth_corpus  # noqa: F401 (autouse)

import wavetyp.core.checkpoint as ck
from wavetyp.core.checkpoint import (
    FORMAT,
    VERSION,
    deepen_state,
    export_weights,
    load_model,
    read_checkpoint,
    save_atomic,
)
from wavetyp.core.errors import CheckpointError
from wavetyp.core.generate import teacher_forced_logits
from wavetyp.core.model import WaveNet
from wavetyp.training.loop import train


def tiny_state(**extra) -> dict:
    torch.manual_seed(0)
    cfg = tiny_config()
    return {"format": FORMAT, "version": VERSION, "config": cfg.to_dict(),
            "model": WaveNet(cfg).state_dict(), "step": 0, **extra}


def run_sample(*args):
    """`python -m wavetyp.sample ...` as a subprocess -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "wavetyp.sample", *map(str, args)],
                          capture_output=True, text=True, env=cli_env(), timeout=300)


# ------------------------------------------------------------ atomic saves

def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic(tiny_state(step=1), path)
    real_save = torch.save

    def torn_save(obj, f, *a, **k):       # half the bytes reach the disk, then the "crash"
        real_save(obj, f, *a, **k)
        f.truncate(f.tell() // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="No space left"):
        save_atomic(tiny_state(step=2), path)
    monkeypatch.setattr(torch, "save", real_save)
    assert read_checkpoint(path)["step"] == 1                 # the old one, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]   # no temp file left


def test_temp_file_of_a_killed_writer_is_cleaned_up(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".last.pt.tmp-{dead.pid}"
    stale.write_bytes(b"half a checkpoint")
    alive = tmp_path / f".last.pt.tmp-{os.getppid()}"       # a live writer's file is left alone
    alive.write_bytes(b"in progress")
    save_atomic(tiny_state(), tmp_path / "last.pt")
    assert not stale.exists() and alive.exists()


# ------------------------------------------------------------ code payloads are refused

class _OpenPayload:
    """Unpickling this would call open(marker, 'w'): a harmless proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _SystemPayload(_OpenPayload):
    """Unpickling this would run a shell command (touching the marker file)."""

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("payload,target", [(_OpenPayload, "io.open"), (_SystemPayload, "posix.system")])
@pytest.mark.parametrize("zip_format", [True, False])
def test_checkpoint_carrying_code_is_refused_and_nothing_runs(tmp_path, payload, target, zip_format):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save(tiny_state(metrics={"x": payload(marker)}), path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match=f"refused: it asks to import or call {target}"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        load_model(path)
    assert not marker.exists()


def test_payload_is_live_when_loaded_unsafely(tmp_path):
    """Control for the test above: the same file does run code without weights_only."""
    marker = tmp_path / "PWNED"
    torch.save(tiny_state(metrics={"x": _OpenPayload(marker)}), tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_code_payload_through_the_cli(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save(tiny_state(metrics={"x": _SystemPayload(marker)}), tmp_path / "evil.pt")
    r = run_sample("--checkpoint", tmp_path / "evil.pt", "--seconds", "0.05", "--out", tmp_path / "o")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and "refused" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not marker.exists()


# ------------------------------------------------------------ other bad checkpoints: one line each

def _write(path, kind):
    """A broken checkpoint of the given kind at `path`."""
    good = tiny_state()
    if kind == "version":
        torch.save({**good, "version": VERSION + 1}, path)
    elif kind == "format":
        torch.save({**good, "format": "something-else"}, path)
    elif kind == "missing":
        torch.save({k: v for k, v in good.items() if k != "model"}, path)
    elif kind == "extra":
        torch.save({**good, "surprise": 1}, path)
    elif kind == "not_dict":
        torch.save([1, 2, 3], path)
    elif kind == "bad_config":
        torch.save({**good, "config": {**good["config"], "n_layerz": 3}}, path)
    elif kind == "shape":
        torch.save({**good, "config": tiny_config(residual_channels=16).to_dict()}, path)
    elif kind == "missing_weight":
        torch.save({**good, "model": {k: v for k, v in good["model"].items() if k != "head2.bias"}}, path)
    elif kind == "model_not_tensors":
        torch.save({**good, "model": {"embed.weight": "not a tensor"}}, path)
    elif kind == "truncated":
        save_atomic(good, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "garbage":
        path.write_bytes(os.urandom(512))
    elif kind == "text":
        path.write_text("hello, I am not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    return path


BAD = {
    "version": f"checkpoint format version {VERSION + 1}, this wavetyp reads version {VERSION}",
    "format": "not a wavetyp checkpoint (format='something-else'",
    "missing": "missing key(s): model",
    "extra": "unexpected key(s): surprise",
    "not_dict": "top level is list, expected a dict",
    "bad_config": "bad config (unknown config keys: n_layerz)",
    "shape": "weights do not match the config (shape mismatch: embed.weight",
    "missing_weight": "weights do not match the config (missing weights: head2.bias",
    "model_not_tensors": "'model' must be a dict of tensors",
    "truncated": "not a readable checkpoint",
    "garbage": "",          # refused or unreadable: either way one line
    "text": "",
    "empty": "empty file, not a checkpoint",
    "folder": "is a folder, not a file",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_checkpoint_is_one_clear_line(tmp_path, kind):
    path = _write(tmp_path / "bad.pt", kind)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = str(info.value)
    assert BAD[kind] in msg and "\n" not in msg and len(msg) < 400
    assert str(path) in msg


CLI_KINDS = ["version", "missing", "extra", "truncated"]


@pytest.mark.parametrize("kind", CLI_KINDS)
def test_bad_checkpoint_through_the_cli_in_process(tmp_path, capsys, kind):
    from wavetyp import sample
    path = _write(tmp_path / "bad.pt", kind)
    assert sample.main(["--checkpoint", str(path), "--seconds", "0.05", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and BAD[kind] in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("kind", [k if k == "version" else pytest.param(k, marks=pytest.mark.slow)
                                  for k in CLI_KINDS])
def test_bad_checkpoint_through_the_cli_subprocess(tmp_path, kind):
    path = _write(tmp_path / "bad.pt", kind)
    r = run_sample("--checkpoint", path, "--seconds", "0.05", "--out", tmp_path / "o")
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and BAD[kind] in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_debug_shows_the_traceback(tmp_path):
    path = _write(tmp_path / "bad.pt", "version")
    r = run_sample("--checkpoint", path, "--seconds", "0.05", "--out", tmp_path / "o", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr and "CheckpointError" in r.stderr


# ------------------------------------------------------------ exports and resuming

def test_export_is_shippable_but_not_resumable(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(), fast_options(run, max_steps=2), synth_corpus())
    export_weights(run / "last.pt", tmp_path / "ship.pt")
    full, _ = load_model(run / "last.pt")
    small, ck_small = load_model(tmp_path / "ship.pt")
    assert ck_small["dtype"] == "float16" and "optimizer" not in ck_small
    x = torch.randint(0, 256, (1, 64))
    assert torch.allclose(full(x), small(x), atol=0.05)
    (tmp_path / "run2").mkdir()
    (tmp_path / "ship.pt").rename(tmp_path / "run2/last.pt")
    with pytest.raises(CheckpointError, match="cannot resume from it, it has no optimizer, rng"):
        train(tiny_config(), fast_options(tmp_path / "run2"), synth_corpus(), resume=True)


def test_resume_with_mismatched_weights_is_a_checkpoint_error(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(), fast_options(run, max_steps=2), synth_corpus())
    ckpt = read_checkpoint(run / "last.pt")
    ckpt["model"]["head2.weight"] = torch.zeros(3, 3)
    save_atomic(ckpt, run / "last.pt")
    with pytest.raises(CheckpointError, match="shape mismatch: head2.weight"):
        train(tiny_config(), fast_options(run), synth_corpus(), resume=True)


def test_shipped_style_checkpoint_round_trip(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "t.pt")
    model, ckpt = load_model(path)
    assert ckpt["format"] == FORMAT and model.cfg == tiny_config()
    assert not model.training
    assert ck.REQUIRED == ("format", "version", "config", "model")


def test_a_checkpoint_from_before_the_position_table_loads_without_one(tmp_path):
    """Configs saved before position_frames existed (no such keys) load with the table off;
    the shipped checkpoint too, where it is present."""
    state = tiny_state()
    for key in ("position_frames", "position_dim"):
        del state["config"][key]
    save_atomic(state, tmp_path / "old.pt")
    model, _ = load_model(tmp_path / "old.pt")
    assert model.cfg.position_frames == 0 and model.pos_proj is None
    assert not any(k.startswith("pos_") for k in model.state_dict())
    if ck.SHIPPED.exists() and ck.SHIPPED.stat().st_size > 1000:    # not an LFS pointer
        assert "position_frames" not in read_checkpoint(ck.SHIPPED)["config"]
        assert load_model()[0].cfg.position_frames == 0


def test_load_weights_may_lack_only_the_weights_it_is_told():
    """A warm start may add the position table (it keeps its zeros); any other missing
    weight is still an error."""
    old = tiny_state()["model"]
    new = WaveNet(tiny_config(position_frames=4))
    with pytest.raises(CheckpointError, match="missing weights: pos_emb.weight, pos_proj.weight"):
        ck.load_weights(new, old)
    emb = new.pos_emb.weight.detach().clone()
    ck.load_weights(new, old, may_lack=WaveNet.POSITION_WEIGHTS)
    assert all(torch.equal(new.state_dict()[k], v) for k, v in old.items())
    assert torch.equal(new.pos_emb.weight, emb) and not new.pos_proj.weight.any()
    with pytest.raises(CheckpointError, match="missing weights: head2.bias"):
        ck.load_weights(new, {k: v for k, v in old.items() if k != "head2.bias"},
                        may_lack=WaveNet.POSITION_WEIGHTS)


# ------------------------------------------------------------ deepening (train --add-stacks)

def deepened(old: WaveNet, add: int = 1, seed: int = 5) -> WaveNet:
    """`old` with `add` stacks appended through deepen_state, loaded strictly."""
    cfg = dataclasses.replace(old.cfg, n_stacks=old.cfg.n_stacks + add)
    new = WaveNet(cfg).eval()
    state = deepen_state(old.state_dict(), old.cfg, cfg, seed)
    assert state.keys() == new.state_dict().keys()               # every key from the mapping
    new.load_state_dict(state, strict=True)
    return new


def old_models():
    """A tiny model with random conditioning projections, and one with a position table."""
    torch.manual_seed(2)
    plain = WaveNet(tiny_config()).eval()
    return {"plain": plain, "position": position_model(frames=6)}


@pytest.mark.parametrize("kind", ["plain", "position"])
def test_deepened_state_computes_the_same_function(kind):
    """New layers' res_skip and projection rows are zero, old ones copied, new dilated fresh:
    the logits are bit-identical (torch.equal) to the original's on the no-grad loop and on
    faststack (grad on), for every conditioning; a perturbed new res_skip changes them."""
    old = old_models()[kind]
    new = deepened(old, add=1)
    L, G2 = old.cfg.n_layers, 2 * old.cfg.gate_channels
    assert new.cfg.n_layers == L + old.cfg.layers_per_stack
    st = new.state_dict()
    for proj in ("global_proj", "mel_proj") + (("pos_proj",) if kind == "position" else ()):
        for part in ("weight", "bias"):
            w, w_old = st[f"{proj}.{part}"], old.state_dict()[f"{proj}.{part}"]
            assert torch.equal(w[:L * G2], w_old) and not w[L * G2:].any()
    for j in range(L, new.cfg.n_layers):
        assert not st[f"res_skip.{j}.weight"].any() and not st[f"res_skip.{j}.bias"].any()
        assert st[f"dilated.{j}.weight"].abs().sum() > 0          # the fresh default init
    codes = torch.randint(0, 256, (2, 3 * new.cfg.receptive_field + 9),
                          generator=torch.Generator().manual_seed(3))
    conds = conditionings(old, codes)
    for name in ("none", "label", "mel", "all+dropped-mel"):
        with torch.no_grad():
            assert torch.equal(new(codes, conds[name]), old(codes, conds[name])), name
        assert torch.equal(new(codes, conds[name]).detach(),      # faststack (grad on)
                           old(codes, conds[name]).detach()), name
    with torch.no_grad():
        new.res_skip[L + 1].weight.normal_()
        assert not torch.equal(new(codes, conds["mel"]), old(codes, conds["mel"]))


def test_deepened_model_sees_further_and_samples_like_its_parallel_pass():
    """The deeper model's receptive field is the config's larger one, and the incremental cache
    (which reads n_layers from the config) matches its parallel pass once the new layers and
    their conditioning rows are perturbed."""
    old = old_models()["plain"]
    new = deepened(old, add=2)
    per_stack = sum(2**i for i in range(old.cfg.layers_per_stack))
    assert new.cfg.n_stacks == 4 and new.receptive_field == old.receptive_field + 2 * per_stack
    L, G2 = old.cfg.n_layers, 2 * old.cfg.gate_channels
    with torch.no_grad():
        for j in range(L, new.cfg.n_layers):
            new.res_skip[j].weight.normal_(std=0.3)
            new.res_skip[j].bias.normal_(std=0.1)
        for proj in (new.global_proj, new.mel_proj):
            proj.weight[L * G2:].normal_(std=0.3)
            proj.bias[L * G2:].normal_(std=0.1)
    codes = torch.randint(0, 256, (2, new.receptive_field + 40),
                          generator=torch.Generator().manual_seed(4))
    for name, cond in conditionings(new, codes).items():
        with torch.no_grad():
            par = new(codes, cond)
            changed = not torch.equal(par, old(codes, cond))
        err = (par - teacher_forced_logits(new, codes, cond)).abs().max().item()
        assert changed and err <= 1e-4, (name, err)


def test_deepen_state_refuses_what_is_not_a_deeper_copy():
    """Fewer or equal stacks, or any other weight-shaping change, is one CheckpointError;
    so is a state that does not fit the old config."""
    old = tiny_config()
    state = tiny_state()["model"]
    for new in (old, dataclasses.replace(old, n_stacks=1),
                dataclasses.replace(old, n_stacks=3, gate_channels=4)):
        with pytest.raises(CheckpointError, match="cannot deepen"):
            deepen_state(state, old, new)
    deeper = dataclasses.replace(old, n_stacks=3, p_drop_mel=0.1)   # training-only: allowed
    assert deepen_state(state, old, deeper).keys() == WaveNet(deeper).state_dict().keys()
    with pytest.raises(CheckpointError, match="missing or mis-shaped: head2.bias"):
        deepen_state({k: v for k, v in state.items() if k != "head2.bias"}, old, deeper)
    bad = {**state, "mel_proj.bias": state["mel_proj.bias"][:-1]}
    with pytest.raises(CheckpointError, match="mel_proj.bias of shape"):
        deepen_state(bad, old, deeper)
