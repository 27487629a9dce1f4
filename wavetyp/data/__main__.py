"""`python -m wavetyp.data`: find, load and summarize a speech corpus."""
from __future__ import annotations

import argparse
import sys

from wavetyp.core.checks import HelpFormatter, check_count, run_cli
from wavetyp.data.corpus import report_skipped
from wavetyp.data.fsdd import DEFAULT_SAMPLE_RATE
from wavetyp.data.load import load_corpus


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wavetyp.data", formatter_class=HelpFormatter,
                                description="Find, load and summarize a speech corpus.")
    p.add_argument("--summary", action="store_true", help="print a summary (also what happens without it)")
    p.add_argument("--dataset", default="fsdd",
                   help="fsdd or a torchaudio corpus: yesno, cmuarctic, ljspeech, "
                        "speechcommands, librispeech, vctk_092")
    p.add_argument("--data-dir", default=None,
                   help="corpus folder; none given: $WAVETYP_DATA, ../shared/data/fsdd, "
                        "~/.cache/wavetyp/fsdd, else download FSDD")
    p.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE, help="resample every file to this rate (Hz)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def main(argv=None) -> int:
    p = build_parser()

    def body(args):
        check_count("--sample-rate", args.sample_rate, 1000)
        c = load_corpus(args.dataset, args.data_dir, args.sample_rate, progress=True)
        s = c.summary()
        print(f"dataset      {s['dataset']}")
        print(f"files        {s['files']}")
        print(f"train/test   {s['train']} / {s['test']}")
        print(f"speakers     {s['speakers']} ({', '.join(c.speakers[:12])}"
              f"{', ...' if len(c.speakers) > 12 else ''})")
        print(f"minutes      {s['minutes']:.1f}")
        print(f"sample rate  {s['sample_rate']} Hz")
        print(f"skipped      {s['skipped']}")
        report_skipped(c, file=sys.stdout)
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
