"""Other public speech corpora, found through `torchaudio.datasets`, read with soundfile.

`load_torchaudio_corpus(name, root, sample_rate)` supports YESNO, CMUARCTIC, LJSPEECH,
SPEECHCOMMANDS, LIBRISPEECH and VCTK_092 (names are case-insensitive). Each corpus has a
small adapter that instantiates the torchaudio dataset class with `download=False`, so
torchaudio's own code decides which files belong to the corpus, and then reads only its
metadata (`get_metadata(n)` where the class has it, else its file walker) to list each
file's path, speaker and utterance id. The datasets' `__getitem__` is never called: it
decodes with `torchaudio.load`, which needs torchcodec; audio is read instead with
`wavetyp.audio.load_codes` (soundfile, mono, resampled to `sample_rate`, mu-law).

Split: SPEECHCOMMANDS uses its official `testing_list.txt` (the validation list goes to
train). The other corpora have no official utterance-level split, so an utterance is in
the test set when the first 4 bytes of SHA-1(utterance id), read as a big-endian integer,
are 0 modulo 10 (about 10%). This is stable across machines and runs and does not move
when files are added or removed.

Labels: `digit` is -1 for every utterance; speakers are the corpus' own ids, sorted
(numerically where numeric); YESNO has none (speaker -1, empty list); LJSPEECH has one.
Unreadable files are skipped and listed in `Corpus.skipped`; a root without the expected
layout, or with no usable file, is a one-line `DataError`.
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from wavetyp.core.audio import load_codes
from wavetyp.core.errors import AudioError, DataError
from wavetyp.data.corpus import Corpus, Utterance


@dataclass(frozen=True)
class Entry:
    """One file of a corpus, as its metadata describes it."""
    path: Path
    uid: str                        # utterance id, unique in the corpus (hashed for the split)
    speaker: str | None = None
    test: bool | None = None        # the official split where the corpus has one


def hash_is_test(uid: str) -> bool:
    """The fallback split: ~10% of utterance ids, chosen by SHA-1 (see the module docstring)."""
    return int.from_bytes(hashlib.sha1(uid.encode("utf-8")).digest()[:4], "big") % 10 == 0


def _require(path: Path, layout: str) -> None:
    """Check the corpus folder before torchaudio sees it (CMUARCTIC would mkdir into root)."""
    if not path.exists():
        raise DataError(f"{path}: not found; expected the layout {layout}")


# ---------------------------------------------------------------- one adapter per corpus
# Each returns (entries, skipped) and checks the layout it documents in LAYOUTS. Where a
# class has no get_metadata (YESNO, CMUARCTIC, LJSPEECH, VCTK_092) its private file list
# (_walker, _flist, _sample_ids) is read: checked against torchaudio 2.11.

def _yesno(root: Path, folder_in_archive: str = "waves_yesno"):
    from torchaudio.datasets import YESNO
    _require(root / folder_in_archive, LAYOUTS["yesno"])
    ds = YESNO(root, folder_in_archive=folder_in_archive, download=False)
    return [Entry(Path(ds._path) / f"{fid}.wav", fid) for fid in ds._walker], []


def _cmuarctic(root: Path, url: str = "aew", folder_in_archive: str = "ARCTIC"):
    from torchaudio.datasets import CMUARCTIC
    name = os.path.basename(url).split(".")[0] if "/" in url else f"cmu_us_{url}_arctic"
    _require(root / folder_in_archive / name / "etc" / "txt.done.data", LAYOUTS["cmuarctic"])
    ds = CMUARCTIC(root, url=url, folder_in_archive=folder_in_archive, download=False)
    speaker = name.removeprefix("cmu_us_").removesuffix("_arctic")
    entries, skipped = [], []
    for (line,) in ds._walker:  # '( arctic_a0001 "transcript" )'
        parts = line.strip().split(" ", 2)
        if len(parts) < 2 or not parts[1]:
            if line.strip():
                skipped.append((ds._text, f"unparseable line {line.strip()[:40]!r}"))
            continue
        uid = parts[1]
        entries.append(Entry(Path(ds._path) / "wav" / f"{uid}.wav", f"{speaker}_{uid}", speaker))
    return entries, skipped


def _ljspeech(root: Path):
    from torchaudio.datasets import LJSPEECH
    _require(root / "LJSpeech-1.1" / "metadata.csv", LAYOUTS["ljspeech"])
    ds = LJSPEECH(root, download=False)
    return [Entry(Path(ds._path) / f"{row[0]}.wav", row[0], "LJ")
            for row in ds._flist if row and row[0]], []


def _speechcommands(root: Path, url: str = "speech_commands_v0.02",
                    folder_in_archive: str = "SpeechCommands", subset: str | None = None):
    from torchaudio.datasets import SPEECHCOMMANDS
    base = root / folder_in_archive / os.path.basename(url).split(".tar")[0]
    _require(base / "testing_list.txt", LAYOUTS["speechcommands"])
    ds = SPEECHCOMMANDS(root, url=url, folder_in_archive=folder_in_archive, download=False,
                        subset=subset)
    with open(base / "testing_list.txt") as f:
        testing = {os.path.normpath(line.strip()) for line in f if line.strip()}
    entries, skipped = [], []
    for n in range(len(ds)):
        try:
            relpath, _, label, speaker, number = ds.get_metadata(n)
        except ValueError as e:  # a file name without '<speaker>_nohash_<n>'
            skipped.append((ds._walker[n], f"unexpected file name ({e})"))
            continue
        inner = os.path.normpath(os.path.relpath(os.path.join(ds._archive, relpath), ds._path))
        entries.append(Entry(Path(ds._archive) / relpath, f"{label}/{speaker}_nohash_{number}",
                             speaker, inner in testing))
    return entries, skipped


def _librispeech(root: Path, url: str = "dev-clean", folder_in_archive: str = "LibriSpeech"):
    from torchaudio.datasets import LIBRISPEECH
    _require(root / folder_in_archive / url, LAYOUTS["librispeech"])
    ds = LIBRISPEECH(root, url=url, folder_in_archive=folder_in_archive, download=False)
    entries, skipped = [], []
    for n in range(len(ds)):
        try:
            relpath, _, _, speaker, _, _ = ds.get_metadata(n)
        except (OSError, ValueError) as e:  # missing/broken <speaker>-<chapter>.trans.txt
            skipped.append((ds._walker[n], f"no transcript entry ({type(e).__name__}: {e})"))
            continue
        entries.append(Entry(Path(ds._archive) / relpath, Path(relpath).stem, str(speaker)))
    return entries, skipped


def _vctk_092(root: Path, mic_id: str = "mic2", audio_ext: str = ".flac"):
    from torchaudio.datasets import VCTK_092
    _require(root / "VCTK-Corpus-0.92" / "txt", LAYOUTS["vctk_092"])
    ds = VCTK_092(str(root), mic_id=mic_id, download=False, audio_ext=audio_ext)
    return [Entry(Path(ds._audio_dir) / spk / f"{spk}_{utt}_{mic_id}{audio_ext}", f"{spk}_{utt}",
                  spk) for spk, utt in ds._sample_ids], []


ADAPTERS: dict[str, Callable] = {
    "yesno": _yesno, "cmuarctic": _cmuarctic, "ljspeech": _ljspeech,
    "speechcommands": _speechcommands, "librispeech": _librispeech, "vctk_092": _vctk_092,
}
LAYOUTS = {
    "yesno": "ROOT/waves_yesno/<0_1_...>.wav",
    "cmuarctic": "ROOT/ARCTIC/cmu_us_<url>_arctic/{etc/txt.done.data, wav/<id>.wav}",
    "ljspeech": "ROOT/LJSpeech-1.1/{metadata.csv, wavs/<id>.wav}",
    "speechcommands": "ROOT/SpeechCommands/speech_commands_v0.02/{testing_list.txt, "
                      "<label>/<speaker>_nohash_<n>.wav}",
    "librispeech": "ROOT/LibriSpeech/<url>/<speaker>/<chapter>/{<speaker>-<chapter>.trans.txt, "
                   "<speaker>-<chapter>-<utt>.flac}",
    "vctk_092": "ROOT/VCTK-Corpus-0.92/{txt/<spk>/<spk>_<utt>.txt, "
                "wav48_silence_trimmed/<spk>/<spk>_<utt>_mic2.flac}",
}


def _speaker_key(s: str):
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def load_torchaudio_corpus(dataset: str, root, sample_rate: int, progress: bool = False,
                           **options) -> Corpus:
    """Load a torchaudio corpus from `root` as mu-law codes at `sample_rate`.

    `options` go to the corpus adapter: `url` (CMUARCTIC speaker, default "aew";
    LIBRISPEECH subset, default "dev-clean"; SPEECHCOMMANDS version), `subset`
    (SPEECHCOMMANDS, default None = all), `mic_id` (VCTK_092, default "mic2"), ...
    """
    key = dataset.lower()
    if key not in ADAPTERS:
        raise DataError(f"unknown dataset {dataset!r}; known: fsdd, {', '.join(ADAPTERS)}")
    adapter = ADAPTERS[key]
    try:
        inspect.signature(adapter).bind(root, **options)
    except TypeError as e:
        raise DataError(f"--dataset {key}: bad option ({e})") from None
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected the layout {LAYOUTS[key]}")
    try:
        entries, skipped = adapter(root, **options)
    except DataError:
        raise
    except (OSError, RuntimeError, ValueError, csv.Error) as e:  # torchaudio's own checks
        msg = " ".join(f"{type(e).__name__}: {e}".split())
        raise DataError(f"{root}: cannot read {key} ({msg}); "
                        f"expected the layout {LAYOUTS[key]}") from None
    speakers = sorted({e.speaker for e in entries if e.speaker is not None}, key=_speaker_key)
    index = {s: i for i, s in enumerate(speakers)}
    train, test = [], []
    for e in tqdm(entries, desc=f"reading {key}", unit="file", disable=not progress):
        try:
            codes = load_codes(e.path, sample_rate)
        except AudioError as err:
            skipped.append((str(e.path), str(err).removeprefix(f"{e.path}: ")))
            continue
        utt = Utterance(e.uid, codes, -1, index.get(e.speaker, -1))
        (test if (e.test if e.test is not None else hash_is_test(e.uid)) else train).append(utt)
    if not train and not test:
        raise DataError(f"{root}: no usable {key} audio files ({len(skipped)} skipped)")
    return Corpus(key, sample_rate, speakers, train, test, skipped)
