"""What a render needs in memory and on disk, and what the machine has: the sample CLI
estimates before it starts and refuses with one line (exit 2) when the render cannot fit,
instead of failing minutes later with a raw "can't allocate memory" traceback (or, streamed,
hours later with a full disk).

The estimate counts what grows with the render (per sample and stream) plus the sampler's
cache, which grows with the streams only. Measured with `python -m wavetyp.sample --num 1`
on the shipped model (peak RSS at 5 s and 40 s of audio): 30 bytes per sample without the
plot, 440 with traces.png; the figures below round those up. On a CUDA device the codes,
the cache and one chunk's buffers are on the device, the rest on the host.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from wavetyp.core.errors import UsageError

DEVICE_STEP_BYTES = 8    # per sample and stream on the sampling device: the codes (int64)
HOST_STEP_BYTES = 40     # per sample and stream on the host: the codes' copy, the four float32
                         # logs, the float32 wave, the files' int16 copies
BEAM_BYTES = 32          # per sample and beam, device and host each: parents, tokens, stats
PLOT_BYTES = 480         # per sample and stream on the host: traces.png (smoothed float64
                         # traces, the spectrogram, matplotlib's paths)
FILE_BYTES = 20          # per sample and stream on disk: 16-bit WAV + the NPZ's arrays (int16
                         # codes, four float32 logs; deflate rarely saves much on the logs)
STREAM_FILE_BYTES = 38   # streamed: the raw arrays beside the WAV, then zipped into the NPZ
CHUNK = 256              # generate.CHUNK: logits and noise are held for one chunk
HEADROOM = 0.9           # refuse above this share of the available memory


@dataclass
class Estimate:
    host: int            # bytes in host memory
    device: int          # bytes on the sampling device (the host too on a CPU)
    per_sample: int      # bytes per sample and stream (what grows with the length)

    def total(self, same_memory: bool = True) -> int:
        return self.host + self.device if same_memory else self.host


def human(n: float) -> str:
    """Bytes for people: 1.2 GB, 340 MB, 5.1 TB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def render_bytes(cfg, n_streams: int, n_samples: int, beam: int | None = None,
                 plot: bool = True, mel_samples: int = 0, stream: bool = False) -> Estimate:
    """Memory that `generate.render` and the run's files need for n_streams x n_samples
    (or one beam search of width `beam`), beyond the process and the model. A streamed render
    (written to disk chunk by chunk, no plot) needs nothing that grows with its length."""
    B = beam or n_streams
    host_per = HOST_STEP_BYTES + (PLOT_BYTES if plot else 0)
    P = 1 << max(1, math.ceil(math.log2((cfg.kernel_size - 1) * max(cfg.dilations) + 1)))
    L = cfg.n_layers
    fixed = 4 * L * B * (P * cfg.residual_channels + 4 * cfg.gate_channels)   # the cache
    fixed += 4 * CHUNK * B * 256 * 3                 # one chunk's logits, noise, a temporary
    n_frames = mel_samples // max(cfg.hop_length, 1) + 1 if mel_samples and cfg.n_mels else 0
    n_frames = max(n_frames, cfg.position_frames)    # a position table: at least its rows
    if n_frames:                                     # per-frame gate bias of every layer
        fixed += 4 * n_frames * L * B * 2 * cfg.gate_channels
    if stream:
        return Estimate(0, fixed, 0)
    if beam:
        return Estimate(n_samples * (BEAM_BYTES * B + host_per),
                        n_samples * BEAM_BYTES * B + fixed, host_per + DEVICE_STEP_BYTES)
    return Estimate(n_samples * host_per * n_streams,
                    n_samples * DEVICE_STEP_BYTES * n_streams + fixed,
                    host_per + DEVICE_STEP_BYTES)


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory a new allocation can get: free memory on a CUDA device, MemAvailable of the
    host otherwise (Linux), or None when it cannot be told (then nothing is refused)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(est: Estimate, device, what: str, hint: str, available=available_bytes) -> None:
    """Refuse (UsageError, one line) when the estimate exceeds HEADROOM of the memory that is
    available: the host's for everything on a CPU; on a CUDA device its own part there too."""
    device = torch.device(device)
    checks = [(est.total(device.type != "cuda"), available("cpu"), "")]
    if device.type == "cuda":
        checks.append((est.device, available(device), f" on {device}"))
    why = (f"{est.per_sample} bytes per sample and stream" if est.per_sample else
           "the sampler's cache and buffers for every stream; streamed, nothing grows with the length")
    for need, have, where in checks:
        if have is not None and need > HEADROOM * have:
            raise UsageError(f"{what} needs about {human(need)} of memory{where} ({why}), "
                             f"{human(have)} is available: {hint}")


def file_bytes(n_streams: int, n_samples: int, stream: bool = False) -> int:
    """Disk space a run's WAV and NPZ files take (streamed: at their peak, while zipping)."""
    return n_streams * n_samples * (STREAM_FILE_BYTES if stream else FILE_BYTES)


def check_disk(need: int, folder, what: str, hint: str) -> None:
    """Refuse (UsageError, one line) when the files would not fit in HEADROOM of the free space."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if need > HEADROOM * free:
        raise UsageError(f"{what} needs about {human(need)} of disk space for its files, "
                         f"{human(free)} is free in {folder}: {hint}")
