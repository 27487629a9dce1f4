"""Shared CLI plumbing (argument checks, output folders, run_cli): one-line errors with exit code 2, tracebacks only with --debug."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from wavetyp.core.errors import EXPECTED_ERRORS, UsageError, error_line


def run_cli(parser: argparse.ArgumentParser, body, argv=None) -> int:
    """Parse args and run body(args); project errors become `error: ...` and exit 2.

    Expected failures (bad arguments, unusable files, unwritable folders) are one line on
    stderr, never a traceback; `--debug` re-raises them so the traceback shows. Anything
    else is a bug and keeps its traceback.
    """
    args = parser.parse_args(argv)
    try:
        return int(body(args) or 0)
    except EXPECTED_ERRORS as e:
        if getattr(args, "debug", False):
            raise
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# ------------------------------------------------------------ argument checks

def check_positive(name: str, value, allow_zero: bool = False):
    """Finite and > 0 (or >= 0 with allow_zero); None passes."""
    if value is None:
        return value
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def check_probability(name: str, value):
    """In (0, 1]; None passes."""
    if value is None:
        return value
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise UsageError(f"{name} must be in (0, 1], got {value}")
    return value


def check_output_dir(path, overwrite: bool = False, expect: list[str] | None = None) -> Path:
    """Create `path` if needed and make sure it is writable.

    With `expect` (file names about to be written), refuses to overwrite any that exists
    unless `overwrite` is set, so nothing is replaced silently.
    """
    path = Path(path)
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise UsageError(f"cannot create output folder {path}: {blocker} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output folder {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"output folder {path} is not writable")
    if expect and not overwrite:
        clash = [n for n in expect if (path / n).exists()]
        if clash:
            raise UsageError(f"{path / clash[0]} exists ({len(clash)} file(s) would be "
                             "overwritten); pass --overwrite or choose another --out")
    return path


def _file_in_the_way(path: Path) -> Path | None:
    """`path` itself or the nearest existing ancestor, when that is not a folder."""
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def check_new_file(path, overwrite: bool = False, flag: str = "--overwrite") -> Path:
    """An output file about to be written: its folder must be usable and an existing file
    is only replaced with `overwrite` (nothing is overwritten silently)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name")
    check_output_dir(path.parent if str(path.parent) else ".")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists; pass {flag} to replace it, or choose another name")
    return path


def check_count(name: str, value, minimum: int = 1):
    """An integer option that must be >= minimum (None passes)."""
    if value is not None and value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value}")
    return value


def add_common(p: argparse.ArgumentParser, checkpoint: bool = True, device: bool = True):
    """Arguments every model-using CLI shares, with the same names everywhere."""
    if checkpoint:
        p.add_argument("--checkpoint", default=None,
                       help="model checkpoint; none: the shipped checkpoints/wavetyp-fsdd.pt")
    if device:
        p.add_argument("--device", default="cpu",
                       help="cpu, cuda, mps or auto (auto: cuda > mps > cpu)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
