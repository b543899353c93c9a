"""One scan at a time, a short queue, and a deadline for every scan request (POST /scan, and POST
/faces/identify, which shares the queue).

A scan is seconds of work on every core, so scans run one at a time: two at once would each take
twice as long and starve /predict of CPU. A request waits its turn in the event loop (no thread held
while it waits) until its deadline; past `size` waiting requests, or past the deadline, it gets 503
with Retry-After instead of a connection that hangs. A running scan checks its `Stop` between
batches, so a shutdown (SIGTERM) or its deadline ends it within a batch.
"""

from __future__ import annotations

import asyncio
import math

from starlette.concurrency import run_in_threadpool

from imgclf.core.work import Stop, Stopped
from imgclf.serving.limits import Rejected

POLL_S = 0.05  # how often a waiting request looks whether the scan ahead of it is done


class ScanQueue:
    def __init__(self, size: int, deadline_s: float, scan_s: float):
        self.size, self.deadline_s, self.scan_s = size, deadline_s, scan_s
        self.waiting = 0
        self.busy = False  # touched only in the event loop's thread: no lock needed

    async def run(self, stop: Stop, fn, *args):
        """`fn(*args, stop)` in a worker thread once no other scan runs; Rejected 503 when the
        queue is full, the deadline passes first, or the service is shutting down."""
        if self.busy and self.waiting >= self.size:
            waiting = "a scan is" if self.waiting == 1 else f"{self.waiting} scans are"
            raise self.busy_now(f"{waiting} already waiting for the one running")
        self.waiting += 1
        try:
            while self.busy:
                self._check(stop)
                await asyncio.sleep(POLL_S)
            self._check(stop)
        finally:
            self.waiting -= 1
        self.busy = True
        try:
            return await run_in_threadpool(fn, *args, stop)
        except Stopped as e:
            raise self.stopped(e) from None
        finally:
            self.busy = False

    def _check(self, stop: Stop) -> None:
        try:
            stop.check()
        except Stopped as e:
            raise self.stopped(e) from None

    def stopped(self, e: Stopped) -> Rejected:
        if e.reason == "cancelled":
            return Rejected(
                503, "the service is shutting down: retry in a moment", "shutting_down", {"Retry-After": "5"}
            )
        return self.busy_now(f"the scan did not finish within its {self.deadline_s:g} s deadline (scan_deadline_s)")

    def busy_now(self, why: str) -> Rejected:
        wait = math.ceil(self.scan_s * (self.waiting + 1))
        return Rejected(
            503,
            f"{why}: the service scans one photo at a time (/scan, /faces/identify); retry in {wait} s",
            "queue_full",
            {"Retry-After": str(wait)},
        )
