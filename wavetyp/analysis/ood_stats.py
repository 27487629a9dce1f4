"""OOD statistics: detector scores, AUROC, the batch typicality test, and the reading.

Dieleman's second lesson ("Musings on typicality", 2020): thresholding likelihood does
not find out-of-distribution (OOD) inputs, because the mode region (silence, very quiet or
very predictable audio) is *more* likely than any typical input. Testing typicality works.

Every file is reduced to its mean NLL, mean entropy, gap = mean(NLL - entropy) and z (see
wavetyp.core.typicality): a FileScore. Detectors, each a score where higher = more anomalous:

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

Beside it, the same bootstrap on the per-file gap (the model's own entropy along the file is
the reference, so no H_hat of another set is needed): |mean per-file gap - G_hat|, G_hat the
training files' mean gap; and a joint test, Fisher's combination of the two statistics'
bootstrap p-values, whose threshold is itself bootstrapped (the two are correlated).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_ALPHA = 0.05
DEFAULT_BATCH_SIZES = (1, 5, 10)
DETECTORS = {
    "nll": "likelihood: mean NLL",
    "abs_gap": "typicality: |gap|",
    "abs_z": "typicality: |z|",
    "abs_nll_hhat": "|NLL - H_hat| (batch test, M=1)",
}


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
    return np.abs(v[batch_index(v.size, m, n_batches, rng, replace)].mean(axis=1) - h_hat)


def batch_index(n: int, m: int, n_batches: int, rng: np.random.Generator,
                replace: bool = False) -> np.ndarray:
    """(batches, M) file indices: M = 1 without replacement is every file once; otherwise
    `n_batches` random batches of distinct files (with replacement if asked or n < M)."""
    if m == 1 and not replace:
        return np.arange(n)[:, None]
    if replace or n < m:
        return rng.integers(0, n, size=(n_batches, m))
    if n_batches * n <= 2_000_000:
        return np.argsort(rng.random((n_batches, n)), axis=1)[:, :m]
    return np.stack([rng.choice(n, m, replace=False) for _ in range(n_batches)])


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


# ------------------------------------------------------------------ the gap and joint batch tests

def p_values(null: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Bootstrap p-values: (1 + #{null >= s}) / (1 + #null), null sorted ascending."""
    return (1.0 + null.size - np.searchsorted(null, stats, side="left")) / (1.0 + null.size)


def fisher(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """Fisher's combination -2 (ln p1 + ln p2); calibrated by bootstrap below, since the two
    statistics of one batch are not independent."""
    return -2.0 * (np.log(p1) + np.log(p2))


@dataclass
class TypicalityNull:
    """The null of the two batch statistics, |mean per-file NLL - H_hat| and |mean per-file
    gap - G_hat|, over M-file batches resampled from held-out training files, and the
    (1 - alpha) thresholds of the gap test and of the joint (Fisher) test."""
    h_hat: float
    g_hat: float
    nll_null: np.ndarray          # sorted
    gap_null: np.ndarray          # sorted
    gap_threshold: float
    joint_threshold: float

    def stats(self, nll, gap, idx):
        return (np.abs(nll[idx].mean(axis=1) - self.h_hat), np.abs(gap[idx].mean(axis=1) - self.g_hat))

    def flags(self, nll, gap, idx) -> tuple[np.ndarray, np.ndarray]:
        """(gap test flags, joint test flags) for the batches `idx` of these files."""
        s_nll, s_gap = self.stats(nll, gap, idx)
        joint = fisher(p_values(self.nll_null, s_nll), p_values(self.gap_null, s_gap))
        return s_gap > self.gap_threshold, joint > self.joint_threshold


def typicality_null(pool_nll, pool_gap, h_hat: float, g_hat: float, m: int, alpha: float,
                    n_boot: int, rng: np.random.Generator) -> TypicalityNull:
    """Bootstrap both statistics on the same resampled batches; the joint test's threshold
    comes from a second, independent set of bootstrap batches scored against the first."""
    nll, gap = np.asarray(pool_nll, np.float64), np.asarray(pool_gap, np.float64)
    null = TypicalityNull(h_hat, g_hat, np.empty(0), np.empty(0), 0.0, 0.0)
    s_nll, s_gap = null.stats(nll, gap, batch_index(nll.size, m, n_boot, rng, replace=True))
    null.nll_null, null.gap_null = np.sort(s_nll), np.sort(s_gap)
    null.gap_threshold = float(np.quantile(s_gap, 1.0 - alpha))
    c_nll, c_gap = null.stats(nll, gap, batch_index(nll.size, m, n_boot, rng, replace=True))
    calib = fisher(p_values(null.nll_null, c_nll), p_values(null.gap_null, c_gap))
    null.joint_threshold = float(np.quantile(calib, 1.0 - alpha))
    return null


def typicality_flag_rates(null: TypicalityNull, nll, gap, m: int, n_batches: int,
                          rng: np.random.Generator) -> tuple[float, float]:
    """(gap test, joint test) fraction of M-file batches of these files that are flagged."""
    nll, gap = np.asarray(nll, np.float64), np.asarray(gap, np.float64)
    g, j = null.flags(nll, gap, batch_index(nll.size, m, n_batches, rng))
    return float(g.mean()), float(j.mean())


# ------------------------------------------------------------------ per-file scores

@dataclass
class FileScore:
    """One scored file: its set, name, length and typicality summary (bits/sample)."""
    set: str
    name: str
    n: int
    mean_nll_bits: float
    mean_entropy_bits: float
    gap_bits: float
    z: float
    rms_dbfs: float


def column(scores: list[FileScore], attr: str) -> np.ndarray:
    """One attribute of every score, as float64."""
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
    res["gap_batch_test"] = _typicality_tests(in_scores, ood, ref_h, ref_pool, h_hat, alpha,
                                              batch_sizes, n_boot, n_batches, seed)
    return res


def _typicality_tests(in_scores, ood, ref_h, ref_pool, h_hat, alpha, batch_sizes, n_boot,
                      n_batches, seed) -> dict:
    """The gap test and the joint test at every M (their own seeded streams, so the NLL
    test's numbers are those it had alone)."""
    g_hat = float(np.mean(column(ref_h, "gap_bits")))
    pool = column(ref_pool, "mean_nll_bits"), column(ref_pool, "gap_bits")
    sets = {"in": in_scores, **ood}
    cols = {k: (column(v, "mean_nll_bits"), column(v, "gap_bits")) for k, v in sets.items()}
    out = {"g_hat_bits": g_hat, "joint": "Fisher's -2 ln(p_nll p_gap), threshold by bootstrap",
           "threshold_gap": {}, "threshold_joint": {}, "fpr_in": {"gap": {}, "joint": {}},
           "detection": {n: {"gap": {}, "joint": {}} for n in ood}}
    for j, m in enumerate(batch_sizes):
        rng = np.random.default_rng([seed, 2000 + j])
        null = typicality_null(*pool, h_hat, g_hat, m, alpha, n_boot, rng)
        out["threshold_gap"][str(m)], out["threshold_joint"][str(m)] = null.gap_threshold, null.joint_threshold
        for name, (nll, gap) in cols.items():
            g, jt = typicality_flag_rates(null, nll, gap, m, n_batches, rng)
            dst = out["fpr_in"] if name == "in" else out["detection"][name]
            dst["gap"][str(m)], dst["joint"][str(m)] = g, jt
    return out


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
