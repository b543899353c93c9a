"""Work bounded in seconds and stoppable between batches: what the scans (crop model and detector)
share with the CLI and the service that run them.

A scan's cost grows with the photo's shape and the options, not with its bytes: a 99-byte PNG of
20000 x 1 pixels once ran for minutes. So each model's cost is measured once when it is first
needed (a few timed batches, `measured`), a request's cost is estimated from the photo's header
before a pixel is decoded, and work over the budget is refused (`TooMuchWork`) with what would make
it fit. Work that runs checks a `Stop` between batches, so a shutdown, Ctrl-C or a deadline ends it
within one batch.

    stop = Stop(event=shutting_down, seconds=30)
    for batch in batches:
        stop.check()          # raises Stopped("cancelled") or Stopped("deadline")
        ...
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import weakref
from dataclasses import dataclass, field

from imgclf.core.errors import UserError

# The longest side and the most elongated shape a photo may have to be scanned. A scan resamples the
# photo so that its smallest window becomes the model's input: a strip thinner than that window is
# magnified into millions of pixels. 20,000 px is past any camera's long side (a 200 MP phone photo
# is 16,320 x 12,240) but an unstitched panorama's; 10:1 passes panoramas and refuses strips.
MAX_SIDE = 20_000
MAX_ASPECT = 10.0
# Estimated seconds one photo's scan may take (`imgclf scan --max-seconds`, the API's `max_seconds`): a
# 640 x 480 photo fits with any model; the default Lite0 crop model's with its smallest window raised.
MAX_SECONDS = 10.0
BATCH_SECONDS = 0.25  # one batch of work, at most: a stop waits no longer than this for the batch to end


class Stopped(Exception):
    """Work stopped between two batches: `reason` is "cancelled" (shutdown, Ctrl-C) or "deadline"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TooMuchWork(UserError):
    """A scan refused before it starts: its estimated cost, or its photo's shape, is over the limit.
    `status` is the HTTP status the service answers with (413: too much; 422: a shape never scanned)."""

    def __init__(self, message: str, status: int = 413):
        super().__init__(message)
        self.status = status


def within_limit(seconds: float, limit: float, work: str, limit_name: str, fix: str) -> float:
    """`seconds`, or TooMuchWork saying that `work` would take them, over `limit` (the option or setting
    `limit_name`), and `fix`: how to make it fit. One wording for every estimate refused so."""
    if seconds > limit:
        raise TooMuchWork(f"{work} would take about {seconds:,.1f} s, over the {limit:g} s limit ({limit_name}): {fix}")
    return seconds


def all_refused(reasons: list[str]) -> TooMuchWork:
    """One error for a command whose every photo was refused: the first reason, and how many more."""
    more = len(reasons) - 1
    return TooMuchWork(reasons[0] + (f" (and {more} more image{'s' if more > 1 else ''})" if more else ""))


@dataclass
class Stop:
    """When to stop: once `event` is set (a threading.Event) or `seconds` after it was made."""

    event: threading.Event | None = None
    seconds: float | None = None
    deadline: float | None = field(default=None, init=False)

    def __post_init__(self):
        if self.seconds is not None:
            self.deadline = time.monotonic() + self.seconds

    def check(self) -> None:
        if self.event is not None and self.event.is_set():
            raise Stopped("cancelled")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Stopped("deadline")


def check(stop: Stop | None) -> None:
    """stop.check() when there is a stop to check."""
    if stop is not None:
        stop.check()


def check_shape(width: int, height: int, max_side: int = MAX_SIDE, max_aspect: float = MAX_ASPECT) -> None:
    """Refuse (TooMuchWork) a photo whose long side or aspect ratio is over the limits."""
    long, short = max(width, height), min(width, height)
    if long > max_side:
        raise TooMuchWork(
            f"image is {width:,} x {height:,} px: its long side is over the {max_side:,} px limit of a scan; "
            "send a smaller image"
        )
    if short < 1:
        raise TooMuchWork(f"image is {width:,} x {height:,} px: it holds no pixels", 422)
    if long / short > max_aspect:
        raise TooMuchWork(
            f"image is {width:,} x {height:,} px: an aspect ratio over {max_aspect:g}:1, which a scan refuses; "
            "crop it to the part to look at",
            422,
        )


def timed(fn, runs: int = 4, enough: float = 0.05, most: int = 15) -> float:
    """Seconds of one call of `fn`: the lower quartile of at least `runs` timed calls after an untimed
    one (which pays the first call's allocations), more while they add up to under `enough` seconds
    (up to `most`). Not the fastest, which a scan rarely matches, nor the median: on a 2-core machine
    shared with other jobs, torch's two threads wait for each other in bursts, a call of 1 ms took
    50 ms one time in three, and a median of three once priced a 1 ms pass at 380 ms."""
    fn()
    times: list[float] = []
    while len(times) < runs or (sum(times) < enough and len(times) < most):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 4]


_MEASURED: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()


def measured(owner, key, measure):
    """`measure()`, run once per loaded `owner` (a model or a network) and `key`, then remembered for
    as long as the owner lives: a model's cost is measured when it is first needed, not per photo."""
    costs = _MEASURED.setdefault(owner, {})
    if key not in costs:
        costs[key] = measure()
    return costs[key]


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """Within the block, SIGTERM ends the work as Ctrl-C does (KeyboardInterrupt, so what a Ctrl-C
    closes and writes is closed and written), instead of killing the process mid-write. In the main
    thread only (the only one that may handle signals); elsewhere, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
