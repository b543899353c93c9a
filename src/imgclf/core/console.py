"""The terminal: one rich Console per command, quiet when the caller asked for no output; and
silence for the libraries that print past it."""

from __future__ import annotations

import contextlib
import io
import os
import sys


def console_for(verbose: bool):
    from rich.console import Console

    return Console(quiet=not verbose, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def silent_stdout():
    """Nothing written to standard output, by Python or C++, inside the block: torch's ONNX exporter
    prints its chatter, and where a network cannot be exported its whole IR graph (~80 lines for a
    small CNN) from C++, past sys.stdout (torch 2.14: its ONNX log is always on)."""
    try:
        sys.stdout.flush()  # what was printed before goes out before the descriptor is muted
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no standard output to silence (a closed descriptor)
        saved = None
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(io.StringIO()):
            if saved is not None:
                os.dup2(devnull.fileno(), 1)
            yield
    finally:
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
