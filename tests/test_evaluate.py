"""Test-split NLL: the loudness breakdown adds up, and loudness ignores padding."""
import math

import numpy as np
import pytest
import torch
from conftest import synth_speechlike

from wavetyp.core.audio import mu_law_encode
from wavetyp.core.scoring import LOUDNESS_EDGES_DB, evaluate_nll, loudness_db
from wavetyp.data.corpus import Utterance


def codes_of(wave: np.ndarray) -> torch.Tensor:
    return mu_law_encode(torch.from_numpy(wave)).long()


def test_loudness_of_a_sine_and_of_silence():
    t = np.arange(4000) / 8000
    sine = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    codes = torch.stack([codes_of(sine), codes_of(np.zeros(4000, np.float32))])
    db = loudness_db(codes, torch.ones_like(codes, dtype=torch.bool))
    # RMS of a 0.5 sine is 0.5/sqrt(2): -9.03 dBFS (mu-law rounding moves it by < 0.1 dB)
    assert db[0, 500:3500].sub(20 * math.log10(0.5 / math.sqrt(2))).abs().max() < 0.1
    assert db[1].max() < -80


def test_padding_neither_counts_nor_dilutes():
    long = codes_of(synth_speechlike(0.5, seed=1))
    short = codes_of(synth_speechlike(0.3, seed=2))
    padded = torch.full((2, len(long)), 128, dtype=torch.long)
    padded[0], padded[1, :len(short)] = long, short
    mask = torch.zeros_like(padded, dtype=torch.bool)
    mask[0], mask[1, :len(short)] = True, True
    alone = loudness_db(short[None], torch.ones(1, len(short), dtype=torch.bool))[0]
    torch.testing.assert_close(loudness_db(padded, mask)[1, :len(short)], alone)


def test_by_loudness_adds_up_to_the_total(tiny_model):
    utts = [Utterance(f"u{i}", codes_of(synth_speechlike(0.25, seed=i)), digit=i % 10, speaker=i % 2)
            for i in range(5)]
    r = evaluate_nll(tiny_model, utts, "label", batch_size=2, by_loudness=True)
    rows = r["by_loudness"]
    assert len(rows) == len(LOUDNESS_EDGES_DB) + 1
    assert sum(row["fraction"] for row in rows) == pytest.approx(1.0)
    # synthetic speech: silence (lowest bin) and a loud vowel (highest) are both present
    assert rows[0]["fraction"] > 0.05 and rows[-1]["fraction"] > 0.05
    total = sum(row["fraction"] * row["bits_per_sample"] for row in rows if row["fraction"])
    assert total == pytest.approx(r["bits_per_sample"], rel=1e-6)   # float32 bits, summed per file
    # the breakdown changes nothing about the overall figure
    assert evaluate_nll(tiny_model, utts, "label", batch_size=2)["bits_per_sample"] == \
        pytest.approx(r["bits_per_sample"], rel=1e-12)
