"""One OOD-detection run: read or synthesise the sets, score every file in the one parallel
pass (wavetyp.core.scoring.score_batches), and evaluate the detectors (ood_stats)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from wavetyp.analysis.ood_sets import InputSets, Item, input_sets
from wavetyp.analysis.ood_stats import (
    DEFAULT_ALPHA,
    DEFAULT_BATCH_SIZES,
    FileScore,
    evaluate,
    reading,
)
from wavetyp.core.audio import mu_law_decode, rms_dbfs
from wavetyp.core.errors import UsageError
from wavetyp.core.scoring import score_batches
from wavetyp.core.typicality import summarize

OOD_LEVELS = ("none", "mel")   # of CONDITIONING_LEVELS: OOD files have no labels
MAX_SAMPLES = 32768            # files x longest length per batch of the pass


@dataclass
class OodConfig:
    """What a run reads and computes (see `python -m wavetyp.ood --help`)."""
    in_paths: list | None = None
    ood_paths: list | None = None
    ref_paths: list | None = None
    train_files: int = 300
    in_files: int | None = None
    per_set: int = 30
    sets: list | None = None
    builtin: bool = True
    conditioning: str = "none"
    alpha: float = DEFAULT_ALPHA
    batch_sizes: list = field(default_factory=lambda: list(DEFAULT_BATCH_SIZES))
    bootstrap: int = 10000
    eval_batches: int = 1000
    data_dir: str | None = None
    seed: int = 0


def score_sets(model, sets: dict[str, list[Item]], conditioning: str = "none",
               max_samples: int = MAX_SAMPLES, progress: bool = False) -> dict[str, list[FileScore]]:
    """FileScores of several named sets, all files in one pass (files of every set batched
    together by length; see score_batches). conditioning: one of OOD_LEVELS, 'mel' being
    each file's own mel frames."""
    if conditioning not in OOD_LEVELS:
        raise UsageError(f"unknown conditioning {conditioning!r} ({' or '.join(OOD_LEVELS)})")
    flat = [(name, it) for name, items in sets.items() for it in items]
    out = {name: [] for name in sets}
    scores: list[FileScore | None] = [None] * len(flat)
    for b in score_batches(model, [it.codes for _, it in flat], conditioning,
                           max_samples=max_samples, progress=progress):
        for i, nll, ent, var in b.files():
            name, it = flat[i]
            s = summarize(nll, ent, var)
            wave = mu_law_decode(it.codes).numpy()
            scores[i] = FileScore(name, it.name, len(nll), s.mean_nll_bits, s.mean_entropy_bits,
                                  s.gap_bits, s.z, rms_dbfs(wave))
    for (name, _), sc in zip(flat, scores):
        out[name].append(sc)
    return out


@dataclass
class OodRun:
    """Everything a run found: the sets, their scores, the evaluation and its reading."""
    sets: InputSets
    in_scores: list[FileScore]
    h_scores: list[FileScore]
    pool_scores: list[FileScore]
    ood_scores: dict[str, list[FileScore]]
    results: dict
    reading: list[str]
    timing: dict

    @property
    def every(self) -> list[FileScore]:
        """All scores: in-distribution, H_hat half, pool, then each OOD set."""
        return (self.in_scores + self.h_scores + self.pool_scores
                + [s for v in self.ood_scores.values() for s in v])


def run_ood(model, cfg: OodConfig, progress: bool = False, on_skip=None) -> OodRun:
    """Read the sets, score them, evaluate; on_skip(path, reason) hears of unreadable files."""
    if cfg.conditioning == "mel" and not model.cfg.n_mels:
        raise UsageError("this checkpoint has no mel conditioning (use --conditioning none)")
    sr = model.cfg.sample_rate
    sets = input_sets(sr, cfg.in_paths, cfg.ref_paths, cfg.ood_paths, cfg.in_files,
                      cfg.train_files, cfg.per_set, cfg.sets, cfg.builtin, cfg.data_dir,
                      cfg.seed, progress, on_skip)
    t0 = time.perf_counter()
    roles = {"in": sets.in_items, "train (H_hat)": sets.ref_h, "train (pool)": sets.ref_pool}
    scored = score_sets(model, {**roles, **sets.ood}, cfg.conditioning, progress=progress)
    in_scores, h_scores, pool_scores = (scored.pop(k) for k in roles)
    run = OodRun(sets, in_scores, h_scores, pool_scores, scored, {}, [], {})
    every = run.every
    run.timing = {"files": len(every), "audio_seconds": sum(s.n for s in every) / sr,
                  "scoring_seconds": time.perf_counter() - t0}
    run.results = evaluate(in_scores, scored, h_scores, pool_scores, cfg.alpha, cfg.batch_sizes,
                           cfg.bootstrap, cfg.eval_batches, cfg.seed)
    run.reading = reading(run.results, sets.in_label)
    return run
