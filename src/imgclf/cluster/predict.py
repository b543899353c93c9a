"""Batch prediction on a Ray cluster: any number of images, cut into shards, predicted by one
worker per CPU (or per GPU) of the cluster, each shard written as one Parquet or CSV file.

    predict_on_ray("runs/photos-1", "s3://bucket/new.txt", "s3://bucket/preds")   # or local folders
    predict_on_ray("runs/photos-1", "new_pictures/", "preds/")    # killed? run it again: it resumes

The driver lists the paths (sorted, so a rerun meets the same shards), records the job in
OUT/_manifest.json and hands Ray Data the shards not yet written. Each worker loads the model once
and predicts with the same decoder, `predict_proba` and `answers` as `imgclf predict`, so its rows
are the single-machine ones. A shard's file appears whole (written beside its name and renamed, or
one upload to an object store), so an existing file is a finished shard and is never redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from imgclf.cluster.files import OutputFolder, describe, list_paths, source_name
from imgclf.cluster.shards import (
    COLUMNS_OF,
    CSV_COLUMNS,
    PARQUET_COLUMNS,
    ShardDetector,
    ShardPredictor,
    shard_name,
)
from imgclf.core.console import per_second
from imgclf.core.errors import UserError
from imgclf.core.raysupport import cluster_workers, ray_session, require_ray

MANIFEST = "_manifest.json"
# What makes two runs into one OUT the same job; anything else (backend, device, workers) may change.
# The decision rule too: a threshold changed between two runs would leave shards answering by two rules.
JOB_KEYS = ("run", "paths_sha256", "images", "shard_size", "format", "top_k", "tta", "decision")
# Ray core's line for every Ray Data actor (quiet_ray_data): "... has constructor arguments in the object store".
RAY_ACTOR_ARGS_NOTICE = "has constructor arguments in the object store and max_restarts"


def predict_on_ray(
    run,
    source,
    out=None,
    *,
    address: str | None = "auto",
    top_k: int = 1,
    backend: str = "auto",
    shard_size: int = 1024,
    format: str = "parquet",
    device: str = "auto",
    tta: str | None = None,
    progress: bool = True,
) -> dict:
    """Predict every image of `source` on the Ray cluster at `address` into shard files in `out`.

    See imgclf.predict_on_ray for the arguments. Returns {out, shards, skipped_shards, predicted,
    errors, seconds, images_per_s, workers} for this call (skipped shards were done before)."""
    from rich.markup import escape  # the output folder is the user's path

    from imgclf.evaluation.operating_point import OperatingPoint
    from imgclf.settings.predict import check_predict
    from imgclf.store.run_meta import load_run_meta
    from imgclf.store.runs import find_run

    # One line naming the option, before Ray starts (settings.predict: imgclf predict --ray's declarations).
    given = check_predict(top_k=top_k, backend=backend, shard_size=shard_size, shard_format=format, tta=tta)
    top_k, shard_size, format = given["top_k"], given["shard_size"], given["shard_format"]
    require_ray()
    start = time.perf_counter()
    detector = detector_job(run, backend)
    if detector is None:
        run = find_run(run).resolve()
        meta = load_run_meta(run)
        if backend.endswith("-int8"):  # a missing or stale int8 model: one line now, not a failure per worker
            from imgclf.inference.quantize import int8_path

            int8_path(run)
    console = _console(progress)
    paths = list_paths(source)
    folder = OutputFolder(out if out is not None else Path.cwd() / f"predictions-{source_name(source)}")
    shards = [paths[i : i + shard_size] for i in range(0, len(paths), shard_size)]
    job = {
        "run": str(run),
        "source": describe(source),
        "images": len(paths),
        "paths_sha256": hashlib.sha256("\n".join(paths).encode("utf-8", "surrogateescape")).hexdigest(),
        "shard_size": shard_size,
        "shards": len(shards),
        "format": format,
        "top_k": top_k,
        "tta": tta,
        "columns": list(PARQUET_COLUMNS if format == "parquet" else CSV_COLUMNS),
        # The rule behind every row's label: threshold, positive class and how training chose them.
        "decision": OperatingPoint.of(meta).description() if detector is None else detector["decision"],
    }
    if detector is not None:  # a detector's rows: present, count, score, boxes; a gallery's: count, faces
        job.update(run=detector["run"], columns=list(COLUMNS_OF[detector["kind"]]), kind=detector["kind"])
    _claim(folder, job)
    todo = [k for k in range(len(shards)) if not folder.exists(shard_name(k, format))]
    console.print(
        f"{escape(str(folder))}/: {len(paths)} images in {len(shards)} shards of up to {shard_size}"
        + (f"; {len(shards) - len(todo)} already done" if len(todo) < len(shards) else "")
    )
    counts = {"predicted": 0, "errors": 0, "workers": 0}
    if todo:
        ensemble = detector is None and meta.is_ensemble
        with ray_session(address) as ray:
            counts = _run_shards(ray, job, folder, shards, todo, backend, device, ensemble, console)
    return _summary(folder, job, todo, counts, time.perf_counter() - start, console)


def detector_job(run, backend: str = "auto") -> dict | None:
    """For a detector ("person", a detector run folder) or a face gallery: what the job records of
    it; None for a classifier run. The detector (or face embedder) is loaded here once with `backend`,
    as `imgclf scan` and `imgclf faces identify` load it: its converted weights are in the cache before
    the workers start, and a backend it lacks (an int8 model not made) is one line, not a failed worker."""
    from imgclf.detection import load_detector

    if (Path(run).expanduser() / "gallery.safetensors").is_file():
        from imgclf.faces import FaceModel, load_gallery

        g = load_gallery(run, FaceModel(backend=backend))  # a foreign or damaged gallery: one line, before any worker
        decision = {"gallery": Path(run).name, "people": len(g.people), "threshold": g.threshold, "method": g.method}
        return {"run": str(Path(run).expanduser().resolve()), "decision": decision, "kind": "faces"}
    if str(run) != "person" and not (Path(run).expanduser() / "detector.json").is_file():
        return None
    det = load_detector(run, "cpu", "auto" if backend == "torch" else backend)
    name = "person" if str(run) == "person" else str(Path(run).expanduser().resolve())
    return {
        "run": name,
        "decision": {"detector": det.name, "positive": det.positive, "threshold": det.threshold},
        "kind": "detector",
    }


def _claim(folder: OutputFolder, job: dict) -> None:
    """Write the job's manifest into OUT, or refuse when OUT holds another job's shards."""
    if folder.exists(MANIFEST):
        try:
            old = folder.read_json(MANIFEST)
        except ValueError:
            raise UserError(f"{folder}/{MANIFEST} is damaged; delete {folder} to start over") from None
        differ = [k for k in JOB_KEYS if old.get(k) != job[k]]
        if differ:
            what = ", ".join(dict.fromkeys("the images" if k in ("paths_sha256", "images") else k for k in differ))
            raise UserError(
                f"{folder} holds the predictions of another job (started on {old.get('source')}; "
                f"{what} differ); give another --out, or delete {folder} to start over"
            )
        return
    if not folder.uri and os.path.isdir(folder.path) and any(not n.startswith(".") for n in os.listdir(folder.path)):
        raise UserError(f"{folder} is not empty and holds no {MANIFEST}; give a new or empty folder as --out")
    from imgclf.core.version import __version__

    folder.write(MANIFEST, (json.dumps({**job, "imgclf_version": __version__}, indent=2) + "\n").encode("utf-8"))


def _run_shards(ray, job, folder, shards, todo, backend, device, ensemble, console) -> dict:
    """Predict the `todo` shards on the cluster; {predicted, errors, workers}."""
    import ray.data

    want_gpu = None if device == "auto" else device.startswith("cuda")
    if device == "auto" and _cpu_only(job.get("kind"), backend):
        want_gpu = False
    workers, gpus = cluster_workers(ray, gpu=want_gpu)
    if want_gpu and not gpus:
        raise UserError(f"--device {device} asked for, but the Ray cluster has no GPUs; use --device cpu or auto")
    # ONNX Runtime is the faster CPU engine (docs/benchmarks/predict-batch.md); on GPUs, PyTorch.
    if ensemble and backend not in ("auto", "torch"):
        raise UserError(
            f"{job['run']} is an ensemble bundle, which runs on the torch backend only; drop --backend {backend}"
        )
    # A face-embedding run runs dlib inside PyTorch: it has no ONNX graph.
    torch_only = ensemble or (job.get("kind") is None and _face_embedding(job["run"]))
    backend = backend if backend != "auto" else ("torch" if gpus or torch_only else "onnx")
    if backend in ("onnx", "openvino") and job.get("kind") is None:  # a detector's graph is converted in its cache
        _ensure_onnx(Path(job["run"]), console)
    actor_job = {**job, "backend": backend, "device": "cuda" if gpus else "cpu", "out": folder.path}
    workers = min(workers, len(todo))
    console.print(f"starting {workers} {'GPU' if gpus else 'CPU'} worker{'s' * (workers != 1)} ({backend}) ...")
    items = [{"shard": k, "paths": shards[k]} for k in todo]
    # One block per shard, one shard per call, one call at a time per worker: a free worker takes
    # the next shard, so no shard waits behind another while a worker idles.
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        ShardDetector if job.get("kind") else ShardPredictor,
        fn_constructor_kwargs={"job": actor_job},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
        **({"num_gpus": 1} if gpus else {"num_cpus": 1}),
    )
    counts = {"predicted": 0, "errors": 0, "workers": workers}
    images = sum(len(shards[k]) for k in todo)
    with _quiet_ray_data(ray), _Progress(console, len(todo), images) as bar:
        try:
            for row in ds.iter_rows():
                counts["predicted"] += row["images"] - row["errors"]
                counts["errors"] += row["errors"]
                bar.done(row)
        except Exception as e:  # noqa: BLE001 - a worker's UserError arrives wrapped by Ray
            err = _user_error(e)
            if err is None:
                raise
            raise err from None
    return counts


def _cpu_only(kind: str | None, backend: str) -> bool:
    """Whether `backend` runs a detector (ONNX Runtime int8, OpenVINO) or the face embedder (ONNX
    Runtime) on the CPU only: a GPU worker would refuse it, so the workers are CPU ones, as
    `imgclf scan` and `imgclf faces identify` run it on the CPU of a machine with a GPU."""
    if kind == "detector":
        return backend in ("onnx-int8", "openvino")
    return kind == "faces" and backend in ("onnx", "onnx-int8")


def _ensure_onnx(run: Path, console) -> None:
    """Export RUN/model.onnx here, once, when it is missing or stale, rather than in every worker at once."""
    from rich.markup import escape

    from imgclf.inference.onnx_export import export_onnx, weights_digest

    path = run / "model.onnx"
    if path.is_file():
        import onnx

        try:
            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception:  # noqa: BLE001 - a damaged file is exported again
            props = {}
        if props.get("weights_sha256") == weights_digest(run):
            return
    console.print(f"exporting {escape(str(path))} for the ONNX Runtime workers ...")
    export_onnx(run)


def _user_error(e: BaseException) -> UserError | None:
    """The UserError a worker raised (a run it cannot read), as one line. Ray wraps it, and a
    worker that failed while starting (ActorDiedError) keeps only its traceback's text."""
    import re

    while e is not None:
        found = re.findall(r"imgclf\.core\.errors\.UserError: (.+)", str(e))
        if found:
            return UserError(found[-1].strip())
        if isinstance(e, UserError):
            return UserError(str(e))
        e = e.__cause__
    return None


@contextmanager
def _quiet_ray_data(ray):
    """Ray Data's own progress bars and notices off while ours run: restored after, for a
    notebook's later Ray Data work. Ray core's "E" line for each actor Ray Data starts (its own
    actor handle among the arguments, ray-project/ray#57733) is left out too."""
    import logging

    from imgclf.core.console import quiet_logs, stderr_without

    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.enable_operator_progress_bars
    ctx.enable_progress_bars = ctx.enable_operator_progress_bars = False
    try:
        with quiet_logs("ray.data", level=logging.ERROR), stderr_without(RAY_ACTOR_ARGS_NOTICE):
            yield
    finally:
        ctx.enable_progress_bars, ctx.enable_operator_progress_bars = saved


class _Progress:
    """`done(summary row)` per finished shard: a rich bar (shards, images, images/s) on a terminal,
    else one line per shard."""

    def __init__(self, console, shards: int, images: int):
        self.console, self.shards, self.images = console, shards, images
        self.done_shards = self.done_images = 0
        self.bar = None

    def __enter__(self):
        self.start = time.perf_counter()
        if self.console.is_terminal and not self.console.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                "predicting",
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("shards · {task.fields[images]} images · {task.fields[rate]:.0f} images/s"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("predict", total=self.shards, images=0, rate=0.0)
        return self

    def done(self, row: dict) -> None:
        self.done_shards += 1
        self.done_images += row["images"]
        rate = self.done_images / max(time.perf_counter() - self.start, 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, advance=1, images=self.done_images, rate=rate)
            return
        self.console.print(
            f"shard {row['shard']} done: {row['images']} images, {row['errors']} unreadable, "
            f"{row['seconds']:.1f}s ({self.done_shards}/{self.shards} shards, "
            f"{self.done_images}/{self.images} images, {per_second(rate)} images/s)"
        )

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def _summary(folder, job, todo, counts, seconds, console) -> dict:
    from rich.markup import escape

    n = counts["predicted"] + counts["errors"]
    summary = {
        "out": str(folder),
        "shards": job["shards"],
        "skipped_shards": job["shards"] - len(todo),
        "predicted": counts["predicted"],
        "errors": counts["errors"],
        "seconds": round(seconds, 3),
        "images_per_s": round(n / seconds, 1) if seconds > 0 else 0.0,
        "workers": counts["workers"],
    }
    console.print(
        f"{escape(str(folder))}/: {n} images in {seconds:.1f}s ({per_second(summary['images_per_s'])} images/s, cluster start "
        f"included) on {counts['workers']} worker{'s' * (counts['workers'] != 1)}: {counts['predicted']} predicted, {counts['errors']} "
        f"unreadable; {summary['skipped_shards']} of {job['shards']} shards were already done"
    )
    return summary


def _console(show: bool):
    from rich.console import Console

    # stderr, as `imgclf predict --out`: stdout stays free for a pipeline's own output.
    return Console(stderr=True, quiet=not show, highlight=False, soft_wrap=True)


def _face_embedding(run) -> bool:
    """Whether the run kept dlib's face embedding with a linear head (models.headonly), which runs in
    PyTorch only."""
    from imgclf.models.headonly import FACE_EMBEDDING
    from imgclf.store.run_meta import load_run_meta

    return load_run_meta(Path(run)).architecture_name == FACE_EMBEDDING
