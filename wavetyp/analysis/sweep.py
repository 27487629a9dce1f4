"""The demo's fixed sweep: conditioning levels x decoding settings, and how a render is measured.

Conditioning levels (a ladder; each level adds to the one before):

- ``uncond``   no conditioning at all;
- ``label``    the digit label ("six", "seven", "five": they contain /s/ and /f/);
- ``speaker``  digit label + the speaker of the recording picked below;
- ``vocoder``  digit + speaker + the log-mel frames of one FSDD *test* recording (the
  strongest conditioning). For every digit the test take with the most fricative frames
  (`analysis.measures`) is picked; ties go to the alphabetically first file name.

Decoding settings, rendered side by side in ONE `generate()` call per condition: greedy
(temperature 0), tau in {0.1, 0.3, 0.5, 0.7, 0.85, 1.0}, top_p 0.9 and typical_p 0.9 (both
at tau 1). Beam search (width 4) is run for the first condition of the label and vocoder
levels only (per step it costs ~6x the whole sampling batch). Label renders last
DEFAULT_SECONDS; vocoder renders have the recording's length. Quick: one digit ("six") per
level, 0.5 s long (vocoder: the recording, cut to 0.5 s), and one beam search (vocoder
condition, 0.25 s).

Decoding from the literature (LITERATURE, all at tau 1) is rendered in a SEPARATE generate()
call per condition, after the sweep's, seeded with seed + LITERATURE_SEED_OFFSET: the sweep's
streams keep their random noise and codes, so SETTINGS' rows are the same with or without
these rows. The values: min-p 0.1; epsilon 3e-4 (Hugging Face's suggested 3e-4..9e-4, low end:
it cuts codes above 11.7 bits of surprise, ~0.08x the uniform 1/256, only the far tail);
eta 2e-3 (suggested 3e-4..4e-3: at 3e-4 the entropy term sqrt(eta) exp(-H) is the smaller
one only above 5.85 bits of entropy, so eta would nearly duplicate epsilon; at 2e-3 it adapts
above 4.5 bits); mirostat with a fixed target of 4 bits (about the model's test NLL, 3.7-4.0
bits/sample, the surprise of real speech under it); and wavetyp's mirostat-gap, whose target
is each step's own entropy plus G, at G = -0.5 (about the gap of tau 0.3), 0 and +0.25.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wavetyp.analysis.measures import (
    SILENT_FRACTION,
    Reference,
    count_fricative_frames,
    fricative_measures,
    make_reference,
    silence_fraction,
)
from wavetyp.core.conditioning import DIGIT_NAMES, CondSpec
from wavetyp.core.decoding import DecodeSettings
from wavetyp.core.errors import UsageError
from wavetyp.core.generate import Rendered, render
from wavetyp.data.corpus import Corpus, Utterance

TAUS = (0.1, 0.3, 0.5, 0.7, 0.85, 1.0)
SETTINGS = ([DecodeSettings(0.0)] + [DecodeSettings(t) for t in TAUS]
            + [DecodeSettings(1.0, top_p=0.9), DecodeSettings(1.0, typical_p=0.9)])
LITERATURE = ([DecodeSettings(1.0, min_p=0.1), DecodeSettings(1.0, epsilon_cutoff=3e-4),
               DecodeSettings(1.0, eta_cutoff=2e-3), DecodeSettings(1.0, mirostat_tau=4.0)]
              + [DecodeSettings(1.0, mirostat_gap=g) for g in (-0.5, 0.0, 0.25)])
LITERATURE_SEED_OFFSET = 1000     # their call's seed: seed + condition index + this
BEAM_WIDTH = 4
# Beam search costs ~13 ms/step (width 4) against ~2 ms/step for the whole 9-stream sampling
# batch, so it runs for the first condition of the label and vocoder levels only.
BEAM_LEVELS = ("label", "vocoder")
QUICK_BEAM_LEVELS = ("vocoder",)
FRICATIVE_DIGITS = (6, 7, 5)          # six, seven (/s/), five (/f/, /v/)
QUICK_DIGITS = (6,)
DEFAULT_SECONDS, QUICK_SECONDS, QUICK_BEAM_SECONDS = 1.0, 0.5, 0.25

LEVELS = {  # id -> title (in ladder order)
    "uncond": "no conditioning",
    "label": "digit label",
    "speaker": "digit label + speaker",
    "vocoder": "digit + speaker + mel frames (vocoder)",
}


@dataclass
class Condition:
    id: str
    level: str
    title: str
    spec: CondSpec
    n_samples: int
    beam_samples: int              # 0: no beam search
    reference: Reference
    listen: Utterance | None = None  # a recording to play next to the renders
    info: dict = field(default_factory=dict)


def pick_takes(corpus: Corpus, digits, sample_rate: int) -> dict[int, Utterance]:
    """Per digit, the test take with the most fricative frames (ties: first name)."""
    out = {}
    for d in digits:
        takes = sorted((u for u in corpus.test if u.digit == d), key=lambda u: u.name)
        if takes:
            counts = [count_fricative_frames(u, sample_rate) for u in takes]
            out[d] = takes[int(np.argmax(counts))]   # argmax: first of the maxima
    return out


def beam_length(n: int, first: bool, level: str, quick: bool, sample_rate: int) -> int:
    """Beam search for the first condition of each level in BEAM_LEVELS (full length);
    quick: QUICK_BEAM_LEVELS only, at most QUICK_BEAM_SECONDS."""
    if not first:
        return 0
    if quick:
        return min(n, int(round(QUICK_BEAM_SECONDS * sample_rate))) if level in QUICK_BEAM_LEVELS else 0
    return n if level in BEAM_LEVELS else 0


def _speaker_name(corpus: Corpus, take: Utterance) -> str | None:
    return corpus.speakers[take.speaker] if 0 <= take.speaker < len(corpus.speakers) else None


def _label_conditions(corpus, takes, n_label, quick, sr) -> list[Condition]:
    out = []
    for i, (d, take) in enumerate(takes.items()):
        refs = [u for u in corpus.test if u.digit == d]
        out.append(Condition(f"label-{DIGIT_NAMES[d]}", "label", f'digit "{DIGIT_NAMES[d]}"',
                             CondSpec(digit=d), n_label, beam_length(n_label, i == 0, "label", quick, sr),
                             make_reference(refs, sr, aligned=False), listen=take,
                             info={"reference_text": f"test takes of digit {d}"}))
    return out


def _speaker_conditions(cfg, corpus, takes, n_label, quick, sr, notes) -> list[Condition]:
    out = []
    for d, take in takes.items():
        spk = _speaker_name(corpus, take)
        if spk is None or spk not in cfg.speakers:
            notes.append(f"speaker {spk!r} of {take.name} is unknown to the checkpoint: "
                         f"no speaker condition for digit {d}")
            continue
        refs = [u for u in corpus.test if u.digit == d and u.speaker == take.speaker]
        out.append(Condition(f"speaker-{DIGIT_NAMES[d]}-{spk}", "speaker",
                             f'digit "{DIGIT_NAMES[d]}" + speaker {spk}', CondSpec(digit=d, speaker=spk),
                             n_label, beam_length(n_label, not out, "speaker", quick, sr),
                             make_reference(refs, sr, aligned=False), listen=take,
                             info={"reference_text": f"test takes of digit {d} by {spk}"}))
    return out


def _vocoder_conditions(cfg, corpus, takes, n_label, quick, sr) -> list[Condition]:
    out = []
    for d, take in takes.items():
        spk = _speaker_name(corpus, take)
        spk = spk if spk in cfg.speakers else None
        codes = take.codes[:n_label] if quick else take.codes
        cut = Utterance(take.name, codes, take.digit, take.speaker)
        spec = CondSpec(digit=d if cfg.n_digits else None, speaker=spk, mel_from=take.name,
                        mel_codes=codes)
        out.append(Condition(f"vocoder-{take.name}", "vocoder", f"mel frames of {take.name}",
                             spec, len(codes), beam_length(len(codes), not out, "vocoder", quick, sr),
                             make_reference([cut], sr, aligned=True), listen=cut,
                             info={"reference_text": f"{take.name} (aligned)",
                                   "recording_seconds": len(take.codes) / sr}))
    return out


def plan_conditions(model, corpus: Corpus, quick: bool, seconds: float, notes: list[str]) -> list[Condition]:
    """The conditions of the sweep, in ladder order; what had to be skipped goes to notes."""
    cfg = model.cfg
    sr = cfg.sample_rate
    n_label = max(1, int(round(seconds * sr)))
    digits = QUICK_DIGITS if quick else FRICATIVE_DIGITS
    if not corpus.test:
        raise UsageError("the corpus has no test recordings to compare with")
    takes = pick_takes(corpus, digits, sr)
    for d in digits:
        if d not in takes:
            notes.append(f"no test recording of digit {d} ({DIGIT_NAMES[d]}) in the corpus: skipped")
    conds = [Condition("uncond", "uncond", "no conditioning", CondSpec(), n_label,
                       beam_length(n_label, True, "uncond", quick, sr),
                       make_reference(corpus.test, sr, aligned=False),
                       info={"reference_text": "all test recordings"})]
    if cfg.n_digits:
        conds += _label_conditions(corpus, takes, n_label, quick, sr)
        conds += _speaker_conditions(cfg, corpus, takes, n_label, quick, sr, notes)
    else:
        notes.append("the checkpoint has no digit conditioning: label levels skipped")
    if cfg.n_mels:
        conds += _vocoder_conditions(cfg, corpus, takes, n_label, quick, sr)
    else:
        notes.append("the checkpoint has no mel conditioning: vocoder level skipped")
    return conds


# ------------------------------------------------------------------ rendering and measuring

def render_sampled(model, c: Condition, seed: int) -> list[Rendered]:
    """Every setting of SETTINGS for condition c, side by side in one generate() call."""
    return render(model, SETTINGS, c.n_samples, c.spec, seed=seed, prefix=f"{c.id}__")


def render_literature(model, c: Condition, seed: int) -> list[Rendered]:
    """Every setting of LITERATURE for condition c, in their own generate() call (seeded
    seed + LITERATURE_SEED_OFFSET), so that render_sampled's codes do not depend on them."""
    if not LITERATURE:
        return []
    return render(model, LITERATURE, c.n_samples, c.spec, seed=seed + LITERATURE_SEED_OFFSET,
                  prefix=f"{c.id}__")


def render_beam(model, c: Condition) -> list[Rendered]:
    """Beam search (BEAM_WIDTH) for condition c over its beam_samples."""
    return render(model, SETTINGS[:1], c.beam_samples, c.spec, beam=BEAM_WIDTH, prefix=f"{c.id}__")


FILTER_FIELDS = ("top_p", "typical_p", "min_p", "epsilon_cutoff", "eta_cutoff", "mirostat_tau",
                 "mirostat_gap", "mirostat_eta")


def setting_fields(s: DecodeSettings | None, beam: int | None) -> dict:
    """The row's decoding: its name and every filter (None where off; mirostat_eta only for
    mirostat rows)."""
    if beam:
        return {"setting": f"beam{beam}", "temperature": None, **dict.fromkeys(FILTER_FIELDS),
                "beam": beam}
    filters = {k: getattr(s, k) for k in FILTER_FIELDS}
    if not s.mirostat:
        filters["mirostat_eta"] = None
    return {"setting": s.name, "temperature": s.temperature, **filters, "beam": None}


def measure_render(r: Rendered, c: Condition, seed: int, sample_rate: int) -> dict:
    """One metrics row: what the render is, its loudness, typicality and fricative numbers."""
    beam = r.result.info.get("beam")
    sf = setting_fields(r.result.settings, beam)
    s = r.result.summary()
    sil = silence_fraction(r.wave, sample_rate)
    return {
        "name": f"{c.id}__{sf['setting']}", "level": c.level, "level_title": LEVELS[c.level],
        "condition": c.id, "condition_title": c.title, **sf,
        "seed": None if beam else seed,
        "samples": len(r.wave), "seconds": len(r.wave) / sample_rate,
        "rms_dbfs": r.rms_dbfs, "silence_frac": sil,
        "silent": bool(sil >= SILENT_FRACTION),
        "mean_nll_bits": s.mean_nll_bits, "mean_entropy_bits": s.mean_entropy_bits,
        "gap_bits": s.gap_bits, "z": s.z, "in_typical_set": s.in_typical_set,
        "epsilon_bits": s.epsilon,
        **fricative_measures(r.wave, sample_rate, c.reference),
        "log2_prob": r.result.info.get("log2_prob"),
    }
