"""`imgclf train DATA --workers N [--ray ADDRESS]`: PyTorch DDP over N Ray Train workers.

    run = train_on_ray("photos/", workers=4, address="ray://head:10001", epochs=20)

Ray Train (`TorchTrainer`) starts the workers, one per GPU (NCCL) or per share of the CPUs
(gloo), and joins them in a process group; each runs the single-machine `workflows.train` code,
where rank 0 prepares, probes and writes the run folder and every rank trains its share of each
batch (training.distributed). The run folder is the same as a single-process run's. When a worker
dies, Ray restarts the group (up to `max_failures` times) and the run resumes from its last
committed epoch (training.commits): the checkpoint in the run folder is the commit point, so no history row
is lost or written twice. DATA and the run folder must be paths every worker can read and write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from imgclf.core.console import quiet_logs
from imgclf.core.errors import UserError, resumable
from imgclf.core.raysupport import cluster_workers, ray_session
from imgclf.training.distributed import TIMEOUT

MAX_FAILURES = 3
PREEMPTION_WATCHER = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"  # Ray Train's switch (default on)


def train_on_ray(
    data=None,
    *,
    workers: int,
    address: str | None = "auto",
    config=None,
    resume=False,
    verbose: bool = True,
    max_failures: int = MAX_FAILURES,
    **settings: Any,
):
    """Train with DDP over `workers` Ray Train workers; returns the workflows.Run rank 0 wrote."""
    from imgclf.core.clock import run_started
    from imgclf.core.console import console_for
    from imgclf.workflows import run_at

    # A --time-budget is the wall time the user waits: the cluster's and the workers' start count too.
    # As a wall-clock time, since the workers may be on other machines.
    started_at = time.time() - (time.monotonic() - run_started())
    console = console_for(verbose)
    out = _run_folder(data, resume, settings)
    if not resume:  # a bad flag value or data path: one line now, not from every worker later
        from imgclf.training.resolve import user_settings

        user_settings(data, config, False, {**settings, "out": str(out)})
        if "://" not in str(data) and not Path(data).exists():
            raise UserError(f"data not found: {data}")
    # Ctrl-C (core.raysupport), a full disk: the finished epochs are in the run folder
    with resumable(f"imgclf train --resume {out} --workers {workers}"), ray_session(address) as ray:
        job = {"resume": bool(resume), "verbose": verbose, "started_at": started_at}
        _fit_on_ray(ray, data, config, settings, workers, out, max_failures, console, job)
    return run_at(out)


def _fit_on_ray(ray, data, config, settings, workers, out, max_failures, console, job: dict) -> None:
    """Start the workers, wait for them, and raise what they left in the mailbox (or their silence).
    `job`: resume, verbose, and the command's start as a wall-clock time (started_at)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from rich.markup import escape  # the run folder is the user's path

    slots, gpus = cluster_workers(ray, gpu=False if settings.get("device") == "cpu" else None)
    if workers > slots:
        raise UserError(
            f"--workers {workers} is more than this Ray cluster's {slots} {'GPUs' if gpus else 'CPUs'}; "
            f"use --workers {slots} or fewer, or add nodes"
        )
    cpus = max(1, (int(ray.cluster_resources().get("CPU", workers)) // workers)) if not gpus else 1
    console.print(
        f"Ray: {workers} DDP workers ({'one GPU each, NCCL' if gpus else f'{cpus} CPU each, gloo'}); run folder {escape(str(out))}"
    )
    loop_config = {"data": None if data is None else str(data), "config": None if config is None else str(config)}
    loop_config.update(out=str(out), settings=settings, cpus=cpus, **job)
    mailbox = ray.remote(num_cpus=0)(_Mailbox).remote()  # where a worker leaves a user's mistake
    loop_config["mailbox"] = mailbox
    trainer = TorchTrainer(
        _worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if gpus else "gloo", timeout_s=int(TIMEOUT.total_seconds())),
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=gpus,
            resources_per_worker={"GPU": 1} if gpus else {"CPU": cpus},
            **_coordinator_resources(),
        ),
        run_config=RunConfig(
            name=f"imgclf-{out.name}-{hashlib.sha1(str(out).encode()).hexdigest()[:8]}",
            storage_path=str(_ray_storage()),
            failure_config=FailureConfig(max_failures=max_failures),
            **_quiet_train(ray, RunConfig),
        ),
    )
    with _no_preemption_watch_on_one_node(ray):
        trainer.fit()  # a user's mistake comes back through the mailbox, not as Ray's error
    mistake = ray.get(mailbox.get.remote())
    if mistake:
        raise UserError(mistake)
    if not (out / "model.json").is_file():
        raise UserError(f"distributed training ended without a model in {out}; see the workers' output above")


def _coordinator_resources() -> dict:
    """Ray Train V1 (older Rays' default; V2 came in 2.43 as an option, later the default; or
    RAY_TRAIN_V2_ENABLED=0) runs the trainer as an actor that reserves a CPU of its own: --workers N
    on N CPUs then waited for one more, forever ("Training has not started in the last 60 seconds").
    It only coordinates, so it reserves none; V2's controller reserves none already."""
    try:
        from ray.train.v2._internal.constants import is_v2_enabled

        v2 = is_v2_enabled()
    except ImportError:  # a Ray without Train V2
        v2 = False
    return {} if v2 else {"trainer_resources": {"CPU": 0}}


@contextlib.contextmanager
def _no_preemption_watch_on_one_node(ray):
    """Ray Train starts an actor on each run that watches for a node being taken back (spot
    instances), so that the workers move to other nodes. A cluster of one node has none to move to:
    the actor only adds start-up, and Ray logs an error-level line about its restarts
    (ray-project/ray#53727) that reads like a failure. Off there, unless the user set it; the
    driver's environment reaches Ray Train's controller (it forwards this variable)."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) != 1 or PREEMPTION_WATCHER in os.environ:
        yield
        return
    os.environ[PREEMPTION_WATCHER] = "0"
    try:
        yield
    finally:
        os.environ.pop(PREEMPTION_WATCHER, None)


def _quiet_train(ray, run_config) -> dict:
    """Ray Train's INFO lines (resources requested, the worker group started, each rank's pid and the
    process group set up: six lines a run) above imgclf's own, which say the same in one; its
    warnings and errors (a worker lost, the group restarted) still show. Ray 2.5x's Train has the
    setting; older ones print them."""
    import dataclasses

    config = getattr(ray.train, "LoggingConfig", None)
    fields = {f.name for f in dataclasses.fields(run_config)} if dataclasses.is_dataclass(run_config) else set()
    return {"logging_config": config(log_level="WARNING")} if config and "logging_config" in fields else {}


def _worker(c: dict) -> None:
    """One Ray Train worker: the single-machine training, resumed when a restarted group finds the
    run folder already started (its config.yaml written)."""
    import torch

    from imgclf.workflows import train

    torch.set_num_threads(int(c["cpus"]))
    _no_crash_dump_on_teardown()
    out = Path(c["out"])
    settings = dict(c["settings"], out=str(out))
    started = (out / "config.yaml").is_file()
    if not started and not c["resume"]:  # the first workers of a new run: the budget counts from the command
        from imgclf.core.clock import stamp_command

        stamp_command(time.monotonic() - max(0.0, time.time() - c["started_at"]))
    try:
        # A Ray worker logs INFO (its own setup): imgclf's INFO lines ("loaded 294/296 tensors", from
        # each rank) stay out of the output as on one machine.
        with quiet_logs("imgclf"):
            if started or c["resume"]:
                train(resume=str(out), verbose=c["verbose"])
            else:
                train(c["data"], config=c["config"], verbose=c["verbose"], **settings)
    except UserError as e:
        # A user's mistake is the same on a retry: every rank leaves it in the mailbox (rank 0 tells
        # the others when it finds one, training.pipeline) and ends, so Ray does not restart for it.
        import ray

        ray.get(c["mailbox"].put.remote(str(e)))
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches a local cluster's workers too (one process group): the driver
        # prints the line that continues the run (core.raysupport), which each worker's traceback
        # would bury. The finished epochs are in the run folder.
        return


def _no_crash_dump_on_teardown() -> None:
    """Ray turns on faulthandler in every worker. A Ctrl-C reaches each rank of a local cluster at
    once: a rank still inside the gradients' all-reduce when its peer has left is then ended by a
    signal as the group is torn down, and its stack (imgclf's training frames) reached the
    terminal above the line that continues the run, as if imgclf had crashed (seen in CI, 2026-11-30;
    the workers' lines are forwarded without a prefix). Ray itself still reports a worker that dies
    while the run goes on. Kept where the user asked for dumps (PYTHONFAULTHANDLER, -X faulthandler)."""
    import faulthandler
    import sys

    if not (os.environ.get("PYTHONFAULTHANDLER") or "faulthandler" in sys._xoptions):
        faulthandler.disable()


class _Mailbox:
    """The first message a worker leaves (a Ray actor: it reaches the driver from any node)."""

    def __init__(self):
        self.message = None

    def put(self, message: str) -> None:
        self.message = self.message or message

    def get(self) -> str | None:
        return self.message


def _run_folder(data, resume, settings: dict) -> Path:
    """The run folder, chosen before the workers start so that every rank and every restart agree."""
    from imgclf.store.runs import check_new_run_dir, new_run_dir

    if resume:
        out = Path(resume if not isinstance(resume, bool) else settings.get("out") or "")
        if not (out / "config.yaml").is_file():
            raise UserError(f"cannot resume: {out} has no config.yaml (give the run folder of an earlier train)")
        return out.resolve()
    if data is None:
        raise UserError("give DATA (a folder with one sub-folder per class) or --resume RUN_FOLDER")
    out = Path(settings.get("out") or new_run_dir(str(data)))
    check_new_run_dir(out)  # a worker restarted by Ray resumes when it finds config.yaml: it must be this launch's
    return out.resolve()


def _ray_storage() -> Path:
    """Ray Train's own bookkeeping, kept out of the run folder."""
    from imgclf.data.cache import default_cache_dir

    return Path(os.environ.get("IMGCLF_RAY_STORAGE") or default_cache_dir() / "ray_results")
