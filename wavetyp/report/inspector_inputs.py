"""What the inspector reads: sample run folders (`python -m wavetyp.sample`), single NPZ files,
or the demo folder (metrics.json + audio/*.wav, no per-step arrays: those are rescored).

Everything becomes `inspector.Track`s grouped by conditioning; a group whose renders follow
the mel frames of a recording (vocoder mode) also gets that recording as a track, on the
same time axis. Bad input raises UsageError with one line saying what is wrong.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wavetyp.core.audio import load_codes
from wavetyp.core.conditioning import CondSpec
from wavetyp.core.decoding import DecodeSettings
from wavetyp.core.errors import DataError, UsageError
from wavetyp.data.fsdd import resolve_audio_arg
from wavetyp.report.inspector import Track

NPZ_KEYS = ("codes", "nll_bits", "entropy_bits", "varentropy_bits2", "sample_rate", "settings",
            "conditioning")
DEMO_SETTINGS = ("greedy", "tau0.7", "tau1")   # the demo's default selection per condition


@dataclass
class Inputs:
    tracks: list[Track]
    group_titles: dict = field(default_factory=dict)
    title: str = "wavetyp inspector"
    default_out: Path | None = None      # beside the (first) input


def kind_of(path: Path) -> str:
    if path.is_dir():
        if (path / "metrics.json").is_file():
            return "demo"
        if any(path.glob("*.npz")):
            return "run"
        raise UsageError(f"{path}: neither a sample run folder (*.npz) nor the demo folder "
                         "(metrics.json)")
    if path.suffix == ".npz" and path.is_file():
        return "npz"
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    raise UsageError(f"{path}: expected a run folder, an .npz file or the demo folder")


def _json_field(z, key: str, path: Path):
    try:
        return json.loads(str(z[key]))
    except (KeyError, ValueError) as e:
        raise UsageError(f"{path}: bad {key!r} entry ({e})") from None


def summary_rows(folder: Path) -> dict:
    """summary.json rows by render name (for beam widths and order); {} without one."""
    f = folder / "summary.json"
    try:
        return {r["name"]: r for r in json.loads(f.read_text())["samples"]} if f.is_file() else {}
    except (ValueError, KeyError, TypeError):
        return {}


def from_npz(path: Path, rows: dict | None = None) -> Track:
    """One render the sampler wrote: codes, its per-step logs, settings and conditioning."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise UsageError(f"{path}: not a wavetyp sample (missing {', '.join(missing)})")
            arrays = {k: np.asarray(z[k]) for k in z.files if k not in ("settings", "conditioning")}
            settings, cond = _json_field(z, "settings", path), _json_field(z, "conditioning", path)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a readable NPZ file ({e})") from None
    codes = arrays["codes"].astype(np.int64).reshape(-1)
    if codes.size == 0 or codes.min() < 0 or codes.max() > 255:
        raise UsageError(f"{path}: codes must be a non-empty array of 0..255")
    try:
        dec = DecodeSettings(**settings)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{path}: bad settings ({e})") from None
    row = (rows or {}).get(path.stem, {})
    beam = row.get("beam") or (int(path.stem[4:].split("-")[0]) if path.stem.startswith("beam")
                               and path.stem[4:].split("-")[0].isdigit() else None)
    logged = {"nll": arrays["nll_bits"], "ent": arrays["entropy_bits"], "var": arrays["varentropy_bits2"]}
    if any(v.shape != codes.shape for v in logged.values()):
        raise UsageError(f"{path}: per-step arrays do not match the codes in length")
    cond = {k: cond.get(k) for k in ("digit", "speaker", "mel_from")}
    return Track(path.stem, CondSpec(cond["digit"], cond["speaker"], cond["mel_from"]).label, codes,
                 int(arrays["sample_rate"]), cond, settings=dec,
                 setting=f"beam{beam}" if beam else dec.name, beam=beam,
                 prime_len=int(arrays.get("prime_len", 0)), logged=logged, source=str(path))


def from_run(folder: Path) -> list[Track]:
    rows = summary_rows(folder)
    files = sorted(folder.glob("*.npz"), key=lambda p: (list(rows).index(p.stem) if p.stem in rows
                                                         else len(rows), p.name))
    return [from_npz(p, rows) for p in files]


def demo_mel_path(folder: Path, cond: dict) -> str | None:
    """The recording a demo vocoder condition followed: its link in metrics.json, else FSDD."""
    name = cond.get("conditioning", {}).get("mel_from")
    if not name:
        return None
    link = (cond.get("listen") or {}).get("wav")
    if link and (folder / link).is_file():
        return str(folder / link)
    if Path(name).is_file():
        return name
    try:
        return resolve_audio_arg(f"fsdd:{Path(name).stem}")
    except DataError as e:
        raise UsageError(f"{folder}: the recording behind {cond.get('id')} is missing ({e})") from None


ROW_FILTERS = ("top_p", "typical_p", "min_p", "epsilon_cutoff", "eta_cutoff", "mirostat_tau",
               "mirostat_gap")


def row_settings(row: dict) -> DecodeSettings:
    """A demo row's decoding; filters its metrics.json does not carry (older runs) are off."""
    eta = row.get("mirostat_eta")
    return DecodeSettings(float(row.get("temperature") or 0.0),
                          **{k: row.get(k) for k in ROW_FILTERS},
                          **({} if eta is None else {"mirostat_eta": eta}))


def from_demo(folder: Path, sample_rate: int, settings: list[str] | None = None,
              conditions: list[str] | None = None) -> Inputs:
    """The demo's renders (wav -> codes) with their settings and conditioning; by default
    greedy, tau0.7 and tau1 of every condition ("all" keeps every setting)."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        conds = {c["id"]: c for c in metrics["conditions"]}
        rows = metrics["rows"]
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{folder}/metrics.json: not the demo's metrics ({e})") from None
    keep = None if settings and "all" in settings else set(settings or DEMO_SETTINGS)
    if conditions:
        unknown = sorted(set(conditions) - set(conds))
        if unknown:
            raise UsageError(f"unknown condition {unknown[0]!r} (the demo has: {', '.join(conds)})")
    tracks, titles = [], {}
    for row in rows:
        c = conds.get(row.get("condition"))
        if c is None or (conditions and c["id"] not in conditions) or (keep and row["setting"] not in keep):
            continue
        cond = {k: c["conditioning"].get(k) for k in ("digit", "speaker")}
        cond["mel_from"] = demo_mel_path(folder, c)
        beam = row.get("beam")
        dec = None if beam else row_settings(row)
        tracks.append(Track(row["setting"], c["id"], load_codes(folder / row["wav"], sample_rate).numpy(),
                            sample_rate, cond, settings=dec, setting=row["setting"], beam=beam,
                            source=str(folder / row["wav"])))
        titles[c["id"]] = f"{c['id']}: {c.get('title', '')}"
    if not tracks:
        raise UsageError(f"{folder}: no render matches --settings {' '.join(sorted(keep or []))}"
                         + (f" and --condition {' '.join(conditions)}" if conditions else ""))
    return Inputs(tracks, titles, f"wavetyp inspector: {folder.name}")


def with_recordings(tracks: list[Track], sample_rate: int) -> list[Track]:
    """Each group whose renders followed a recording's mel frames gets that recording too
    (scored under the same conditioning), after its renders."""
    out, done = [], set()
    groups = list(dict.fromkeys(t.group for t in tracks))
    for g in groups:
        members = [t for t in tracks if t.group == g]
        out.extend(members)
        mel = next((t.cond.get("mel_from") for t in members if t.cond.get("mel_from")), None)
        if mel and (g, mel) not in done:
            done.add((g, mel))
            codes = load_codes(mel, sample_rate).numpy()
            out.append(Track(f"recording {Path(mel).stem}", g, codes, sample_rate,
                             dict(members[0].cond), kind="recording", setting="recording",
                             source=str(mel)))
    return out


def load_inputs(paths: list[str], sample_rate: int, settings: list[str] | None = None,
                conditions: list[str] | None = None) -> Inputs:
    """Every input path -> tracks; renders of a run keep their order, the recording of a
    vocoder group is added; renders at another sample rate than the model's are refused."""
    if not paths:
        raise UsageError("give at least one run folder, .npz file or the demo folder")
    tracks, titles, title = [], {}, None
    for raw in paths:
        p = Path(raw)
        kind = kind_of(p)
        if kind == "demo":
            got = from_demo(p, sample_rate, settings, conditions)
            tracks += got.tracks
            titles.update(got.group_titles)
            title = title or got.title
            continue
        new = from_run(p) if kind == "run" else [from_npz(p, summary_rows(p.parent))]
        if settings and "all" not in settings:
            new = [t for t in new if t.setting in settings]
        tracks += new
        title = title or f"wavetyp inspector: {p.name if kind == 'run' else p.parent.name}"
    if not tracks:
        raise UsageError(f"no render left after --settings {' '.join(settings or [])}")
    bad = [t for t in tracks if t.sample_rate != sample_rate]
    if bad:
        raise UsageError(f"{bad[0].source}: sampled at {bad[0].sample_rate} Hz, the model runs at "
                         f"{sample_rate} Hz (pass the checkpoint that made it)")
    keys = [(t.group, t.name) for t in tracks]
    if len(set(keys)) != len(keys):                 # the same render name from two runs
        for t in tracks:
            t.name = f"{Path(t.source).parent.name}/{t.name}"
    first = Path(paths[0])
    base = first if first.is_dir() else first.parent
    out = base.resolve().parent / f"{base.resolve().name}-inspect"
    return Inputs(with_recordings(tracks, sample_rate), titles, title, out)
