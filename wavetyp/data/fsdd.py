"""Speech corpora as mu-law codes, and fixed-length training crops with a padding mask.

FSDD (the default) is read from a folder of `{digit}_{speaker}_{index}.wav` files;
other public corpora come through `torchaudio.datasets` (see `corpora.py`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from tqdm import tqdm

from wavetyp.core.audio import AUDIO_SUFFIXES, load_codes
from wavetyp.core.errors import AudioError, DataError
from wavetyp.core.runtime import env
from wavetyp.data.corpus import Corpus, Utterance

DEFAULT_SAMPLE_RATE = 8000
REPO_ROOT = Path(__file__).resolve().parents[2]
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


# ---------------------------------------------------------------- FSDD location

def fsdd_candidates(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where FSDD is looked for, first hit wins: --data-dir, $WAVETYP_DATA,
    ../shared/data/fsdd beside the repository, ~/.cache/wavetyp/fsdd."""
    out = []
    if data_dir:
        out.append(Path(data_dir))
    if env("WAVETYP_DATA"):
        out.append(Path(env("WAVETYP_DATA")))
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
    from wavetyp.data.download import download_fsdd
    return download_fsdd(cands[-1])


FSDD_PREFIX = "fsdd:"


def resolve_audio_arg(text: str, data_dir=None) -> str:
    """A path as given, or `fsdd:NAME` (e.g. fsdd:6_theo_0) resolved to that recording
    wherever FSDD was found (see fsdd_candidates), so examples work on any machine."""
    text = str(text)
    if not text.startswith(FSDD_PREFIX):
        return text
    name = text[len(FSDD_PREFIX):].removesuffix(".wav")
    if not FSDD_NAME.match(name + ".wav"):
        raise DataError(f"{text}: expected fsdd:<digit>_<speaker>_<take>, e.g. fsdd:6_theo_0")
    path = recordings_dir(resolve_fsdd(data_dir, download=False)) / f"{name}.wav"
    if not path.is_file():
        raise DataError(f"{text}: no recording {path.name} in {path.parent}")
    return str(path)


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


def load_fsdd_test(data_dir=None, sample_rate: int = DEFAULT_SAMPLE_RATE, progress: bool = False) -> Corpus:
    """Only FSDD's official test split (take index 0-4), found like `load_corpus` does.

    Reading all 3000 files costs more than the quick sweep itself; the demo needs the 300
    test takes. Speaker indices are those `scan_fsdd` gives (sorted names of all files).
    """
    rec = recordings_dir(Path(resolve_fsdd(data_dir)))
    if not rec.is_dir():
        raise DataError(f"{rec}: no such folder")
    parsed = []
    for p in sorted(rec.iterdir()):
        m = FSDD_NAME.match(p.name) if p.suffix.lower() in AUDIO_SUFFIXES else None
        if m:
            parsed.append((p, int(m.group(1)), m.group(2), int(m.group(3))))
    speakers = sorted({s for _, _, s, _ in parsed})
    test, skipped = [], []
    for p, digit, spk, idx in tqdm([x for x in parsed if x[3] < 5], desc=f"reading {rec.name} (test split)",
                                   disable=not progress, unit="file"):
        try:
            test.append(Utterance(p.stem, load_codes(p, sample_rate), digit, speakers.index(spk)))
        except AudioError as e:
            skipped.append((str(p), str(e)))
    if not test:
        raise DataError(f"{rec}: no usable test recordings (take index 0-4)")
    return Corpus("fsdd", sample_rate, speakers, [], test, skipped, root=str(rec))

