"""`python -m wavetyp.recognize FILES_OR_DIRS`: which digit each recording or render says, its
probability and the top 3 (and the likeliest FSDD speaker); an accuracy line when the intended
digit is known. `--train OUT` trains the recognizer on the FSDD training split instead."""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from wavetyp.core.checks import HelpFormatter, add_common, check_count, check_new_file, run_cli
from wavetyp.core.errors import UsageError

LEADING_DIGIT = re.compile(r"(\d)(?!\d)")     # 3_theo_0.wav, 3-greedy.wav; not 30hz.wav


def build_parser() -> argparse.ArgumentParser:
    from wavetyp.analysis.recognizer_train import TrainSettings
    d = TrainSettings()
    p = argparse.ArgumentParser(
        prog="python -m wavetyp.recognize",
        description="Recognize the spoken digit of audio files (recordings or renders) with the "
                    "project's small log-mel CNN, or train it with --train.",
        formatter_class=HelpFormatter)
    p.add_argument("paths", nargs="*", metavar="FILE_OR_DIR",
                   help="audio files, folders of them, or fsdd:NAME (e.g. fsdd:6_theo_0)")
    p.add_argument("--expect", type=int, default=None, metavar="D",
                   help="the digit every file should say; none given: a leading digit of each "
                        "file name (3_theo_0.wav), files without one are not counted")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json or --train file")
    p.add_argument("--checkpoint", default=None,
                   help="recognizer checkpoint; none given: the shipped checkpoints/recognizer.pt")
    add_common(p, checkpoint=False)
    g = p.add_argument_group("training (with --train)")
    g.add_argument("--train", default=None, metavar="OUT",
                   help="train on the FSDD training split, evaluate on the test split and write the "
                        "checkpoint to OUT (no FILE_OR_DIR then)")
    g.add_argument("--data-dir", default=None, help="FSDD folder; none given: the usual places")
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training split")
    g.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the weights, augmentation and test noise")
    g.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (on a busy 2-core machine one is several times faster)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def expected_digit(path: Path, expect: int | None) -> int | None:
    if expect is not None:
        return expect
    m = LEADING_DIGIT.match(path.name)
    return int(m.group(1)) if m else None


def read_inputs(items, sample_rate: int):
    """Paths (fsdd:NAME resolved, folders expanded) -> (paths, float waves); any unusable file
    is an AudioError (one line, exit 2)."""
    from wavetyp.core.audio import load_codes, mu_law_decode
    from wavetyp.core.scoring import expand_paths
    from wavetyp.data.fsdd import resolve_audio_arg
    paths = expand_paths([resolve_audio_arg(it) for it in items])
    if not paths:
        raise UsageError("no audio files found in " + ", ".join(map(str, items)))
    return paths, [mu_law_decode(load_codes(p, sample_rate)).numpy() for p in paths]


def recognize_files(a) -> int:
    import torch

    from wavetyp.analysis.recognizer import load_recognizer, predict, top_k
    from wavetyp.core.runtime import pick_device
    torch.set_num_threads(max(1, a.threads))
    model, _ = load_recognizer(a.checkpoint, pick_device(a.device))
    paths, waves = read_inputs(a.paths, model.cfg.sample_rate)
    d_probs, s_probs = predict(model, waves)
    speakers = model.cfg.speakers
    width = min(max(len(p.name) for p in paths), 40)
    print(f"{'file':<{width}}  digit      p  top 3                        expect"
          + ("  speaker" if s_probs is not None else ""))
    rows, known, right = [], 0, 0
    for i, path in enumerate(paths):
        top = top_k(d_probs[i], 3)
        want = expected_digit(path, a.expect)
        row = {"path": str(path), "digit": top[0][0], "probability": top[0][1],
               "top3": [[k, p] for k, p in top], "expected": want}
        mark = "-" if want is None else f"{want} {'ok' if want == top[0][0] else 'WRONG'}"
        line = (f"{path.name[:width]:<{width}}  {top[0][0]:>5}  {top[0][1]:.3f}  "
                f"{', '.join(f'{k} {p:.3f}' for k, p in top):<27}  {mark:<8}")
        if s_probs is not None:
            (k, p), = top_k(s_probs[i], 1)
            row.update(speaker=speakers[k], speaker_probability=p)
            line += f"  {speakers[k]} {p:.2f}"
        print(line.rstrip())
        rows.append(row)
        if want is not None:
            known += 1
            right += int(want == top[0][0])
    summary = None
    if known:
        summary = {"correct": right, "known": known, "accuracy": right / known}
        print(f"accuracy: {right}/{known} = {right / known:.1%} (files whose intended digit is known"
              f"{'' if known == len(paths) else f'; {len(paths) - known} without one'})")
    if a.json:
        Path(a.json).write_text(json.dumps({"files": rows, "accuracy": summary}, indent=2))
    return 0


def train_and_save(a) -> int:
    import torch

    from wavetyp.analysis.recognizer import RecognizerConfig, save_recognizer
    from wavetyp.analysis.recognizer_train import TrainSettings, evaluate, format_metrics, train_recognizer
    from wavetyp.core.runtime import cpu_model
    from wavetyp.data.load import load_corpus
    torch.set_num_threads(max(1, a.threads))
    t0 = time.time()
    corpus = load_corpus("fsdd", a.data_dir, progress=not a.no_progress, download=False)
    cfg = RecognizerConfig(sample_rate=corpus.sample_rate, speakers=list(corpus.speakers))
    settings = TrainSettings(epochs=a.epochs, seed=a.seed)
    model, history = train_recognizer(corpus.train, cfg, settings, progress=not a.no_progress)
    t_train = time.time() - t0
    metrics = evaluate(model, corpus.test, seed=a.seed)
    wall = time.time() - t0
    print(format_metrics(metrics))
    save_recognizer(model, a.train, metrics=metrics, train_args={**settings.to_dict(), "threads": a.threads},
                    history=history, wall_seconds=wall, train_seconds=t_train, cpu=cpu_model(),
                    data={"dataset": "fsdd", "train": len(corpus.train), "test": len(corpus.test)})
    print(f"wrote {a.train} ({Path(a.train).stat().st_size / 1024:.0f} KiB); {wall / 60:.1f} min in all "
          f"({t_train / 60:.1f} min loading + training) on {cpu_model()} with {a.threads} thread(s)")
    return 0


def main(argv=None) -> int:
    parser = build_parser()

    def body(a):
        check_count("--threads", a.threads)
        if a.train:
            if a.paths:
                raise UsageError("--train takes no FILE_OR_DIR (it trains on FSDD)")
            check_count("--epochs", a.epochs)
            check_new_file(a.train, a.overwrite)
            return train_and_save(a)
        if not a.paths:
            raise UsageError("give audio files or folders to recognize (or --train OUT)")
        if a.expect is not None and not 0 <= a.expect <= 9:
            raise UsageError(f"--expect must be a digit 0-9, got {a.expect}")
        if a.json:
            check_new_file(a.json, a.overwrite)
        return recognize_files(a)

    return run_cli(parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
