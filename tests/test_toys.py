"""The essay's toy examples: exact numbers to the printed precision, MC agreement, the CLI."""
from __future__ import annotations

import html
import json
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from wavetyp import toys as cli
from wavetyp.analysis import toys
from wavetyp.analysis.toys import annulus_mass
from wavetyp.report.toys_page import eps_note, toys_html

# ------------------------------------------------------------------ unfair coin

@pytest.fixture(scope="module")
def coin():
    return toys.coin_table()


def test_coin_numbers_match_the_essay_to_printed_precision(coin):
    seq, cnt = coin.most_likely_sequence, coin.most_likely_count
    assert seq.heads == 16 and f"{float(seq.p_seq):.2e}" == "1.00e-02"
    assert cnt.heads == 12 and f"{float(cnt.p_count):.2e}" == "2.25e-01"
    assert f"{float(coin.rows[0].p_seq):.2e}" == "2.33e-10"
    assert coin.rows[16].p_seq == Fraction(3, 4) ** 16
    assert coin.rows[12].p_count == 1820 * Fraction(3, 4) ** 12 * Fraction(1, 4) ** 4


def test_coin_probabilities_sum_to_one_exactly(coin):
    assert sum(r.p_count for r in coin.rows) == 1
    assert all(isinstance(r.p_count, Fraction) for r in coin.rows)
    assert sum(r.n_seq for r in coin.rows) == 2**16
    assert [r.n_seq for r in coin.rows] == [math.comb(16, k) for k in range(17)]


def test_coin_entropy_is_16_times_binary_entropy(coin):
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert coin.entropy_bits == pytest.approx(16 * h, rel=1e-12)
    # ... and equals the expected surprisal read off the table
    expected = sum(float(r.p_count) * r.bits_per_toss * 16 for r in coin.rows)
    assert coin.entropy_bits == pytest.approx(expected, rel=1e-12)


def test_coin_typical_sets(coin):
    sets = toys.coin_typical_sets(coin, (0.05, 0.1, 0.2, 0.3))
    assert [s.heads for s in sets] == [[12], [11, 12, 13], list(range(10, 15)), list(range(9, 16))]
    assert sets[0].mass == coin.rows[12].p_count
    masses = [s.mass for s in sets]
    assert all(a < b for a, b in zip(masses, masses[1:]))
    for s in sets:
        assert s.size == sum(math.comb(16, k) for k in s.heads)
        assert s.fraction == s.size / 2**16
        # definition check, straight from p(seq)
        for r in coin.rows:
            inside = abs(-math.log2(float(r.p_seq)) / 16 - coin.entropy_per_toss) <= s.eps
            assert inside == (r.heads in s.heads)


# ------------------------------------------------------------- Gaussian bubble

def test_chi_probabilities_match_the_essay():
    p = lambda lo, hi: float(toys.chi_cdf(hi, 100) - toys.chi_cdf(lo, 100))  # noqa: E731
    assert round(p(9, 11), 2) == 0.84
    assert p(8, 12) > 0.99
    assert round(p(0, 8), 3) == 0.002
    # gammainc route agrees with scipy's chi distribution, and the pdf integrates to 1
    r = np.linspace(5, 15, 11)
    np.testing.assert_allclose(toys.chi_cdf(r, 100), stats.chi.cdf(r, 100), rtol=1e-10)
    np.testing.assert_allclose(toys.chi_pdf(r, 100), stats.chi.pdf(r, 100), rtol=1e-10)


def test_annulus_is_the_essay_typical_set():
    """At the annulus radii, -log2 p(x) is exactly H -/+ eps bits (whole-vector definition)."""
    K = 100
    H = K / 2 * math.log2(2 * math.pi * math.e)
    neg_log2_p = lambda r: K / 2 * math.log2(2 * math.pi) + r**2 / (2 * math.log(2))  # noqa: E731
    for eps in (0.01, 1.0, 30.0):
        r_in, r_out = (float(v) for v in toys.annulus(eps, K))
        assert neg_log2_p(r_in) - H == pytest.approx(-eps, abs=1e-9)
        assert neg_log2_p(r_out) - H == pytest.approx(eps, abs=1e-9)
    r_in, r_out = toys.annulus(100.0, K)  # eps ln 4 > K: inner radius clipped at 0
    assert r_in == 0 and r_out == pytest.approx(math.sqrt(K + 100 * math.log(4)))


@pytest.fixture(scope="module")
def small_bubble():
    return toys.bubble(K=100, n_mc=100_000, seed=0)


def test_typical_set_mass_grows_with_eps(small_bubble):
    b = small_bubble
    assert np.all(np.diff(b.eps) > 0) and np.all(np.diff(b.width) > 0)
    assert np.all(np.diff(b.mass_exact) > 0)
    assert np.all(np.diff(b.mass_mc) >= 0)
    assert b.mass_exact[0] < 0.01 and b.mass_exact[-1] > 0.999999
    for q in b.quantiles:
        assert float(toys.annulus_mass(q["eps"], 100)) == pytest.approx(q["mass"], abs=1e-9)


def test_small_mc_agrees_with_exact(small_bubble):
    b = small_bubble
    for iv in b.intervals:
        assert abs(iv["mc"] - iv["exact"]) <= 3 * iv["se"]
        assert iv["se"] == pytest.approx(math.sqrt(iv["mc"] * (1 - iv["mc"]) / b.n_mc))
    # on the grid, the SE from the exact p (the reported one, from the MC p, is 0 where every
    # sample falls inside the annulus)
    mc, ex = np.asarray(b.mass_mc), np.asarray(b.mass_exact)
    se = np.sqrt(ex * (1 - ex) / b.n_mc)
    assert np.all(np.abs(mc - ex) <= 3 * se + 1e-12)


def test_full_mc_soap_bubble():
    """The one test with the full 10^6 samples."""
    b = toys.bubble(K=100, n_mc=10**6, seed=0)
    assert b.n_mc == 10**6
    for iv in b.intervals:
        assert abs(iv["mc"] - iv["exact"]) <= 3 * iv["se"], iv
    assert round(b.intervals[0]["mc"], 2) == 0.84
    assert b.intervals[1]["mc"] > 0.99
    assert round(b.intervals[2]["mc"], 3) == 0.002
    # the mode is e^50 times denser than a typical point, yet nothing is sampled near it
    assert b.log_ratio_nats == 50
    assert f"{b.ratio:.1e}" == "5.2e+21"
    assert 6.0 < b.r_min < 8.0
    assert b.p_ball_1 < 1e-70


def test_mc_is_seeded():
    a, b = toys.bubble(n_mc=2000, seed=3), toys.bubble(n_mc=2000, seed=3)
    assert a.r_min == b.r_min and a.mass_mc == b.mass_mc


# ------------------------------------------------------------------------- CLI

def test_cli_writes_report(tmp_path, capsys):
    out = tmp_path / "toys"
    assert cli.main(["--out", str(out), "--n-mc", "20000"]) == 0
    names = ["toys.md", "toys.json", "coin.png", "bubble_radius.png", "bubble_typical_set.png"]
    for name in names:
        assert (out / name).stat().st_size > 0, name
    for png in names[2:]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    res = json.loads((out / "toys.json").read_text())
    assert res["coin"]["total_probability_exact"] == "1"
    assert res["coin"]["most_likely_count"]["heads"] == 12
    assert res["bubble"]["n_mc"] == 20000

    printed = capsys.readouterr().out
    md = (out / "toys.md").read_text()
    for text in (printed, md):
        assert "1.00e-02" in text and "2.25e-01" in text and "2.33e-10" in text
        assert f"{res['bubble']['intervals'][0]['exact']:.4f}" in text
        assert f"{res['bubble']['r_min']:.3f}" in text
    for png in names[2:]:
        assert f"]({png})" in md

    frag = toys_html(res, "img/toys/")
    # the same eps = 0.1 is per toss for the coin and in total for the Gaussian: said everywhere
    note = eps_note(res)
    coin01 = next(s["mass"] for s in res["coin"]["typical_sets"] if s["eps"] == 0.1)
    assert f"holds {100 * coin01:.0f} % of the coin's mass" in note
    assert f"but {100 * annulus_mass(0.1, 100):.2g} % of the Gaussian's" in note
    assert "per toss" in note and "1.6 bits of surprise over the 16 tosses" in note
    assert f"10 bits in total), it holds {100 * annulus_mass(10.0, 100):.0f} %" in note
    assert note in printed and note in md and html.escape(note) in frag
    assert "eps per toss" in md and "eps in total over the K dimensions" in md
    assert frag.startswith('<section class="toys">') and frag.rstrip().endswith("</section>")
    assert frag.count("<table>") == 5
    for png in names[2:]:
        assert f'src="img/toys/{png}"' in frag
    assert "2.25e-01" in frag and f"{res['bubble']['ratio']:.2e}" in frag


def test_cli_bad_out_is_one_line_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "wavetyp.toys", "--out", str(blocker / "sub")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(blocker) in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_debug_shows_the_exception(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(Exception, match="cannot create output folder"):
        cli.main(["--out", str(blocker / "sub"), "--debug"])


def test_cli_rejects_bad_n_mc(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--n-mc", "0"])
    assert e.value.code == 2
    assert "--n-mc" in capsys.readouterr().err
