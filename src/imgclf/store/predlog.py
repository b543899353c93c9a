"""The prediction log: what a service was asked and what it answered, for `imgclf monitor`.

`imgclf serve RUN --log-predictions DIR` writes

    DIR/predictions.jsonl                 one JSON object per logged image, appended line by line
    DIR/predictions-<yyyymmddThhmmss>.jsonl   earlier parts, rotated at a tenth of the size bound
    DIR/images/<sha[:2]>/<sha>.<ext>      the uploaded bytes, once per distinct image (--log-images keep)

A record: {"id", "time", "model", "version", "sha256", "image", "width", "height", "mode",
"brightness", "label", "confidence", "margin", "top_k", "decision", "source"}; null where not known.

Logging never slows an answer: the request hands its record to a bounded queue and a writer thread
does the rest (image header, brightness, files). When the writer falls behind, records are dropped
and counted (`dropped`, and imgclf_prediction_log_dropped in /metrics) rather than making clients
wait. Sampling is per image: an image is logged with probability `sample`, decided by its hash, so
the same image is always or never logged.

POST /feedback looks records up by id (`find`). The log keeps an index of where each id's line is
(read once at start, then kept up to date as it writes, rotates and prunes), so an id that was never
logged, or was pruned, costs a look-up in memory rather than a read of every file. Records another
process appends to the same folder meanwhile are not in it.

    log = PredictionLog("predlog", sample=0.5)
    log.start()
    log.write(record, data=upload_bytes, pixels=model_input)
    log.close()
    read_log("predlog")      # every record, oldest first
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import random
import re
import threading
import time
from array import array
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from imgclf.core.files import atomic_path, fsync_dir
from imgclf.data.keep import keepable

CURRENT = "predictions.jsonl"
IMAGES = "images"
RECENT = 10_000  # whole records remembered for POST /feedback by prediction_id
_ID = re.compile(rb'\{"id": "([^"\\]*)"')  # how json.dumps starts every record
_STOP = object()


def prediction_id(sha256: str) -> str:
    return f"{sha256[:16]}-{int(time.time() * 1000)}"


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def record(
    *,
    sha256: str,
    model: str,
    version: int | None,
    answer: dict,
    probs: np.ndarray,
    classes: list[str],
    decision: str,
    source: str = "predict",
) -> dict:
    """The logged fields known when the answer is made (the writer adds the image's)."""
    order = np.argsort(-probs)[:5]
    top = [[classes[i], round(float(probs[i]), 6)] for i in order]
    margin = float(probs[order[0]] - probs[order[1]]) if len(order) > 1 else 1.0
    return {
        "id": prediction_id(sha256),
        "time": utc_now(),
        "model": model,
        "version": version,
        "sha256": sha256,
        "image": None,
        "width": None,
        "height": None,
        "mode": None,
        "brightness": None,
        "label": answer["label"],
        "confidence": round(float(answer["confidence"]), 6),
        "margin": round(margin, 6),
        "top_k": top,
        "decision": decision,
        "source": source,
    }


class PredictionLog:
    def __init__(
        self,
        dir: str | Path,
        sample: float = 1.0,
        keep_images: bool = True,
        max_mb: float = 500,
        queue_size: int = 2048,
        on_drop: Callable[[], None] | None = None,
    ):
        self.dir = Path(dir).expanduser()
        self.sample, self.keep_images = sample, keep_images
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.rotate_bytes = max(self.max_bytes // 10, 1)
        self.on_drop = on_drop
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue = queue.Queue(queue_size)
        self._recent: OrderedDict[str, dict] = OrderedDict()
        self._index = _Index()
        self._lock = threading.Lock()  # the writer thread changes files and index; find() reads them
        self._thread: threading.Thread | None = None
        self._file = None
        self._size = 0  # bytes in the current file: the next record's offset
        self._total = 0  # bytes under dir, counted once at start and kept up to date

    # ------------------------------------------------------------ request side (cheap)

    def sampled(self, sha256: str) -> bool:
        """Whether this image is logged: the same answer every time for the same bytes."""
        return self.sample >= 1 or (self.sample > 0 and random.Random(sha256).random() < self.sample)

    def write(self, rec: dict, data: bytes | None = None, pixels: np.ndarray | None = None) -> bool:
        """Queue one record (with the upload's bytes and its decoded model input, for the image fields);
        False when it was dropped because the writer is behind."""
        try:
            self._queue.put_nowait((rec, data, pixels))
            return True
        except queue.Full:
            self.dropped += 1
            if self.on_drop:
                self.on_drop()
            return False

    def find(self, pid: str) -> tuple[dict, bytes | None] | None:
        """(record, kept image bytes or None) of a logged prediction, or None if unknown."""
        with self._lock:
            rec = self._recent.get(pid) or self._index.find(pid, self.dir)
        if rec is None:
            return None
        data = (
            (self.dir / rec["image"]).read_bytes() if rec.get("image") and (self.dir / rec["image"]).is_file() else None
        )
        return rec, data

    # ------------------------------------------------------------ writer thread

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._total = sum(p.stat().st_size for p in self.dir.rglob("*") if p.is_file())
        with self._lock:
            for f in log_files(self.dir):
                self._index.add_file(f)
        self._file = open(self.dir / CURRENT, "a", encoding="utf-8")
        self._size = (self.dir / CURRENT).stat().st_size
        self._thread = threading.Thread(target=self._run, name="imgclf-predlog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
            self._thread = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def flush(self, timeout: float = 10) -> None:
        """Wait until every queued record is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks and time.monotonic() < deadline:
                self._queue.all_tasks_done.wait(deadline - time.monotonic())

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._write(*item)
            except Exception as e:  # noqa: BLE001 - a full disk must not stop the service; say so once per record
                print(f"imgclf serve: prediction log write failed: {type(e).__name__}: {e}", flush=True)
            finally:
                self._queue.task_done()

    def _write(self, rec: dict, data: bytes | None, pixels: np.ndarray | None) -> None:
        if data is not None:
            rec.update(_header(data))
            fmt = rec.pop("format", None)
            if self.keep_images and fmt:
                try:
                    kept = keepable(data)
                except Exception:  # noqa: BLE001 - a conversion to PNG that fails loses the image, never the record
                    kept = None
                if kept:
                    rec["image"] = self._keep(rec["sha256"], *kept)
        if pixels is not None:
            rec["brightness"] = round(brightness(pixels), 3)
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        size = len(line.encode())
        self._file.write(line)  # one write of one whole line: a reader never sees half a record
        self._file.flush()
        with self._lock:
            self._index.add(CURRENT, rec["id"], self._size)
            self._recent[rec["id"]] = rec
            if len(self._recent) > RECENT:
                self._recent.popitem(last=False)
        self._size += size
        self._total += size
        self.written += 1
        if self._size > self.rotate_bytes:
            self._rotate()
        if self._total > self.max_bytes:
            self._prune()

    def _keep(self, sha: str, data: bytes, ext: str) -> str:
        rel = f"{IMAGES}/{sha[:2]}/{sha}.{ext}"
        path = self.dir / rel
        if not path.is_file():
            with atomic_path(path) as tmp:  # whole or absent after a crash; the umask's mode; fsynced
                tmp.write_bytes(data)
            self._total += len(data)
        return rel

    def _rotate(self) -> None:
        # The part is never written again: make it durable before its new name is.
        os.fsync(self._file.fileno())
        self._file.close()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        # Several rotations in one second (tiny bounds): numbered after the highest number of that
        # second still there, so the names keep their time order even after pruning.
        taken = [_part_key(p)[1] for p in self.dir.glob(f"predictions-{stamp}*.jsonl")]
        name = f"predictions-{stamp}-{max(taken) + 1}.jsonl" if taken else f"predictions-{stamp}.jsonl"
        with self._lock:
            os.replace(self.dir / CURRENT, self.dir / name)
            self._index.rename(CURRENT, name)
            self._file = open(self.dir / CURRENT, "a", encoding="utf-8")
        fsync_dir(self.dir)
        self._size = 0

    def _prune(self) -> None:
        """Down to 90% of the bound (so not on every write): the oldest files first, rotated logs and
        kept images alike. The current log is never deleted, so what remains is the latest records."""
        goal = int(self.max_bytes * 0.9)
        folder = self.dir / IMAGES
        files = log_files(self.dir)[:-1] + ([p for p in folder.rglob("*.*") if p.is_file()] if folder.is_dir() else [])
        for _, size, p in sorted((st.st_mtime, st.st_size, p) for p in files for st in [p.stat()]):
            if self._total <= goal:
                return
            self._total -= size
            with self._lock:
                p.unlink()
                self._index.drop(p.name)


class _Index:
    """Where each logged id's line is: per log file, parallel arrays of 64-bit keys (a hash of the id)
    and byte offsets, 16 bytes a record (a million records: 16 MB). A look-up compares one array per
    file at C speed and reads only the lines whose key matches (a hash collision is read and
    told apart by its id). Not thread-safe: PredictionLog holds its lock around every call."""

    def __init__(self):
        self.files: dict[str, tuple[array, array]] = {}

    @staticmethod
    def key(pid: str) -> int:
        return int.from_bytes(hashlib.blake2b(pid.encode(), digest_size=8).digest(), "little", signed=True)

    def add(self, name: str, pid: str, offset: int) -> None:
        keys, offsets = self.files.setdefault(name, (array("q"), array("q")))
        keys.append(self.key(pid))
        offsets.append(offset)

    def add_file(self, path: Path) -> None:
        """Index the records already in a log file (one pass at start; a line cut short is skipped)."""
        offset = 0
        with open(path, "rb") as f:
            for line in f:
                m = _ID.match(line)
                if m is None and line.endswith(b"\n"):  # written by something else than json.dumps
                    try:
                        pid = json.loads(line).get("id")
                    except (ValueError, AttributeError):
                        pid = None
                else:
                    pid = m.group(1).decode("utf-8", "replace") if m else None
                if isinstance(pid, str):
                    self.add(path.name, pid, offset)
                offset += len(line)

    def rename(self, old: str, new: str) -> None:
        if old in self.files:
            self.files[new] = self.files.pop(old)

    def drop(self, name: str) -> None:
        self.files.pop(name, None)

    def find(self, pid: str, folder: Path) -> dict | None:
        """The newest record with this id, read from its line; None without reading when none has its key."""
        key = self.key(pid)
        for name, (keys, offsets) in reversed(self.files.items()):  # rotated parts in order, current last
            hits = np.flatnonzero(np.frombuffer(keys, np.int64) == key) if keys else ()
            for i in reversed(hits):
                try:
                    with open(folder / name, "rb") as f:
                        f.seek(offsets[int(i)])
                        rec = json.loads(f.readline())
                except (OSError, ValueError):
                    continue
                if isinstance(rec, dict) and rec.get("id") == pid:
                    return rec
        return None


def _header(data: bytes) -> dict:
    """Width, height, mode and format from the image header (no pixels decoded)."""
    from imgclf.data.images import opened

    try:
        with opened(io.BytesIO(data), scalable=True) as img:
            return {"width": img.width, "height": img.height, "mode": img.mode, "format": img.format}
    except Exception:  # noqa: BLE001 - the service decoded it already; a header oddity just leaves nulls
        return {}


def brightness(pixels: np.ndarray) -> float:
    """Mean 8-bit greyscale (ITU-R 601 luma, as PIL's "L") of an RGB uint8 array: of the decoded
    model input, which has the original's mean brightness up to resampling."""
    return float(pixels[..., :3].reshape(-1, 3).astype(np.float32).mean(0) @ np.array([0.299, 0.587, 0.114]))


def log_files(dir: str | Path) -> list[Path]:
    """The log's JSONL files, oldest first: rotated parts by their time stamp, then the current one."""
    d = Path(dir)
    rotated = sorted(d.glob("predictions-*.jsonl"), key=_part_key)
    return rotated + ([d / CURRENT] if (d / CURRENT).is_file() else [])


def _part_key(p: Path) -> tuple[str, int]:
    """predictions-<stamp>.jsonl, or predictions-<stamp>-<n>.jsonl for a later rotation in the same second."""
    parts = p.stem.split("-")
    return parts[1], int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0


def read_log(path: str | Path) -> list[dict]:
    """Every record of a prediction log folder (all parts, oldest first), or of one .jsonl file.
    A line cut short by a crash is skipped.

        >>> [r["label"] for r in read_log("predlog")][:3]
        ['rose', 'tulip', 'rose']
    """
    p = Path(path).expanduser()
    files = log_files(p) if p.is_dir() else [p]
    out = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return out


def parse_time(text) -> datetime | None:
    """A record's ISO time (a trailing Z allowed) as an aware datetime, UTC when it names no zone; None if unreadable."""
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
