"""The demo's inspector page, `inspector.html` beside `index.html`, and the report's links into it.

The demo builds the page itself (it is part of the product): greedy, tau 0.7 and tau 1 of every
condition, plus the recording a vocoder condition follows, on one time axis per condition. The
tracks come from the renders in memory: the codes, the sampler's own NLL / entropy /
varentropy logs and the conditioning (mel codes included), so nothing is read back from the
WAV files; the distributions come from `inspector.build_page`'s one rescoring pass per track.
Each render row of the report links to `inspector.html#group=<condition>&track=<setting>`,
which opens that condition with that render's row selected.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from tqdm import tqdm

from wavetyp.report.inspector import PageResult, Track, build_page
from wavetyp.report.inspector_inputs import DEMO_SETTINGS

INSPECTOR = "inspector.html"


def inspector_href(group: str, track: str) -> str:
    """The link that opens `group` in the demo's inspector with `track` selected."""
    return f"{INSPECTOR}#{urlencode({'group': group, 'track': track})}"


def recording_track_name(name: str) -> str:
    return f"recording {name}"


def render_track(c, r, row: dict, sample_rate: int) -> Track:
    """One render of condition c (an `analysis.sweep.Condition`) as an inspector track."""
    spec, res = c.spec, r.result
    return Track(row["setting"], c.id, res.codes, sample_rate,
                 {"digit": spec.digit, "speaker": spec.speaker, "mel_from": spec.mel_from},
                 settings=res.settings, setting=row["setting"], beam=res.info.get("beam"),
                 prime_len=res.prime_len,
                 logged={"nll": res.nll_bits, "ent": res.entropy_bits, "var": res.varentropy_bits2},
                 source=row["wav"], spec=spec)


def recording_track(c, sample_rate: int, wav: str | None) -> Track | None:
    """The recording whose mel frames condition c's renders followed, scored under the same
    conditioning (None when c is not a vocoder condition)."""
    spec = c.spec
    if spec.mel_codes is None or c.listen is None:
        return None
    return Track(recording_track_name(c.listen.name), c.id, spec.mel_codes.numpy(), sample_rate,
                 {"digit": spec.digit, "speaker": spec.speaker, "mel_from": spec.mel_from},
                 kind="recording", setting="recording", source=wav or c.listen.name, spec=spec)


def wanted(row: dict, settings=DEMO_SETTINGS) -> bool:
    return row["setting"] in settings


def build_demo_inspector(model, picked: list, stage: Path, info: dict,
                         progress: bool = True) -> tuple[PageResult, dict]:
    """Write stage/inspector.html from `picked` = [(condition, [(render, row), ...], listen
    wav or None)]; return the page and its links: {(condition id, setting or "recording"):
    href}."""
    sr = model.cfg.sample_rate
    tracks, titles, links = [], {}, {}
    for c, renders, wav in picked:
        titles[c.id] = f"{c.id}: {c.title}"
        for r, row in renders:
            tracks.append(render_track(c, r, row, sr))
            links[(c.id, row["setting"])] = inspector_href(c.id, row["setting"])
        rec = recording_track(c, sr, wav)
        if rec is not None:
            tracks.append(rec)
            links[(c.id, "recording")] = inspector_href(c.id, rec.name)
    bar = tqdm(total=len(tracks), disable=not progress, desc="inspector", unit="track",
               dynamic_ncols=True)

    def step(i, t):
        bar.set_postfix_str(f"{t.group} {t.name}")
        bar.update(1 if i else 0)

    page = build_page(model, tracks, stage / INSPECTOR, "wavetyp demo: inspector", titles,
                      {**info, "inputs": ["the demo's renders"]}, progress=step)
    bar.update(bar.total - bar.n)
    bar.close()
    return page, links
