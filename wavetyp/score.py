"""`python -m wavetyp.score FILE_OR_DIR...`: rescore real or generated audio with the parallel
pass and report the same per-step arrays and typicality summary the sampler logs."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import AUDIO_SUFFIXES, AudioError, load_codes, mu_law_decode, rms_dbfs
from .cli import UsageError, add_common, run_cli
from .model import WaveNet
from .sample import CondSpec, make_cond_spec
from .typicality import DEFAULT_EPSILON, TypicalitySummary, step_stats, summarize


@dataclass
class ScoreResult:
    path: str
    codes: np.ndarray
    nll_bits: np.ndarray
    entropy_bits: np.ndarray
    varentropy_bits2: np.ndarray
    rms_dbfs: float

    def summary(self, epsilon: float = DEFAULT_EPSILON) -> TypicalitySummary:
        return summarize(self.nll_bits, self.entropy_bits, self.varentropy_bits2, epsilon)


@torch.inference_mode()
def score_codes(model: WaveNet, codes: torch.Tensor, cond: CondSpec | None = None,
                path: str = "") -> ScoreResult:
    """Per-step NLL/entropy/varentropy of a code sequence (T,) in one parallel pass."""
    dev = next(model.parameters()).device
    codes = torch.as_tensor(codes).long().to(dev)
    c = (cond or CondSpec()).build(model, 1)
    logits = model(codes[None], c)[0]
    nll, ent, var = step_stats(logits, codes)
    wave = mu_law_decode(codes.cpu()).numpy()
    return ScoreResult(path, codes.cpu().numpy(), nll.cpu().numpy(), ent.cpu().numpy(),
                       var.cpu().numpy(), rms_dbfs(wave))


def expand_paths(items) -> list[Path]:
    """Files as given, folders expanded (recursively) to their audio files, sorted."""
    out = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    return out


def score_files(model: WaveNet, paths, cond: CondSpec | None = None, mel_self: bool = False,
                progress: bool = False):
    """Score many files; unreadable ones are returned separately as (path, reason)."""
    from tqdm import tqdm
    results, skipped = [], []
    for p in tqdm(paths, desc="scoring", unit="file", disable=not progress):
        try:
            codes = load_codes(p, model.cfg.sample_rate)
        except AudioError as e:
            skipped.append((str(p), str(e)))
            continue
        spec = cond or CondSpec()
        if mel_self:
            spec = CondSpec(spec.digit, spec.speaker, str(p), codes)
        results.append(score_codes(model, codes, spec, str(p)))
    return results, skipped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m wavetyp.score",
                                description="Rescore audio files with the parallel pass: mean NLL, "
                                            "mean entropy, typicality gap and z per file.")
    add_common(p)
    p.add_argument("paths", nargs="+", help="audio files and/or folders")
    p.add_argument("--digit", default=None, help="condition on a digit label")
    p.add_argument("--speaker", default=None, help="condition on a speaker name")
    p.add_argument("--mel-self", action="store_true", help="condition each file on its own mel frames")
    p.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, help="typical-set tolerance, bits/sample")
    p.add_argument("--json", default=None, help="write per-file summaries as JSON")
    p.add_argument("--npz-dir", default=None, help="write per-file arrays (<stem>.score.npz) here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")

    def body(a):
        from .checkpoint import load_model
        from .cli import check_new_file, check_output_dir, check_positive
        check_positive("--epsilon", a.epsilon)
        if a.json:
            check_new_file(a.json, a.overwrite)
        if a.npz_dir:
            check_output_dir(a.npz_dir)
        from .train import pick_device
        paths = expand_paths(a.paths)
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
                Path(a.npz_dir).mkdir(parents=True, exist_ok=True)
                np.savez_compressed(Path(a.npz_dir) / f"{Path(r.path).stem}.score.npz",
                                    codes=r.codes.astype(np.int16), nll_bits=r.nll_bits,
                                    entropy_bits=r.entropy_bits, varentropy_bits2=r.varentropy_bits2)
        if a.json:
            Path(a.json).write_text(json.dumps({"files": rows, "skipped": skipped}, indent=2))
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
