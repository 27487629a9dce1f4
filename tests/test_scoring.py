"""The one parallel scoring pass (core/scoring.score_batches): batching and padding change
nothing but float32 rounding, and evaluation, rescoring and OOD scoring agree on a file."""
import numpy as np
import pytest
import torch
from conftest import synth_speechlike

from wavetyp.analysis.ood_run import score_sets
from wavetyp.analysis.ood_sets import Item
from wavetyp.core.audio import SILENCE_CODE, mu_law_encode
from wavetyp.core.conditioning import CONDITIONING_LEVELS, CondSpec
from wavetyp.core.errors import UsageError
from wavetyp.core.scoring import (
    evaluate_nll,
    length_batches,
    score_batches,
    score_codes,
    score_many,
)
from wavetyp.data.corpus import Utterance

SECONDS = (0.05, 0.13, 0.08, 0.2, 0.031)      # different lengths, one batch pads all but one


def codes_list():
    return [mu_law_encode(synth_speechlike(s, seed=i)).long() for i, s in enumerate(SECONDS)]


def per_file(model, codes, level, max_files, **kw):
    out = {}
    for b in score_batches(model, codes, level, max_files=max_files, **kw):
        assert b.codes.shape[0] == len(b.index) <= max(1, max_files)
        assert (b.codes[~b.mask] == SILENCE_CODE).all()
        for i, nll, ent, var in b.files():
            assert i not in out
            out[i] = (nll, ent, var)
    return out


@pytest.mark.parametrize("level", CONDITIONING_LEVELS)
def test_batched_equals_one_file_at_a_time(tiny_model, level):
    codes = codes_list()
    digits, speakers = [3, -1, 7, 0, 9], ["alice", "bob", "bob", "alice", "alice"]
    batched = per_file(tiny_model, codes, level, 32, digit=digits, speaker=speakers)
    alone = per_file(tiny_model, codes, level, 1, digit=digits, speaker=speakers)
    assert sorted(batched) == sorted(alone) == list(range(len(codes)))
    for i, c in enumerate(codes):
        for got, ref in zip(batched[i], alone[i]):
            assert got.shape == (len(c),) and got.dtype == np.float32
            if level in ("mel", "all"):        # own mel frames: one file per pass, no padding
                assert np.array_equal(got, ref)
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
        # the per-file numbers the three users report
        assert float(batched[i][0].astype(np.float64).mean()) == pytest.approx(
            float(alone[i][0].astype(np.float64).mean()), abs=1e-6)
        # and each file alone with its own labels, as a user states them, gives the same
        spec = CondSpec(None if digits[i] < 0 else digits[i], speakers[i])
        if level in ("label", "all"):
            ref = score_many(tiny_model, [c], spec, mel_self=level == "all")[0]
            assert np.array_equal(ref.nll_bits, alone[i][0])


def test_length_batches_bounds():
    lengths = [50, 10, 40, 20, 30, 10]
    got = length_batches(lengths, max_samples=80, max_files=3)
    assert sorted(i for b in got for i in b) == list(range(6))
    assert [lengths[b[0]] for b in got] == sorted(lengths[b[0]] for b in got)
    for b in got:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 80
    assert length_batches(lengths, None, 4) == [[1, 5, 3, 4], [2, 0]]   # evaluation's batches
    assert length_batches([5, 1, 4, 2], max_samples=8) == [[1, 3], [2], [0]]


def test_unknown_level_and_mel_without_mels(tiny_model):
    from conftest import tiny_config

    from wavetyp.core.model import WaveNet
    with pytest.raises(UsageError, match="unknown conditioning 'mel-self'"):
        list(score_batches(tiny_model, codes_list(), "mel-self"))
    no_mel = WaveNet(tiny_config(n_mels=0)).eval()
    with pytest.raises(UsageError, match="no mel conditioning"):
        list(score_batches(no_mel, codes_list(), "mel"))


@pytest.mark.parametrize("level", ["none", "mel"])
def test_evaluate_score_and_ood_agree_on_a_file(tiny_model, level):
    codes = codes_list()[3]
    ev = evaluate_nll(tiny_model, [Utterance("u", codes, digit=-1, speaker=-1)], level)
    sc = score_codes(tiny_model, codes, CondSpec(mel_codes=codes) if level == "mel" else None)
    fs = score_sets(tiny_model, {"s": [Item("u", codes.numpy())]}, level)["s"][0]
    assert ev["samples"] == len(sc.nll_bits) == fs.n == len(codes)
    summ = sc.summary()
    assert ev["bits_per_sample"] == pytest.approx(summ.mean_nll_bits, rel=1e-6)
    assert fs.mean_nll_bits == summ.mean_nll_bits          # the very same arrays, float64 mean
    assert fs.gap_bits == summ.gap_bits and fs.z == summ.z
    # evaluate_nll's arithmetic: float32 sum over the file, then float64
    assert ev["bits_per_sample"] == float(torch.from_numpy(sc.nll_bits).sum().double()) / len(codes)


def test_score_many_shared_mel_batches_like_one_at_a_time(tiny_model):
    codes = codes_list()
    spec = CondSpec(2, "bob", "x", codes[1])            # one recording's mel frames for all
    one = score_many(tiny_model, codes, spec)
    many = score_many(tiny_model, codes, spec, max_files=8)
    for a, b in zip(one, many):
        np.testing.assert_allclose(a.nll_bits, b.nll_bits, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(a.codes, b.codes)
