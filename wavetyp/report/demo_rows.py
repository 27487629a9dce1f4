"""Small helpers over the demo's metrics rows, shared by its figures, reading and page.

A row is one render's dict from metrics.json; missing values arrive as None (NaN/inf are
not JSON) and are shown as "n/a".
"""
from __future__ import annotations

import numpy as np

LEVEL_ORDER = ("uncond", "label", "speaker", "vocoder")


def fmt(v, spec: str = ".2f", na: str = "n/a") -> str:
    if v is None:
        return na
    try:
        if isinstance(v, float) and not np.isfinite(v):
            return na
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def settings_order(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["setting"] not in out:
            out.append(r["setting"])
    return out


def levels_present(rows: list[dict]) -> list[str]:
    have = {r["level"] for r in rows}
    return [lv for lv in LEVEL_ORDER if lv in have] + sorted(have - set(LEVEL_ORDER))


def level_title(rows: list[dict], level: str) -> str:
    for r in rows:
        if r["level"] == level:
            return r.get("level_title") or level
    return level


LITERATURE_FILTERS = ("min_p", "epsilon_cutoff", "eta_cutoff", "mirostat_tau", "mirostat_gap")
FILTERS = ("top_k", "top_p", "typical_p") + LITERATURE_FILTERS


def is_temperature_row(r: dict) -> bool:
    """Plain temperature sampling (greedy = temperature 0): the rows on the tau curves. A row
    without a filter key (an older metrics.json) has that filter off."""
    return (r.get("beam") is None and r.get("temperature") is not None
            and all(r.get(k) is None for k in FILTERS))


def is_literature_row(r: dict) -> bool:
    """Decoding from the literature: min-p, epsilon, eta, mirostat or mirostat-gap."""
    return r.get("beam") is None and any(r.get(k) is not None for k in LITERATURE_FILTERS)


def mean_of(vals) -> float | None:
    v = [float(x) for x in vals if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def temperature_curve(rows: list[dict], level: str, key: str) -> list[tuple[float, float]]:
    """[(temperature, mean of `key` over the level's conditions)], temperature ascending."""
    temps = sorted({r["temperature"] for r in rows if r["level"] == level and is_temperature_row(r)})
    out = []
    for t in temps:
        m = mean_of(r.get(key) for r in rows
                  if r["level"] == level and is_temperature_row(r) and r["temperature"] == t)
        if m is not None:
            out.append((t, m))
    return out


def band_name(meta: dict) -> str:
    """The fricative band as the run defined it, e.g. "2–4 kHz"."""
    lo = (meta.get("rules", {}).get("fricative_frame", {}).get("high_band_hz") or [None])[0]
    sr = meta.get("sample_rate")
    if lo is None or not sr:
        return "high-band"
    return f"{lo / 1000:g}–{sr / 2000:g} kHz"


def tlabel(t: float) -> str:
    return "greedy" if t == 0 else f"tau {t:g}"
