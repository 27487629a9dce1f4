"""Shared CLI plumbing: one-line errors with exit code 2, tracebacks only with --debug."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path


class UsageError(ValueError):
    """Bad user input (an argument, a path): reported as one line, exit code 2."""


def run_cli(parser: argparse.ArgumentParser, body, argv=None) -> int:
    """Parse args and run body(args); project errors become `error: ...` and exit 2."""
    from .audio import AudioError
    from .checkpoint import CheckpointError
    from .data import DataError

    args = parser.parse_args(argv)
    try:
        return int(body(args) or 0)
    except (UsageError, AudioError, DataError, CheckpointError, OSError) as e:
        if getattr(args, "debug", False):
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
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


def add_common(p: argparse.ArgumentParser, checkpoint: bool = True, device: bool = True):
    """Arguments every model-using CLI shares, with the same names everywhere."""
    if checkpoint:
        p.add_argument("--checkpoint", default=None,
                       help="model checkpoint (default: the shipped checkpoints/wavetyp-fsdd.pt)")
    if device:
        p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
