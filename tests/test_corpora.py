"""torchaudio corpora: tiny folders laid out the way torchaudio.datasets expects them."""
from __future__ import annotations

import math

import pytest
import soundfile as sf
import torch
from conftest import synth_speechlike

from wavetyp.core.errors import DataError
from wavetyp.data.corpora import LAYOUTS, hash_is_test, load_torchaudio_corpus
from wavetyp.data.load import load_corpus

GARBAGE = b"RIFF\x10\x00\x00\x00not really audio" * 8


class Builder:
    """Writes synthetic speech files and remembers their expected length at 8 kHz."""

    def __init__(self, root, sr):
        self.root, self.sr = root, sr
        self.lengths: dict[str, int] = {}   # utterance id -> samples after resampling
        self.corrupt: list[str] = []        # file names that must be reported as skipped

    def audio(self, rel, uid, seed):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        wave = synth_speechlike(0.12 + 0.02 * seed, sr=self.sr, seed=seed)
        sf.write(str(path), wave, self.sr, subtype="PCM_16")
        self.lengths[uid] = math.ceil(len(wave) * 8000 / self.sr)

    def bad(self, rel):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(GARBAGE)
        self.corrupt.append(path.name)

    def text(self, rel, content):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def yesno(root):
    b = Builder(root, 8000)  # YESNO's native rate is 8 kHz
    for i, fid in enumerate(["0_0_0_0_1_1_1_1", "0_0_1_0_0_0_1_0", "1_0_1_0_1_0_1_1",
                             "1_1_1_0_0_1_0_1"]):
        b.audio(f"waves_yesno/{fid}.wav", fid, i)
    b.bad("waves_yesno/1_1_1_1_1_1_1_1.wav")
    return b, []


def cmuarctic(root):
    b = Builder(root, 16000)
    base = "ARCTIC/cmu_us_aew_arctic"
    ids = [f"arctic_a000{i}" for i in range(1, 6)]
    b.text(f"{base}/etc/txt.done.data",
           "".join(f'( {u} "Sentence number {i}." )\n' for i, u in enumerate(ids)))
    for i, u in enumerate(ids[:4]):
        b.audio(f"{base}/wav/{u}.wav", f"aew_{u}", i)
    b.bad(f"{base}/wav/{ids[4]}.wav")
    return b, ["aew"]


def ljspeech(root):
    b = Builder(root, 22050)
    ids = [f"LJ001-000{i}" for i in range(1, 6)]
    b.text("LJSpeech-1.1/metadata.csv", "".join(f"{u}|Text {u}.|Text {u}.\n" for u in ids))
    for i, u in enumerate(ids[:4]):
        b.audio(f"LJSpeech-1.1/wavs/{u}.wav", u, i)
    b.bad(f"LJSpeech-1.1/wavs/{ids[4]}.wav")
    return b, ["LJ"]


SC = "SpeechCommands/speech_commands_v0.02"
SC_TEST = ["yes/1b4c9b89_nohash_0.wav", "no/0a7c2a8d_nohash_1.wav"]


def speechcommands(root):
    b = Builder(root, 16000)
    files = ["yes/0a7c2a8d_nohash_0.wav", "yes/1b4c9b89_nohash_0.wav", "no/0a7c2a8d_nohash_1.wav",
             "no/c50f55b8_nohash_0.wav", "seven/c50f55b8_nohash_2.wav"]
    for i, rel in enumerate(files):
        b.audio(f"{SC}/{rel}", rel.removesuffix(".wav"), i)
    b.bad(f"{SC}/seven/0a7c2a8d_nohash_3.wav")
    b.audio(f"{SC}/_background_noise_/white_noise.wav", "noise", 9)  # excluded by torchaudio
    del b.lengths["noise"]
    b.text(f"{SC}/testing_list.txt", "\n".join(SC_TEST) + "\n")
    b.text(f"{SC}/validation_list.txt", "no/c50f55b8_nohash_0.wav\n")
    return b, ["0a7c2a8d", "1b4c9b89", "c50f55b8"]


def librispeech(root):
    b = Builder(root, 16000)
    seed = 0
    for spk, chap, n in [(1272, 128104, 2), (84, 121123, 2), (174, 50561, 1)]:
        d = f"LibriSpeech/dev-clean/{spk}/{chap}"
        uids = [f"{spk}-{chap}-{k:04d}" for k in range(n)]
        b.text(f"{d}/{spk}-{chap}.trans.txt", "".join(f"{u} SOME WORDS\n" for u in uids))
        for u in uids:
            b.audio(f"{d}/{u}.flac", u, seed)
            seed += 1
    b.bad("LibriSpeech/dev-clean/84/121123/84-121123-0002.flac")
    with open(root / "LibriSpeech/dev-clean/84/121123/84-121123.trans.txt", "a") as f:
        f.write("84-121123-0002 A CORRUPT FILE\n")
    return b, ["84", "174", "1272"]  # numeric order


def vctk_092(root):
    b = Builder(root, 48000)
    seed = 0
    for spk, utts in [("p226", ["001", "002"]), ("p225", ["001", "002", "003"])]:
        for u in utts:
            b.text(f"VCTK-Corpus-0.92/txt/{spk}/{spk}_{u}.txt", "Please call Stella.\n")
            if (spk, u) == ("p225", "003"):
                b.bad(f"VCTK-Corpus-0.92/wav48_silence_trimmed/{spk}/{spk}_{u}_mic2.flac")
            else:
                b.audio(f"VCTK-Corpus-0.92/wav48_silence_trimmed/{spk}/{spk}_{u}_mic2.flac",
                        f"{spk}_{u}", seed)
            seed += 1
    return b, ["p225", "p226"]


BUILDERS = [yesno, cmuarctic, ljspeech, speechcommands, librispeech, vctk_092]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda f: f.__name__)
def test_corpus_loads_resampled_with_speakers_split_and_skips(tmp_path, build):
    b, speakers = build(tmp_path)
    name = build.__name__
    c = load_corpus(name.upper(), data_dir=tmp_path, sample_rate=8000)
    assert c.name == name and c.sample_rate == 8000 and c.speakers == speakers
    utts = c.train + c.test
    assert sorted(u.name for u in utts) == sorted(b.lengths)
    for u in utts:
        assert u.codes.dtype == torch.int64 and u.codes.ndim == 1
        assert 0 <= int(u.codes.min()) and int(u.codes.max()) <= 255
        assert len(u.codes) == b.lengths[u.name], u.name
        assert u.digit == -1
        assert u.speaker == -1 if not speakers else 0 <= u.speaker < len(speakers)
    # the corrupt file is skipped and reported, nothing else is
    assert sorted(p.split("/")[-1] for p, _ in c.skipped) == sorted(b.corrupt)
    # the split is the official list (SPEECHCOMMANDS) or the SHA-1 rule, and repeatable
    test_names = {u.name for u in c.test}
    if name == "speechcommands":
        assert test_names == {t.removesuffix(".wav") for t in SC_TEST}
    else:
        assert test_names == {u.name for u in utts if hash_is_test(u.name)}
    again = load_torchaudio_corpus(name, tmp_path, 8000)
    assert [u.name for u in again.test] == [u.name for u in c.test]
    assert [u.name for u in again.train] == [u.name for u in c.train]


def test_speaker_indices_follow_the_sorted_list(tmp_path):
    librispeech(tmp_path)
    c = load_corpus("librispeech", data_dir=tmp_path, sample_rate=8000)
    for u in c.train + c.test:
        assert c.speakers[u.speaker] == u.name.split("-")[0]


def test_hash_split_is_about_ten_percent_and_stable():
    ids = [f"utt{i:05d}" for i in range(5000)]
    share = sum(map(hash_is_test, ids)) / len(ids)
    assert 0.08 < share < 0.12
    assert [hash_is_test(i) for i in ids[:50]] == [hash_is_test(i) for i in ids[:50]]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_root_without_the_layout_is_a_one_line_error(tmp_path, name):
    (tmp_path / "unrelated").mkdir()
    with pytest.raises(DataError, match="expected the layout") as e:
        load_corpus(name, data_dir=tmp_path, sample_rate=8000)
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unrelated"]  # nothing created
    with pytest.raises(DataError, match="no such folder"):
        load_corpus(name, data_dir=tmp_path / "missing", sample_rate=8000)


def test_no_usable_file_names_the_folder(tmp_path):
    (tmp_path / "waves_yesno").mkdir()
    (tmp_path / "waves_yesno" / "0_0_0_0_0_0_0_0.wav").write_bytes(GARBAGE)
    with pytest.raises(DataError, match="no usable yesno audio") as e:
        load_corpus("yesno", data_dir=tmp_path)
    assert str(tmp_path) in str(e.value)


def test_options_unknown_names_and_missing_data_dir(tmp_path):
    librispeech(tmp_path)
    with pytest.raises(DataError, match="expected the layout"):  # no test-clean folder here
        load_torchaudio_corpus("librispeech", tmp_path, 8000, url="test-clean")
    with pytest.raises(DataError, match="bad option"):
        load_torchaudio_corpus("librispeech", tmp_path, 8000, mic_id="mic1")
    with pytest.raises(DataError, match="unknown dataset"):
        load_torchaudio_corpus("timit", tmp_path, 8000)
    with pytest.raises(DataError, match="needs --data-dir"):
        load_corpus("librispeech", data_dir=None)
