"""The interactive inspector: one self-contained HTML page (vanilla JS on canvas, no network)
that plays each render with a cursor moving across its waveform, spectrogram, NLL / entropy
and windowed-gap tracks, and shows the model's predictive distribution under the cursor.

Inputs become `Track`s (see report/inspector_inputs.py). Each track is rescored with the model
in ONE parallel pass: logits[t] predicts codes[t] given codes[:t], as when it was sampled. Per
step the page keeps the codes that cover `mass` of the untempered distribution p_t (at most
`top_k`), the chosen code, and the codes of the distribution actually sampled q_t (temperature,
top-p, typical-p, ... applied to the same logits); probabilities are stored as -log2 p in
1/8-bit steps (one byte each), the arrays deflate-compressed and base64-embedded. Audio and the
spectrogram are computed in the page from the codes (mu-law decoded, as the WAV files are).
"""
from __future__ import annotations

import base64
import json
import math
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from wavetyp.analysis.typical_set import (
    EPSILON,
    WINDOW_MS,
    Z_LIMIT,
    exits,
    outside_fraction,
    window_steps,
    windowed_gap,
    windowed_z,
)
from wavetyp.core.audio import N_CODES, SILENCE_CODE
from wavetyp.core.conditioning import CondSpec, make_cond_spec
from wavetyp.core.decoding import DecodeSettings, encode_settings, process_logits
from wavetyp.core.typicality import step_stats, summarize

TOP_K = 32               # most codes of p kept per step (and of q)
MASS = 0.99              # ... or fewer, once they cover this much probability
LOG_STEPS = 8            # quantisation of -log2 p: 1/8 bit
ZERO = 255               # the byte for p = 0 (a code the sampler had excluded)
PLAIN = DecodeSettings(1.0)


@dataclass
class Track:
    """One row of the page: a render (or the recording a vocoder render follows)."""
    name: str
    group: str                          # tracks of one group share a time axis
    codes: np.ndarray                   # (T,) mu-law codes
    sample_rate: int
    cond: dict                          # digit, speaker, mel_from (a readable path or None)
    kind: str = "render"                # "render" or "recording"
    settings: DecodeSettings | None = None
    setting: str = ""                   # greedy, tau0.7, beam4, recording, ...
    beam: int | None = None
    prime_len: int = 0
    logged: dict | None = None          # nll/entropy/varentropy as the sampler logged them
    source: str = ""
    notes: list[str] = field(default_factory=list)
    spec: CondSpec | None = None        # the conditioning itself, when the caller holds it
                                        # (the demo: mel codes in memory); else built from cond


# ------------------------------------------------------------------ rescoring

def sampled_distribution(logits: torch.Tensor, t: Track) -> tuple[torch.Tensor | None, str]:
    """q_t, the distribution the sampler drew from (None where there is none to show), and a
    note saying what the overlay is."""
    s = t.settings
    if t.kind == "recording":
        return None, "a recording: nothing was sampled, only the model's p_t is shown"
    if t.beam or s is None:
        return None, "beam search keeps the most likely sequences: no sampling distribution"
    if s.mirostat:
        return None, ("mirostat's threshold mu is not stored: only the untempered p_t is shown, "
                      "not the truncated distribution it sampled")
    if s == PLAIN:
        return None, "tau = 1 without filters: the sampled distribution is p_t itself"
    dec = encode_settings([s], logits.device)
    q = process_logits(logits, dec.repeat(logits.shape[0])).float().softmax(-1)
    return q, f"overlay: q_t after {s.name} (process_logits on the same logits)"


def top_codes(p: torch.Tensor, top_k: int, mass: float) -> torch.Tensor:
    """(T, 256) bool: per step the most likely codes until they cover `mass` (at most top_k)."""
    sp, order = p.sort(-1, descending=True)
    before = sp.cumsum(-1) - sp
    keep = (before < mass) & (torch.arange(N_CODES, device=p.device) < top_k)
    return torch.zeros_like(keep).scatter(-1, order, keep)


def counts(n: np.ndarray) -> np.ndarray:
    """Codes kept per step: one byte each unless some step keeps more than 255."""
    return n.astype(np.uint8 if n.max(initial=0) <= 255 else "<u2")


def quantise(p: torch.Tensor) -> np.ndarray:
    """Probabilities -> bytes: round(-log2 p * 8), clipped to 254; 255 means p = 0."""
    lp = -torch.log2(p.clamp_min(1e-38)) * LOG_STEPS
    b = lp.round().clamp(0, ZERO - 1).to(torch.uint8)
    return torch.where(p > 0, b, torch.full_like(b, ZERO)).cpu().numpy()


@torch.inference_mode()
def rescore(model, t: Track, top_k: int = TOP_K, mass: float = MASS) -> dict:
    """One parallel pass over the track's codes -> per-step arrays and the compact
    distributions (see the module docstring)."""
    dev = next(model.parameters()).device
    spec = t.spec or make_cond_spec(model, t.cond.get("digit"), t.cond.get("speaker"),
                                    t.cond.get("mel_from"))
    codes = torch.as_tensor(np.asarray(t.codes)).long().to(dev)
    logits = model(codes[None], spec.build(model, 1))[0].float()
    nll, ent, var = (x.cpu().numpy() for x in step_stats(logits, codes))
    check = None
    if t.logged is not None:                      # the sampler's own logs win; say how close
        check = float(np.max(np.abs(t.logged["nll"] - nll))) if len(nll) else 0.0
        nll, ent, var = t.logged["nll"], t.logged["ent"], t.logged["var"]
    p = logits.softmax(-1)
    q, q_note = sampled_distribution(logits, t)
    keep = top_codes(p, top_k, mass)
    if q is not None:
        keep |= top_codes(q, top_k, mass)
    keep[torch.arange(len(codes), device=dev), codes] = True
    rows, cols = keep.nonzero(as_tuple=True)
    out = {"codes": np.asarray(t.codes, dtype=np.uint8), "nll": nll, "ent": ent, "var": var,
           "count": counts(keep.sum(-1).cpu().numpy()),
           "dcode": cols.to(torch.uint8).cpu().numpy(), "dp": quantise(p[rows, cols]),
           "q_note": q_note, "rescore_check": check}
    if q is not None:
        out["dq"] = quantise(q[rows, cols])
    return out


# ------------------------------------------------------------------ packing

def f16(x) -> np.ndarray:
    """float16 for the page, finite (|x| <= 60000) so that nothing turns into inf or nan."""
    a = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=6e4, neginf=-6e4)
    return np.clip(a, -6e4, 6e4).astype("<f2")


def pack(arrays: dict[str, np.ndarray]) -> tuple[str, list]:
    """Concatenate little-endian arrays (uint8, uint16, float16), deflate, base64
    -> (text, layout [[name, kind, length], ...])."""
    layout, parts = [], []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        kind = {np.dtype("<f2"): "f16", np.dtype("<u2"): "u16", np.dtype(np.uint8): "u8"}[a.dtype]
        layout.append([name, kind, int(a.size)])
        parts.append(a.tobytes())
    return base64.b64encode(zlib.compress(b"".join(parts), 9)).decode("ascii"), layout


def track_entry(t: Track, r: dict, tid: str, window_ms: float, epsilon: float,
                z_limit: float) -> tuple[dict, str, list]:
    """The page's metadata for one track, its packed arrays, and its exits from the typical set."""
    sr, T = t.sample_rate, len(t.codes)
    w = window_steps(sr, window_ms)
    gw, zw = windowed_gap(r["nll"], r["ent"], w), windowed_z(r["nll"], r["ent"], r["var"], w)
    found = exits(gw, zw, sr, epsilon, z_limit, skip=t.prime_len, join=w // 2)
    s = slice(t.prime_len, None)
    summ = summarize(r["nll"][s], r["ent"][s], r["var"][s], epsilon).to_dict()
    arrays = {"codes": r["codes"], "nll": f16(r["nll"]), "ent": f16(r["ent"]), "var": f16(r["var"]),
              "gapw": f16(gw), "zw": f16(zw), "count": r["count"], "dcode": r["dcode"], "dp": r["dp"]}
    if "dq" in r:
        arrays["dq"] = r["dq"]
    blob, layout = pack(arrays)
    meta = {"id": tid, "name": t.name, "group": t.group, "kind": t.kind, "setting": t.setting,
            "settings": t.settings.to_dict() if t.settings else None, "beam": t.beam,
            "prime_len": t.prime_len, "T": T, "sample_rate": sr, "source": t.source,
            "summary": {k: _finite(v) for k, v in summ.items()},
            "exits": [{k: _finite(v) for k, v in e.to_dict().items()} for e in found],
            "outside": outside_fraction(found, T - t.prime_len), "q_note": r["q_note"],
            "q": "own" if "dq" in r else ("same" if t.settings == PLAIN and t.kind == "render"
                                          and not t.beam else None),
            "rescore_check": r["rescore_check"], "notes": t.notes, "layout": layout}
    return meta, blob, found


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else math.copysign(1e308, v)
    return v


# ------------------------------------------------------------------ the page

def asset(name: str) -> str:
    return resources.files("wavetyp.report").joinpath(name).read_text(encoding="utf-8")


def script_json(obj) -> str:
    """JSON that is safe inside <script> (no '</' can close the tag)."""
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")


def render_html(meta: dict, blobs: dict[str, str]) -> str:
    """The whole page: CSS and JS inline, metadata as JSON, one base64 block per track."""
    data = "\n".join(f'<script type="application/octet-stream" id="blob-{k}">{v}</script>'
                     for k, v in blobs.items())
    title = meta["title"].replace("&", "&amp;").replace("<", "&lt;")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>\n{asset('inspector.css')}</style></head>\n"
            f'<body>\n<div id="app"><p id="loading">loading the inspector ...</p></div>\n'
            f'<pre id="selftest" hidden></pre>\n'
            f'<script type="application/json" id="inspector-meta">{script_json(meta)}</script>\n'
            f"{data}\n<script>\n{asset('inspector.js')}</script>\n</body></html>\n")


@dataclass
class PageResult:
    path: Path
    bytes: int
    tracks: list[dict]                  # per track: its page metadata
    exits: dict[str, list]              # track id -> [Stretch]


def build_page(model, tracks: list[Track], out_path, title: str = "wavetyp inspector",
               group_titles: dict | None = None, info: dict | None = None,
               top_k: int = TOP_K, mass: float = MASS, window_ms: float = WINDOW_MS,
               epsilon: float = EPSILON, z_limit: float = Z_LIMIT, progress=None) -> PageResult:
    """Rescore every track, pack it and write the page to `out_path` (atomically)."""
    metas, blobs, found = [], {}, {}
    for i, t in enumerate(tracks):
        if progress:
            progress(i, t)
        m, blob, ex = track_entry(t, rescore(model, t, top_k, mass), f"t{i}", window_ms, epsilon,
                                  z_limit)
        metas.append(m)
        blobs[m["id"]] = blob
        found[m["id"]] = ex
    groups = []
    for m in metas:
        if m["group"] not in [g["id"] for g in groups]:
            groups.append({"id": m["group"], "title": (group_titles or {}).get(m["group"], m["group"]),
                           "tracks": []})
        next(g for g in groups if g["id"] == m["group"])["tracks"].append(m["id"])
    meta = {"title": title, "window_ms": window_ms, "epsilon": epsilon, "z_limit": z_limit,
            "top_k": top_k, "mass": mass, "log_steps": LOG_STEPS, "silence_code": SILENCE_CODE,
            "n_codes": N_CODES, "groups": groups, "tracks": metas, **(info or {})}
    text = render_html(meta, blobs)
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out_path)
    return PageResult(out_path, out_path.stat().st_size, metas, found)
