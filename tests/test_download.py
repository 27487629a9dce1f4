"""FSDD download (local archives only, never the network) and where FSDD is looked for."""
from __future__ import annotations

import hashlib
import http.server
import io
import os
import tarfile
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import soundfile as sf
from conftest import synth_speechlike

import wavetyp.data.download as download
import wavetyp.data.fsdd as data
from wavetyp.core.errors import DataError
from wavetyp.data.download import (
    FSDD_RECORDINGS_SHA256,
    download_fsdd,
    recordings_digest,
)
from wavetyp.data.fsdd import resolve_fsdd

TOP = "free-spoken-digit-dataset-1.0.10"
NAMES = ["0_alice_0.wav", "1_alice_5.wav", "7_bob_3.wav", "9_bob_12.wav"]


def make_release(tmp_path, kind="tar.gz"):
    """A miniature of GitHub's release archive; returns (archive, recordings digest)."""
    src = tmp_path / "src" / TOP
    (src / "recordings").mkdir(parents=True)
    for i, name in enumerate(NAMES):
        sf.write(str(src / "recordings" / name), synth_speechlike(0.1, seed=i), 8000,
                 subtype="PCM_16")
    (src / "README.md").write_text("FSDD, CC BY-SA 4.0\n")
    (src / "utils").mkdir()
    (src / "utils" / "spectogramer.py").write_text("# not copied\n")
    archive = tmp_path / f"v1.0.10.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in sorted(src.rglob("*")):
                zf.write(p, p.relative_to(src.parent).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(src, arcname=TOP)
    return archive, recordings_digest(src / "recordings")


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_file_url_download_unpacks_verifies_and_renames(tmp_path):
    archive, digest = make_release(tmp_path)
    dest = tmp_path / "cache" / "fsdd"
    got = download_fsdd(dest, url=archive.as_uri(), sha256=digest, progress=False,
                        archive_sha256=hashlib.sha256(archive.read_bytes()).hexdigest())
    assert got == dest
    assert sorted(p.name for p in (dest / "recordings").iterdir()) == sorted(NAMES)
    assert recordings_digest(dest / "recordings") == digest
    assert (dest / "README.md").read_text().startswith("FSDD")
    assert not (dest / "utils").exists()
    assert leftovers(dest.parent) == ["fsdd"]  # no temp archive, no temp folder
    with pytest.raises(DataError, match="already exists"):
        download_fsdd(dest, url=archive.as_uri(), sha256=digest, progress=False)


def test_zip_archives_are_accepted(tmp_path):
    archive, digest = make_release(tmp_path, kind="zip")
    dest = tmp_path / "out" / "fsdd"
    download_fsdd(dest, url=archive.as_uri(), sha256=digest, progress=False)
    assert sorted(p.name for p in (dest / "recordings").iterdir()) == sorted(NAMES)


def test_checksum_mismatch_leaves_nothing(tmp_path):
    archive, digest = make_release(tmp_path)
    dest = tmp_path / "out" / "fsdd"
    with pytest.raises(DataError, match="recordings checksum mismatch") as e:
        download_fsdd(dest, url=archive.as_uri(), sha256="0" * 64, progress=False)
    assert "\n" not in str(e.value)
    assert not dest.exists() and leftovers(dest.parent) == []
    with pytest.raises(DataError, match="archive checksum mismatch"):
        download_fsdd(dest, url=archive.as_uri(), sha256=digest, progress=False,
                      archive_sha256="f" * 64)
    assert leftovers(dest.parent) == []


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "no recordings", "escape"])
def test_bad_archives_leave_nothing(tmp_path, damage):
    archive, digest = make_release(tmp_path)
    blob = archive.read_bytes()
    if damage == "truncated":
        archive.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        archive.write_bytes(b"<html>rate limited</html>" * 10)
    elif damage == "empty":
        archive.write_bytes(b"")
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            info = tarfile.TarInfo(f"{TOP}/README.md" if damage == "no recordings"
                                   else f"../{TOP}/recordings/0_eve_0.wav")
            info.size = 4
            tf.addfile(info, io.BytesIO(b"data"))
        archive.write_bytes(buf.getvalue())
    dest = tmp_path / "out" / "fsdd"
    with pytest.raises(DataError) as e:
        download_fsdd(dest, url=archive.as_uri(), sha256=digest, progress=False)
    assert "\n" not in str(e.value)
    assert not dest.exists() and leftovers(dest.parent) == []
    assert not (tmp_path / TOP).exists()  # nothing escaped the temp folder


def test_missing_file_url_is_a_download_error(tmp_path):
    dest = tmp_path / "out" / "fsdd"
    with pytest.raises(DataError, match="download of .* failed"):
        download_fsdd(dest, url=(tmp_path / "nope.tar.gz").as_uri(), progress=False)
    assert leftovers(dest.parent) == []


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/cut.tar.gz":  # promises more bytes than it sends
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"\x1f\x8b" + b"\0" * 100)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@contextmanager
def local_server(folder: Path):
    """An HTTP server on 127.0.0.1 (any free port) serving `folder`, shut down on exit."""
    handler = lambda *a, **k: _Handler(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_download_and_http_failures(tmp_path):
    archive, digest = make_release(tmp_path)
    with local_server(tmp_path) as base:
        dest = tmp_path / "out" / "fsdd"
        download_fsdd(dest, url=f"{base}/{archive.name}", sha256=digest, progress=True,
                      timeout=10)
        assert recordings_digest(dest / "recordings") == digest
        for path, why in [("/missing.tar.gz", "404"), ("/cut.tar.gz", "incomplete download")]:
            other = tmp_path / "out2" / "fsdd"
            with pytest.raises(DataError, match=why):
                download_fsdd(other, url=base + path, sha256=digest, progress=False, timeout=10)
            assert leftovers(other.parent) == []


def test_pinned_digest_matches_the_real_recordings():
    rec = data.REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings"
    if not rec.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{rec} is missing in CI")
        pytest.skip(f"the FSDD v1.0.10 recordings are not at {rec}")
    assert len(list(rec.glob("*.wav"))) == 3000
    assert recordings_digest(rec) == FSDD_RECORDINGS_SHA256


# ---------------------------------------------------------------- resolve_fsdd order

def test_resolve_prefers_data_dir_then_env(tmp_path, monkeypatch):
    a, b = tmp_path / "env", tmp_path / "arg"
    a.mkdir()
    b.mkdir()
    monkeypatch.setenv("WAVETYP_DATA", str(a))
    assert resolve_fsdd(b) == b
    assert resolve_fsdd() == a
    with pytest.raises(DataError, match="no such folder"):
        resolve_fsdd(tmp_path / "missing")  # an explicit folder is never replaced


def test_resolve_downloads_into_the_cache_when_nothing_exists(tmp_path, monkeypatch):
    monkeypatch.delenv("WAVETYP_DATA", raising=False)
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match="FSDD not found in"):
        resolve_fsdd(download=False)
    calls = []
    monkeypatch.setattr(download, "download_fsdd", lambda dest: calls.append(dest) or dest)
    assert resolve_fsdd() == tmp_path / "home" / ".cache" / "wavetyp" / "fsdd"
    assert calls == [tmp_path / "home" / ".cache" / "wavetyp" / "fsdd"]
