"""The run log (train.jsonl) and its loss curve."""
from __future__ import annotations

import json
import os
from pathlib import Path


def read_log(log_path: Path) -> list[dict]:
    """The rows of train.jsonl; a torn last line (a kill mid-write) is ignored."""
    if not log_path.exists():
        return []
    rows = []
    for line in log_path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def append_log(log_path: Path, row: dict) -> None:
    """One row at the end of train.jsonl (a kill mid-write leaves a torn line read_log skips)."""
    with open(log_path, "a") as f:
        f.write(json.dumps(row) + "\n")


def trim_log(log_path: Path, step: int) -> None:
    """Keep only the rows up to `step` (the checkpoint resumed from), atomically."""
    keep = [r for r in read_log(log_path) if r.get("step", 0) <= step]
    tmp = log_path.with_name(log_path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, log_path)


def plot_log(log_path: Path, png_path: Path) -> None:
    """Loss curve (train, smoothed; validation per conditioning level) as a PNG."""
    from matplotlib.figure import Figure  # the object API: no backend, no global state
    rows = read_log(log_path)
    tr = [(r["step"], r["loss_bits"]) for r in rows if r.get("kind") == "train"]
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    if tr:
        s, v = zip(*tr)
        ax.plot(s, v, color="0.75", lw=0.8, label="train (per log interval)")
        k = max(1, len(v) // 50)
        sm = [sum(v[max(0, i - k):i + 1]) / len(v[max(0, i - k):i + 1]) for i in range(len(v))]
        ax.plot(s, sm, color="k", lw=1.2, label="train (smoothed)")
    levels = sorted({lv for r in rows if r.get("kind") == "val" for lv in r["bits"]})
    for lv in levels:
        pts = [(r["step"], r["bits"][lv]) for r in rows if r.get("kind") == "val" and lv in r["bits"]]
        ax.plot(*zip(*pts), marker="o", ms=3, label=f"val ({lv})")
    ax.set_xlabel("step")
    ax.set_ylabel("bits / sample")
    ax.set_title("wavetyp training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, png_path)

