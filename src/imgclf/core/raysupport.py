"""Ray, for the paths that run on a cluster (`pip install 'imgclf[ray]'`), imported only by them.

    with ray_session("auto") as ray:          # RAY_ADDRESS or a running `ray start`, else a local one
        ray.cluster_resources()

The same code attaches to `ray://HOST:10001` (Ray Client) or `HOST:6379` (a node of the cluster).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re

from imgclf.core.cpus import usable_cpus
from imgclf.core.errors import UserError

MISSING = "this needs Ray, an optional extra: pip install 'imgclf[ray]'"
# What `--ray VALUE` takes as an address rather than as a path: auto, local, a URI or HOST:PORT.
ADDRESS = re.compile(r"^(auto|local|[a-z]+://.*|[\w.-]+:\d+)$")


def require_ray():
    """The `ray` module, or one line saying what to install."""
    try:
        import ray
    except ImportError:
        raise UserError(MISSING) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = "auto", num_cpus: int | None = None):
    """Connected to Ray inside the block; shut down after it when this call connected.

    `address`: "auto" (RAY_ADDRESS, else a cluster `ray start` runs on this machine, else a new
    local one), "local" (always a new local one, of `num_cpus`), or a cluster's address. A session
    already open (a test's, a notebook's) is used as it is."""
    ray = require_ray()
    if ray.is_initialized():
        with _ctrl_c_interrupts():
            yield ray
        return
    # Ray's own INFO/WARNING lines (in every worker and actor) would bury imgclf's; errors still show.
    quiet = {"logging_level": logging.WARNING, "logging_config": ray.LoggingConfig(log_level="ERROR")}
    try:
        if address in (None, "", "local"):
            ray.init(address="local", num_cpus=num_cpus or usable_cpus(), **quiet)
        elif address == "auto":
            ray.init(num_cpus=None if os.environ.get("RAY_ADDRESS") else num_cpus, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"cannot connect to the Ray cluster at {address!r}: {first} "
            "(give --ray ray://HOST:10001, HOST:6379, or --ray alone for this machine)"
        ) from None
    try:
        with _ctrl_c_interrupts():
            yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _ctrl_c_interrupts():
    """Ctrl-C inside the block ends it as KeyboardInterrupt, so the CLI prints its "interrupted ...
    resume" line. Ray gets in the way: a terminal's Ctrl-C reaches the local cluster's own processes
    too, and Ray Train's `fit` installs a SIGINT handler that aborts the run and exits; either way
    the driver ended in a silent exit 1 or a misleading error. Python's signal wake-up fd hears
    SIGINT whichever Python handler is installed: when the block fails after one, the failure was
    the interrupt."""
    import signal
    import socket
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    heard, tell = socket.socketpair()
    heard.setblocking(False)
    tell.setblocking(False)
    previous = signal.set_wakeup_fd(tell.fileno(), warn_on_full_buffer=False)
    handler = signal.getsignal(signal.SIGINT)  # Ray Train leaves its own installed after `fit`
    try:
        yield
    except BaseException:
        try:
            interrupted = signal.SIGINT in heard.recv(4096)
        except BlockingIOError:
            interrupted = False
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.set_wakeup_fd(previous)
        heard.close()
        tell.close()


def cluster_workers(ray, gpu: bool | None = None) -> tuple[int, bool]:
    """(how many one-device workers the cluster holds, whether they are GPUs): one per GPU when it
    has any (and `gpu` is not False), else one per CPU."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus and gpu is not False:
        return gpus, True
    return max(1, int(res.get("CPU", 1))), False
