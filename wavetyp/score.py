"""`python -m wavetyp.score FILE_OR_DIR...`: rescore real or generated audio with the parallel
pass (wavetyp.core.scoring.score_files) and report the same per-step arrays and typicality
summary the sampler logs."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from wavetyp.core.checks import HelpFormatter, add_common, run_cli
from wavetyp.core.conditioning import make_cond_spec
from wavetyp.core.errors import UsageError
from wavetyp.core.scoring import ScoreResult, expand_paths, score_files
from wavetyp.core.typicality import DEFAULT_EPSILON
from wavetyp.data.fsdd import resolve_audio_arg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wavetyp.score",
                                description="Rescore audio files with the parallel pass: mean NLL, "
                                            "mean entropy, typicality gap and z per file.",
                                formatter_class=HelpFormatter)
    add_common(p)
    p.add_argument("paths", nargs="+", help="audio files and/or folders; fsdd:NAME names an FSDD recording")
    p.add_argument("--digit", default=None, help="condition on a digit label (0-9 or zero..nine)")
    p.add_argument("--speaker", default=None, help="condition on a speaker name")
    p.add_argument("--mel-self", action="store_true", help="condition each file on its own mel frames")
    p.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON,
                   help="typical-set tolerance, bits/sample")
    p.add_argument("--json", default=None, help="write per-file summaries as JSON")
    p.add_argument("--npz-dir", default=None, help="write per-file arrays (<stem>.score.npz) here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    return p


def write_npz(folder, r: ScoreResult) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(Path(folder) / f"{Path(r.path).stem}.score.npz",
                        codes=r.codes.astype(np.int16), nll_bits=r.nll_bits,
                        entropy_bits=r.entropy_bits, varentropy_bits2=r.varentropy_bits2)


def main(argv=None) -> int:
    def body(a):
        from wavetyp.core.checkpoint import load_model
        from wavetyp.core.checks import check_new_file, check_output_dir, check_positive
        check_positive("--epsilon", a.epsilon)
        if a.json:
            check_new_file(a.json, a.overwrite)
        if a.npz_dir:
            check_output_dir(a.npz_dir)
        from wavetyp.core.runtime import pick_device
        paths = expand_paths([resolve_audio_arg(p) for p in a.paths])
        if not paths:
            raise UsageError("no audio files found in " + ", ".join(a.paths))
        model, _ = load_model(a.checkpoint, pick_device(a.device))
        spec = make_cond_spec(model, a.digit, a.speaker)
        results, skipped = score_files(model, paths, spec, a.mel_self, progress=True)
        for path, why in skipped:
            print(f"skipped {path}: {why}", file=sys.stderr)
        if not results:
            raise UsageError("none of the given files could be read as audio")
        print(f"{'file':<40} {'sec':>5} {'RMS dBFS':>9} {'NLL':>6} {'H':>6} {'gap':>7} {'z':>8} typical?")
        rows = []
        for r in results:
            s = r.summary(a.epsilon)
            rows.append({"path": r.path, "rms_dbfs": r.rms_dbfs, **s.to_dict()})
            print(f"{Path(r.path).name[:40]:<40} {len(r.codes) / model.cfg.sample_rate:>5.2f} "
                  f"{r.rms_dbfs:>9.1f} {s.mean_nll_bits:>6.3f} {s.mean_entropy_bits:>6.3f} "
                  f"{s.gap_bits:>+7.3f} {s.z:>+8.1f} {'yes' if s.in_typical_set else 'no'}")
            if a.npz_dir:
                write_npz(a.npz_dir, r)
        if a.json:
            Path(a.json).write_text(json.dumps({"files": rows, "skipped": skipped}, indent=2))
        return 0

    return run_cli(build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
