"""FSDD scanning, the official split, crops with padding masks."""
import pytest
import soundfile as sf
import torch
from conftest import synth_speechlike

from wavetyp.core.audio import SILENCE_CODE, mu_law_encode
from wavetyp.core.errors import DataError
from wavetyp.data.batches import collate, full_batches, random_batch
from wavetyp.data.corpus import Utterance
from wavetyp.data.fsdd import scan_fsdd
from wavetyp.data.load import load_corpus


def make_fsdd(folder, n_per=6, bad=()):
    rec = folder / "recordings"
    rec.mkdir(parents=True)
    for d in range(2):
        for spk in ("alice", "bob"):
            for i in range(n_per):
                sf.write(str(rec / f"{d}_{spk}_{i}.wav"), synth_speechlike(0.2, seed=i), 8000,
                         subtype="PCM_16")
    for name, content in bad:
        (rec / name).write_bytes(content)
    return folder


def test_real_fsdd_split_counts(fsdd_dir):
    c = load_corpus("fsdd", fsdd_dir)
    s = c.summary()
    assert (s["files"], s["train"], s["test"], s["speakers"], s["skipped"]) == (3000, 2700, 300, 6, 0)
    assert abs(s["minutes"] - 21.9) < 0.05 and s["sample_rate"] == 8000
    assert {u.digit for u in c.test} == set(range(10))
    assert all(int(u.name.split("_")[2]) < 5 for u in c.test)


def test_synthetic_fsdd_split_and_bad_files(tmp_path):
    make_fsdd(tmp_path, bad=[("1_bob_99.wav", b"garbage" * 20), ("3_alice_7.wav", b""),
                             ("notes.wav", b"x")])
    c = scan_fsdd(tmp_path)
    assert c.speakers == ["alice", "bob"]
    assert len(c.test) == 2 * 2 * 5 and len(c.train) == 2 * 2 * 1
    skipped = {p.split("/")[-1] for p, _ in c.skipped}
    assert skipped == {"1_bob_99.wav", "3_alice_7.wav", "notes.wav"}


def test_folder_without_audio_is_a_clear_error(tmp_path):
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "0_a_0.wav").write_bytes(b"nope")
    with pytest.raises(DataError, match="no usable audio"):
        scan_fsdd(tmp_path)


def test_crops_pad_with_silence_and_mask():
    short = Utterance("s", mu_law_encode(torch.full((10,), 0.5)), 3, 1)
    long = Utterance("l", torch.arange(100) % 256, 4, 0)
    b = collate([short, long], [0, 20], 30)
    assert b.codes.shape == (2, 30) and b.mask[0].sum() == 10 and b.mask[1].all()
    assert (b.codes[0, 10:] == SILENCE_CODE).all()
    assert torch.equal(b.codes[1], torch.arange(20, 50))
    assert b.digit.tolist() == [3, 4] and b.speaker.tolist() == [1, 0]
    assert b.start.tolist() == [0, 20] and b.start.dtype == torch.long


def test_random_batch_carries_each_crop_start():
    """A crop of a long file starts where its codes come from; a short file's is 0."""
    utts = [Utterance(str(i), torch.randint(0, 256, (40 + 300 * i,)), i, 0) for i in range(4)]
    b = random_batch(utts, 12, 64, torch.Generator().manual_seed(1))
    assert b.start.shape == (12,) and (b.start > 0).any()
    for i in range(12):
        u = utts[int(b.digit[i])]
        s = int(b.start[i])
        if len(u.codes) <= 64:
            assert s == 0
        n = int(b.mask[i].sum())
        assert torch.equal(b.codes[i, :n], u.codes[s:s + n]) and s + n <= len(u.codes)
    on = b.to("cpu")
    assert torch.equal(on.start, b.start)


def test_random_batch_is_deterministic_and_in_range():
    utts = [Utterance(str(i), torch.randint(0, 256, (50 + 37 * i,)), i % 10, 0) for i in range(8)]
    a = random_batch(utts, 4, 64, torch.Generator().manual_seed(3))
    b = random_batch(utts, 4, 64, torch.Generator().manual_seed(3))
    assert torch.equal(a.codes, b.codes) and torch.equal(a.mask, b.mask)
    # every unmasked position holds real audio from some file
    assert a.mask.any(1).all()


def test_full_batches_cover_every_file_once():
    utts = [Utterance(str(i), torch.zeros(10 + i, dtype=torch.long)) for i in range(7)]
    seen = []
    for chunk, b in full_batches(utts, 3):
        seen += [u.name for u in chunk]
        assert b.mask.sum().item() == sum(len(u.codes) for u in chunk)
        assert b.start.tolist() == [0] * len(chunk)           # whole files start at 0
    assert sorted(seen) == sorted(u.name for u in utts)
