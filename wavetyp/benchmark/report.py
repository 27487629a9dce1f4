"""The bench's results as a report: the machine, wavetyp-over-reference ratios against the
targets, the table of rows per section, and the notes around it."""
from __future__ import annotations

import os
import platform

import torch

from wavetyp.benchmark.measure import TIMING_TF32
from wavetyp.benchmark.sections import SECTIONS, TITLES
from wavetyp.core.runtime import cpu_model

# wavetyp over the reference, same model (the sampling targets are issue 24's, training the
# first bench issue's), and the shipped model's one-stream speed in samples/s (2x real time)
TARGETS = {"incremental_b1": 25.0, "incremental_b16": 10.0, "train": 1.5}
SHIPPED_B1_TARGET = 16_000.0


def machine_info(device: str) -> dict:
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": device, "python": platform.python_version(),
            "load_average_at_start": load}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    if device.startswith("cuda"):
        info["tf32_for_timings"] = dict(TIMING_TF32)
    return info


def precision_note(device: str) -> str | None:
    """The TF32 setting the timings used (CUDA only; it does not exist on the CPU)."""
    if not device.startswith("cuda"):
        return None
    on = lambda v: "on" if v else "off"   # noqa: E731
    return (f"TF32 while timing: float32 matmuls {on(TIMING_TF32['matmul'])}, cuDNN convolutions "
            f"{on(TIMING_TF32['cudnn'])} (torch's defaults); exactness checked with TF32 off")


def ratios(results: dict) -> dict:
    """wavetyp over the reference on the same model (the targets), and shipped over reference."""
    ref, own, shipped = (results.get(s) for s in SECTIONS)
    out = {}
    if ref and own:
        for key, metric in (("incremental_b1", "incremental_b1_samples_per_s"),
                            ("incremental_b16", "incremental_b16_samples_per_s"),
                            ("train", "train_samples_per_s")):
            r = own[metric] / ref[metric]
            out[key] = {"ratio": r, "target": TARGETS[key], "pass": r >= TARGETS[key]}
        out["naive_b1"] = {"ratio": own["naive_b1_samples_per_s"] / ref["naive_b1_samples_per_s"]}
    if shipped:
        v = shipped["incremental_b1_samples_per_s"]
        out["shipped_b1"] = {"samples_per_s": v, "target": SHIPPED_B1_TARGET, "pass": v >= SHIPPED_B1_TARGET}
    if ref and shipped:
        for key in ("incremental_b1", "incremental_b16", "train"):
            metric = f"{key}_samples_per_s"
            out[f"shipped_{key}"] = {"ratio": shipped[metric] / ref[metric]}
    return out


ROWS = [  # (label, key, format)
    ("parameters", "n_params", "{:,.0f}"),
    ("receptive field (samples)", "receptive_field", "{:.0f}"),
    ("exactness max |inc - par|", "exact_max_abs_diff", "{:.1e}"),
    ("incremental B=1 (samples/s)", "incremental_b1_samples_per_s", "{:,.0f}"),
    ("  ms per step", "incremental_b1_ms_per_step", "{:.3f}"),
    ("  RTF (audio s per wall s)", "rtf_incremental_b1", "{:.2f}"),
    ("incremental B=16 (total samples/s)", "incremental_b16_samples_per_s", "{:,.0f}"),
    ("  ms per step", "incremental_b16_ms_per_step", "{:.3f}"),
    ("  RTF (audio s per wall s)", "rtf_incremental_b16", "{:.2f}"),
    ("wavenet_vocoder B=1 (cross-check)", "original_b1_samples_per_s", "{:,.0f}"),
    ("naive B=1 (samples/s, short run)", "naive_b1_samples_per_s", "{:,.1f}"),
    ("  ms per step", "naive_b1_ms_per_step", "{:.1f}"),
    ("naive B=16 (total, short run)", "naive_b16_samples_per_s", "{:,.1f}"),
    ("  ms per step", "naive_b16_ms_per_step", "{:.1f}"),
    ("incremental / naive, B=1", "incremental_over_naive_b1", "{:,.1f}x"),
    ("incremental / naive, B=16", "incremental_over_naive_b16", "{:,.1f}x"),
    ("training (samples/s)", "train_samples_per_s", "{:,.0f}"),
    ("  s per step", "train_step_s", "{:.2f}"),
    ("peak RSS, generation (MiB)", "peak_rss_generation_mb", "{:,.0f}"),
    ("peak RSS, incl. training (MiB)", "peak_rss_mb", "{:,.0f}"),
    ("sample CLI wall (s)", "sample_cli_wall_s", "{:.1f}"),
    ("  RTF (audio s per wall s)", "sample_cli_rtf", "{:.2f}"),
    ("  peak RSS (MiB)", "sample_cli_peak_rss_mb", "{:,.0f}"),
]


def thread_note(res: dict) -> str:
    inc = res["detail_incremental_b1"]["threads"], res["detail_incremental_b16"]["threads"]
    nai = res["detail_naive_b1"]["threads"], res["detail_naive_b16"]["threads"]
    return f"inc {inc[0]}/{inc[1]}, naive {nai[0]}/{nai[1]}, train {res['detail_train']['threads']}"


def train_note(res: dict) -> str:
    d = res["detail_train"]
    return (" ".join(f"{t:.2f}" for t in d["warmup_s"]) + " | "
            + " ".join(f"{t:.2f}" for t in d["runs_s"]))


def format_report(report: dict) -> str:
    secs = [s for s in SECTIONS if report.get(s)]
    m = report["machine"]
    load = m.get("load_average_at_start")
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads, "
             f"device {m['device']}" + (f" ({m['gpu']})" if m.get("gpu") else "")
             + (f", load average at start {load}" if load else "")]
    if report.get("notes"):
        lines += [f"note: {n}" for n in report["notes"]]
    w0, w = 36, 22
    lines.append("")
    lines.append(f"{'':<{w0}}" + "".join(f"{TITLES[s]:>{w}}" for s in secs))
    for label, key, fmt in ROWS:
        vals = [report[s].get(key) for s in secs]
        if all(v is None for v in vals):
            continue
        lines.append(f"{label:<{w0}}" + "".join(
            f"{(fmt.format(v) if v is not None else '-'):>{w}}" for v in vals))
    lines.append("threads used (B=1/B=16): " + "; ".join(
        f"{TITLES[s]}: {thread_note(report[s])}" for s in secs))
    lines.append("training steps (s), warm-up | timed: " + "; ".join(
        f"{TITLES[s]}: {train_note(report[s])}" for s in secs))
    lines.append("RTF = seconds of audio generated per wall-clock second, all streams together "
                 "(> 1: faster than real time)")
    r = report.get("ratios") or {}
    if "incremental_b1" in r:
        lines.append("")
        lines.append("targets: wavetyp vs the reference implementation, same model, measured in this run")
        names = {"incremental_b1": "one stream (B=1) samples/s",
                 "incremental_b16": "16 streams, total samples/s", "train": "training samples/s"}
        for key, name in names.items():
            v = r[key]
            lines.append(f"  {name:<30} {v['ratio']:7.2f}x  (target >= {v['target']:g}x)  "
                         f"{'PASS' if v['pass'] else 'MISS'}")
    if "shipped_b1" in r:
        v = r["shipped_b1"]
        lines.append(f"  {'shipped model, one stream':<30} {v['samples_per_s']:,.0f} samples/s  "
                     f"(target >= {v['target']:,.0f})  {'PASS' if v['pass'] else 'MISS'}")
    ref = report.get("reference") or {}
    if ref.get("original_b1_samples_per_s"):
        lines.append(f"cross-check: the installed wavenet_vocoder {ref['original_version']} "
                     f"(r9y9's original), one stream, its own incremental_forward: "
                     f"{ref['original_b1_samples_per_s']:,.0f} samples/s "
                     f"({ref['detail_original_b1']['threads']} thread(s)); the reference runs at "
                     f"{ref['reference_over_original_b1']:.2f}x of it in this run")
    if "shipped_incremental_b1" in r:
        lines.append("shipped model vs the reference (different models; for information): "
                     + ", ".join(f"{k.removeprefix('shipped_')} {r[k]['ratio']:.1f}x"
                                 for k in ("shipped_incremental_b1", "shipped_incremental_b16",
                                           "shipped_train")))
    return "\n".join(lines)
