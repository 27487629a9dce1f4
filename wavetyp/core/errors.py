"""The project's exception types: bad input that the CLIs report as one line (exit 2)."""
from __future__ import annotations


class UsageError(ValueError):
    """Bad user input (an argument, a path): reported as one line, exit code 2."""


class AudioError(ValueError):
    """A file that cannot be used as audio: unreadable, empty, non-finite, ..."""


class DataError(RuntimeError):
    """A data problem the user must fix (no usable audio, bad folder, bad download)."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why in one line."""


# What the CLIs report as `error: ...` instead of a traceback (OSError: unusable files).
EXPECTED_ERRORS = (UsageError, AudioError, DataError, CheckpointError, OSError)


def error_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
