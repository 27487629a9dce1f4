"""`python -m wavetyp.toys`: the two toy examples of Dieleman's "Musings on typicality" (2020).

The maths is in `wavetyp.analysis.toys`, the figures and pages in `wavetyp.report.toys_page`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wavetyp.core.checks import HelpFormatter, run_cli
from wavetyp.report.toys_page import OUTPUTS, run_toys, toys_text


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
        formatter_class=HelpFormatter)
    p.add_argument("--out", default="samples/toys", metavar="DIR",
                   help="output folder (created if needed)")
    p.add_argument("--n-mc", type=_positive_int, default=10**6, metavar="N",
                   help="Monte Carlo samples for the Gaussian example")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of numpy's default_rng")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def main(argv=None) -> int:
    """Run everything and print the tables; bad paths give `error: ...` and exit 2."""
    def body(a):
        results = run_toys(a.out, n_mc=a.n_mc, seed=a.seed)
        print(toys_text(results))
        print("wrote " + ", ".join(str(Path(a.out) / n) for n in OUTPUTS))
        return 0

    return run_cli(build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
