"""Speech corpora as mu-law codes, and fixed-length training crops with a padding mask.

FSDD (the default) is read from a folder of `{digit}_{speaker}_{index}.wav` files;
other public corpora come through `torchaudio.datasets` (see `corpora.py`).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from .audio import AUDIO_SUFFIXES, SILENCE_CODE, AudioError, load_codes

DEFAULT_SAMPLE_RATE = 8000
REPO_ROOT = Path(__file__).resolve().parent.parent
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class DataError(RuntimeError):
    """A data problem the user must fix (no usable audio, bad folder, bad download)."""


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


# ---------------------------------------------------------------- FSDD location

def fsdd_candidates(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where FSDD is looked for, first hit wins: --data-dir, $WAVETYP_DATA,
    ../shared/data/fsdd beside the repository, ~/.cache/wavetyp/fsdd."""
    out = []
    if data_dir:
        out.append(Path(data_dir))
    if os.environ.get("WAVETYP_DATA"):
        out.append(Path(os.environ["WAVETYP_DATA"]))
    out.append(REPO_ROOT.parent / "shared" / "data" / "fsdd")
    out.append(Path.home() / ".cache" / "wavetyp" / "fsdd")
    return out


def recordings_dir(root: Path) -> Path:
    """FSDD keeps its WAVs in `recordings/`; accept the folder itself too."""
    return root / "recordings" if (root / "recordings").is_dir() else root


def resolve_fsdd(data_dir=None, download: bool = True) -> Path:
    """Return the first existing FSDD folder; download the pinned release if none exists.

    An explicit --data-dir that does not exist is an error (never silently replaced).
    """
    cands = fsdd_candidates(data_dir)
    if data_dir and not Path(data_dir).is_dir():
        raise DataError(f"--data-dir {data_dir}: no such folder")
    for c in cands:
        if c.is_dir():
            return c
    if not download:
        raise DataError("FSDD not found in: " + ", ".join(map(str, cands)))
    from .download import download_fsdd
    return download_fsdd(cands[-1])


# ---------------------------------------------------------------- scanning

def scan_fsdd(root: str | os.PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE,
              progress: bool = False) -> Corpus:
    """Load every FSDD recording under `root` with the official split (index 0-4 test).

    Bad files are skipped and listed in `Corpus.skipped`; no usable file is a DataError.
    """
    rec = recordings_dir(Path(root))
    if not rec.is_dir():
        raise DataError(f"{rec}: no such folder")
    paths = sorted(p for p in rec.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    parsed, skipped = [], []
    for p in paths:
        m = FSDD_NAME.match(p.name)
        if m is None:
            skipped.append((str(p), "name is not {digit}_{speaker}_{index}.wav"))
        else:
            parsed.append((p, int(m.group(1)), m.group(2), int(m.group(3))))
    speakers = sorted({s for _, _, s, _ in parsed})
    spk_index = {s: i for i, s in enumerate(speakers)}
    train, test = [], []
    for p, digit, spk, idx in tqdm(parsed, desc=f"reading {rec.name}", disable=not progress,
                                   unit="file"):
        try:
            codes = load_codes(p, sample_rate)
        except AudioError as e:
            skipped.append((str(p), str(e)))
            continue
        utt = Utterance(p.stem, codes, digit, spk_index[spk])
        (test if idx < 5 else train).append(utt)
    if not train and not test:
        raise DataError(f"{rec}: no usable audio files ({len(skipped)} skipped)")
    return Corpus("fsdd", sample_rate, speakers, train, test, skipped, root=str(rec))


def load_corpus(dataset: str = "fsdd", data_dir=None, sample_rate: int = DEFAULT_SAMPLE_RATE,
                progress: bool = False, download: bool = True) -> Corpus:
    """Load a corpus by name: 'fsdd' or one of the torchaudio adapters in corpora.py."""
    if dataset.lower() == "fsdd":
        return scan_fsdd(resolve_fsdd(data_dir, download=download), sample_rate, progress)
    from .corpora import load_torchaudio_corpus
    if data_dir is None:
        raise DataError(f"--dataset {dataset} needs --data-dir (the torchaudio root folder)")
    return load_torchaudio_corpus(dataset, data_dir, sample_rate, progress=progress)


def report_skipped(corpus: Corpus, file=sys.stderr) -> None:
    """Report skipped files once: a count and their names with the reason."""
    if corpus.skipped:
        print(f"skipped {len(corpus.skipped)} file(s):", file=file)
        for path, why in corpus.skipped:
            print(f"  {path}: {why}", file=file)


# ---------------------------------------------------------------- batches

@dataclass
class Batch:
    codes: torch.Tensor     # (B, T) int64 mu-law codes, SILENCE_CODE where padded
    mask: torch.Tensor      # (B, T) bool, True on real audio
    digit: torch.Tensor     # (B,) int64, -1 = none
    speaker: torch.Tensor   # (B,) int64, -1 = none

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in
                       (self.codes, self.mask, self.digit, self.speaker)))


def collate(utts: list[Utterance], starts: list[int], length: int) -> Batch:
    """Crop each utterance at its start to `length`, padding with silence where it ends."""
    codes = torch.full((len(utts), length), SILENCE_CODE, dtype=torch.long)
    mask = torch.zeros((len(utts), length), dtype=torch.bool)
    for i, (u, s) in enumerate(zip(utts, starts)):
        piece = u.codes[s:s + length]
        codes[i, :len(piece)] = piece
        mask[i, :len(piece)] = True
    return Batch(codes, mask, torch.tensor([u.digit for u in utts]),
                 torch.tensor([u.speaker for u in utts]))


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


# ---------------------------------------------------------------- CLI

def main(argv=None) -> int:
    from .cli import run_cli
    p = argparse.ArgumentParser(prog="python -m wavetyp.data",
                                description="Find, load and summarize a speech corpus.")
    p.add_argument("--summary", action="store_true", help="print a summary (the default action)")
    p.add_argument("--dataset", default="fsdd",
                   help="fsdd (default) or a torchaudio corpus: yesno, cmuarctic, ljspeech, "
                        "speechcommands, librispeech, vctk_092")
    p.add_argument("--data-dir", default=None,
                   help="corpus folder (default: $WAVETYP_DATA, ../shared/data/fsdd, "
                        "~/.cache/wavetyp/fsdd, else download FSDD)")
    p.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE)
    p.add_argument("--debug", action="store_true", help="show tracebacks")

    def body(args):
        from .cli import check_count
        check_count("--sample-rate", args.sample_rate, 1000)
        c = load_corpus(args.dataset, args.data_dir, args.sample_rate, progress=True)
        s = c.summary()
        print(f"dataset      {s['dataset']}")
        print(f"files        {s['files']}")
        print(f"train/test   {s['train']} / {s['test']}")
        print(f"speakers     {s['speakers']} ({', '.join(c.speakers[:12])}"
              f"{', ...' if len(c.speakers) > 12 else ''})")
        print(f"minutes      {s['minutes']:.1f}")
        print(f"sample rate  {s['sample_rate']} Hz")
        print(f"skipped      {s['skipped']}")
        report_skipped(c, file=sys.stdout)
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    # import through the package so DataError is the class run_cli catches
    from wavetyp.data import main as _main
    sys.exit(_main())
