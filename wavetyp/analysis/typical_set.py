"""Where a render leaves the typical set, step by step: windowed gap and z, and the stretches
where they fall outside the bounds (pure numpy).

The whole-render test (core/typicality.py) asks whether mean(NLL - H) is within +-epsilon
bits/sample. Over a sliding window of W steps the same two numbers can be followed in time:

  gap_w(t) = mean over the window of (nll - H)                      bits/sample
  z_w(t)   = sum over the window of (nll - H) / sqrt(sum of varentropy)

For ancestral samples z_w is about N(0, 1) in every window. A stretch leaves the typical set
where gap_w < -epsilon (more likely than the model's own samples: greedy and low temperature
collapse) or where |z_w| > z_limit (either side, beyond chance). The window is centred on t;
near the ends it is cut short (never below half a window), so every step has a value.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

WINDOW_MS = 50.0         # the window the issue asks for
EPSILON = 0.1            # bits/sample, as the whole-render test
Z_LIMIT = 4.0


def window_steps(sample_rate: int, window_ms: float = WINDOW_MS) -> int:
    """The window in steps (at least 1)."""
    return max(1, round(window_ms * sample_rate / 1000.0))


def centred_sums(x, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of x over [t - window//2, t - window//2 + window) cut to the array, and the count of
    steps each sum covers; both (T,)."""
    x = np.asarray(x, dtype=np.float64)
    T = x.size
    cs = np.concatenate([[0.0], np.cumsum(x)])
    t = np.arange(T)
    lo = np.clip(t - window // 2, 0, T)
    hi = np.clip(t - window // 2 + window, 0, T)
    return cs[hi] - cs[lo], (hi - lo).astype(np.float64)


def windowed_gap(nll, ent, window: int) -> np.ndarray:
    """mean(nll - H) over the centred window, bits/sample, (T,)."""
    d = np.asarray(nll, dtype=np.float64) - np.asarray(ent, dtype=np.float64)
    s, n = centred_sums(d, window)
    return s / np.maximum(n, 1.0)


def windowed_z(nll, ent, var, window: int) -> np.ndarray:
    """sum(nll - H) / sqrt(sum varentropy) over the centred window, (T,); 0 where the window
    has no variance and no gap, +-inf where it has a gap but no variance (a sure code missed)."""
    d = np.asarray(nll, dtype=np.float64) - np.asarray(ent, dtype=np.float64)
    s, _ = centred_sums(d, window)
    v, _ = centred_sums(np.asarray(var, dtype=np.float64), window)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = s / np.sqrt(v)
    tiny = v <= 1e-12
    z[tiny] = np.where(np.abs(s[tiny]) <= 1e-9, 0.0, np.copysign(np.inf, s[tiny]))
    return z


@dataclass
class Stretch:
    """Steps [start, end) whose window lies outside the typical set, and why.

    why: "gap" (windowed gap below -epsilon), "z" (|windowed z| beyond the limit) or "gap+z";
    min_gap is the lowest windowed gap in the stretch, peak_z the windowed z of largest size.
    t0, t1: start and end in seconds (steps / sample rate).
    """
    start: int
    end: int
    why: str
    min_gap: float
    peak_z: float
    t0: float
    t1: float

    @property
    def steps(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.t0:7.3f}-{self.t1:7.3f} s ({1000 * (self.t1 - self.t0):5.0f} ms, "
                f"steps {self.start}-{self.end}): {self.why:<5} min gap {self.min_gap:+.2f} "
                f"bits/sample, peak z {self.peak_z:+.1f}")


def runs(mask, join: int = 0) -> list[tuple[int, int]]:
    """[start, end) of every run of True in a 1-D boolean array; runs fewer than `join` steps
    apart become one (a window hovering at the bound gives one stretch, not many)."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    out: list[tuple[int, int]] = []
    for a, b in zip(edges[::2].tolist(), edges[1::2].tolist()):
        if out and a - out[-1][1] < join:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def exits(gap_w, z_w, sample_rate: int, epsilon: float = EPSILON, z_limit: float = Z_LIMIT,
          skip: int = 0, join: int = 0, min_steps: int = 1) -> list[Stretch]:
    """The stretches where the windowed gap is below -epsilon or |windowed z| > z_limit.

    skip: leading steps to ignore (a teacher-forced prime); join: stretches fewer steps apart
    are merged; min_steps: shorter stretches (after merging) are dropped.
    """
    gap_w = np.asarray(gap_w, dtype=np.float64)
    z_w = np.asarray(z_w, dtype=np.float64)
    low, wild = gap_w < -epsilon, np.abs(z_w) > z_limit
    bad = low | wild
    bad[: max(0, skip)] = False
    out = []
    for a, b in runs(bad, join):
        if b - a < min_steps:
            continue
        why = "+".join(w for w, m in (("gap", low[a:b].any()), ("z", wild[a:b].any())) if m)
        zs = z_w[a:b]
        out.append(Stretch(a, b, why, float(gap_w[a:b].min()), float(zs[np.abs(zs).argmax()]),
                           a / sample_rate, b / sample_rate))
    return out


def find_exits(nll, ent, var, sample_rate: int, window_ms: float = WINDOW_MS,
               epsilon: float = EPSILON, z_limit: float = Z_LIMIT, skip: int = 0,
               join: int | None = None, min_steps: int = 1) -> list[Stretch]:
    """Per-step logs (T,) -> the stretches outside the typical set (see `exits`); by default
    stretches less than half a window apart are merged."""
    w = window_steps(sample_rate, window_ms)
    return exits(windowed_gap(nll, ent, w), windowed_z(nll, ent, var, w), sample_rate,
                 epsilon, z_limit, skip, w // 2 if join is None else join, min_steps)


def outside_fraction(stretches: list[Stretch], n_steps: int) -> float:
    """Share of the steps that lie in some stretch."""
    return sum(s.steps for s in stretches) / n_steps if n_steps else 0.0
