"""`python -m wavetyp.listen`: listening by recognizer. Renders every conditioning level that
carries a digit (label, label + speaker, vocoder) under every decoding setting (the demo's
sweep, the literature's min-p / epsilon / eta / mirostat, wavetyp's mirostat-gap, beam search),
asks the spoken-digit recognizer what each render says, and reports accuracy, p(digit), gap, z,
silent frames, the fricative band and (vocoder) the log-mel distance to the recording, each with
a 95 % bootstrap interval over digits/recordings (`wavetyp.analysis.listening`)."""
from __future__ import annotations

import argparse
import sys
import time

from wavetyp.core.checks import (
    HelpFormatter,
    add_common,
    check_count,
    check_output_dir,
    check_positive,
    run_cli,
)
from wavetyp.core.errors import UsageError

QUICK = {"digits": (0, 6, 7), "renders": 1, "seconds": 0.25, "recordings": 1, "draws": 1,
         "beam_items": 1, "beam_seconds": 0.1, "vocoder_seconds": 0.25}


def build_parser() -> argparse.ArgumentParser:
    from wavetyp.analysis.listening import LEVELS, N_BOOT, ListenPlan
    d = ListenPlan()
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.listen",
        description="Recognizer accuracy, p(digit), typicality gap and z, silent frames, the "
                    "fricative band and (vocoder) the log-mel distance per conditioning level and "
                    "decoding setting, with 95 % bootstrap intervals; writes listening.md/.json/.png.",
        formatter_class=HelpFormatter)
    add_common(p)
    p.add_argument("--out", default="samples/listening", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    p.add_argument("--quick", action="store_true",
                   help="a small check: digits 0, 6, 7, one render each, 0.25 s, one short beam")
    p.add_argument("--levels", default=",".join(d.levels), help=f"comma list from {', '.join(LEVELS)}")
    p.add_argument("--settings", default="all",
                   help="'all', 'sweep' (greedy, tau, top-p, typical-p), 'new' (min-p, epsilon, eta, "
                        "mirostat), or a comma list of setting names (e.g. tau1,tau1-minp0.05)")
    p.add_argument("--renders", type=int, default=None,
                   help=f"label levels: renders per digit and setting; none: {d.renders}")
    p.add_argument("--seconds", type=float, default=None,
                   help=f"label levels: render length in seconds; none: {d.seconds:g}")
    p.add_argument("--recordings", type=int, default=None,
                   help=f"vocoder: test recordings per digit; none: {d.recordings}")
    p.add_argument("--draws", type=int, default=None,
                   help=f"vocoder: renders per recording and setting (each recording has its own "
                        f"seeds); none: {d.draws}")
    p.add_argument("--vocoder-seconds", type=float, default=None,
                   help="vocoder: cut each recording to this length; none: the whole recording "
                        f"({QUICK['vocoder_seconds']:g} s with --quick)")
    p.add_argument("--beam-items", type=int, default=None,
                   help=f"conditions per level that also get a beam search; none: {d.beam_items}")
    p.add_argument("--beam-seconds", type=float, default=None,
                   help="beam search length; none: the condition's full length")
    p.add_argument("--bootstrap", type=int, default=N_BOOT, help="bootstrap resamples per interval")
    p.add_argument("--seed", type=int, default=0, help="condition i's calls use seeds from seed + 100 i")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (on a busy 2-core machine one is much faster)")
    p.add_argument("--recognizer", default=None,
                   help="recognizer checkpoint; none given: the shipped checkpoints/recognizer.pt")
    p.add_argument("--data-dir", default=None,
                   help="FSDD folder; none: $WAVETYP_DATA, ../shared/data/fsdd, ~/.cache/wavetyp/fsdd")
    p.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                   help="render nothing: pool the renders of earlier runs' listening.json files "
                        "(e.g. one run per level) and write one report from them")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def pick_settings(text: str):
    from wavetyp.analysis.listening import ALL_SETTINGS, NEW_SETTINGS
    from wavetyp.analysis.sweep import SETTINGS
    named = {"all": ALL_SETTINGS, "sweep": list(SETTINGS), "new": NEW_SETTINGS}
    if text in named:
        return list(named[text])
    by_name = {s.name: s for s in ALL_SETTINGS}
    out = []
    for name in (t.strip() for t in text.split(",") if t.strip()):
        if name not in by_name:
            raise UsageError(f"unknown setting {name!r} (known: {', '.join(by_name)})")
        out.append(by_name[name])
    if not out:
        raise UsageError("--settings names no setting")
    return out


def make_plan(a):
    from wavetyp.analysis.listening import ListenPlan
    base = ListenPlan(**QUICK) if a.quick else ListenPlan()
    for flag in ("renders", "seconds", "recordings", "draws", "beam_items", "beam_seconds",
                 "vocoder_seconds"):
        if getattr(a, flag) is not None:
            setattr(base, flag, getattr(a, flag))
    base.levels = tuple(t.strip() for t in a.levels.split(",") if t.strip())
    base.settings = pick_settings(a.settings)
    base.seed = a.seed
    return base


def plan_text(plan, counts) -> str:
    from wavetyp.analysis.listening import BEAM
    parts = []
    for lv, c in counts.items():
        per = sorted({v for k, v in c["renders"].items() if k != BEAM})
        parts.append(f"{lv}: {c['units']} units, {'/'.join(map(str, per))} renders per sampled setting, "
                     f"{c['renders'].get(BEAM, 0)} beam")
    what = []
    if {"label", "speaker"} & set(plan.levels):
        what.append(f"label levels: {plan.renders} render(s) per digit, {plan.seconds:g} s")
    if "vocoder" in plan.levels:
        what.append(f"vocoder: {plan.recordings} recording(s) per digit x {plan.draws} draw(s)"
                    + ("" if plan.vocoder_seconds is None else f", cut to {plan.vocoder_seconds:g} s"))
    beam = (f"beam on {plan.beam_items} condition(s) per level"
            + ("" if plan.beam_seconds is None else f" ({plan.beam_seconds:g} s)"))
    return "; ".join([f"{len(plan.settings)} sampled settings", *what, beam, *parts])


def run(a) -> int:
    import torch

    from wavetyp.analysis.listening import (
        aggregate,
        paired_differences,
        plan_counts,
        plan_items,
        plan_samples,
        run_plan,
    )
    from wavetyp.analysis.recognizer import load_recognizer
    from wavetyp.core.checkpoint import load_model
    from wavetyp.core.runtime import cpu_model, pick_device
    from wavetyp.data.fsdd import load_fsdd_test
    from wavetyp.report.listening_page import FILES, difference_table, markdown_table, write_report
    t0 = time.time()
    for flag in ("renders", "recordings", "draws", "threads", "bootstrap"):
        check_count(f"--{flag}", getattr(a, flag))
    check_count("--beam-items", a.beam_items, minimum=0)
    check_positive("--seconds", a.seconds)
    check_positive("--beam-seconds", a.beam_seconds)
    check_positive("--vocoder-seconds", a.vocoder_seconds)
    plan = make_plan(a)
    out = check_output_dir(a.out, a.overwrite, expect=list(FILES))
    torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    model, _ = load_model(a.checkpoint, dev)
    recognizer, _ = load_recognizer(a.recognizer, dev)
    corpus = load_fsdd_test(a.data_dir, model.cfg.sample_rate, progress=not a.no_progress)
    items = plan_items(model, corpus, plan)
    counts = plan_counts(items, plan.settings)
    text = plan_text(plan, counts)
    print(f"plan: {text}\nsamples to generate: {plan_samples(items, plan.settings)}", flush=True)
    rows = run_plan(model, items, plan.settings, recognizer, plan.seed, progress=not a.no_progress)
    cells = aggregate(rows, a.bootstrap, plan.seed)
    diffs = paired_differences(rows, n_boot=a.bootstrap, seed=plan.seed)
    meta = {"checkpoint": str(a.checkpoint or "shipped"), "recognizer": str(a.recognizer or "shipped"),
            "cpu": cpu_model(), "device": str(dev), "threads": a.threads, "quick": a.quick,
            "wall_seconds": time.time() - t0, "plan_text": text, "counts": counts,
            "settings": [s.to_dict() | {"name": s.name} for s in plan.settings],
            "plan": {k: v for k, v in vars(plan).items() if k != "settings"}, "bootstrap": a.bootstrap,
            "command": " ".join(sys.argv)}
    files = write_report(out, cells, rows, meta, diffs)
    print(markdown_table(cells))
    print("\n" + difference_table(diffs))
    print(f"\nwrote {', '.join(str(f) for f in files)} ({len(rows)} renders) in "
          f"{(time.time() - t0) / 60:.1f} min on {cpu_model()}")
    return 0


def meta_plan_text(meta: dict) -> str:
    """A saved run's plan in words, rebuilt from its plan and counts (its own text otherwise)."""
    from types import SimpleNamespace
    if "plan" not in meta or "counts" not in meta:
        return meta.get("plan_text", "")
    return plan_text(SimpleNamespace(**meta["plan"], settings=meta.get("settings", [])), meta["counts"])


def combine(a) -> int:
    """One report from the rows of earlier runs (same measures, intervals recomputed)."""
    import json
    from pathlib import Path

    from wavetyp.analysis.listening import aggregate, paired_differences
    from wavetyp.report.listening_page import FILES, difference_table, markdown_table, write_report
    check_count("--bootstrap", a.bootstrap)
    out = check_output_dir(a.out, a.overwrite, expect=list(FILES))
    rows, metas = [], []
    for f in a.combine:
        try:
            data = json.loads(Path(f).read_text())
            rows += data["rows"]
            metas.append(data["meta"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{f}: not a listening.json ({type(e).__name__})") from None
    cells = aggregate(rows, a.bootstrap, a.seed)
    diffs = paired_differences(rows, n_boot=a.bootstrap, seed=a.seed)
    meta = {"checkpoint": metas[0].get("checkpoint"), "recognizer": metas[0].get("recognizer"),
            "cpu": metas[0].get("cpu"), "wall_seconds": sum(m.get("wall_seconds") or 0 for m in metas),
            "plan_text": " | ".join(meta_plan_text(m) for m in metas), "combined": metas,
            "bootstrap": a.bootstrap, "command": " ".join(sys.argv)}
    walls = ", ".join(f"{(m.get('wall_seconds') or 0) / 60:.1f}" for m in metas)
    meta["wall_text"] = f"{walls} min for the {len(metas)} run(s) (side by side or one after another)"
    files = write_report(out, cells, rows, meta, diffs)
    print(markdown_table(cells))
    print("\n" + difference_table(diffs))
    print(f"\nwrote {', '.join(str(f) for f in files)} ({len(rows)} renders from {len(metas)} runs)")
    return 0


def main(argv=None) -> int:
    return run_cli(build_parser(), lambda a: combine(a) if a.combine else run(a), argv)


if __name__ == "__main__":
    sys.exit(main())
