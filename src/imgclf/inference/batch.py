"""Predict any number of images into a CSV: streamed, decoded in parallel, batched, resumable.

    model = imgclf.load("runs/photos-1")
    predict_folder(model, "new_pictures/", "preds.csv")     # kill it at any moment, run it again:
    predict_folder(model, "new_pictures/", "preds.csv")     # only the files not yet in preds.csv

Only the list of paths is held, never the images: batch after batch is decoded by a process pool
while the model scores the one before, and each batch's rows are flushed to the CSV as soon as
they exist. A later run with the same CSV reads which paths it holds and skips them.
"""

from __future__ import annotations

import csv
import os
import time
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from imgclf.core.console import per_second
from imgclf.core.cpus import usable_cpus
from imgclf.core.errors import UserError
from imgclf.core.files import open_stream, output_file, read_json, sole_writer, write_json
from imgclf.data.images import UnusableImage, is_web_url, load_resized
from imgclf.data.spec import printable

COLUMNS = ["path", "label", "confidence", "top_k", "error"]  # as `imgclf predict --format csv`
BATCH_SIZE = 256
# Batches being decoded while the model scores the current one: enough to keep the pool busy
# through a slow file, few enough that memory stays a handful of batches.
PREFETCH = 2
POOL_MIN_IMAGES = 64


def predict_folder(
    model,
    inputs,
    out_csv: str | os.PathLike,
    top_k: int = 1,
    batch_size: int = BATCH_SIZE,
    workers: int | None = None,
    resume: bool = True,
    progress: bool = True,
    pool: str = "auto",
) -> dict:
    """Predict every image in `inputs` (files and folders, searched recursively) into `out_csv`.

    Rows are `path,label,confidence,top_k,error` (labels after the run's threshold or 'unknown'
    rule); an unreadable file gets a row with `error`, never a crash. With `resume` (default) an
    existing `out_csv` is continued: its paths are skipped, a last row cut short by a kill is
    dropped and redone. `resume=False` starts the file afresh. `workers` decoders (default: the
    usable CPUs) in a `pool` of processes or threads (auto: processes from 64 images on). Returns
    counts, seconds and images/s.

        >>> summary = predict_folder(imgclf.load("runs/photos-1"), "new/", "preds.csv")
        >>> summary["predicted"], summary["images_per_s"]
    """
    if pool not in ("auto", "thread", "process"):
        raise ValueError(f"pool must be 'auto', 'thread' or 'process', not {pool!r}")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, not {batch_size}")
    if workers is not None and workers < 1:
        raise UserError(f"workers must be at least 1 decoder (None: one a CPU), not {workers}")
    out_csv = output_file(out_csv, "--out")
    roots = check_inputs(inputs)
    with sole_writer(out_csv.parent / f".{out_csv.name}.lock", out_csv, "--out"):
        return _fill(model, roots, out_csv, top_k, batch_size, workers or usable_cpus(), resume, progress, pool)


def _fill(model, roots, out_csv: Path, top_k, batch_size, workers, resume, progress, pool) -> dict:
    """predict_folder's work, once its arguments are checked and `out_csv` is this process's alone."""
    from rich.markup import escape

    console = _console(progress)
    shown = escape(str(out_csv))  # the user's path, not rich markup
    start = time.perf_counter()
    done = _finished_paths(out_csv) if resume else set()
    _same_maker(out_csv, _maker(model, top_k), done)
    # A first pass over the names (no decoding) gives the progress bar its total.
    seen: set[str] = set()
    for p in _image_paths(roots):
        seen.add(p)
    total, skipped = len(seen), len(seen & done)
    del seen
    if skipped:
        console.print(f"resuming {shown}: {skipped} of {total} images already predicted, skipped")
    counts = {"predicted": 0, "errors": 0}
    with _open_csv(out_csv, append=resume) as f, _progress(console, total - skipped) as advance:
        writer = csv.writer(f, lineterminator="\n")
        todo = _not_done(_image_paths(roots), done)
        with _executor(pool, workers, total - skipped) as ex:
            for paths, images, errors in _decoded_batches(todo, ex, workers, batch_size, model):
                probs = model.predict_proba(images) if len(images) else np.zeros((0, len(model.classes)))
                answers = iter(model.answers(probs, top_k))
                for path in paths:
                    if path in errors:
                        writer.writerow(csv_row({"path": path, "error": errors[path]}))
                    else:
                        writer.writerow(csv_row({"path": path, **next(answers)}))
                f.flush()  # a kill loses at most the batch being scored
                counts["predicted"] += len(paths) - len(errors)
                counts["errors"] += len(errors)
                advance(len(paths))
    seconds = time.perf_counter() - start
    n = counts["predicted"] + counts["errors"]
    summary = {
        "out": str(out_csv),
        "total": total,
        "skipped": skipped,
        **counts,
        "seconds": round(seconds, 3),
        "images_per_s": round(n / seconds, 1) if seconds > 0 else 0.0,
        # Which engine ran the network (backend auto picks ONNX Runtime on a CPU where it can).
        "backend": getattr(model, "backend", "torch"),  # an ensemble runs its members in PyTorch
    }
    console.print(
        f"{shown}: {n} images in {seconds:.1f}s ({per_second(summary['images_per_s'])} images/s, {summary['backend']}): "
        f"{counts['predicted']} predicted, {counts['errors']} unreadable"
        + (f", {skipped} skipped (already done)" if skipped else "")
    )
    return summary


def csv_row(result: dict) -> list[str]:
    """One `predict` result dict as a CSV row of COLUMNS."""
    ok = "label" in result
    return [
        printable(result.get("path", "")),
        result.get("label", ""),
        f"{result['confidence']:.4f}" if ok else "",
        ";".join(f"{c}:{p:.4f}" for c, p in result.get("top_k", [])),
        result.get("error", ""),
    ]


def check_inputs(inputs) -> list[Path | str]:
    """The inputs as paths (web addresses as given), or the one line naming the first that does not
    exist: before a model is loaded (`imgclf predict RUN typo.jpg` said it after 2.5 s of loading)."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    roots = [i if is_web_url(i) else Path(i).expanduser() for i in items]
    for r, given in zip(roots, items):
        if not (is_web_url(r) or r.exists()):
            raise UserError(f"no such file or folder: {given}")
    return roots


def _image_paths(roots: list[Path | str]) -> Iterator[str]:
    """Path strings in a stable order (so a resumed run meets the same names): images in folders,
    recursively; files (and web addresses) named directly are taken whatever their extension
    (predict does the same)."""
    from imgclf.inference.predictor import expand_inputs  # a folder of no image: one line, as predict's

    yield from map(str, expand_inputs(list(roots)))


def _not_done(paths: Iterable[str], done: set[str]) -> Iterator[str]:
    """Paths not in `done`; each one is added as it passes, so a file named twice is predicted once."""
    for p in paths:
        if p not in done:
            done.add(p)
            yield p


def _finished_paths(out_csv: Path) -> set[str]:
    """Paths already in an earlier run's CSV. A last line without its newline was cut short by a
    kill: it is truncated away, so that file is predicted again and the CSV stays well-formed."""
    if not out_csv.exists() or out_csv.stat().st_size == 0:
        return set()
    _drop_partial_line(out_csv)
    with open(out_csv, newline="", encoding="utf-8", errors="replace") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            return set()
        if header != COLUMNS:
            raise UserError(
                f"{out_csv} exists but is not an imgclf predictions CSV (its header is not "
                f"{','.join(COLUMNS)}); choose another --out or remove the file"
            )
        return {row[0] for row in rows if row}


def _maker(model, top_k: int) -> dict:
    """What made a predictions CSV's rows: the run (by its weights) and the settings that change them."""
    meta = getattr(model, "meta", None)
    return {
        "run": str(model.path) if getattr(model, "path", None) else None,
        "weights_sha256": getattr(meta, "weights_sha256", None),
        "top_k": top_k,
        "tta": getattr(model, "tta", None),
    }


def _same_maker(out_csv: Path, maker: dict, done: set[str]) -> None:
    """Rows already in `out_csv` are kept only from the same model and settings: a new model's run
    over an old file would otherwise skip every image as "already predicted". The maker is recorded
    beside the CSV (.NAME.imgclf.json), where a new file's is written."""
    record = out_csv.with_name(f".{out_csv.name}.imgclf.json")
    earlier = read_json(record) if done and record.is_file() else None
    # A run moved since is the same model: its weights say so (an ensemble has none: its folder does).
    keys = [k for k in maker if k != "run" or not maker["weights_sha256"]]
    said = {"run": "the run folder", "weights_sha256": "the weights", "top_k": "--top-k", "tta": "--tta"}
    if earlier is not None and (changed := ", ".join(said[k] for k in keys if earlier.get(k) != maker[k])):
        raise UserError(
            f"{out_csv} holds {len(done):,} predictions made with another model or settings ({changed} differ; "
            f"they came from {earlier.get('run')}): choose another --out, or delete it to predict again"
        )
    if earlier is None:
        write_json(record, maker)


def _drop_partial_line(path: Path, block: int = 1 << 16) -> None:
    """Truncate `path` after its last newline, reading only its tail."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            cut = f.read(pos - start).rfind(b"\n")
            if cut >= 0:
                if start + cut + 1 < end:
                    f.truncate(start + cut + 1)
                return
            pos = start
        f.truncate(0)


@contextmanager
def _open_csv(path: Path, append: bool):
    """The CSV opened for appending (header written when the file is new or empty); written in place
    as it goes, so a kill leaves what a later run resumes from (core.files.open_stream, which also
    names the file when the disk fills up)."""
    fresh = not append or not path.exists() or path.stat().st_size == 0
    with open_stream(path, append=not fresh) as f:
        if fresh:
            csv.writer(f, lineterminator="\n").writerow(COLUMNS)
            f.flush()
        yield f


def _decoded_batches(
    paths: Iterable[str], ex: Executor, workers: int, batch_size: int, model
) -> Iterator[tuple[list[str], np.ndarray, dict[str, str]]]:
    """(paths, stacked uint8 images of the readable ones, {path: reason} of the others) per batch,
    in input order, with up to PREFETCH batches decoding ahead of the one handed out."""
    pending: deque[tuple[list[str], list[Future]]] = deque()
    it = iter(paths)
    while True:
        batch = list(islice(it, batch_size))
        if batch:
            # Split the batch over the workers: each part is one task, so one round trip per part.
            step = -(-len(batch) // workers)
            parts = [batch[i : i + step] for i in range(0, len(batch), step)]
            pending.append((batch, [ex.submit(_decode, p, model.img_size, model.resize_mode) for p in parts]))
        if not pending:
            return
        if batch and len(pending) <= PREFETCH:
            continue
        batch, futures = pending.popleft()
        images, errors = [], {}
        for fut in futures:
            arrays, bad = fut.result()
            images.append(arrays)
            errors.update(bad)
        yield batch, np.concatenate(images), errors


def _decode(paths: list[str], size: int, mode: str) -> tuple[np.ndarray, dict[str, str]]:
    """Top level so process workers can import it. Readable images stacked; reasons for the rest."""
    arrays, bad = [], {}
    for p in paths:
        try:
            arrays.append(load_resized(p, size, mode))
        except UnusableImage as e:
            bad[p] = e.reason
    return (np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)), bad


def _executor(pool: str, workers: int, n: int) -> Executor:
    # Processes by default. Measured on 2 cores (bench/predict_batch.py, 10,000 CIFAR-10 JPEGs):
    # decoding alone ran at 8,800 images/s in 2 processes but 3,500 in 2 threads, fewer than one
    # thread manages alone: for small images the per-file work is Python (open, checks, convert)
    # holding the GIL, so threads take turns and fight the model's thread for it. A process pool
    # costs more to start than it saves on a few dozen files.
    if pool == "thread" or (pool == "auto" and n < POOL_MIN_IMAGES):
        return ThreadPoolExecutor(workers)
    return ProcessPoolExecutor(workers)


def _console(show: bool):
    from rich.console import Console

    # stderr: stdout stays free for a pipeline's own output.
    return Console(stderr=True, quiet=not show, highlight=False, soft_wrap=True)


class _progress:
    """An `advance(n)` callable; a rich progress bar (count, images/s, ETA) when on a terminal."""

    def __init__(self, console, total: int):
        self.console, self.total, self.bar = console, total, None

    def __enter__(self):
        if self.console.quiet or not self.console.is_terminal or self.total == 0:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TimeRemainingColumn

        self.bar = Progress(
            "predicting",
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        task = self.bar.add_task("predict", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
