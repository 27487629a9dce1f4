"""Several processes and stopping: SIGINT/SIGTERM as a flag, decisions every rank takes
together (any_rank), the finiteness check before a save, and joining torchrun's process group.
"""
from __future__ import annotations

import datetime
import signal

import torch

from wavetyp.core.runtime import distributed_env


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the step boundary and exits."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def any_rank(flag: bool, world: int, device) -> bool:
    """True on every rank when `flag` is true on any (so all ranks stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t)
    return t.item() > 0


def all_finite(tensors) -> bool:
    """Every floating tensor is finite: one device read for all of them."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


# Rank 0 validates, evaluates and plots while the other ranks wait in the next collective:
# a full test-split evaluation on a slow machine outlasts NCCL's 10-minute default.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)
# With several ranks, a signal or the time limit is looked at every this many steps.
STOP_EVERY = 10


def setup_distributed(device: torch.device) -> tuple[int, int]:
    """(world, rank) from torchrun's environment; joins the process group when world > 1,
    each rank on its own GPU (device is cuda:LOCAL_RANK there, see runtime.pick_device)."""
    world, rank, _ = distributed_env()
    if world > 1 and not torch.distributed.is_initialized():
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT,
                                             device_id=device if cuda else None)
    return world, rank
