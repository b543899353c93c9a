"""The terminal: one rich Console per command, quiet when the caller asked for no output; and
silence for the libraries that print past it."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading


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


@contextlib.contextmanager
def quiet_logs(*names: str, level: int = logging.WARNING):
    """The named libraries' loggers log only `level` and above inside the block, then as they were.
    Where a host configured logging at INFO (a Ray worker, a notebook), their chatter would reach
    the user: onnxscript's optimiser logs ~100 INFO lines a network."""
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, old in zip(loggers, saved):
            lg.setLevel(old)


@contextlib.contextmanager
def stderr_without(*fragments: str):
    """Lines holding one of `fragments` left out of what native code (a C++ library's log) writes to
    standard error inside the block; Python's own writes go straight to the real stream, so a rich
    bar on a terminal still sees a terminal. Ray 2.5x's driver logs an "E" line for every Ray Data
    actor it starts (ray-project/ray#57733, harmless), which reads as a failure of ours."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no standard error to filter
        yield
        return
    try:  # Python's stream on descriptor 2 moves to a copy of it; another (a notebook's) stays as it is
        own = sys.stderr.fileno() == 2
    except (OSError, ValueError, AttributeError):
        own = False
    drop = [f.encode() for f in fragments]
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def relay():
        with os.fdopen(read, "rb") as lines:
            for line in lines:
                if not any(f in line for f in drop):
                    os.write(saved, line)

    relay_thread = threading.Thread(target=relay, name="stderr-filter", daemon=True)
    relay_thread.start()
    python_stderr = sys.stderr
    if own:
        encoding = python_stderr.encoding or "utf-8"
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=encoding, errors="replace")
    try:
        yield
    finally:
        if own:
            sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(saved, 2)  # the pipe's last writer closed: the relay reads to its end and stops
        relay_thread.join(timeout=5)
        if not relay_thread.is_alive():  # else a child process still holds the pipe: leave the relay its target
            os.close(saved)


def per_second(rate: float) -> str:
    """'258', '3.2', '0.41': a rate as lines print it; a few images in a cluster's start-up seconds
    ran at well under one a second, which a whole number printed as 0."""
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"
