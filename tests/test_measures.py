"""The demo's measurement rules (analysis.measures): fricative frames, aligned band levels,
silence."""
from __future__ import annotations

import numpy as np
import pytest

from wavetyp.analysis import measures

SR = 8000


def test_fricative_rule_finds_noise_not_vowels_or_silence():
    rng = np.random.default_rng(0)
    n = SR // 4
    t = np.arange(n) / SR
    vowel = 0.3 * np.sin(2 * np.pi * 150 * t) + 0.1 * np.sin(2 * np.pi * 450 * t)
    hiss = 0.1 * np.diff(rng.standard_normal(n + 1))           # energy rises towards 4 kHz
    wave = np.concatenate([np.zeros(n), vowel, hiss, np.zeros(n)]).astype(np.float32)
    f = measures.frame_features(wave, SR)
    centre = np.arange(f.n) * measures.HOP / SR                     # frame centres (s)
    fric = f.fricative
    inside = lambda a, b: (centre > a + 0.03) & (centre < b - 0.03)  # noqa: E731
    assert fric[inside(0.5, 0.75)].all()                        # the hiss
    assert not fric[inside(0.25, 0.5)].any()                    # the vowel
    assert not fric[inside(0.0, 0.25)].any() and not fric[inside(0.75, 1.0)].any()
    assert np.nanmean(f.flatness[inside(0.5, 0.75)]) > 0.5
    # aligned comparison with itself: 0 dB; with the hiss 10 dB quieter: about -10 dB
    from wavetyp.core.audio import mu_law_encode
    from wavetyp.data.corpus import Utterance
    utt = Utterance("6_x_0", mu_law_encode(wave), 6, 0)
    ref = measures.make_reference([utt], SR, aligned=True)
    same = measures.fricative_measures(measures.decode_utt(utt), SR, ref)
    assert same["fric_frames_compared"] > 0 and abs(same["fric_band_db"]) < 1e-9
    quiet = measures.decode_utt(utt).copy()
    quiet[2 * n:3 * n] *= 10 ** (-10 / 20)
    assert measures.fricative_measures(quiet, SR, ref)["fric_band_db"] == pytest.approx(-10, abs=1.5)


def test_silence_fraction_ignores_a_constant_offset():
    assert measures.silence_fraction(np.full(SR, 0.3, np.float32), SR) == 1.0
    assert measures.silence_fraction(0.1 * np.sin(np.arange(SR) * 0.3), SR) == 0.0
