"""A training checkpoint's contents: the keys checkpoint_state writes, and restore reads back."""
import torch
from conftest import tiny_config

from wavetyp.core.model import WaveNet
from wavetyp.training.state import TrainOptions, checkpoint_state, restore

KEYS = ["format", "version", "config", "model", "optimizer", "scheduler", "step", "rng",
        "best_val_bits", "train_args", "wall_seconds", "metrics"]


def test_checkpoint_state_round_trips_through_restore():
    torch.manual_seed(0)
    cfg, opts = tiny_config(), TrainOptions(out="run", max_steps=10, warmup=2)
    model = WaveNet(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr)
    model(torch.zeros(1, 32, dtype=torch.long)).float().mean().backward()
    opt.step()
    state = checkpoint_state(cfg, model, opt, opts, step=3, best=7.5, wall_seconds=1.0)
    assert list(state) == KEYS and state["metrics"] == {} and state["train_args"]["max_steps"] == 10
    assert state["scheduler"] == {"name": "warmup-cosine", "warmup": 2, "max_steps": 10,
                                  "lr": opts.lr_at(3)}
    expected_next = torch.rand(3)                 # the draw after the saved RNG state
    torch.manual_seed(1)
    fresh = WaveNet(cfg)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=opts.lr)
    restore(fresh, fresh_opt, state, "ckpt.pt")
    assert torch.equal(torch.rand(3), expected_next)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert fresh_opt.state_dict()["state"][0]["step"] == 1
