"""Audio I/O and the mu-law codec."""
import numpy as np
import pytest
import soundfile as sf
import torch

from wavetyp.core.audio import (
    SILENCE_CODE,
    load_audio,
    load_codes,
    mu_law_decode,
    mu_law_encode,
    rms_dbfs,
    save_wav,
)
from wavetyp.core.errors import AudioError


def test_mu_law_round_trip_is_exact_on_codes():
    codes = torch.arange(256)
    assert torch.equal(mu_law_encode(mu_law_decode(codes)), codes)


def test_mu_law_error_is_small_relative_to_level():
    x = torch.linspace(-1, 1, 10001)
    y = mu_law_decode(mu_law_encode(x))
    # mu-law is logarithmic: error is bounded by a fraction of the level (plus a floor near 0)
    assert torch.all((y - x).abs() <= 0.04 * x.abs() + 2e-4)


def test_silence_code_is_the_code_of_zero():
    assert SILENCE_CODE == int(mu_law_encode(torch.zeros(1))[0]) == 128


def test_wav_round_trip_reencodes_to_same_codes(tmp_path):
    rng = np.random.default_rng(0)
    codes = torch.from_numpy(rng.integers(0, 256, 8000))
    save_wav(tmp_path / "x.wav", mu_law_decode(codes).numpy(), 8000)
    info = sf.info(str(tmp_path / "x.wav"))
    assert info.subtype == "PCM_16" and info.samplerate == 8000
    assert torch.equal(load_codes(tmp_path / "x.wav", 8000), codes)


def test_integer_pcm_scaled_and_stereo_downmixed(tmp_path):
    left = np.full(100, 16384, dtype=np.int16)
    right = np.zeros(100, dtype=np.int16)
    sf.write(str(tmp_path / "s.wav"), np.stack([left, right], 1), 8000, subtype="PCM_16")
    w = load_audio(tmp_path / "s.wav", 8000)
    assert w.dtype == np.float32 and w.shape == (100,)
    assert np.allclose(w, 0.25, atol=1e-4)


def test_resampling_keeps_duration_and_pitch(tmp_path):
    sr = 16000
    t = np.arange(sr) / sr
    sf.write(str(tmp_path / "t.flac"), 0.5 * np.sin(2 * np.pi * 440 * t), sr)
    w = load_audio(tmp_path / "t.flac", 8000)
    assert abs(len(w) - 8000) <= 1
    spec = np.abs(np.fft.rfft(w[1000:7000]))
    peak_hz = np.argmax(spec) * 8000 / 6000
    assert abs(peak_hz - 440) < 3


@pytest.mark.parametrize("content,why", [
    (b"", "empty"),
    (b"this is not audio at all" * 10, "not readable"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not readable"),
])
def test_bad_files_raise_audio_error(tmp_path, content, why):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError, match=why):
        load_audio(p, 8000)


def test_zero_length_and_nan_files(tmp_path):
    sf.write(str(tmp_path / "z.wav"), np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(AudioError, match="zero-length|not readable"):
        load_audio(tmp_path / "z.wav", 8000)
    x = np.zeros(100, dtype=np.float32)
    x[5] = np.nan
    sf.write(str(tmp_path / "n.wav"), x, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(tmp_path / "n.wav", 8000)
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav", 8000)


def test_rms_dbfs():
    assert rms_dbfs(np.ones(10)) == pytest.approx(0.0)
    assert rms_dbfs(np.full(10, 0.1)) == pytest.approx(-20.0)
    assert rms_dbfs(np.zeros(10)) == pytest.approx(-200.0)


def test_implausible_sample_rate_in_header_is_rejected(tmp_path):
    sf.write(str(tmp_path / "r.wav"), np.zeros(100, dtype=np.float32), 8000, subtype="PCM_16")
    data = bytearray((tmp_path / "r.wav").read_bytes())
    data[24:28] = (2**31 - 1).to_bytes(4, "little")          # the fmt chunk's sample rate
    (tmp_path / "r.wav").write_bytes(bytes(data))
    with pytest.raises(AudioError):
        load_audio(tmp_path / "r.wav", 8000)
