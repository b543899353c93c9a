"""The model a service answers with, replaceable while it serves (hot swap).

Routes read `holder.model` once per request and use that object for the whole request: decoding
(its input size), the forward pass and the answer (its classes). A swap replaces one reference, so
a request sees the old model or the new one, never half of each; requests already in flight finish
on the model they started with.

    holder = ModelHolder(imgclf.load("runs/flowers-1"))
    app = create_app(holder)                 # create_app(model) wraps a plain model the same way
    holder.swap(imgclf.load("runs/flowers-2"), version=2)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from imgclf.serving.info import model_info


@dataclass(frozen=True)
class Served:
    """One model with what describes it: replaced together, read together."""

    model: object
    version: int | None
    info: dict


class ModelHolder:
    def __init__(self, model, version: int | None = None, alias: str | None = None):
        self.alias = alias  # the registry alias followed, or None for a fixed run
        self.swaps = 0  # successful swaps since start
        self.failures = 0  # attempted swaps that failed
        self.swap_error: str | None = None  # why the last attempted swap failed; None once one succeeds
        self._served = Served(model, version, model_info(model))
        self._listeners: list[Callable[["ModelHolder"], None]] = []
        self._followers: list = []  # background threads (hotswap.RegistryFollower) started with the app
        self._lock = threading.Lock()

    @property
    def current(self) -> Served:
        """Model, version and info as one consistent snapshot."""
        return self._served

    @property
    def model(self):
        return self._served.model

    @property
    def version(self) -> int | None:
        return self._served.version

    @property
    def name(self) -> str:
        return self._served.info["name"]

    @property
    def info(self) -> dict:
        """What GET /model says about the model (the app adds its service settings)."""
        served = self._served
        return {
            **served.info,
            "version": served.version,
            "alias": self.alias,
            "swaps": self.swaps,
            "swap_error": self.swap_error,
        }

    def swap(self, model, version: int | None = None) -> None:
        """Serve `model` from the next request on (one reference assignment: atomic for readers)."""
        served = Served(model, version, model_info(model))
        with self._lock:
            self._served = served
            self.swaps += 1
            self.swap_error = None
        for listener in self._listeners:
            listener(self)

    def failed(self, error: str) -> None:
        """Record a swap that did not happen; the current model goes on serving."""
        self.swap_error = error
        self.failures += 1
        for listener in self._listeners:
            listener(self)

    def on_change(self, listener: Callable[["ModelHolder"], None]) -> None:
        """Call `listener(holder)` after every swap or failed swap (the app updates its metrics)."""
        self._listeners.append(listener)

    def add_follower(self, follower) -> None:
        """A background thread with start()/stop() that the app runs for its lifetime."""
        self._followers.append(follower)

    def start(self) -> None:
        for f in self._followers:
            f.start()

    def stop(self) -> None:
        for f in self._followers:
            f.stop()
