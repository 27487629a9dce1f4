"""Long renders written while they are generated (`python -m wavetyp.sample --stream`, on by
default for renders longer than STREAM_SECONDS): memory stays flat in the length, and an
interrupted render keeps what it wrote.

`StreamWriter` is `generate(..., sink=...)`'s sink: after every chunk it appends each stream's
audio to its WAV (16-bit PCM, as `save_wav` writes it) and its per-step arrays to raw files
beside it, and keeps running sums for the summary. `close` zips the raw files into
`<name>.npz` piece by piece (the keys of `samples.write_run`, so np.load and the inspector read
it as any other run) and returns the rows of summary.json. There is no traces.png.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

from wavetyp.core.audio import mu_law_decode
from wavetyp.core.typicality import DEFAULT_EPSILON, TypicalitySummary
from wavetyp.report.samples import counts_reading, row_reading

STREAM_SECONDS = 60.0      # longer renders stream to disk unless told otherwise
ARRAYS = (("codes", "<i2", None), ("nll_bits", "<f4", "nll"), ("entropy_bits", "<f4", "ent"),
          ("varentropy_bits2", "<f4", "var"), ("sampled_nll_bits", "<f4", "snll"))
PIECE = 1 << 20            # bytes copied at a time into the zip


def stream_names(settings, prefix: str = "") -> list[str]:
    """<setting>-<i> per stream, i counting within a setting (as generate.render names them)."""
    seen, out = {}, []
    for s in settings:
        seen[s.name] = seen.get(s.name, -1) + 1
        out.append(f"{prefix}{s.name}-{seen[s.name]}")
    return out


class StreamWriter:
    """Writes B streams of one generate() call into run_dir as they are generated."""

    def __init__(self, run_dir: Path, names: list[str], settings, cond, sample_rate: int,
                 n_samples: int, prime_len: int = 0, epsilon: float = DEFAULT_EPSILON):
        self.dir, self.names, self.settings, self.cond = Path(run_dir), names, settings, cond
        self.sr, self.n, self.prime_len, self.eps = sample_rate, n_samples, prime_len, epsilon
        self.done = 0
        B = len(names)
        self.wavs = [sf.SoundFile(str(self.dir / f"{n}.wav"), "w", samplerate=sample_rate,
                                  channels=1, subtype="PCM_16", format="WAV") for n in names]
        self.raw = [{key: open(self._raw(n, key), "wb")  # noqa: SIM115 - open until close()
                     for key, _, _ in ARRAYS} for n in names]
        self.sums = np.zeros((B, 5))                 # nll, ent, var, nll - ent, steps (no prime)
        self.square = np.zeros(B)                    # sum of wave^2
        self.counts = np.zeros((B, 256), dtype=np.int64)

    def _raw(self, name: str, key: str) -> Path:
        return self.dir / f".{name}.{key}.part"

    def __call__(self, t0: int, codes, logs: dict) -> None:
        c = codes.numpy()                                            # (steps, B)
        wave = np.clip(mu_law_decode(codes).numpy(), -1.0, 1.0)
        lg = {k: v.numpy() for k, v in logs.items()}
        keep = np.arange(t0, t0 + len(c)) >= self.prime_len          # typicality skips the prime
        for b, f in enumerate(self.wavs):
            f.write(wave[:, b])
            for key, dtype, log in ARRAYS:
                col = c[:, b] if log is None else lg[log][:, b]
                self.raw[b][key].write(np.ascontiguousarray(col, dtype=dtype).tobytes())
            nll, ent = lg["nll"][keep, b].astype(np.float64), lg["ent"][keep, b].astype(np.float64)
            self.sums[b] += (nll.sum(), ent.sum(), lg["var"][keep, b].astype(np.float64).sum(),
                             (nll - ent).sum(), keep.sum())
            self.square[b] += float(np.square(wave[:, b].astype(np.float64)).sum())
            self.counts[b] += np.bincount(c[:, b], minlength=256)
        self.done = t0 + len(c)

    def summary(self, b: int) -> TypicalitySummary:
        """summarize()'s numbers from the running sums."""
        s_nll, s_ent, s_var, s_d, n = self.sums[b]
        n = int(n)
        if n == 0:
            return TypicalitySummary(0, math.nan, math.nan, math.nan, math.nan, False, self.eps)
        gap = s_d / n
        z = s_d / math.sqrt(s_var) if s_var > 0 else (0.0 if s_d == 0 else math.copysign(math.inf, s_d))
        return TypicalitySummary(n, s_nll / n, s_ent / n, gap, z, bool(abs(gap) <= self.eps), self.eps)

    def _npz(self, b: int) -> None:
        name, T = self.names[b], self.done
        small = {"prime_len": min(self.prime_len, T), "sample_rate": self.sr,
                 "settings": json.dumps(self.settings[b].to_dict()),
                 "conditioning": json.dumps(self.cond.to_dict())}
        tmp = self.dir / f".{name}.npz.tmp"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as z:
            for key, dtype, _ in ARRAYS:
                with z.open(f"{key}.npy", "w", force_zip64=True) as f, open(self._raw(name, key), "rb") as src:
                    np.lib.format.write_array_header_1_0(
                        f, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (T,)})
                    left = T * np.dtype(dtype).itemsize       # exactly T steps, even when
                    while left > 0 and (piece := src.read(min(PIECE, left))):   # interrupted
                        f.write(piece)                               # inside a chunk
                        left -= len(piece)
                self._raw(name, key).unlink()
            for key, val in small.items():
                with z.open(f"{key}.npy", "w") as f:
                    np.lib.format.write_array(f, np.asanyarray(val), allow_pickle=False)
        os.replace(tmp, self.dir / f"{name}.npz")

    def close(self) -> list[dict]:
        """Finish every file with what was generated so far; the rows of summary.json."""
        rows = []
        for b, name in enumerate(self.names):
            if self.wavs[b].frames > self.done:            # interrupted inside a chunk
                self.wavs[b].truncate(self.done)
            self.wavs[b].close()
            for f in self.raw[b].values():
                f.close()
            self._npz(b)
            T = self.done
            rms = 20.0 * np.log10(max(math.sqrt(self.square[b] / T) if T else 0.0, 1e-10))
            row = {"name": name, "settings": self.settings[b].name, "conditioning": self.cond.label,
                   "seconds": T / self.sr, "rms_dbfs": rms, "summary": self.summary(b).to_dict(),
                   "streamed": True}
            row["sound"] = counts_reading(self.counts[b], rms)
            row["reading"] = row_reading(row)
            rows.append(row)
        return rows


def stream_run(model, streams, n_samples: int, spec, seed: int, prime, run_dir: Path,
               reference=None, progress: bool = True,
               weights: str = "fp32") -> tuple[list[dict], int | None]:
    """Generate `streams` (then `reference`, in a batch of its own, as the sample CLI does)
    straight into run_dir; the rows of summary.json and, when interrupted (Ctrl-C), the
    number of steps that were written, else None."""
    from wavetyp.core.generate import generate
    sr, P = model.cfg.sample_rate, 0 if prime is None else len(prime)
    batches = [(list(streams), "")] + ([([reference], "reference-")] if reference else [])
    rows = []
    for settings, prefix in batches:
        w = StreamWriter(run_dir, stream_names(settings, prefix), settings, spec, sr, n_samples, P)
        try:
            generate(model, settings, n_samples, spec.build(model, len(settings)),
                     prime=None if prime is None else prime[None], seed=seed, progress=progress,
                     weights=weights, sink=w)
        except KeyboardInterrupt:
            rows += w.close()
            return rows, w.done
        rows += w.close()
    return rows, None
