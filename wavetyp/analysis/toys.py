"""The two motivating examples of Sander Dieleman's essay "Musings on typicality" (2020), as maths.

1. An unfair coin (p(heads) = 3/4) tossed 16 times: the single most likely sequence (all
   heads, ~1%) is not what you see; the most likely *count* of heads is 12 (~22.5%).
2. A standard Gaussian in K = 100 dimensions: the density peaks at the origin, yet samples
   live on a thin "soap bubble" of radius ~sqrt(K) = 10, where the density is e^50 times lower.

Everything is computed exactly (fractions for the coin, the chi distribution for the bubble)
and checked by seeded Monte Carlo. Figures, tables and pages: `wavetyp.report.toys_page`;
the CLI: `python -m wavetyp.toys`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammainc, gammaln

from wavetyp.core.errors import UsageError

COIN_EPS = (0.05, 0.1, 0.2, 0.3)
BUBBLE_INTERVALS = ((9.0, 11.0), (8.0, 12.0), (0.0, 8.0))
BUBBLE_QUANTILES = (0.5, 0.9, 0.99)


# ------------------------------------------------------------------ unfair coin

@dataclass
class CoinRow:
    """One row of the essay's table: sequences with `heads` heads."""
    heads: int
    p_seq: Fraction        # probability of one particular such sequence
    n_seq: int             # how many such sequences exist: binomial(n, heads)
    p_count: Fraction      # probability of seeing `heads` heads at all = n_seq * p_seq
    bits_per_toss: float   # -log2(p_seq) / n, the quantity the typical set constrains


@dataclass
class CoinResult:
    p: Fraction
    n: int
    rows: list[CoinRow]
    entropy_bits: float    # entropy of the whole n-toss distribution = n * H(p)

    @property
    def entropy_per_toss(self) -> float:
        return self.entropy_bits / self.n

    @property
    def most_likely_sequence(self) -> CoinRow:
        return max(self.rows, key=lambda r: r.p_seq)

    @property
    def most_likely_count(self) -> CoinRow:
        return max(self.rows, key=lambda r: r.p_count)


@dataclass
class CoinTypicalSet:
    """T_eps: sequences with |-log2 p(seq)/n - H(p)| <= eps (per-toss definition)."""
    eps: float
    heads: list[int]       # the head counts whose sequences are in T_eps
    mass: Fraction         # total probability of T_eps
    size: int              # number of sequences in T_eps
    fraction: float        # size / 2^n


def _fraction(p) -> Fraction:
    """Exact probability from a float/str/Fraction (0.75 -> 3/4, '0.1' -> 1/10)."""
    f = Fraction(str(p)) if isinstance(p, float) else Fraction(p)
    if not 0 < f < 1:
        raise UsageError(f"p must be in (0, 1), got {p}")
    return f


def binary_entropy(p: float) -> float:
    """H(p) in bits for one toss of a coin with p(heads) = p."""
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def coin_table(p=Fraction(3, 4), n: int = 16) -> CoinResult:
    """Exact p(sequence), #sequences and p(#heads) for every head count 0..n."""
    p = _fraction(p)
    rows = []
    for k in range(n + 1):
        p_seq = p**k * (1 - p) ** (n - k)
        n_seq = math.comb(n, k)
        bits = -(k * math.log2(p) + (n - k) * math.log2(1 - p)) / n
        rows.append(CoinRow(k, p_seq, n_seq, n_seq * p_seq, bits))
    return CoinResult(p, n, rows, n * binary_entropy(float(p)))


def coin_typical_sets(coin: CoinResult, eps_list=COIN_EPS) -> list[CoinTypicalSet]:
    """T_eps for each eps: which head counts are in it, its mass and its size.

    All sequences with the same head count share p(seq), so T_eps is a union of whole rows.
    A 1e-12 slack absorbs float rounding (the 12-heads row sits exactly on H).
    """
    H, out = coin.entropy_per_toss, []
    for eps in eps_list:
        rows = [r for r in coin.rows if abs(r.bits_per_toss - H) <= eps + 1e-12]
        size = sum(r.n_seq for r in rows)
        out.append(CoinTypicalSet(eps, [r.heads for r in rows], sum((r.p_count for r in rows),
                                  Fraction(0)), size, size / 2**coin.n))
    return out


# ------------------------------------------------------------- Gaussian bubble

@dataclass
class BubbleResult:
    """Radius statistics of x ~ N(0, I_K): exact (chi distribution) and Monte Carlo."""
    K: int
    n_mc: int
    seed: int
    entropy_bits: float                  # (K/2) log2(2 pi e)
    intervals: list[dict]                # P(lo < r < hi): exact, mc, se, z
    eps: list[float]                     # typical-set grid
    r_in: list[float]
    r_out: list[float]
    width: list[float]
    mass_exact: list[float]
    mass_mc: list[float]
    mass_se: list[float]
    quantiles: list[dict]                # the T_eps holding exactly 50/90/99% of the mass
    log_ratio_nats: float                # log p(0) - log p(x) at ||x|| = sqrt(K): K/2
    r_min: float                         # smallest radius among the samples
    r_max: float
    p_ball_1: float                      # exact P(r < 1): the mode's neighbourhood
    hist_edges: list[float] = field(repr=False)
    hist_density: list[float] = field(repr=False)

    @property
    def ratio(self) -> float:
        """p(0) / p(x) at ||x|| = sqrt(K)."""
        return math.exp(self.log_ratio_nats)


def chi_cdf(R, K: int):
    """P(||x|| < R) for x ~ N(0, I_K): ||x||^2 is chi-squared(K), so gammainc(K/2, R^2/2)."""
    R = np.asarray(R, dtype=np.float64)
    return gammainc(K / 2, R**2 / 2)


def chi_pdf(r, K: int):
    """Density of the radius ||x||: r^(K-1) e^(-r^2/2) / (2^(K/2-1) Gamma(K/2))."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_pdf = (K - 1) * np.log(r) - r**2 / 2 - (K / 2 - 1) * math.log(2) - gammaln(K / 2)
    return np.exp(log_pdf)


def annulus(eps, K: int):
    """The essay's typical set T_eps for N(0, I_K), as radii (r_in, r_out).

    -log2 p(x) = (K/2) log2(2 pi) + ||x||^2 / (2 ln 2) and its mean is the entropy
    H = (K/2) log2(2 pi e), so |-log2 p(x) - H| <= eps (eps in bits, for the whole vector)
    <=> | ||x||^2 - K | <= 2 eps ln 2 = eps ln 4
    <=> sqrt(K - eps ln 4) <= ||x|| <= sqrt(K + eps ln 4).
    The inner radius is clipped at 0 once eps ln 4 > K.
    """
    eps = np.asarray(eps, dtype=np.float64)
    d = eps * math.log(4)
    return np.sqrt(np.maximum(K - d, 0.0)), np.sqrt(K + d)


def annulus_mass(eps, K: int):
    """Exact probability of T_eps."""
    r_in, r_out = annulus(eps, K)
    return chi_cdf(r_out, K) - chi_cdf(r_in, K)


def sample_sq_radii(K: int, n: int, seed: int, chunk: int = 50_000) -> np.ndarray:
    """||x||^2 for n seeded samples of N(0, I_K), drawn in chunks (memory ~ chunk*K*8 bytes)."""
    rng = np.random.default_rng(seed)
    out = np.empty(n)
    for i in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - i), K))
        out[i:i + len(x)] = np.einsum("ij,ij->i", x, x)
    return out


def _mc(hits: np.ndarray, n: int, exact):
    """MC estimate, its standard error sqrt(p(1-p)/n), and z = (mc - exact) / se."""
    p = hits / n
    se = np.sqrt(p * (1 - p) / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (p - exact) / np.where(se > 0, se, 1), np.nan)
    return p, se, z


def bubble(K: int = 100, n_mc: int = 10**6, seed: int = 0,
           eps_grid=None) -> BubbleResult:
    """Where the mass of N(0, I_K) lies (exact vs Monte Carlo), and how unlikely the mode is."""
    if n_mc < 1:
        raise UsageError(f"n_mc must be >= 1, got {n_mc}")
    eps = np.logspace(-2, 2, 41) if eps_grid is None else np.asarray(eps_grid, dtype=np.float64)
    r2 = np.sort(sample_sq_radii(K, n_mc, seed))

    def count(lo2, hi2):  # samples with lo2 <= r^2 <= hi2 (r2 is sorted)
        return np.searchsorted(r2, hi2, side="right") - np.searchsorted(r2, lo2, side="left")

    intervals = []
    for lo, hi in BUBBLE_INTERVALS:
        exact = float(chi_cdf(hi, K) - chi_cdf(lo, K))
        mc, se, z = _mc(count(lo**2, hi**2), n_mc, exact)
        intervals.append(dict(lo=lo, hi=hi, exact=exact, mc=float(mc), se=float(se),
                              z=None if np.isnan(z) else float(z)))

    r_in, r_out = annulus(eps, K)
    mass = annulus_mass(eps, K)
    mass_mc, mass_se, _ = _mc(count(r_in**2, r_out**2), n_mc, mass)

    quantiles = []
    for q in BUBBLE_QUANTILES:
        e = brentq(lambda e: float(annulus_mass(e, K)) - q, 1e-9, 1e6, xtol=1e-12)
        a, b = (float(v) for v in annulus(e, K))
        quantiles.append(dict(mass=q, eps=e, r_in=a, r_out=b, width=b - a))

    r = np.sqrt(r2)
    density, edges = np.histogram(r, bins=np.linspace(0, 1.5 * math.sqrt(K), 151), density=True)
    return BubbleResult(
        K=K, n_mc=n_mc, seed=seed, entropy_bits=K / 2 * math.log2(2 * math.pi * math.e),
        intervals=intervals, eps=eps.tolist(), r_in=r_in.tolist(), r_out=r_out.tolist(),
        width=(r_out - r_in).tolist(), mass_exact=mass.tolist(), mass_mc=mass_mc.tolist(),
        mass_se=mass_se.tolist(), quantiles=quantiles, log_ratio_nats=K / 2,
        r_min=float(r[0]), r_max=float(r[-1]), p_ball_1=float(chi_cdf(1.0, K)),
        hist_edges=edges.tolist(), hist_density=density.tolist())
