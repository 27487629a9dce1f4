"""The two motivating examples of Sander Dieleman's essay "Musings on typicality" (2020).

1. An unfair coin (p(heads) = 3/4) tossed 16 times: the single most likely sequence (all
   heads, ~1%) is not what you see; the most likely *count* of heads is 12 (~22.5%).
2. A standard Gaussian in K = 100 dimensions: the density peaks at the origin, yet samples
   live on a thin "soap bubble" of radius ~sqrt(K) = 10, where the density is e^50 times lower.

Everything is computed exactly (fractions for the coin, the chi distribution for the bubble)
and checked by seeded Monte Carlo.  Run:  python -m wavetyp.toys [--out DIR]
"""
from __future__ import annotations

import argparse
import html
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import brentq  # noqa: E402
from scipy.special import gammainc, gammaln  # noqa: E402

from wavetyp.core.checks import check_output_dir
from wavetyp.core.errors import UsageError

COIN_EPS = (0.05, 0.1, 0.2, 0.3)
BUBBLE_INTERVALS = ((9.0, 11.0), (8.0, 12.0), (0.0, 8.0))
BUBBLE_QUANTILES = (0.5, 0.9, 0.99)
PNG_COIN, PNG_RADIUS, PNG_TYPICAL = "coin.png", "bubble_radius.png", "bubble_typical_set.png"


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


# ---------------------------------------------------------------------- figures

def plot_coin(coin: CoinResult, sets: list[CoinTypicalSet], path) -> None:
    """p(one sequence) and p(#heads) against #heads; log scale left, linear right."""
    k = [r.heads for r in coin.rows]
    p_seq = [float(r.p_seq) for r in coin.rows]
    p_cnt = [float(r.p_count) for r in coin.rows]
    ts = next((s for s in sets if s.eps == 0.1), sets[len(sets) // 2] if sets else None)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    for ax, log in zip(axes, (True, False)):
        ax.plot(k, p_seq, "o-", color="tab:red", ms=4, label="p(one particular sequence)")
        ax.plot(k, p_cnt, "s-", color="tab:blue", ms=4, label="p(#heads)")
        if ts and ts.heads:
            ax.axvspan(min(ts.heads) - 0.4, max(ts.heads) + 0.4, color="tab:green", alpha=0.15,
                       label=f"typical set, eps = {ts.eps:g} bits/toss")
        ax.set_xlabel(f"number of heads in {coin.n} tosses")
        ax.set_xticks(range(0, coin.n + 1, 2))
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
            ax.set_title("log scale")
        else:
            ax.set_title("linear scale")
    axes[0].set_ylabel("probability")
    axes[1].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Unfair coin, p(heads) = {coin.p}, {coin.n} tosses")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_bubble_radius(b: BubbleResult, path) -> None:
    """Histogram of sampled radii vs the exact chi density, with the (relative) Gaussian
    density along a ray on a second axis: the density peaks where no samples are."""
    edges = np.asarray(b.hist_edges)
    r = np.linspace(1e-3, edges[-1], 600)
    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    ax.stairs(b.hist_density, edges, fill=True, color="tab:blue", alpha=0.35, lw=0,
              label=f"{b.n_mc:,} samples")
    ax.plot(r, chi_pdf(r, b.K), color="tab:blue", lw=1.2, label=f"chi density, K = {b.K}")
    ax.axvline(math.sqrt(b.K), color="k", ls=":", lw=1, label="sqrt(K)")
    ax.axvline(b.r_min, color="tab:purple", ls="--", lw=1,
               label=f"smallest sampled radius = {b.r_min:.2f}")
    ax.set_xlabel("radius ||x||")
    ax.set_ylabel("density of the radius")
    ax.set_xlim(0, edges[-1])
    ax2 = ax.twinx()
    ax2.plot(r, -r**2 / (2 * math.log(10)), color="tab:red", lw=1.2, ls="--",
             label="log10 p(x) / p(0) along a ray (right axis)")
    ax2.set_ylabel("log10 p(x) / p(0)", color="tab:red")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left", bbox_to_anchor=(0.01, 0.04))
    ax.set_title(f"Gaussian soap bubble: N(0, I_{b.K}) has its mode at 0 but its mass "
                 f"near radius {math.sqrt(b.K):g}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_bubble_typical(b: BubbleResult, path) -> None:
    """Mass of the typical-set annulus against its width (left) and against eps (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    for ax, x, label in ((axes[0], b.width, "annulus width r_out - r_in"),
                         (axes[1], b.eps, "eps (bits)")):
        ax.plot(x, b.mass_exact, color="tab:blue", lw=1.5, label="exact (chi distribution)")
        ax.errorbar(x, b.mass_mc, yerr=3 * np.asarray(b.mass_se), fmt="o", ms=3,
                    color="tab:orange", label=f"Monte Carlo, {b.n_mc:,} samples (±3 SE)")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("probability mass of T_eps")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Typical set of N(0, I_{b.K}): sqrt(K - eps ln 4) <= ||x|| <= "
                 "sqrt(K + eps ln 4)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -------------------------------------------------------------------- the run

def _json_coin(coin: CoinResult, sets: list[CoinTypicalSet]) -> dict:
    """The coin numbers as plain JSON types (floats, plus exact fractions as strings)."""
    rows = [dict(heads=r.heads, p_seq=float(r.p_seq), p_seq_exact=str(r.p_seq), n_seq=r.n_seq,
                 p_count=float(r.p_count), p_count_exact=str(r.p_count),
                 bits_per_toss=r.bits_per_toss) for r in coin.rows]
    return dict(
        p=float(coin.p), n=coin.n, rows=rows, entropy_bits=coin.entropy_bits,
        entropy_per_toss=coin.entropy_per_toss,
        total_probability_exact=str(sum((r.p_count for r in coin.rows), Fraction(0))),
        most_likely_sequence=dict(heads=coin.most_likely_sequence.heads,
                                  p=float(coin.most_likely_sequence.p_seq)),
        most_likely_count=dict(heads=coin.most_likely_count.heads,
                               p=float(coin.most_likely_count.p_count)),
        typical_sets=[dict(eps=s.eps, heads=s.heads, mass=float(s.mass), mass_exact=str(s.mass),
                           size=s.size, fraction=s.fraction) for s in sets])


def toys_dict(coin: CoinResult, sets: list[CoinTypicalSet], b: BubbleResult) -> dict:
    """All numbers of both examples as one JSON-able dict (what toys.json holds)."""
    bub = asdict(b)
    bub.update(ratio=b.ratio, log10_ratio=b.log_ratio_nats / math.log(10),
               log_ratio_bits=b.log_ratio_nats / math.log(2))
    return dict(coin=_json_coin(coin, sets), bubble=bub,
                images=dict(coin=PNG_COIN, radius=PNG_RADIUS, typical=PNG_TYPICAL))


def run_toys(out_dir="samples/toys", n_mc: int = 10**6, seed: int = 0) -> dict:
    """Compute both examples, write toys.json, toys.md and the PNGs; return the numbers."""
    out = check_output_dir(out_dir)  # fail fast (UsageError) before the Monte Carlo
    coin = coin_table()
    sets = coin_typical_sets(coin)
    b = bubble(K=100, n_mc=n_mc, seed=seed)
    results = toys_dict(coin, sets, b)
    plot_coin(coin, sets, out / PNG_COIN)
    plot_bubble_radius(b, out / PNG_RADIUS)
    plot_bubble_typical(b, out / PNG_TYPICAL)
    (out / "toys.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    (out / "toys.md").write_text(toys_markdown(results))
    return results


# ------------------------------------------------------------------ rendering

def _span(heads: list[int]) -> str:
    """[11, 12, 13] -> '11-13' (T_eps is always a contiguous run of head counts)."""
    if not heads:
        return "none"
    return str(heads[0]) if len(heads) == 1 else f"{heads[0]}-{heads[-1]}"


def _p(x: float) -> str:
    """A probability: 4 decimals, or 4 significant digits below 0.01."""
    return f"{x:.3e}" if x < 0.01 else f"{x:.4f}"


def _pm(mc: float, se: float) -> str:
    return f"{_p(mc)} ± {se:.1e}"


def _z(z) -> str:
    return "n/a" if z is None else f"{z:+.2f}"


def _shown_eps(bub: dict) -> list[int]:
    """Indices of the eps grid shown in tables: every 5th point (half-decades) and the last."""
    n = len(bub["eps"])
    return sorted(set(range(0, n, 5)) | {n - 1})


def _tables(res: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables as (title, header, rows) of strings, shared by every renderer."""
    c, b = res["coin"], res["bubble"]
    coin_rows = [[str(r["heads"]), f"{r['p_seq']:.2e}", str(r["n_seq"]), f"{r['p_count']:.2e}",
                  f"{r['bits_per_toss']:.3f}"] for r in c["rows"]]
    ts_rows = [[f"{s['eps']:g}", _span(s["heads"]), f"{s['mass']:.4f}", str(s["size"]),
                f"{s['fraction']:.4f}"] for s in c["typical_sets"]]
    iv_rows = [[f"{iv['lo']:g} < r < {iv['hi']:g}", _p(iv["exact"]),
                _pm(iv["mc"], iv["se"]), _z(iv["z"])] for iv in b["intervals"]]
    grid_rows = [[f"{b['eps'][i]:.3g}", f"{b['r_in'][i]:.3f}", f"{b['r_out'][i]:.3f}",
                  f"{b['width'][i]:.3f}", _p(b["mass_exact"][i]),
                  _pm(b["mass_mc"][i], b["mass_se"][i])] for i in _shown_eps(b)]
    q_rows = [[f"{q['mass']:.0%}", f"{q['eps']:.3g}", f"{q['r_in']:.3f}", f"{q['r_out']:.3f}",
               f"{q['width']:.3f}"] for q in b["quantiles"]]
    mc = f"MC ({b['n_mc']:,} samples)"
    return [
        (f"Unfair coin: p(heads) = {c['p']:g}, {c['n']} tosses",
         ["#H", "p(sequence)", "#sequences", "p(#H)", "-log2 p(seq)/n"], coin_rows),
        (f"Coin typical sets T_eps: |-log2 p(seq)/{c['n']} - H| <= eps, "
         f"H = {c['entropy_per_toss']:.4f} bits/toss",
         ["eps", "#H in T_eps", "P(T_eps)", "#sequences", f"fraction of 2^{c['n']}"], ts_rows),
        (f"Gaussian soap bubble: radius r = ||x|| of x ~ N(0, I_{b['K']})",
         ["interval", "exact", mc, "z"], iv_rows),
        (f"Gaussian typical set T_eps: sqrt(K - eps ln 4) <= r <= sqrt(K + eps ln 4), "
         f"K = {b['K']}",
         ["eps (bits)", "r_in", "r_out", "width", "P(T_eps) exact", mc], grid_rows),
        ("Gaussian typical set T_eps holding a given mass",
         ["mass", "eps (bits)", "r_in", "r_out", "width"], q_rows),
    ]


def _facts(res: dict) -> tuple[list[str], list[str]]:
    """One-line findings under each example (coin, bubble), every number from the run."""
    c, b = res["coin"], res["bubble"]
    zero = c["rows"][0]
    seq, cnt = c["most_likely_sequence"], c["most_likely_count"]
    coin = [
        f"Most likely single sequence: {seq['heads']} heads out of {c['n']}, p = {seq['p']:.2e}.",
        f"Most likely number of heads: {cnt['heads']}, p(#H = {cnt['heads']}) = {cnt['p']:.2e}.",
        f"p(one particular sequence with 0 heads) = {zero['p_seq']:.2e}.",
        f"Probabilities over #H sum to {c['total_probability_exact']} exactly; entropy of the "
        f"{c['n']} tosses = {c['entropy_bits']:.3f} bits ({c['entropy_per_toss']:.4f} bits/toss).",
    ]
    q99 = b["quantiles"][-1]
    bub = [
        f"Density at the mode vs at a typical point (||x|| = sqrt(K)): log p(0) - log p(x) = "
        f"{b['log_ratio_nats']:g} nats ({b['log_ratio_bits']:.1f} bits), a ratio of "
        f"{b['ratio']:.2e}.",
        f"Yet the smallest radius among {b['n_mc']:,} samples is {b['r_min']:.3f} (largest "
        f"{b['r_max']:.3f}); exact P(r < 1) = {b['p_ball_1']:.2e}.",
        f"Entropy of N(0, I_{b['K']}) = {b['entropy_bits']:.2f} bits; {q99['mass']:.0%} of the "
        f"mass lies in {q99['r_in']:.3f} <= r <= {q99['r_out']:.3f} (width {q99['width']:.3f}).",
    ]
    return coin, bub


def _text_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(s.rjust(n) for s, n in zip(cells, w))  # noqa: E731
    return "\n".join([title, line(header), "  ".join("-" * n for n in w)] + [line(r) for r in rows])


def toys_text(res: dict) -> str:
    """Fixed-width text of all tables and findings (what the CLI prints)."""
    t = _tables(res)
    coin, bub = _facts(res)
    parts = [_text_table(*t[0]), "\n".join(coin), _text_table(*t[1]),
             _text_table(*t[2]), _text_table(*t[3]), _text_table(*t[4]), "\n".join(bub)]
    return "\n\n".join(parts) + "\n"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def toys_markdown(res: dict) -> str:
    """toys.md: both examples with tables, findings and images (relative links)."""
    t = _tables(res)
    coin, bub = _facts(res)
    img = res["images"]
    out = ['# The toy examples of "Musings on typicality" (Dieleman, 2020)', ""]
    out += [f"## {t[0][0]}", "", _md_table(*t[0][1:]), ""] + [f"- {s}" for s in coin]
    out += ["", f"### {t[1][0]}", "", _md_table(*t[1][1:]), "",
            f"![unfair coin]({img['coin']})", ""]
    out += [f"## {t[2][0]}", "", _md_table(*t[2][1:]), "", "z = (MC - exact) / SE, "
            "SE = sqrt(p(1-p)/n).", ""] + [f"- {s}" for s in bub]
    out += ["", f"![radius distribution]({img['radius']})", ""]
    for title, header, rows in t[3:]:
        out += [f"### {title}", "", _md_table(header, rows), ""]
    out += [f"![typical set mass]({img['typical']})", ""]
    return "\n".join(out)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def toys_html(results: dict, img_prefix: str = "") -> str:
    """An HTML <section> with both examples, for embedding in the project's report page."""
    e = html.escape
    t = _tables(results)
    coin, bub = _facts(results)
    img = results["images"]

    def ul(items):
        return "<ul>" + "".join(f"<li>{e(s)}</li>" for s in items) + "</ul>"

    def fig(name, alt):
        return f'<img src="{e(img_prefix + name)}" alt="{e(alt)}" style="max-width:100%">'

    parts = ['<section class="toys">',
             "<h2>The toy examples of &ldquo;Musings on typicality&rdquo; (Dieleman, 2020)</h2>",
             f"<h3>{e(t[0][0])}</h3>", _html_table(*t[0][1:]), ul(coin),
             f"<h4>{e(t[1][0])}</h4>", _html_table(*t[1][1:]), fig(img["coin"], "unfair coin"),
             f"<h3>{e(t[2][0])}</h3>", _html_table(*t[2][1:]), ul(bub),
             fig(img["radius"], "radius distribution")]
    for title, header, rows in t[3:]:
        parts += [f"<h4>{e(title)}</h4>", _html_table(header, rows)]
    parts += [fig(img["typical"], "typical set mass"), "</section>"]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------ CLI

def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.toys",
        description="Reproduce the two toy examples of Dieleman's essay 'Musings on "
                    "typicality' (2020): an unfair coin (p(heads) = 3/4, 16 tosses; exact "
                    "table and typical sets) and the Gaussian soap bubble (K = 100; exact "
                    "chi-distribution probabilities checked by Monte Carlo). Prints the tables "
                    "and writes toys.md, toys.json, coin.png, bubble_radius.png and "
                    "bubble_typical_set.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="samples/toys", metavar="DIR",
                   help="output folder (created if needed)")
    p.add_argument("--n-mc", type=_positive_int, default=10**6, metavar="N",
                   help="Monte Carlo samples for the Gaussian example")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of numpy's default_rng")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def main(argv=None) -> int:
    """CLI entry: run everything, print the tables; bad paths give `error: ...` and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        results = run_toys(args.out, n_mc=args.n_mc, seed=args.seed)
    except (UsageError, OSError) as e:
        if args.debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    print(toys_text(results))
    out = Path(args.out)
    print("wrote " + ", ".join(str(out / n) for n in
                               ["toys.md", "toys.json", PNG_COIN, PNG_RADIUS, PNG_TYPICAL]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
