"""Following a registry alias while serving: `imgclf serve --registry registry --alias production`.

A background thread looks at registry/aliases.json about twice a second. Looking is a stat (mtime,
size, inode: `registry promote` replaces the file atomically, so any change shows there); only when
it changed is the alias read again. When the alias points at another version, that version's run is
loaded with the same backend, device and TTA, warmed with one forward pass (the first call pays for
allocations and kernel choices, which no client should wait for) and swapped into the holder. A
version that fails to load leaves the old model serving; the reason is printed and shown in /model
as `swap_error`.

    holder = ModelHolder(model, version=1, alias="production")
    follow_registry(holder, "registry", "production", lambda run: imgclf.load(run))
    app = create_app(holder)     # the app starts and stops the follower with itself
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from imgclf.serving.holder import ModelHolder
from imgclf.store import registry as reg
from imgclf.store.registry import ALIASES_FILE

log = logging.getLogger("imgclf.serve")


class RegistryFollower:
    def __init__(
        self,
        holder: ModelHolder,
        registry: str | Path,
        alias: str,
        load: Callable[[Path], object],
        interval: float = 0.5,
    ):
        self.holder, self.registry, self.alias = holder, Path(registry), alias
        self.load, self.interval = load, interval
        self._seen = self._stamp()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="imgclf-registry-follower", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _stamp(self):
        try:
            st = os.stat(self.registry / ALIASES_FILE)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            stamp = self._stamp()
            if stamp != self._seen:  # so a broken version is tried once per change, not twice a second
                self._seen = stamp
                self.check()

    def check(self) -> bool:
        """Swap if the alias now names another version; True when a swap happened."""
        try:
            version = reg.version_number(self.registry, self.alias)
        except Exception as e:  # noqa: BLE001 - a registry mid-edit or alias removed: keep serving
            self._fail(f"cannot read alias {self.alias!r} in {self.registry}: {e}")
            return False
        if version == self.holder.version:
            return False
        try:
            model = self.load(reg.resolve(self.registry, version))
            model.predict_proba(np.zeros((1, model.img_size, model.img_size, 3), np.uint8))
        except Exception as e:  # noqa: BLE001 - any failure to load leaves the old model serving
            self._fail(
                f"version {version} did not load, still serving version {self.holder.version}: {type(e).__name__}: {e}"
            )
            return False
        old = self.holder.version
        self.holder.swap(model, version)
        log.warning("imgclf serve: %s %s -> version %s (%s)", self.alias, old, version, self.holder.name)
        return True

    def _fail(self, message: str) -> None:
        log.error("imgclf serve: %s", message)
        self.holder.failed(message)


def follow_registry(
    holder: ModelHolder, registry: str | Path, alias: str, load: Callable[[Path], object], interval: float = 0.5
) -> RegistryFollower:
    """Attach a follower to `holder`; it runs while an app made from the holder runs."""
    follower = RegistryFollower(holder, registry, alias, load, interval)
    holder.add_follower(follower)
    return follower


def holder_for_registry(
    registry: str | Path, alias: str, load: Callable[[Path], object], interval: float = 0.5
) -> ModelHolder:
    """A holder serving the version `alias` names now, and following it from then on."""
    version = reg.version_number(registry, alias)
    holder = ModelHolder(load(reg.resolve(registry, version)), version=version, alias=alias)
    follow_registry(holder, registry, alias, load, interval)
    return holder
