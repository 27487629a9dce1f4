"""`python -m wavetyp.inspect`: an interactive page per sample run (or the demo) that plays each
render with a cursor across its waveform, spectrogram, NLL / entropy and windowed-gap tracks
and shows the predictive distribution under the cursor; prints where each render leaves the
typical set."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from wavetyp.analysis.typical_set import EPSILON, WINDOW_MS, Z_LIMIT
from wavetyp.core.checks import (
    HelpFormatter,
    add_common,
    check_count,
    check_new_file,
    check_output_dir,
    check_positive,
    check_probability,
    run_cli,
)
from wavetyp.core.errors import UsageError

MAX_LISTED = 12          # stretches printed per render (the page lists them all)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.inspect",
        description="Write one self-contained HTML page (no network) to inspect renders: audio "
                    "with a cursor across waveform, spectrogram, NLL / entropy (varentropy band) "
                    "and windowed-gap tracks, and the model's 256-way distribution under the "
                    "cursor (from rescoring the codes in one parallel pass per render). Also "
                    "prints where each render leaves the typical set.",
        formatter_class=HelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="sample run folder(s) from `python -m wavetyp.sample`, .npz files, or the "
                        "demo folder samples/demo")
    add_common(p)
    p.add_argument("--out", default=None,
                   help="output folder; none given: a folder beside the first input, named "
                        "<input>-inspect (so the committed demo folder stays as it is)")
    p.add_argument("--name", default="index.html", help="file name of the page in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing page")
    p.add_argument("--settings", nargs="+", default=None,
                   help="only renders with these setting names (e.g. greedy tau0.7 tau1; 'all': "
                        "every one); none given: all of a run, greedy tau0.7 tau1 of the demo")
    p.add_argument("--condition", nargs="+", default=None,
                   help="demo only: these condition ids (e.g. label-six vocoder-6_nicolas_4); "
                        "none given: every condition")
    p.add_argument("--top-k", type=int, default=32,
                   help="most codes of each step's distribution kept on the page")
    p.add_argument("--mass", type=float, default=0.99,
                   help="keep fewer codes once they cover this much probability")
    p.add_argument("--window-ms", type=float, default=WINDOW_MS,
                   help="window of the windowed gap and z, in ms")
    p.add_argument("--epsilon", type=float, default=EPSILON,
                   help="typical-set bound: a window leaves it when its gap < -epsilon bits/sample")
    p.add_argument("--z-limit", type=float, default=Z_LIMIT,
                   help="a window also leaves it when |z| over the window exceeds this")
    return p


def print_exits(result, limit: int = MAX_LISTED) -> None:
    """Per render: its whole-render reading and the stretches outside the typical set."""
    for m in result.tracks:
        s, ex = m["summary"], result.exits[m["id"]]
        gap, z = s["gap_bits"], s["z"]
        head = (f"{m['name']} [{m['group']}]: gap {gap:+.3f} bits/sample, z {z:+.1f}, "
                f"{'typical' if s['in_typical_set'] else 'not typical'}; "
                if gap is not None else f"{m['name']} [{m['group']}]: ")
        if not ex:
            print(f"{head}no stretch leaves the typical set")
            continue
        print(f"{head}{len(ex)} stretch(es) outside the typical set, "
              f"{100 * m['outside']:.0f} % of the steps:")
        for e in ex[:limit]:
            print(f"    {e.describe()}")
        if len(ex) > limit:
            print(f"    ... {len(ex) - limit} more (all of them are listed in the page)")


def main(argv=None) -> int:
    p = build_parser()

    def body(a):
        t0 = time.time()
        check_count("--top-k", a.top_k)
        if a.top_k > 256:
            raise UsageError(f"--top-k must be <= 256, got {a.top_k}")
        check_probability("--mass", a.mass)
        check_positive("--window-ms", a.window_ms)
        check_positive("--epsilon", a.epsilon)
        check_positive("--z-limit", a.z_limit)
        if "/" in a.name or not a.name.endswith(".html"):
            raise UsageError(f"--name must be a file name ending in .html, got {a.name!r}")
        from wavetyp.core.checkpoint import load_model
        from wavetyp.core.runtime import pick_device
        from wavetyp.report.inspector import build_page
        from wavetyp.report.inspector_inputs import kind_of, load_inputs
        for path in a.paths:                 # a bad path fails before the model loads
            kind_of(Path(path))
        model, _ = load_model(a.checkpoint, pick_device(a.device))
        inputs = load_inputs(a.paths, model.cfg.sample_rate, a.settings, a.condition)
        out_dir = check_output_dir(a.out or inputs.default_out)
        page = check_new_file(out_dir / a.name, a.overwrite)
        info = {"checkpoint": str(a.checkpoint or "shipped"), "inputs": [str(x) for x in a.paths],
                "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

        def progress(i, t):
            print(f"rescoring {i + 1}/{len(inputs.tracks)}: {t.group} {t.name} "
                  f"({len(t.codes)} steps)", file=sys.stderr)

        result = build_page(model, inputs.tracks, page, inputs.title, inputs.group_titles, info,
                            a.top_k, a.mass, a.window_ms, a.epsilon, a.z_limit, progress)
        print(f"where each render leaves the typical set (windows of {a.window_ms:g} ms: gap < "
              f"-{a.epsilon:g} bits/sample or |z| > {a.z_limit:g}):")
        print_exits(result)
        print(f"\nwrote {result.path} ({result.bytes / 1e6:.2f} MB, {len(result.tracks)} tracks) "
              f"in {time.time() - t0:.1f} s")
        print(f"open {result.path.resolve().as_uri()}")
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
