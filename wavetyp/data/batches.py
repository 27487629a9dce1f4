"""Fixed-length training crops with a padding mask, and whole-file evaluation batches."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from wavetyp.core.audio import SILENCE_CODE
from wavetyp.data.corpus import Utterance


@dataclass
class Batch:
    codes: torch.Tensor     # (B, T) int64 mu-law codes, SILENCE_CODE where padded
    mask: torch.Tensor      # (B, T) bool, True on real audio
    digit: torch.Tensor     # (B,) int64, -1 = none
    speaker: torch.Tensor   # (B,) int64, -1 = none
    start: torch.Tensor     # (B,) int64, the sample of its file at which each crop starts

    def to(self, device, pin: bool = False) -> Batch:
        """On `device`; pin=True copies from page-locked memory, so that non_blocking copies
        to a GPU really are asynchronous (pinning needs CUDA)."""
        return Batch(**{f.name: (t.pin_memory() if pin else t).to(device, non_blocking=True)
                         for f in fields(self) for t in [getattr(self, f.name)]})


def collate(utts: list[Utterance], starts: list[int], length: int) -> Batch:
    """Crop each utterance at its start to `length`, padding with silence where it ends."""
    codes = torch.full((len(utts), length), SILENCE_CODE, dtype=torch.long)
    mask = torch.zeros((len(utts), length), dtype=torch.bool)
    for i, (u, s) in enumerate(zip(utts, starts)):
        piece = u.codes[s:s + length]
        codes[i, :len(piece)] = piece
        mask[i, :len(piece)] = True
    return Batch(codes, mask, torch.tensor([u.digit for u in utts]),
                 torch.tensor([u.speaker for u in utts]), torch.tensor(starts, dtype=torch.long))


def random_batch(utts: list[Utterance], batch_size: int, length: int,
                 generator: torch.Generator) -> Batch:
    """Random files, each cropped at a random start; short files start at 0 and are padded."""
    idx = torch.randint(len(utts), (batch_size,), generator=generator).tolist()
    chosen = [utts[i] for i in idx]
    starts = []
    for u in chosen:
        spare = len(u.codes) - length
        starts.append(int(torch.randint(spare + 1, (1,), generator=generator)) if spare > 0 else 0)
    return collate(chosen, starts, length)


def full_batches(utts: list[Utterance], batch_size: int):
    """Whole files, length-sorted into batches padded to their longest (for evaluation)."""
    order = sorted(range(len(utts)), key=lambda i: len(utts[i].codes))
    for k in range(0, len(order), batch_size):
        chunk = [utts[i] for i in order[k:k + batch_size]]
        yield chunk, collate(chunk, [0] * len(chunk), max(len(u.codes) for u in chunk))

