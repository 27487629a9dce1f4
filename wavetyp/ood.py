"""`python -m wavetyp.ood`: can the model tell speech from things that are not speech?

Dieleman's second lesson ("Musings on typicality", 2020): thresholding likelihood does
not find out-of-distribution (OOD) inputs, because the mode region (silence, very quiet or
very predictable audio) is *more* likely than any typical input. Testing typicality works.

Every file (in-distribution and each OOD set) is scored in one parallel pass and reduced
to its mean NLL, mean entropy, gap = mean(NLL - entropy) and z (see `typicality.py`).
Detectors, each a score where higher = more anomalous:

  nll          likelihood threshold: mean NLL (low likelihood = anomalous)
  abs_gap      per-file typicality against the model's own predictive entropy: |gap|
  abs_z        the same, standardised by the summed varentropy: |z|
  abs_nll_hhat per-file version (M = 1) of the batch test below: |mean NLL - H_hat|

AUROC = P(score_ood > score_in) with ties counted half (Mann-Whitney U / (n_in n_ood)).

Batch typicality test (Nalisnick et al. 2019, "Detecting out-of-distribution inputs to deep
generative models using typicality"): for a batch of M files the statistic is
|mean over the batch of the per-file mean NLL - H_hat|, so every file weighs the same
whatever its length (per-file weighting). H_hat is the mean per-file NLL on one half of a
seeded subset of the training split; the other, held-out half is the bootstrap pool: M-file
batches are resampled from it and the (1 - alpha) quantile of their statistic is the
threshold (alpha = 0.05 by default). A batch is flagged when its statistic exceeds it.
Reported: the detection rate (fraction of M-file OOD batches flagged) at M = 1, 5, 10 and
the false-positive rate on M-file batches of in-distribution test files.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from wavetyp.core.audio import (
    SILENCE_CODE,
    load_codes,
    mu_law_decode,
    mu_law_encode,
    resample,
    rms_dbfs,
)
from wavetyp.core.checks import add_common, check_output_dir, run_cli
from wavetyp.core.errors import AudioError, UsageError
from wavetyp.core.typicality import summarize

DEFAULT_OUT = "samples/ood"
DEFAULT_ALPHA = 0.05
DEFAULT_BATCH_SIZES = (1, 5, 10)
NOISE_LOW_DBFS = -60.0
NOISE_HIGH_DBFS = -10.0
TONE_RMS_DBFS = -25.0          # about the median file level of FSDD
CLICK_AMPLITUDE = 0.3
CLICK_RATE_HZ = (20.0, 100.0)
SPEEDUP = 1.5
MIN_SECONDS, MAX_SECONDS = 0.25, 1.0

# built-in OOD sets, synthesised at the model rate; the last two transform in-distribution files
SYNTH_SETS = {
    "silence": "digital silence (every sample 0.0)",
    "noise-60dBFS": "white Gaussian noise at -60 dBFS RMS (very quiet)",
    "noise-10dBFS": "white Gaussian noise at -10 dBFS RMS (loud)",
    "tone-200Hz": f"200 Hz sine at {TONE_RMS_DBFS:g} dBFS RMS, random phase",
    "tone-1kHz": f"1 kHz sine at {TONE_RMS_DBFS:g} dBFS RMS, random phase",
    "clicks": (f"click trains: single-sample impulses of {CLICK_AMPLITUDE:g} at "
               f"{CLICK_RATE_HZ[0]:g}-{CLICK_RATE_HZ[1]:g} Hz, silence between"),
    "reversed": "in-distribution recordings played backwards",
    "speedup-1.5x": "in-distribution recordings sped up 1.5x (resampled: shorter, higher)",
}
DETECTORS = {
    "nll": "likelihood: mean NLL",
    "abs_gap": "typicality: |gap|",
    "abs_z": "typicality: |z|",
    "abs_nll_hhat": "|NLL - H_hat| (batch test, M=1)",
}
PNG_NLL, PNG_GAP = "hist_nll.png", "hist_gap.png"
OUTPUTS = ("ood.md", "ood.json", "index.html", PNG_NLL, PNG_GAP, "examples")


# ------------------------------------------------------------------ statistics

def auroc(score_in, score_ood) -> float:
    """P(score_ood > score_in) + 0.5 P(tie), from average ranks (Mann-Whitney U).

    1 = every OOD item scores above every in-distribution item, 0 = every one below,
    0.5 = chance. NaN scores count as maximally anomalous (+inf).
    """
    a = np.asarray(score_in, dtype=np.float64).ravel()
    b = np.asarray(score_ood, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        return float("nan")
    both = np.concatenate([a, b])
    both[np.isnan(both)] = np.inf
    # 1-based ranks in the pooled sample; tied values share the average of the ranks they span
    _, inv, counts = np.unique(both, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inv]
    u = ranks[a.size:].sum() - b.size * (b.size + 1) / 2.0
    return float(u / (a.size * b.size))


def detector_scores(nll, gap, z, h_hat: float) -> dict[str, np.ndarray]:
    """Per-file anomaly scores (higher = more anomalous) for each detector in DETECTORS."""
    nll = np.asarray(nll, dtype=np.float64)
    return {"nll": nll, "abs_gap": np.abs(np.asarray(gap, dtype=np.float64)),
            "abs_z": np.abs(np.asarray(z, dtype=np.float64)), "abs_nll_hhat": np.abs(nll - h_hat)}


def batch_statistics(values, h_hat: float, m: int, n_batches: int, rng: np.random.Generator,
                     replace: bool = False) -> np.ndarray:
    """|mean of M per-file values - h_hat| for random M-file batches.

    M = 1 without replacement enumerates every file once. Otherwise `n_batches` batches are
    drawn; within a batch files are distinct unless `replace` (or the set has < M files).
    """
    v = np.asarray(values, dtype=np.float64)
    if m < 1 or v.size == 0:
        raise ValueError("need m >= 1 and at least one value")
    if m == 1 and not replace:
        return np.abs(v - h_hat)
    if replace or v.size < m:
        idx = rng.integers(0, v.size, size=(n_batches, m))
    elif n_batches * v.size <= 2_000_000:
        idx = np.argsort(rng.random((n_batches, v.size)), axis=1)[:, :m]
    else:
        idx = np.stack([rng.choice(v.size, m, replace=False) for _ in range(n_batches)])
    return np.abs(v[idx].mean(axis=1) - h_hat)


def bootstrap_threshold(pool, h_hat: float, m: int, alpha: float = DEFAULT_ALPHA,
                        n_boot: int = 10000, rng: np.random.Generator | None = None) -> float:
    """(1 - alpha) quantile of the batch statistic over M-file batches resampled (with
    replacement) from an in-distribution pool that was not used to estimate h_hat."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = rng if rng is not None else np.random.default_rng(0)
    stats = batch_statistics(pool, h_hat, m, n_boot, rng, replace=True)
    return float(np.quantile(stats, 1.0 - alpha))


def flag_rate(values, h_hat: float, m: int, threshold: float, n_batches: int = 1000,
              rng: np.random.Generator | None = None) -> float:
    """Fraction of M-file batches of `values` whose statistic exceeds the threshold."""
    rng = rng if rng is not None else np.random.default_rng(0)
    return float(np.mean(batch_statistics(values, h_hat, m, n_batches, rng) > threshold))


# ------------------------------------------------------------------ OOD sets

@dataclass
class Item:
    """One input to score: a name and its mu-law codes (int64, (T,))."""
    name: str
    codes: np.ndarray


def _lengths(source_lengths, n: int, sample_rate: int, rng) -> np.ndarray:
    lo, hi = int(round(MIN_SECONDS * sample_rate)), int(round(MAX_SECONDS * sample_rate))
    src = np.asarray(source_lengths, dtype=np.int64)
    if src.size == 0:
        return rng.integers(lo, hi + 1, size=n)
    return np.clip(rng.choice(src, size=n, replace=True), lo, hi)


def _encode(wave) -> np.ndarray:
    return mu_law_encode(np.asarray(wave, dtype=np.float32)).numpy()


def _noise(n: int, dbfs: float, rng) -> np.ndarray:
    return rng.standard_normal(n) * 10.0 ** (dbfs / 20.0)


def _tone(n: int, hz: float, sample_rate: int, rng) -> np.ndarray:
    amp = math.sqrt(2.0) * 10.0 ** (TONE_RMS_DBFS / 20.0)
    return amp * np.sin(2 * np.pi * hz * np.arange(n) / sample_rate + rng.uniform(0, 2 * np.pi))


def _clicks(n: int, sample_rate: int, rng) -> np.ndarray:
    w = np.zeros(n)
    period = sample_rate / rng.uniform(*CLICK_RATE_HZ)
    w[np.floor(np.arange(rng.uniform(0, period), n, period)).astype(int)] = CLICK_AMPLITUDE
    return w


def synthesize_sets(source: list[np.ndarray], sample_rate: int, n_per_set: int = 30,
                    seed: int = 0, sets=tuple(SYNTH_SETS)) -> dict[str, list[Item]]:
    """The built-in OOD sets as mu-law codes, deterministic given the seed.

    `source`: in-distribution code sequences (the FSDD test split by default). Synthetic
    sets draw their lengths from the source lengths clipped to 0.25-1.0 s; 'reversed' and
    'speedup-1.5x' transform randomly chosen source recordings. Each set has its own random
    stream, so choosing fewer sets does not change the others.
    """
    if n_per_set < 1:
        raise ValueError("n_per_set must be >= 1")
    source = [np.asarray(s) for s in source]
    out = {}
    for k, name in enumerate(SYNTH_SETS):
        if name not in sets:
            continue
        rng = np.random.default_rng([seed, k])
        items = []
        if name in ("reversed", "speedup-1.5x"):
            if not source:
                raise ValueError(f"set {name!r} needs in-distribution recordings")
            pick = rng.choice(len(source), size=n_per_set, replace=len(source) < n_per_set)
            for i in pick:
                codes = source[i]
                if name == "reversed":
                    new = codes[::-1].copy()
                else:
                    wave = mu_law_decode(torch.as_tensor(codes)).numpy()
                    new = _encode(resample(wave, int(round(sample_rate * SPEEDUP)), sample_rate))
                items.append(Item(f"{name}-{len(items):02d}", new.astype(np.int64)))
        else:
            for n in _lengths([len(s) for s in source], n_per_set, sample_rate, rng):
                n = int(n)
                if name == "silence":
                    wave = np.zeros(n)
                elif name == "noise-60dBFS":
                    wave = _noise(n, NOISE_LOW_DBFS, rng)
                elif name == "noise-10dBFS":
                    wave = _noise(n, NOISE_HIGH_DBFS, rng)
                elif name == "tone-200Hz":
                    wave = _tone(n, 200.0, sample_rate, rng)
                elif name == "tone-1kHz":
                    wave = _tone(n, 1000.0, sample_rate, rng)
                else:
                    wave = _clicks(n, sample_rate, rng)
                items.append(Item(f"{name}-{len(items):02d}", _encode(wave)))
        out[name] = items
    return out


# ------------------------------------------------------------------ scoring

@dataclass
class FileScore:
    set: str
    name: str
    n: int
    mean_nll_bits: float
    mean_entropy_bits: float
    gap_bits: float
    z: float
    rms_dbfs: float


def length_batches(lengths, max_samples: int = 32768, max_files: int = 32) -> list[list[int]]:
    """Indices grouped by similar length so that files x longest length <= max_samples."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur = [], []
    for i in order:
        if cur and ((len(cur) + 1) * lengths[i] > max_samples or len(cur) >= max_files):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


@torch.inference_mode()
def score_items(model, items: list[Item], set_name: str = "", conditioning: str = "none",
                max_samples: int = 32768, progress: bool = False) -> list[FileScore]:
    """Per-file typicality summaries in the parallel pass, files of similar length batched.

    Files are padded with SILENCE_CODE at the end; the model is causal, so padding never
    changes a real position's prediction and the padded positions are left out.
    `conditioning`: 'none' (unconditioned) or 'mel-self' (each file's own mel frames,
    one file per pass).
    """
    from tqdm import tqdm

    from wavetyp.core.conditioning import Conditioning
    from wavetyp.core.typicality import step_stats
    if conditioning not in ("none", "mel-self"):
        raise UsageError(f"unknown conditioning {conditioning!r} (none or mel-self)")
    if conditioning == "mel-self" and not model.cfg.n_mels:
        raise UsageError("this checkpoint has no mel conditioning (use --conditioning none)")
    dev = next(model.parameters()).device
    out: list[FileScore | None] = [None] * len(items)
    bar = tqdm(total=len(items), desc=f"scoring {set_name}".strip(), unit="file",
               disable=not progress, leave=False)
    # mel-self: one file per pass, since the mel conv net mixes neighbouring frames and
    # padded frames would leak into a shorter file's last real frames
    max_files = 1 if conditioning == "mel-self" else 32
    for idx in length_batches([len(it.codes) for it in items], max_samples, max_files):
        lens = [len(items[i].codes) for i in idx]
        codes = torch.full((len(idx), max(lens)), SILENCE_CODE, dtype=torch.long)
        for r, i in enumerate(idx):
            codes[r, :lens[r]] = torch.as_tensor(items[i].codes)
        codes = codes.to(dev)
        cond = None
        if conditioning == "mel-self":
            cond = Conditioning(mel=model.log_mel(codes))
        logits = model(codes, cond)
        step = max(1, max_samples // len(idx))      # bounds step_stats' temporaries
        parts = [step_stats(logits[:, t:t + step], codes[:, t:t + step])
                 for t in range(0, codes.shape[1], step)]
        del logits
        nll, ent, var = (torch.cat([q[j] for q in parts], 1).double().cpu().numpy()
                         for j in range(3))
        for r, i in enumerate(idx):
            n = lens[r]
            s = summarize(nll[r, :n], ent[r, :n], var[r, :n])
            wave = mu_law_decode(torch.as_tensor(items[i].codes)).numpy()
            out[i] = FileScore(set_name, items[i].name, n, s.mean_nll_bits, s.mean_entropy_bits,
                               s.gap_bits, s.z, rms_dbfs(wave))
        bar.update(len(idx))
    bar.close()
    return out


def score_sets(model, sets: dict[str, list[Item]], conditioning: str = "none",
               max_samples: int = 32768, progress: bool = False) -> dict[str, list[FileScore]]:
    """score_items over several named sets in one pass (files of all sets batched together)."""
    flat = [(name, it) for name, items in sets.items() for it in items]
    scores = score_items(model, [it for _, it in flat], "", conditioning, max_samples, progress)
    out = {name: [] for name in sets}
    for (name, _), sc in zip(flat, scores):
        sc.set = name
        out[name].append(sc)
    return out


def column(scores: list[FileScore], attr: str) -> np.ndarray:
    return np.array([getattr(s, attr) for s in scores], dtype=np.float64)


# ------------------------------------------------------------------ the evaluation

def evaluate(in_scores: list[FileScore], ood: dict[str, list[FileScore]],
             ref_h: list[FileScore], ref_pool: list[FileScore], alpha: float = DEFAULT_ALPHA,
             batch_sizes=DEFAULT_BATCH_SIZES, n_boot: int = 10000, n_batches: int = 1000,
             seed: int = 0) -> dict:
    """All the numbers: per-set file statistics, AUROC per set per detector, batch test."""
    h_hat = float(np.mean(column(ref_h, "mean_nll_bits")))
    pool = column(ref_pool, "mean_nll_bits")

    def det(scores):
        return detector_scores(column(scores, "mean_nll_bits"), column(scores, "gap_bits"),
                               column(scores, "z"), h_hat)

    d_in = det(in_scores)
    in_nll = column(in_scores, "mean_nll_bits")
    res = {"h_hat_bits": h_hat, "alpha": alpha, "detectors": DETECTORS, "auroc": {},
           "stats": {"in": _set_stats(in_scores)}, "more_likely_than_all_in": {}}
    for name, scores in ood.items():
        d = det(scores)
        res["auroc"][name] = {k: auroc(d_in[k], d[k]) for k in DETECTORS}
        res["stats"][name] = _set_stats(scores)
        res["more_likely_than_all_in"][name] = float(np.mean(
            column(scores, "mean_nll_bits") < in_nll.min()))
    bt = {"weighting": "per-file: the batch mean averages per-file mean NLLs, each file counts once",
          "h_files": len(ref_h), "pool_files": len(ref_pool), "bootstrap_batches": n_boot,
          "eval_batches": n_batches, "threshold": {}, "fpr_in": {}, "detection": {n: {} for n in ood},
          "resampled": {}}
    for j, m in enumerate(batch_sizes):
        rng = np.random.default_rng([seed, 1000 + j])
        thr = bootstrap_threshold(pool, h_hat, m, alpha, n_boot, rng)
        bt["threshold"][str(m)] = thr
        bt["fpr_in"][str(m)] = flag_rate(in_nll, h_hat, m, thr, n_batches, rng)
        for name, scores in ood.items():
            bt["detection"][name][str(m)] = flag_rate(column(scores, "mean_nll_bits"), h_hat, m,
                                                      thr, n_batches, rng)
            if len(scores) < m:
                bt["resampled"].setdefault(name, []).append(m)
    res["batch_test"] = bt
    return res


def _set_stats(scores: list[FileScore]) -> dict:
    nll, gap = column(scores, "mean_nll_bits"), column(scores, "gap_bits")
    return {"files": len(scores), "mean_nll_bits": float(nll.mean()),
            "median_nll_bits": float(np.median(nll)), "mean_gap_bits": float(gap.mean()),
            "mean_entropy_bits": float(column(scores, "mean_entropy_bits").mean()),
            "samples": int(sum(s.n for s in scores))}


def _verdict(a: float) -> str:
    if a < 0.3:
        return "ranks {s} as more normal than {ref}"
    if a < 0.45:
        return "tends to rank {s} as more normal than {ref}"
    if a <= 0.55:
        return "cannot tell {s} from {ref}"
    if a < 0.9:
        return "partly separates {s} from {ref}"
    return "flags {s} as anomalous"


PROSE = {"nll": "the likelihood threshold", "abs_gap": "per-file |gap|", "abs_z": "per-file |z|",
         "abs_nll_hhat": "|NLL - H_hat|"}


def reading(res: dict, in_label: str = "speech") -> list[str]:
    """Plain-language sentences generated from the numbers (nothing asserted in advance)."""
    au = res["auroc"]
    sets = list(au)
    out = []
    worse = [s for s in sets if au[s]["nll"] < 0.5]
    if worse:
        out.append(f"The likelihood threshold finds {len(worse)} of {len(sets)} OOD sets more "
                   f"normal than {in_label} (AUROC below 0.5, worse than chance): "
                   + ", ".join(f"{s} ({au[s]['nll']:.2f})" for s in worse) + ".")
    else:
        out.append(f"The likelihood threshold scores every OOD set as less likely than {in_label} "
                   f"on average (lowest AUROC {min(au[s]['nll'] for s in sets):.2f}).")
    for s in sets:
        a = au[s]
        line = (f"{s}: the likelihood threshold " + _verdict(a["nll"]).format(s=s, ref=in_label)
                + f" (AUROC {a['nll']:.2f}); per-file |gap| "
                + _verdict(a["abs_gap"]).format(s="it", ref=in_label)
                + f" (AUROC {a['abs_gap']:.2f})")
        best = max(("abs_z", "abs_nll_hhat"), key=lambda k: a[k])
        if a[best] >= a["abs_gap"] + 0.05:
            line += f", {PROSE[best]} AUROC {a[best]:.2f}"
        line += "."
        frac = res["more_likely_than_all_in"][s]
        if frac > 0:
            line += (f" {100 * frac:.0f}% of its files are more likely (lower mean NLL) than every "
                     f"{in_label} file.")
        out.append(line)
    good = {k: sum(au[s][k] >= 0.9 for s in sets) for k in DETECTORS}
    out.append(f"AUROC of 0.9 or more on {good['nll']} of {len(sets)} sets for the likelihood "
               "threshold, " + ", ".join(f"{v} for {PROSE[k]}" for k, v in good.items()
                                         if k != "nll") + ".")
    bt, alpha = res["batch_test"], res["alpha"]
    for m, fpr in bt["fpr_in"].items():
        det = [bt["detection"][s][m] for s in sets]
        caught = sum(bt["detection"][s][m] >= 0.9 for s in sets)
        out.append(f"Batch typicality test with M={m} file(s) per batch: flags at least 90% of "
                   f"batches for {caught} of {len(sets)} sets (median detection rate "
                   f"{100 * float(np.median(det)):.0f}%), and {100 * fpr:.1f}% of {in_label} test "
                   f"batches (nominal alpha {100 * alpha:g}%).")
    m_max = max(bt["fpr_in"], key=int)
    if bt["fpr_in"][m_max] > 2 * alpha:
        x, h = res["stats"]["in"]["mean_nll_bits"], res["h_hat_bits"]
        why = (f"{in_label} test files are less likely than training files (a generalization gap)"
               if x > h else f"{in_label} test files are more likely than the training files")
        out.append(f"The false-positive rate on {in_label} test batches exceeds alpha at M={m_max}: "
                   f"they average {x:.3f} bits/sample against H_hat = {h:.3f} from training files, "
                   f"a difference of {abs(x - h):.3f} bits, while held-out training batches of "
                   f"{m_max} files stay within {bt['threshold'][m_max]:.3f} bits of H_hat at the "
                   f"{100 * (1 - alpha):g}% level. {why[0].upper() + why[1:]}, and big batches "
                   "read that difference as a distribution shift.")
    return out


# ------------------------------------------------------------------ writing

def _fmt(x, nd=2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def auroc_table_rows(res: dict) -> tuple[list[str], list[list[str]]]:
    head = ["OOD set", "files"] + list(DETECTORS.values())
    rows = [[s, str(res["stats"][s]["files"])] + [_fmt(res["auroc"][s][k]) for k in DETECTORS]
            for s in res["auroc"]]
    return head, rows


def batch_table_rows(res: dict, in_label: str) -> tuple[list[str], list[list[str]]]:
    bt = res["batch_test"]
    ms = list(bt["fpr_in"])
    head = ["set"] + [f"M={m}" for m in ms]
    rows = [[f"{s} (detection rate)"] + [f"{100 * bt['detection'][s][m]:.0f}%" for m in ms]
            for s in bt["detection"]]
    rows.append([f"{in_label} test (false-positive rate)"]
                + [f"{100 * bt['fpr_in'][m]:.1f}%" for m in ms])
    rows.append(["threshold on |mean NLL - H_hat| (bits)"] + [f"{bt['threshold'][m]:.3f}" for m in ms])
    return head, rows


def _md_table(head, rows) -> str:
    def row(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    lines = [row(head), "|" + "|".join(["---"] * len(head)) + "|"] + [row(r) for r in rows]
    return "\n".join(lines)


def _html_table(head, rows) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def write_markdown(path: Path, res: dict, meta: dict) -> None:
    lab = meta["in_label"]
    parts = [
        "# Out-of-distribution detection: likelihood vs typicality", "",
        f"Model `{meta['checkpoint']}`, conditioning: {meta['conditioning']}; in-distribution: "
        f"{meta['in_desc']} ({res['stats']['in']['files']} files). H_hat = "
        f"{res['h_hat_bits']:.3f} bits/sample over {res['batch_test']['h_files']} training files; "
        f"bootstrap pool {res['batch_test']['pool_files']} held-out training files; "
        f"alpha = {res['alpha']:g}.", "",
        "## AUROC per OOD set and detector", "",
        "AUROC = P(score of an OOD file > score of an in-distribution file), ties count half. "
        "1 = perfect detection, 0.5 = chance, below 0.5 = the detector finds the OOD files "
        "*more normal* than the real thing.", "",
        _md_table(*auroc_table_rows(res)), "",
        "## Batch typicality test (Nalisnick et al. 2019)", "",
        f"Statistic |mean of the M per-file mean NLLs - H_hat| (per-file weighting); flagged "
        f"above the bootstrap (1 - alpha) quantile of held-out training batches.", "",
        _md_table(*batch_table_rows(res, lab)), "",
        "## Reading", "", *[f"- {s}" for s in meta["reading"]], "",
        f"![mean NLL per file]({PNG_NLL})", "", f"![gap per file]({PNG_GAP})", "",
        "## OOD sets", "", *[f"- **{s}**: {d}" for s, d in meta["set_desc"].items()], "",
    ]
    if meta["skipped"]:
        parts += ["## Skipped files", "", *[f"- `{p}`: {w}" for p, w in meta["skipped"]], ""]
    path.write_text("\n".join(parts))


def write_html(path: Path, res: dict, meta: dict) -> None:
    esc = html.escape
    lab = meta["in_label"]
    examples = "".join(
        f"<figure><figcaption>{esc(s)}</figcaption><audio controls preload='none' "
        f"src='examples/{esc(f)}'></audio></figure>" for s, f in meta["examples"].items())
    sets = "".join(f"<li><b>{esc(s)}</b>: {esc(d)}</li>" for s, d in meta["set_desc"].items())
    skipped = ("<h2>Skipped files</h2><ul>" + "".join(
        f"<li><code>{esc(p)}</code>: {esc(w)}</li>" for p, w in meta["skipped"]) + "</ul>"
        if meta["skipped"] else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>wavetyp: likelihood vs typicality for OOD detection</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       line-height: 1.45; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: .25em .6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
figure {{ display: inline-block; margin: .3em 1em .3em 0; }}
figcaption {{ font-size: .85em; }}
.note {{ color: #555; font-size: .9em; }}
</style></head><body>
<h1>Likelihood vs typicality for out-of-distribution detection</h1>
<p class="note">Model <code>{esc(str(meta['checkpoint']))}</code>, conditioning:
{esc(meta['conditioning'])}. In-distribution: {esc(meta['in_desc'])} ({res['stats']['in']['files']} files).
Each file is scored in one parallel pass and reduced to its mean NLL, mean entropy and their
gap (bits/sample). H_hat = {res['h_hat_bits']:.3f} bits/sample (mean per-file NLL of
{res['batch_test']['h_files']} training files).</p>
<h2>Reading</h2>
<ul>{''.join(f'<li>{esc(s)}</li>' for s in meta['reading'])}</ul>
<h2>AUROC per OOD set and detector</h2>
<p class="note">AUROC = P(an OOD file scores as more anomalous than an in-distribution file),
ties half. 1 = perfect, 0.5 = chance, below 0.5 = the detector finds the OOD files more
normal than the real thing.</p>
{_html_table(*auroc_table_rows(res))}
<h2>Batch typicality test (Nalisnick et al. 2019)</h2>
<p class="note">A batch of M files is flagged when |mean of their per-file mean NLLs - H_hat|
exceeds the (1 - alpha) quantile of the same statistic over M-file batches resampled from
{res['batch_test']['pool_files']} held-out training files (alpha = {res['alpha']:g}).
Each file counts once whatever its length.</p>
{_html_table(*batch_table_rows(res, lab))}
<h2>Per-file mean NLL</h2>
<img src="{PNG_NLL}" alt="histograms of per-file mean NLL, in-distribution vs each OOD set">
<h2>Per-file gap (mean NLL - mean entropy)</h2>
<img src="{PNG_GAP}" alt="histograms of per-file gap, in-distribution vs each OOD set">
<h2>Listen: one file per set</h2>
{examples}
<h2>The OOD sets</h2>
<ul>{sets}</ul>
{skipped}
</body></html>
"""
    path.write_text(page)


def plot_histograms(path: Path, in_values, ood_values: dict[str, np.ndarray], xlabel: str,
                    in_label: str, aurocs: dict[str, float], auroc_name: str,
                    vline: float | None = None, vline_label: str = "") -> None:
    """Small multiples: in-distribution (grey) against each OOD set, density-normalised."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(ood_values)
    ncol = min(4, max(1, len(names)))
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.5 * nrow + 0.4), squeeze=False)
    a_in = np.asarray(in_values, dtype=np.float64)
    for ax, name in zip(axes.flat, names):
        b = np.asarray(ood_values[name], dtype=np.float64)
        both = np.concatenate([a_in, b])
        both = both[np.isfinite(both)]
        lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 31)
        ax.hist(np.clip(a_in, lo, hi), bins=bins, density=True, color="0.6", alpha=0.7,
                label=in_label)
        ax.hist(np.clip(b, lo, hi), bins=bins, density=True, color="tab:red", alpha=0.6,
                label=name)
        if vline is not None and lo <= vline <= hi:
            ax.axvline(vline, color="k", lw=0.8, ls="--", label=vline_label or None)
        ax.set_title(f"{name}: AUROC {auroc_name} {_fmt(aurocs[name])}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.set_yticks([])
        ax.legend(fontsize=6, loc="upper right")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


# ------------------------------------------------------------------ inputs

def load_items(paths, sample_rate: int) -> tuple[list[Item], list[tuple[str, str]]]:
    """Read files/folders (folders recursively) to Items; unreadable files are skipped."""
    from wavetyp.core.scoring import expand_paths
    items, skipped = [], []
    for p in expand_paths(paths):
        try:
            items.append(Item(str(p), load_codes(p, sample_rate).numpy()))
        except AudioError as e:
            skipped.append((str(p), str(e)))
    return items, skipped


def _subset(seq: list, n: int | None, rng) -> list:
    if n is None or n >= len(seq):
        return list(seq)
    return [seq[i] for i in sorted(rng.choice(len(seq), size=n, replace=False))]


def _set_name(path: str, taken) -> str:
    p = Path(path)
    base = (p.name if p.is_dir() else p.stem) or "ood"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def _json_safe(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


# ------------------------------------------------------------------ CLI

def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.ood",
        description="Out-of-distribution detection with the WaveNet: the likelihood threshold "
                    "against per-file typicality and the batch typicality test, as AUROC and "
                    "detection rates, with histograms and a static HTML page.")
    add_common(p)
    p.add_argument("--in", dest="in_paths", action="extend", nargs="+", default=None,
                   metavar="PATH", help="in-distribution files/folders (default: the FSDD test split)")
    p.add_argument("--ood", dest="ood_paths", action="extend", nargs="+", default=None,
                   metavar="PATH", help="extra OOD files/folders; each path becomes its own named set")
    p.add_argument("--ref", dest="ref_paths", action="extend", nargs="+", default=None,
                   metavar="PATH", help="training-distribution reference files for H_hat and the "
                                        "bootstrap (default: the FSDD training split)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--train-files", type=int, default=300,
                   help="seeded subset of the reference/training files (default 300): half "
                        "estimates H_hat, the held-out half is the bootstrap pool")
    p.add_argument("--in-files", type=int, default=None,
                   help="score only a seeded subset of N in-distribution files (quick looks)")
    p.add_argument("--per-set", type=int, default=30, help="files per built-in OOD set (default 30)")
    p.add_argument("--sets", nargs="+", default=None, choices=list(SYNTH_SETS), metavar="NAME",
                   help="only these built-in OOD sets: " + ", ".join(SYNTH_SETS))
    p.add_argument("--no-builtin", action="store_true",
                   help="skip the built-in OOD sets (then --ood is required)")
    p.add_argument("--conditioning", default="none", choices=("none", "mel-self"),
                   help="none (default) or mel-self: each file conditioned on its own mel frames")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help=f"batch test false-positive level (default {DEFAULT_ALPHA})")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(DEFAULT_BATCH_SIZES),
                   metavar="M", help="batch sizes M for the batch test (default 1 5 10)")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples (default 10000)")
    p.add_argument("--eval-batches", type=int, default=1000,
                   help="random M-file batches per set for detection/false-positive rates")
    p.add_argument("--data-dir", default=None, help="FSDD folder (default: as wavetyp.data finds it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    def body(a):
        for name, v, lo in (("--train-files", a.train_files, 2), ("--per-set", a.per_set, 1),
                            ("--bootstrap", a.bootstrap, 10), ("--eval-batches", a.eval_batches, 1),
                            ("--in-files", a.in_files, 1)):
            if v is not None and v < lo:
                raise UsageError(f"{name} must be >= {lo}, got {v}")
        if not 0.0 < a.alpha < 1.0:
            raise UsageError(f"--alpha must be in (0, 1), got {a.alpha}")
        if any(m < 1 for m in a.batch_sizes):
            raise UsageError("--batch-sizes must all be >= 1")
        if a.no_builtin and not a.ood_paths:
            raise UsageError("--no-builtin leaves no OOD set: pass --ood PATH")
        out = check_output_dir(a.out, a.overwrite, list(OUTPUTS))   # refuse before the slow part
        from wavetyp.core.checkpoint import load_model
        from wavetyp.core.runtime import pick_device
        model, _ = load_model(a.checkpoint, pick_device(a.device))
        sr = model.cfg.sample_rate
        progress = not a.quiet
        skipped: list[tuple[str, str]] = []
        corpus = None

        def fsdd():
            nonlocal corpus
            if corpus is None:
                from wavetyp.data.load import load_corpus
                corpus = load_corpus("fsdd", a.data_dir, sr, progress=progress)
                skipped.extend(corpus.skipped)
            return corpus

        def fsdd_items(utts):
            return [Item(u.name, u.codes.numpy()) for u in utts]

        rng = np.random.default_rng([a.seed, 7])
        if a.in_paths:
            in_items, sk = load_items(a.in_paths, sr)
            skipped += sk
            for path, why in sk:
                print(f"skipped {path}: {why}", file=sys.stderr)
            if not in_items:
                raise UsageError(f"--in: no readable audio files in {', '.join(a.in_paths)}"
                                 + (f" ({len(sk)} skipped)" if sk else ""))
            in_desc, in_label = "the --in files", "in-distribution"
        else:
            in_items, in_desc, in_label = fsdd_items(fsdd().test), "the FSDD test split", "speech"
            if not in_items:
                raise UsageError("the FSDD test split is empty")
        in_items = _subset(in_items, a.in_files, rng)

        if a.ref_paths:
            ref_items, sk = load_items(a.ref_paths, sr)
            skipped += sk
            for path, why in sk:
                print(f"skipped {path}: {why}", file=sys.stderr)
        else:
            ref_items = fsdd_items(fsdd().train)
        ref_items = _subset(ref_items, a.train_files, np.random.default_rng([a.seed, 8]))
        if len(ref_items) < 2:
            raise UsageError(f"need at least 2 readable reference/training files, got {len(ref_items)}")
        perm = np.random.default_rng([a.seed, 9]).permutation(len(ref_items))
        half = (len(ref_items) + 1) // 2
        ref_h = [ref_items[i] for i in sorted(perm[:half])]
        ref_pool = [ref_items[i] for i in sorted(perm[half:])]

        ood_items: dict[str, list[Item]] = {}
        set_desc = {}
        if not a.no_builtin:
            chosen = tuple(a.sets or SYNTH_SETS)
            ood_items = synthesize_sets([it.codes for it in in_items], sr, a.per_set, a.seed, chosen)
            set_desc = {k: v for k, v in SYNTH_SETS.items() if k in chosen}
        for path in a.ood_paths or []:
            items, sk = load_items([path], sr)
            skipped += sk
            for sp, why in sk:
                print(f"skipped {sp}: {why}", file=sys.stderr)
            if not items:
                raise UsageError(f"--ood {path}: no readable audio files"
                                 + (f" ({len(sk)} skipped)" if sk else ""))
            name = _set_name(path, set(ood_items) | {"in"})
            ood_items[name] = items
            set_desc[name] = f"user files from {path} ({len(items)} files)"

        t0 = time.perf_counter()
        roles = {"in": in_items, "train (H_hat)": ref_h, "train (pool)": ref_pool}
        scored = score_sets(model, {**roles, **ood_items}, a.conditioning, progress=progress)
        in_scores, h_scores, pool_scores = (scored.pop(k) for k in roles)
        ood_scores = scored
        every = in_scores + h_scores + pool_scores + [s for v in ood_scores.values() for s in v]
        timing = {"files": len(every), "audio_seconds": sum(s.n for s in every) / sr,
                  "scoring_seconds": time.perf_counter() - t0}
        res = evaluate(in_scores, ood_scores, h_scores, pool_scores, a.alpha, a.batch_sizes,
                       a.bootstrap, a.eval_batches, a.seed)

        (out / "examples").mkdir(exist_ok=True)
        examples = {}
        from wavetyp.core.audio import save_wav
        for name, items in [(in_label, in_items)] + list(ood_items.items()):
            fname = ("in-" if items is in_items else "ood-") + "".join(
                c if c.isalnum() or c in "-_." else "_" for c in name) + ".wav"
            save_wav(out / "examples" / fname, mu_law_decode(torch.as_tensor(items[0].codes)).numpy(), sr)
            examples[name] = fname
        meta = {"checkpoint": a.checkpoint or "checkpoints/wavetyp-fsdd.pt",
                "conditioning": a.conditioning, "in_desc": in_desc, "in_label": in_label,
                "set_desc": set_desc, "skipped": skipped, "examples": examples,
                "reading": reading(res, in_label)}
        in_nll, in_gap = column(in_scores, "mean_nll_bits"), column(in_scores, "gap_bits")
        plot_histograms(out / PNG_NLL, in_nll,
                        {n: column(s, "mean_nll_bits") for n, s in ood_scores.items()},
                        "mean NLL per file (bits/sample)", in_label,
                        {n: v["nll"] for n, v in res["auroc"].items()}, "NLL",
                        res["h_hat_bits"], "H_hat")
        plot_histograms(out / PNG_GAP, in_gap,
                        {n: column(s, "gap_bits") for n, s in ood_scores.items()},
                        "gap = mean NLL - mean entropy (bits/sample)", in_label,
                        {n: v["abs_gap"] for n, v in res["auroc"].items()}, "|gap|", 0.0)
        write_markdown(out / "ood.md", res, meta)
        write_html(out / "index.html", res, meta)
        settings = {k: v for k, v in vars(a).items() if k not in ("debug",)}
        doc = {"settings": settings, **meta, "timing": timing, "results": res,
               "files": [asdict(s) for s in every]}
        (out / "ood.json").write_text(json.dumps(_json_safe(doc), indent=1))

        print(_md_table(*auroc_table_rows(res)))
        print()
        print(_md_table(*batch_table_rows(res, in_label)))
        print()
        for s in meta["reading"]:
            print("- " + s)
        if skipped:
            print(f"skipped {len(skipped)} file(s) (listed in {out / 'ood.md'})", file=sys.stderr)
        print(f"\nscored {timing['files']} files ({timing['audio_seconds']:.0f} s of audio) in "
              f"{timing['scoring_seconds']:.0f} s; wrote {out / 'index.html'}, ood.md, ood.json, "
              f"{PNG_NLL}, {PNG_GAP}")
        return 0

    return run_cli(p, body, argv)


if __name__ == "__main__":
    sys.exit(main())
