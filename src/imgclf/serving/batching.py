"""Running the model for concurrent requests: micro-batches, or one forward per request.

A CNN on a GPU classifies 32 images in far less than 32 times the time of one (the matrix products
fill the device, per-call overhead is paid once; on a CPU a batch saves less: Lite0 in ONNX Runtime
on one thread, 9.2 ms an image alone, 9.5 in fours), so under load the service groups the images
of concurrent requests into one forward pass. Requests put (images, future) on a queue;
a worker task takes the first, adds whatever else is queued up to `max_batch` images, waits at
most `max_wait_ms` for more while other requests are still being read and decoded, runs the
stacked batch in its model thread (torch and ONNX Runtime release the GIL, so the event loop keeps
serving meanwhile) and resolves each request's future with its rows.

On a CPU there is a worker per core, each forward on one thread (forwards_at_once, forward_threads).
One forward on every core lost to the event loop: each operator's threads wait for the slowest,
and the loop decoding the next requests takes a core from them. Lite0 in ONNX Runtime on 2 cores
(bench/service.py, 2026-11-29) served 53 requests/s at 1, 8 and 32 clients so, and 82 / 142 / 153
with two single-threaded workers; PyTorch 15 / 42 / 59 and 25 / 55 / 72. A GPU keeps one worker
and its batches whole.

    batcher = MicroBatcher(model.predict_proba, max_batch=32, max_wait_ms=2, max_queue=512)
    await batcher.start()
    probs = await batcher.submit(images)        # (n, C) for this request's n images

Each request may name the model function it was decoded for (`submit(images, model.predict_proba)`):
after a hot swap (serving.holder) requests for the old and the new model may wait side by side, and
a batch only ever holds requests for one of them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from imgclf.serving.limits import Rejected


def queue_full() -> Rejected:
    return Rejected(503, "the service is at capacity: retry in a moment", "queue_full", headers={"Retry-After": "1"})


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        metrics=None,
        workers: int = 1,
    ):
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000
        self.max_queue, self.metrics, self.workers = max_queue, metrics, workers
        self.incoming = 0  # requests being read and decoded: company worth waiting for
        self.waiting = 0  # images queued, not yet in a forward pass
        self._queue: asyncio.Queue | None = None
        # Items that did not fit a batch, first in the next ones (one per worker at most; a worker
        # that finds none waits on the queue, and the worker that held one takes it after its forward).
        self._held: collections.deque = collections.deque()
        self._tasks, self._thread = [], None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._thread = ThreadPoolExecutor(self.workers, thread_name_prefix="imgclf-model")
        self._tasks = [asyncio.create_task(self._run(), name=f"imgclf-batcher-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        if self._tasks:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._thread.shutdown(wait=True)

    @contextlib.contextmanager
    def arriving(self):
        """Wrap reading and decoding a request, so the worker knows more images are on their way."""
        self.incoming += 1
        try:
            yield
        finally:
            self.incoming -= 1

    async def submit(self, images: np.ndarray, predict: Callable | None = None) -> np.ndarray:
        """Calibrated probabilities for `images` (n, size, size, 3), computed in some batch by
        `predict` (default: the batcher's own function)."""
        if self.waiting + len(images) > self.max_queue:
            raise queue_full()
        future = asyncio.get_running_loop().create_future()
        self._note_waiting(len(images))
        self._queue.put_nowait((images, future, predict or self.predict))
        return await future

    def _note_waiting(self, delta: int) -> None:
        self.waiting += delta
        if self.metrics:
            self.metrics.queue_depth.set(self.waiting)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(loop)
            images, predict = np.concatenate([item[0] for item in batch]), batch[0][2]
            self._note_waiting(-len(images))
            if self.metrics:
                self.metrics.batch_size.observe(len(images))
            try:
                probs = await loop.run_in_executor(self._thread, predict, images)
            except Exception as e:  # noqa: BLE001 - the requests in this batch get a 500, the service goes on
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            start = 0
            for rows, future, _ in batch:
                if not future.done():  # done: the client went away while it waited
                    future.set_result(probs[start : start + len(rows)])
                start += len(rows)

    async def _collect(self, loop) -> list:
        first = self._held.popleft() if self._held else await self._queue.get()
        batch, n = [first], len(first[0])
        deadline = loop.time() + self.max_wait
        while n < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                # Waiting only pays while other requests are on their way; a lone client never waits.
                if remaining <= 0 or self.incoming == 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            # Bound methods of the same model compare equal; another model's requests wait for the next batch.
            if n + len(item[0]) > self.max_batch or item[2] != first[2]:
                self._held.append(item)
                break
            batch.append(item)
            n += len(item[0])
        return batch


class DirectRunner:
    """One forward pass per request: the endpoint as it is usually written, kept as the baseline the
    benchmark compares batching with. Written well, not naively: forwards run in a pool of one
    thread per core (more would only fight over the cores and the GIL), and `imgclf serve
    --no-batching` gives each forward one thread unless --threads says otherwise."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], metrics=None, workers: int | None = None):
        self.predict, self.metrics = predict, metrics
        self.workers = workers or available_cores()
        self._pool = None

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="imgclf-model")

    async def stop(self) -> None:
        if self._pool:
            self._pool.shutdown(wait=True)

    def arriving(self):
        return contextlib.nullcontext()

    async def submit(self, images: np.ndarray, predict: Callable | None = None) -> np.ndarray:
        if self.metrics:
            self.metrics.batch_size.observe(len(images))
        return await asyncio.get_running_loop().run_in_executor(self._pool, predict or self.predict, images)


def forward_threads(threads: int | None, batching: bool, cpu: bool) -> int | None:
    """Threads one forward pass runs on: `threads` (--threads) if given; else one on a CPU, and one per
    forward without batching (the forwards run one per core at once); None (the engine's own choice,
    every core) for a GPU's batches."""
    return threads or (1 if cpu or not batching else None)


def forwards_at_once(threads: int | None, cpu: bool) -> int:
    """Micro-batches in flight at once: on a CPU, as many as the cores hold forwards of `threads` each
    (model_threads: what the served model's engine was set up with; None, every core: one); on a GPU
    one, whose batches are what make it fast."""
    return max(1, available_cores() // threads) if cpu and threads else 1


def model_threads(model) -> int | None:
    """Threads one forward of a loaded model runs on, as its engine was set up (`imgclf serve` sets
    forward_threads before loading; an app built around a model loaded otherwise keeps its own): an
    ONNX Runtime session's intra-op threads, else torch's; None where the session takes every core."""
    session = getattr(model, "session", None)
    if session is not None:
        return session.get_session_options().intra_op_num_threads or None
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def available_cores() -> int:
    """CPU cores this process may run on (a container or taskset can allow fewer than the machine has)."""
    from imgclf.core.cpus import usable_cpus

    return usable_cpus()
