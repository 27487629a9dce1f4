"""The essay's toy examples on paper: figures, text/markdown/HTML tables and findings.

The numbers come from `wavetyp.analysis.toys`; `run_toys` computes both examples and writes
toys.json, toys.md and three PNGs. Figures use matplotlib's object API (no backend needed).
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import asdict
from fractions import Fraction

import numpy as np
from matplotlib.figure import Figure

from wavetyp.analysis.toys import (
    BubbleResult,
    CoinResult,
    CoinTypicalSet,
    annulus_mass,
    bubble,
    chi_pdf,
    coin_table,
    coin_typical_sets,
)
from wavetyp.core.checks import check_output_dir

PNG_COIN, PNG_RADIUS, PNG_TYPICAL = "coin.png", "bubble_radius.png", "bubble_typical_set.png"
OUTPUTS = ["toys.md", "toys.json", PNG_COIN, PNG_RADIUS, PNG_TYPICAL]


# ---------------------------------------------------------------------- figures

def plot_coin(coin: CoinResult, sets: list[CoinTypicalSet], path) -> None:
    """p(one sequence) and p(#heads) against #heads; log scale left, linear right."""
    k = [r.heads for r in coin.rows]
    p_seq = [float(r.p_seq) for r in coin.rows]
    p_cnt = [float(r.p_count) for r in coin.rows]
    ts = next((s for s in sets if s.eps == 0.1), sets[len(sets) // 2] if sets else None)
    fig = Figure(figsize=(10, 3.8), dpi=120)
    axes = fig.subplots(1, 2)
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


def plot_bubble_radius(b: BubbleResult, path) -> None:
    """Histogram of sampled radii vs the exact chi density, with the (relative) Gaussian
    density along a ray on a second axis: the density peaks where no samples are."""
    edges = np.asarray(b.hist_edges)
    r = np.linspace(1e-3, edges[-1], 600)
    fig = Figure(figsize=(8, 4), dpi=120)
    ax = fig.subplots()
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


def plot_bubble_typical(b: BubbleResult, path) -> None:
    """Mass of the typical-set annulus against its width (left) and against eps (right)."""
    fig = Figure(figsize=(10, 3.8), dpi=120)
    axes = fig.subplots(1, 2)
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
        (f"Coin typical sets T_eps, eps per toss: |-log2 p(seq)/{c['n']} - H| <= eps, "
         f"H = {c['entropy_per_toss']:.4f} bits/toss",
         ["eps", "#H in T_eps", "P(T_eps)", "#sequences", f"fraction of 2^{c['n']}"], ts_rows),
        (f"Gaussian soap bubble: radius r = ||x|| of x ~ N(0, I_{b['K']})",
         ["interval", "exact", mc, "z"], iv_rows),
        (f"Gaussian typical set T_eps, eps in total over the K dimensions: "
         f"sqrt(K - eps ln 4) <= r <= sqrt(K + eps ln 4), "
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


def eps_note(res: dict, eps: float = 0.1) -> str:
    """Why the same eps holds so much more of the coin than of the Gaussian: the coin's eps
    bounds the surprise per toss, the Gaussian's the surprise of the whole vector."""
    c, b = res["coin"], res["bubble"]
    n, K = c["n"], b["K"]
    coin = next((s for s in c["typical_sets"] if s["eps"] == eps), None)
    coin_mass = f"{_pct(coin['mass'])} of the coin's mass" if coin else "much of the coin's mass"
    gauss, per_dim = float(annulus_mass(eps, K)), float(annulus_mass(eps * K, K))
    return (f"The two eps are not the same measure. The coin's is per toss: "
            f"|-log2 p(seq)/{n} - H| <= eps, so eps = {eps:g} allows {eps * n:g} bits of surprise "
            f"over the {n} tosses. The Gaussian's is in total, for the whole {K}-dimensional "
            f"vector: |-log2 p(x) - H| <= eps, {eps / K:g} bits per dimension. Hence eps = {eps:g} "
            f"holds {coin_mass} but {_pct(gauss)} of the Gaussian's. Taken per dimension, like "
            f"the coin's ({eps:g} bits per dimension, {eps * K:g} bits in total), it holds "
            f"{_pct(per_dim)} of the Gaussian's.")


def _pct(x: float) -> str:
    return f"{100 * x:.2g} %" if x < 0.1 else f"{100 * x:.0f} %"


def _text_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(s.rjust(n) for s, n in zip(cells, w))  # noqa: E731
    return "\n".join([title, line(header), "  ".join("-" * n for n in w)] + [line(r) for r in rows])


def toys_text(res: dict) -> str:
    """Fixed-width text of all tables and findings (what the CLI prints)."""
    t = _tables(res)
    coin, bub = _facts(res)
    parts = [_text_table(*t[0]), "\n".join(coin), _text_table(*t[1]),
             _text_table(*t[2]), _text_table(*t[3]), eps_note(res), _text_table(*t[4]),
             "\n".join(bub)]
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
    out += [f"**eps, per toss or in total.** {eps_note(res)}", "",
            f"![typical set mass]({img['typical']})", ""]
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
    parts += [f'<p class="epsnote"><strong>eps, per toss or in total.</strong> {e(eps_note(results))}</p>',
              fig(img["typical"], "typical set mass"), "</section>"]
    return "\n".join(parts) + "\n"
