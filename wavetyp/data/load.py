"""Load a corpus by name: FSDD, or one of the torchaudio corpora."""
from __future__ import annotations

from wavetyp.core.errors import DataError
from wavetyp.data.corpus import Corpus
from wavetyp.data.fsdd import DEFAULT_SAMPLE_RATE, resolve_fsdd, scan_fsdd


def load_corpus(dataset: str = "fsdd", data_dir=None, sample_rate: int = DEFAULT_SAMPLE_RATE,
                progress: bool = False, download: bool = True) -> Corpus:
    """Load a corpus by name: 'fsdd' or one of the torchaudio adapters in corpora.py."""
    if dataset.lower() == "fsdd":
        return scan_fsdd(resolve_fsdd(data_dir, download=download), sample_rate, progress)
    from wavetyp.data.corpora import load_torchaudio_corpus
    if data_dir is None:
        raise DataError(f"--dataset {dataset} needs --data-dir (the torchaudio root folder)")
    return load_torchaudio_corpus(dataset, data_dir, sample_rate, progress=progress)

