"""Download the pinned Free Spoken Digit Dataset (FSDD) release, all or nothing.

`download_fsdd(dest)` fetches the v1.0.10 release archive from GitHub, unpacks it beside
`dest`, keeps only its `recordings/` folder (and the upstream README, which carries the
license notice), checks a SHA-256 and only then renames the finished folder to `dest`.
On any failure every temporary file and folder is removed and a one-line `DataError` is
raised, so `dest` either holds a verified copy or does not exist.

What the checksum covers, and why: GitHub builds release tarballs on the fly and has
re-compressed them before, so the archive's bytes are not a stable thing to pin (and
they could not be observed from where this was written). The pin is therefore on the
*contents*: `FSDD_RECORDINGS_SHA256` is the SHA-256 of the text made of one line
``"{file name} {sha256 of the file's bytes}\\n"`` per `*.wav` file in `recordings/`,
sorted by name (Python string order). `recordings_digest()` computes it, both to make
the constant (from the 3,000 v1.0.10 recordings in ../shared/data/fsdd) and to verify a
download. Pass `archive_sha256=` to also check the archive bytes when you know them.

FSDD: Zohar Jackson and the FSDD contributors, CC BY-SA 4.0.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from wavetyp.core.errors import DataError

FSDD_VERSION = "v1.0.10"
FSDD_URL = ("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/"
            f"{FSDD_VERSION}.tar.gz")
# recordings_digest() of the 3,000 v1.0.10 recordings (see the module docstring).
FSDD_RECORDINGS_SHA256 = "dbd573d7cafe79c4b49f65718115e1304e24e067fa39eff18a660dc6cb9c360f"

_CHUNK = 1 << 16


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def recordings_digest(folder: str | os.PathLike) -> str:
    """SHA-256 over the sorted lines "{name} {sha256(bytes)}\\n" of the WAV files in `folder`."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir() if p.suffix == ".wav" and p.is_file())
    listing = "".join(f"{n} {_file_sha256(folder / n)}\n" for n in names)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


def _fetch(url: str, out: Path, progress: bool, timeout: float) -> str:
    """Stream `url` into `out` with a progress bar; return the SHA-256 of the bytes."""
    h, got = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(out, "wb") as f:
        size = resp.headers.get("Content-Length")
        size = int(size) if size and size.isdigit() else None
        with tqdm(total=size, unit="B", unit_scale=True, desc="downloading FSDD",
                  disable=not progress) as bar:
            for block in iter(lambda: resp.read(_CHUNK), b""):
                f.write(block)
                h.update(block)
                got += len(block)
                bar.update(len(block))
    if size is not None and got != size:  # http.client ends a cut-off body silently
        raise OSError(f"incomplete download: {got} of {size} bytes")
    return h.hexdigest()


def _unpack(archive: Path, into: Path) -> None:
    """Extract a tar (any compression, 'data' safety filter) or zip archive."""
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            tf.extractall(into, filter="data")
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:  # extractall drops absolute and '..' parts
            zf.extractall(into)
    else:
        raise DataError("the download is not a tar or zip archive")


def _find_recordings(top: Path) -> Path:
    """The archive's recordings/ folder: at the top or one folder down (GitHub's prefix)."""
    for cand in [top / "recordings", *sorted(top.glob("*/recordings"))]:
        if cand.is_dir():
            return cand
    raise DataError("the archive has no recordings/ folder (expected <name>/recordings/*.wav)")


def download_fsdd(dest: str | os.PathLike, url: str = FSDD_URL,
                  sha256: str | None = FSDD_RECORDINGS_SHA256, progress: bool = True,
                  archive_sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download and unpack FSDD so that `dest/recordings/*.wav` exists; return `dest`.

    `sha256` is the expected `recordings_digest` (None skips that check, for a custom
    archive); `archive_sha256`, when given, is checked against the downloaded bytes.
    Raises DataError (one line) on a network error, a bad archive or a checksum mismatch,
    after removing every temporary file; `dest` is created only by the final rename.
    """
    dest = Path(dest)
    if dest.exists():
        raise DataError(f"{dest} already exists; remove it or pass it as --data-dir")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {dest.parent}: {_one_line(e)}") from None
    fd, archive = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".download")
    os.close(fd)
    archive = Path(archive)
    stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial"))
    try:
        try:
            got = _fetch(url, archive, progress, timeout)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            raise DataError(f"download of {url} failed: {_one_line(e)}") from None
        if archive_sha256 and got != archive_sha256.lower():
            raise DataError(f"archive checksum mismatch for {url}: sha256 {got}, "
                            f"expected {archive_sha256}")
        unpacked, final = stage / "unpacked", stage / "fsdd"
        try:
            _unpack(archive, unpacked)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
            raise DataError(f"bad archive from {url}: {_one_line(e)}") from None
        final.mkdir()
        os.replace(_find_recordings(unpacked), final / "recordings")
        readme = unpacked / "README.md" if (unpacked / "README.md").is_file() else \
            next(iter(sorted(unpacked.glob("*/README.md"))), None)
        if readme is not None:  # keeps the license notice with the data
            os.replace(readme, final / "README.md")
        if sha256:
            digest = recordings_digest(final / "recordings")
            if digest != sha256.lower():
                raise DataError(f"recordings checksum mismatch for {url}: digest {digest}, "
                                f"expected {sha256}")
        try:
            os.rename(final, dest)  # atomic on one file system; fails if dest appeared
        except OSError as e:
            raise DataError(f"cannot move the download to {dest}: {_one_line(e)}") from None
        return dest
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(stage, ignore_errors=True)
