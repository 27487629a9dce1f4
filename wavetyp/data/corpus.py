"""Speech corpora as mu-law codes: an utterance, a corpus with its official split."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch


@dataclass
class Utterance:
    name: str
    codes: torch.Tensor          # int64 (T,), mu-law
    digit: int = -1              # 0..9, or -1 when the corpus has no digit label
    speaker: int = -1            # index into Corpus.speakers, or -1


@dataclass
class Corpus:
    name: str
    sample_rate: int
    speakers: list[str]
    train: list[Utterance]
    test: list[Utterance]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    root: str | None = None      # folder of the audio files (`{root}/{name}.wav` for FSDD)

    def split(self, name: str) -> list[Utterance]:
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r} (train or test)")
        return self.train if name == "train" else self.test

    def summary(self) -> dict:
        n = sum(len(u.codes) for u in self.train + self.test)
        return {
            "dataset": self.name, "files": len(self.train) + len(self.test),
            "train": len(self.train), "test": len(self.test),
            "speakers": len(self.speakers), "minutes": n / self.sample_rate / 60.0,
            "sample_rate": self.sample_rate, "skipped": len(self.skipped),
        }


def report_skipped(corpus: Corpus, file=sys.stderr) -> None:
    """Report skipped files once: a count and their names with the reason."""
    if corpus.skipped:
        print(f"skipped {len(corpus.skipped)} file(s):", file=file)
        for path, why in corpus.skipped:
            print(f"  {path}: {why}", file=file)


