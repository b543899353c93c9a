"""When the command the user typed began: a time budget (`imgclf train --time-budget 2m`) is the
wall time they wait for, Python's start-up and imports included, not only the part after them.

The CLI stamps it as its first act; from Python (imgclf.train) nothing is stamped and a budget
counts from the call itself: a long-lived session's earlier work is not this run's.
"""

from __future__ import annotations

import time

_command_started: float | None = None


def stamp_command(at: float | None = None) -> None:
    """Called by a CLI command that runs one job in this process; `at`: an earlier time.monotonic()
    the command began (a Ray worker given its driver's start)."""
    global _command_started
    _command_started = time.monotonic() if at is None else at


def run_started() -> float:
    """The time.monotonic() a run's budget counts from: the command's start, else now. Taken once
    (the stamp is used up), so a second run in the same process counts from its own call."""
    global _command_started
    started, _command_started = _command_started, None
    return time.monotonic() if started is None else started
