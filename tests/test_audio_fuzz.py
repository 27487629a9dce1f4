"""The audio loader under a fuzzer: random bytes and truncated/corrupted real WAVs either load
or raise the project's AudioError; never another exception, a crash or a hang."""
import io

import numpy as np
import soundfile as sf
from conftest import real_fsdd, synth_speechlike
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavetyp.core.audio import load_audio, resample
from wavetyp.core.errors import AudioError


def reference_wav_bytes() -> bytes:
    """A real FSDD recording when present, else a synthetic one (same format: 8 kHz PCM_16)."""
    d = real_fsdd()
    if d is not None:
        path = next(iter(sorted((d / "recordings").glob("*.wav"))), None)
        if path is not None:
            return path.read_bytes()
    buf = io.BytesIO()
    sf.write(buf, synth_speechlike(0.3), 8000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


REAL = reference_wav_bytes()
resample(np.zeros(100, dtype=np.float32), 7937, 8000)   # warm up (imports librosa) before timing
FUZZ = settings(max_examples=150, deadline=5000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def load_or_audio_error(tmp_path, data: bytes, suffix=".wav"):
    p = tmp_path / f"fuzz{suffix}"
    p.write_bytes(data)
    try:
        w = load_audio(p, 8000)
    except AudioError:
        return None
    assert w.dtype == np.float32 and w.ndim == 1 and w.size > 0
    assert np.isfinite(w).all() and np.abs(w).max() <= 1.0
    return w


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".wav", ".flac", ".ogg"]))
def test_random_bytes(tmp_path, data, suffix):
    load_or_audio_error(tmp_path, data, suffix)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(REAL)))
def test_truncated_real_wav(tmp_path, cut):
    load_or_audio_error(tmp_path, REAL[:cut])


@FUZZ
@given(pos=st.integers(min_value=0, max_value=43), value=st.integers(0, 255),
       cut=st.integers(min_value=44, max_value=len(REAL)))
def test_corrupted_header(tmp_path, pos, value, cut):
    data = bytearray(REAL[:cut])
    data[pos] = value
    load_or_audio_error(tmp_path, bytes(data))
