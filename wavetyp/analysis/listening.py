"""Listening by recognizer: does a render say the digit it was conditioned on?

For every conditioning level that carries a digit (``label``: the digit label; ``speaker``:
digit label + a speaker; ``vocoder``: digit + speaker + the log-mel frames of one FSDD test
recording) and every decoding setting (the demo's sweep, `analysis.sweep.SETTINGS`, plus the
settings from the literature in NEW_SETTINGS, plus beam search), renders are made and each is
measured:

- the recognizer's (`analysis.recognizer`) probability of the intended digit, and whether its
  top digit is the intended one (accuracy);
- typicality from the render's own logs: gap = mean(NLL - H) bits/sample and z;
- the silent fraction (20 ms frames below -50 dBFS) and the silent flag (`analysis.measures`);
- the fricative band (2-4 kHz level in fricative frames relative to the reference, as
  `analysis.measures.fricative_measures` defines it: distribution mode against the digit's
  test takes at the label levels, aligned with the recording at the vocoder level);
- vocoder renders only: the log-mel spectral distance (dB) to the recording (`mel_distance_db`).

Units and intervals: a level's renders are grouped into units, the digit at the label levels
and the recording at the vocoder level. A (level, setting) cell reports the mean over units of
each unit's mean, and a 95 % percentile-bootstrap interval that resamples units with
replacement (`cluster_bootstrap`, seeded). Intervals therefore speak about digits/recordings
like these, not only about the draws that were made.

Rendering: one `generate()` call per (condition, setting kind) renders the kind's settings side
by side, each repeated `reps` times (independent draws of one seeded generator). Settings are
split by kind (plain temperature, sorting filters, cutoffs, mirostat) because a batch pays for
every filter any of its streams uses. Beam search is deterministic, ~6x costlier per step, and
runs on the first `beam_items` conditions of a level only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wavetyp.analysis.measures import (
    SILENT_FRACTION,
    Reference,
    decode_utt,
    fricative_measures,
    make_reference,
    silence_fraction,
)
from wavetyp.analysis.sweep import BEAM_WIDTH, SETTINGS
from wavetyp.core.conditioning import DIGIT_NAMES, CondSpec
from wavetyp.core.decoding import DecodeSettings
from wavetyp.core.errors import UsageError
from wavetyp.core.generate import Rendered, render
from wavetyp.data.corpus import Corpus, Utterance

NEW_SETTINGS = [DecodeSettings(1.0, min_p=0.05), DecodeSettings(1.0, epsilon_cutoff=3e-4),
                DecodeSettings(1.0, eta_cutoff=3e-4), DecodeSettings(1.0, mirostat_tau=4.0)] + [
               DecodeSettings(1.0, mirostat_gap=g) for g in (-0.3, -0.1, 0.0, 0.1, 0.3)]
ALL_SETTINGS = list(SETTINGS) + NEW_SETTINGS
BEAM = f"beam{BEAM_WIDTH}"
LEVELS = {"label": "digit label", "speaker": "digit label + speaker",
          "vocoder": "digit + speaker + mel frames (vocoder)"}
MEASURES = ("accuracy", "p_digit", "gap_bits", "z", "silence_frac", "silent", "fric_band_db",
            "mel_db")
MEL_FLOOR_DB = 80.0          # mel power floored this far below the recording's loudest bin
N_BOOT = 2000


@dataclass
class ListenPlan:
    """What to render. renders: draws per setting per condition at the label levels;
    draws: per setting per recording at the vocoder level; recordings: per digit."""
    levels: tuple = ("label", "speaker", "vocoder")
    digits: tuple = tuple(range(10))
    settings: list = field(default_factory=lambda: list(ALL_SETTINGS))
    renders: int = 5
    seconds: float = 1.0
    recordings: int = 2
    draws: int = 3
    beam_items: int = 3
    beam_seconds: float | None = None     # none: the condition's length
    vocoder_seconds: float | None = None  # none: the whole recording
    seed: int = 0


@dataclass
class Item:
    """One condition: a digit (label levels) or a recording (vocoder)."""
    level: str
    unit: str                  # bootstrap unit: digit name, or the recording's name
    digit: int
    spec: CondSpec
    n_samples: int
    reps: int
    reference: Reference
    recording: np.ndarray | None = None     # vocoder: the recording's waveform (cut to n_samples)
    beam_samples: int = 0


def setting_name(s: DecodeSettings | None) -> str:
    return BEAM if s is None else s.name


def setting_kind(s: DecodeSettings) -> str:
    """Streams of one kind share a generate() call (a batch pays for every filter it uses)."""
    if s.mirostat:
        return "mirostat"
    if s.top_k is not None or s.top_p is not None or s.typical_p is not None:
        return "sorting"
    if s.min_p is not None or s.epsilon_cutoff is not None or s.eta_cutoff is not None:
        return "cutoff"
    return "temperature"


def group_settings(settings) -> list[list[DecodeSettings]]:
    """Settings split by kind, kinds in first-seen order, settings in their given order."""
    groups: dict[str, list] = {}
    for s in settings:
        groups.setdefault(setting_kind(s), []).append(s)
    return list(groups.values())


def pick_recordings(corpus: Corpus, digit: int, k: int) -> list[Utterance]:
    """k test takes of `digit`, evenly spaced through the name-sorted takes (so from
    different speakers: names are digit_speaker_take)."""
    takes = sorted((u for u in corpus.test if u.digit == digit), key=lambda u: u.name)
    if len(takes) < k:
        raise UsageError(f"digit {digit}: {len(takes)} test recording(s), {k} wanted")
    return [takes[(j * len(takes)) // k] for j in range(k)]


def _wave(u: Utterance, n: int) -> np.ndarray:
    return decode_utt(Utterance(u.name, u.codes[:n], u.digit, u.speaker))


def _beam_len(plan: ListenPlan, index: int, n: int, sr: int) -> int:
    if index >= plan.beam_items:
        return 0
    return n if plan.beam_seconds is None else min(n, max(1, round(plan.beam_seconds * sr)))


def plan_items(model, corpus: Corpus, plan: ListenPlan) -> list[Item]:
    """The conditions of a listening run, level by level, digit by digit."""
    cfg, sr = model.cfg, model.cfg.sample_rate
    if not cfg.n_digits:
        raise UsageError("the checkpoint has no digit conditioning: nothing to recognize")
    unknown = [lv for lv in plan.levels if lv not in LEVELS]
    if unknown:
        raise UsageError(f"unknown level(s) {', '.join(unknown)} (choose from {', '.join(LEVELS)})")
    n_label = max(1, round(plan.seconds * sr))
    items: list[Item] = []
    for level in plan.levels:
        if level == "speaker" and not cfg.speakers:
            raise UsageError("the checkpoint has no speakers: drop the speaker level")
        if level == "vocoder" and not cfg.n_mels:
            raise UsageError("the checkpoint has no mel conditioning: drop the vocoder level")
        k = 0
        for d in plan.digits:
            if level == "label":
                refs = [u for u in corpus.test if u.digit == d]
                items.append(Item(level, DIGIT_NAMES[d], d, CondSpec(digit=d), n_label, plan.renders,
                                  make_reference(refs, sr, aligned=False),
                                  beam_samples=_beam_len(plan, k, n_label, sr)))
                k += 1
            elif level == "speaker":
                spk = cfg.speakers[d % len(cfg.speakers)]
                refs = [u for u in corpus.test if u.digit == d and corpus.speakers[u.speaker] == spk]
                if not refs:
                    raise UsageError(f"no test recording of digit {d} by {spk}")
                items.append(Item(level, f"{DIGIT_NAMES[d]}-{spk}", d, CondSpec(digit=d, speaker=spk),
                                  n_label, plan.renders, make_reference(refs, sr, aligned=False),
                                  beam_samples=_beam_len(plan, k, n_label, sr)))
                k += 1
            else:
                for u in pick_recordings(corpus, d, plan.recordings):
                    n = len(u.codes) if plan.vocoder_seconds is None else min(
                        len(u.codes), max(1, round(plan.vocoder_seconds * sr)))
                    spk = corpus.speakers[u.speaker] if 0 <= u.speaker < len(corpus.speakers) else None
                    spk = spk if spk in cfg.speakers else None
                    cut = Utterance(u.name, u.codes[:n], u.digit, u.speaker)
                    spec = CondSpec(digit=d, speaker=spk, mel_from=u.name, mel_codes=cut.codes)
                    items.append(Item(level, u.name, d, spec, n, plan.draws,
                                      make_reference([cut], sr, aligned=True), recording=_wave(u, n),
                                      beam_samples=_beam_len(plan, k, n, sr)))
                    k += 1
    return items


def plan_counts(items: list[Item], settings) -> dict:
    """Renders per (level, setting) and units per level that a plan will make."""
    out: dict = {}
    for it in items:
        lv = out.setdefault(it.level, {"units": set(), "renders": {}})
        lv["units"].add(it.unit)
        for s in settings:
            lv["renders"][s.name] = lv["renders"].get(s.name, 0) + it.reps
        if it.beam_samples:
            lv["renders"][BEAM] = lv["renders"].get(BEAM, 0) + 1
    return {k: {"units": len(v["units"]), "renders": v["renders"]} for k, v in out.items()}


def plan_samples(items: list[Item], settings) -> dict:
    """Samples to generate: sampled streams by kind, and beam steps (for a time estimate)."""
    out = {"beam": sum(it.beam_samples for it in items)}
    for group in group_settings(settings):
        kind = setting_kind(group[0])
        out[kind] = out.get(kind, 0) + sum(it.n_samples * it.reps * len(group) for it in items)
    return out


# ------------------------------------------------------------------ measuring

def mel_db(wave: np.ndarray, sample_rate: int, n_mels: int = 40) -> np.ndarray:
    """(n_mels, frames) 10 log10 mel power (librosa; 32 ms window, 10 ms hop, DC removed)."""
    import librosa
    w = np.asarray(wave, dtype=np.float64).reshape(-1)
    w = (w - w.mean()).astype(np.float32) if w.size else np.zeros(1, np.float32)
    m = librosa.feature.melspectrogram(y=w, sr=sample_rate, n_fft=256, hop_length=80,
                                       n_mels=n_mels, fmin=20.0, fmax=sample_rate / 2, power=2.0)
    return 10.0 * np.log10(np.maximum(m.astype(np.float64), 1e-30))


def mel_distance_db(render: np.ndarray, recording: np.ndarray, sample_rate: int,
                    floor_db: float = MEL_FLOOR_DB) -> float:
    """Log-mel spectral distance (dB): RMS over frames and mel bands of the difference of the
    two log-mel spectrograms, both floored `floor_db` below the recording's loudest bin (so
    silence against silence counts 0 and the level difference counts). Frames beyond the
    shorter input are ignored."""
    a, b = mel_db(render, sample_rate), mel_db(recording, sample_rate)
    floor = b.max() - floor_db
    n = min(a.shape[1], b.shape[1])
    d = np.maximum(a[:, :n], floor) - np.maximum(b[:, :n], floor)
    return float(np.sqrt(np.mean(d**2)))


def measure(r: Rendered, it: Item, p_digits: np.ndarray, sample_rate: int, call_seed: int | None) -> dict:
    """One row: which render, what the recognizer heard, typicality, silence, fricatives."""
    beam = r.result.info.get("beam")
    s = r.result.summary()
    sil = silence_fraction(r.wave, sample_rate)
    fric = fricative_measures(r.wave, sample_rate, it.reference)
    return {"level": it.level, "unit": it.unit, "digit": it.digit,
            "setting": BEAM if beam else r.result.settings.name, "seed": None if beam else call_seed,
            "samples": len(r.wave), "heard": int(np.argmax(p_digits)),
            "accuracy": float(np.argmax(p_digits) == it.digit), "p_digit": float(p_digits[it.digit]),
            "gap_bits": s.gap_bits, "z": s.z, "silence_frac": sil, "silent": float(sil >= SILENT_FRACTION),
            "fric_band_db": fric["fric_band_db"],
            "mel_db": (mel_distance_db(r.wave, it.recording, sample_rate)
                       if it.recording is not None else float("nan"))}


def render_item(model, it: Item, settings, seed: int, recognizer=None) -> list[dict]:
    """Every setting `it.reps` times (one generate() per setting kind), plus the beam search if
    the item has one; every render measured. Call seeds are seed, seed + 1, ... per kind."""
    from wavetyp.analysis.recognizer import recognize
    sr = model.cfg.sample_rate
    batches = []
    for g, group in enumerate(group_settings(settings)):
        batches.append((seed + g, render(model, group * it.reps, it.n_samples, it.spec, seed=seed + g)))
    if it.beam_samples:
        batches.append((None, render(model, [DecodeSettings(0.0)], it.beam_samples, it.spec, beam=BEAM_WIDTH)))
    rendered = [(sd, r) for sd, rs in batches for r in rs]
    probs = recognize(recognizer, [r.wave for _, r in rendered]) if recognizer is not None else None
    rows = []
    for i, (sd, r) in enumerate(rendered):
        p = probs[i] if probs is not None else np.full(10, np.nan)
        rows.append(measure(r, it, p, sr, sd))
    return rows


# ------------------------------------------------------------------ aggregating

def cluster_bootstrap(values, units, n_boot: int = N_BOOT, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, units used): the mean over units of each unit's mean, and a
    percentile-bootstrap interval that resamples units with replacement (NaN values are
    ignored; units without a value are dropped). One unit: the interval is the point."""
    v = np.asarray(values, dtype=np.float64)
    u = np.asarray(units)
    ok = np.isfinite(v)
    names = list(dict.fromkeys(u[ok].tolist()))
    if not names:
        return float("nan"), float("nan"), float("nan"), 0
    means = np.array([v[ok & (u == n)].mean() for n in names])
    stat = float(means.mean())
    if len(means) == 1:
        return stat, stat, stat, 1
    rng = np.random.default_rng(seed)
    boot = means[rng.integers(0, len(means), size=(n_boot, len(means)))].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [a, 1.0 - a])
    return stat, float(min(lo, stat)), float(max(hi, stat)), len(means)


def aggregate(rows: list[dict], n_boot: int = N_BOOT, seed: int = 0) -> list[dict]:
    """One summary per (level, setting) in first-seen order: renders, units, and for each
    measure its mean over units and 95 % bootstrap interval (same seed for every cell)."""
    cells: dict = {}
    for r in rows:
        cells.setdefault((r["level"], r["setting"]), []).append(r)
    out = []
    for (level, setting), rs in cells.items():
        units = [r["unit"] for r in rs]
        cell = {"level": level, "setting": setting, "renders": len(rs), "units": len(set(units))}
        for m in MEASURES:
            mean, lo, hi, n = cluster_bootstrap([r[m] for r in rs], units, n_boot, seed)
            cell[m] = {"mean": mean, "low": lo, "high": hi, "units": n}
        out.append(cell)
    return out


def run_plan(model, items: list[Item], settings, recognizer, seed: int = 0,
             progress: bool = False) -> list[dict]:
    """Render and measure every item; item i's calls are seeded from seed + 100 * i."""
    from tqdm import tqdm
    rows = []
    for i, it in enumerate(tqdm(items, desc="listening", unit="cond", disable=not progress,
                                dynamic_ncols=True)):
        rows += render_item(model, it, settings, seed + 100 * i, recognizer)
    return rows


def paired_differences(rows: list[dict], baseline: str = "tau1", n_boot: int = N_BOOT,
                       seed: int = 0) -> list[dict]:
    """Per (level, setting) other than the baseline: the mean over units of (the unit's mean
    under the setting - its mean under the baseline) and a bootstrap interval over units.
    Paired by unit (the same digits/recordings), so it is sharper than comparing two
    intervals of the table; units missing from either side are left out."""
    means: dict = {}
    for r in rows:
        for m in MEASURES:
            if r[m] is not None and np.isfinite(r[m]):
                means.setdefault((r["level"], r["setting"], m), {}).setdefault(r["unit"], []).append(r[m])
    cells = list(dict.fromkeys((r["level"], r["setting"]) for r in rows))
    out = []
    for level, setting in cells:
        if setting == baseline or not any(lv == level and s == baseline for lv, s in cells):
            continue
        cell = {"level": level, "setting": setting, "baseline": baseline}
        for m in MEASURES:
            base = {u: np.mean(v) for u, v in means.get((level, baseline, m), {}).items()}
            mine = {u: np.mean(v) for u, v in means.get((level, setting, m), {}).items()}
            units = [u for u in mine if u in base]
            mean, lo, hi, n = cluster_bootstrap([mine[u] - base[u] for u in units], units, n_boot, seed)
            cell[m] = {"mean": mean, "low": lo, "high": hi, "units": n}
        out.append(cell)
    return out
