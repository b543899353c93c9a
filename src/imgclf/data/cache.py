"""Decode every image once into a memory-mapped uint8 file, reused while the files are unchanged.

Training then reads rows from the page cache instead of decoding JPEGs every epoch. The key covers
each file's path, size and mtime, so editing, adding or removing a file gives a fresh cache.
This module must stay free of torch: it runs in decoder worker processes.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import shutil
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import PIL

from imgclf.core.cpus import usable_cpus
from imgclf.core.errors import describe_bytes
from imgclf.core.files import atomic_path, read_json, user_temp_folder, writable_folder, write_json
from imgclf.data.images import DECODE_RULES, MAX_PIXELS, RESIZE_MODES, UnusableImage, load_resized

# Bump when decoding or the file layout changes, so an old cache is never misread.
FORMAT_VERSION = "imgclf-cache-1"
CHUNK = 256
POOL_MIN_IMAGES = 64  # below this a process pool costs more to start than it saves
PROGRESS_MIN_IMAGES = 500  # fewer go by too fast for a progress bar to say anything


@dataclass
class CacheResult:
    images: np.ndarray  # np.memmap (N, size, size, 3) uint8, read-only; rows of bad files are 0
    bad: dict[int, str]  # index -> why that file is unusable
    path: Path  # the .u8 file
    hit: bool  # reused from disk: nothing was decoded
    seconds: float


@dataclass(frozen=True)
class _Chunk:
    file: str  # the cache file being filled
    start: int  # index of paths[0] in the whole list
    paths: list[str]
    size: int
    mode: str


def default_cache_dir() -> Path:
    """$IMGCLF_CACHE_DIR, else $XDG_CACHE_HOME/imgclf, else ~/.cache/imgclf."""
    if custom := os.environ.get("IMGCLF_CACHE_DIR"):
        return Path(custom).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "imgclf"


def build_cache(
    paths: Sequence[str | os.PathLike],
    size: int,
    mode: str = "squash",
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CacheResult:
    """The images at `paths`, resized by `load_resized`, as rows of a read-only memmap.

    Unusable files get a reason in `bad` and a zero row, so indices always match `paths`.
    """
    started = time.perf_counter()
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    paths = [os.fspath(p) for p in paths]
    shape = (len(paths), size, size, 3)
    folder = writable_dir(Path(cache_dir) if cache_dir else default_cache_dir())
    key = _cache_key(paths, size, mode)
    data, meta = folder / f"{key}.u8", folder / f"{key}.json"
    if not paths:
        # np.memmap cannot map an empty file, and there is nothing worth storing.
        empty = np.zeros(shape, np.uint8)
        empty.flags.writeable = False
        return CacheResult(empty, {}, data, False, time.perf_counter() - started)
    bad = _complete_cache(meta, data, shape)
    hit = bad is not None
    if not hit:
        bad = _decode_to_file(data, paths, shape, mode, workers, progress)
        # Written last: a present .json means the .u8 beside it is complete.
        write_json(
            meta,
            {
                "format": FORMAT_VERSION,
                "shape": list(shape),
                "mode": mode,
                "paths": len(paths),
                "bad": {str(i): r for i, r in sorted(bad.items())},
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
    images = np.memmap(data, dtype=np.uint8, mode="r", shape=shape)
    return CacheResult(images, bad, data, hit, time.perf_counter() - started)


def _cache_key(paths: Sequence[str], size: int, mode: str) -> str:
    """sha256 over the settings and every file's absolute path, byte size and mtime, in order."""
    h = hashlib.sha256()
    # Pillow's version, the pixel limit and the decoding rules are in the key too: each can change
    # the decoded rows, and cached rows must equal what prediction computes from the same file.
    h.update(f"{FORMAT_VERSION}\0{PIL.__version__}\0{MAX_PIXELS}\0{DECODE_RULES}\0{size}\0{mode}\n".encode())
    for p in paths:
        h.update(os.fsencode(os.path.abspath(p)) + b"\0%d\0%d\n" % _signature(p))
    return h.hexdigest()


def _signature(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1  # missing now: decoding marks it bad; its reappearance changes the key
    return st.st_size, st.st_mtime_ns


def cache_file(sub: str, name: str) -> Path:
    """Where imgclf's cache keeps `sub/name` (converted weights, their graphs): the file already there,
    even in a cache that cannot be written (one a deployment filled beforehand), else a place where
    it can be written (as for decoded images, the per-user temp folder when the cache cannot be)."""
    for folder in (default_cache_dir() / sub, _fallback_dir() / sub):
        if (folder / name).is_file():
            return folder / name
    return writable_dir(default_cache_dir() / sub, sub, what="imgclf's cache") / name


def writable_dir(preferred: Path, sub: str = "", what: str = "the image cache") -> Path:
    """`preferred`, or a per-user temp folder (its `sub` folder) when it cannot be written (read-only
    home, a bad $IMGCLF_CACHE_DIR): a command should not fail over where its cache lives."""
    try:
        return writable_folder(preferred)
    except OSError as e:
        fallback = _fallback_dir() / sub
        warnings.warn(f"cannot write {what} to {preferred} ({e.strerror or e}); using {fallback}", stacklevel=3)
        return writable_folder(fallback)


def _fallback_dir() -> Path:
    return user_temp_folder("imgclf-cache")


def _complete_cache(meta: Path, data: Path, shape: tuple[int, ...]) -> dict[int, str] | None:
    """The bad-file reasons of a complete cache with this key, or None when it must be built."""
    try:
        info = read_json(meta)
        if info["shape"] != list(shape) or data.stat().st_size != math.prod(shape):
            return None
        return {int(i): str(r) for i, r in info["bad"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent or damaged: rebuild


def _decode_to_file(
    data: Path, paths: list[str], shape: tuple[int, ...], mode: str, workers: int | None, progress: bool
) -> dict[int, str]:
    """Fill a temp file beside `data` and rename it onto `data` once every row is written."""
    n, size = shape[0], shape[1]
    workers = 1 if n < POOL_MIN_IMAGES else (workers or usable_cpus())
    # Several chunks per worker keep all of them busy to the end; CHUNK caps lost work per task.
    step = max(1, min(CHUNK, math.ceil(n / (workers * 4))))
    with atomic_path(data) as tmp:
        _allocate(tmp, math.prod(shape))
        chunks = [_Chunk(str(tmp), i, paths[i : i + step], size, mode) for i in range(0, n, step)]
        with progress_bar(n, progress) as advance:
            return _decode_chunks(chunks, min(workers, len(chunks)), advance)


def _allocate(file: Path, nbytes: int) -> None:
    """Size `file` to `nbytes` of zeros: the rows of unusable images simply stay zero."""
    with open(file, "r+b") as f:
        if not hasattr(os, "posix_fallocate"):
            f.truncate(nbytes)
            return
        try:
            # Reserve the blocks now: a full disk under a memmap write is a SIGBUS crash mid-build,
            # here it is an ordinary error before any decoding.
            os.posix_fallocate(f.fileno(), 0, nbytes)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            raise OSError(
                e.errno,
                f"the decoded images need {describe_bytes(nbytes)} in imgclf's cache, {file.parent}, "
                f"and {describe_bytes(shutil.disk_usage(file.parent).free)} are free there: free some space, "
                "or set IMGCLF_CACHE_DIR to a folder on a larger disk",
            ) from e


def _decode_chunks(chunks: list[_Chunk], workers: int, advance: Callable[[int], None]) -> dict[int, str]:
    if workers == 1:
        return _collect(chunks, map(_decode_chunk, chunks), advance)
    with ProcessPoolExecutor(workers) as pool:
        return _collect(chunks, pool.map(_decode_chunk, chunks), advance)


def _collect(chunks: list[_Chunk], results: Iterable[dict[int, str]], advance: Callable[[int], None]) -> dict[int, str]:
    bad: dict[int, str] = {}
    for chunk, chunk_bad in zip(chunks, results):
        bad.update(chunk_bad)
        advance(len(chunk.paths))
    return bad


def _decode_chunk(chunk: _Chunk) -> dict[int, str]:
    """Decode `chunk` into its rows of the cache file; return reasons for its unusable files.

    Top level so worker processes can import it; rows go straight into the shared file, so only
    short strings travel back to the parent.
    """
    row = chunk.size * chunk.size * 3
    rows = np.memmap(
        chunk.file,
        dtype=np.uint8,
        mode="r+",
        offset=chunk.start * row,
        shape=(len(chunk.paths), chunk.size, chunk.size, 3),
    )
    bad = {}
    for i, path in enumerate(chunk.paths):
        try:
            rows[i] = load_resized(path, chunk.size, chunk.mode)
        except UnusableImage as e:
            bad[chunk.start + i] = e.reason
    rows.flush()
    return bad


@contextmanager
def progress_bar(total: int, show: bool, label: str | None = None) -> Iterator[Callable[[int], None]]:
    """An `advance(n)` callable, drawing a rich progress bar of `total` steps (transient: it leaves
    no line behind) when `show` and there are PROGRESS_MIN_IMAGES or more; `label` defaults to
    "decoding N images"."""
    from rich.console import Console

    # Not into a file or pipe: there a transient bar draws nothing and leaves an empty line in the log.
    if not show or total < PROGRESS_MIN_IMAGES or not Console().is_terminal:
        yield lambda n: None
        return
    from rich.progress import Progress

    # No auto-refresh: its thread would be running when the pool forks its workers.
    with Progress(transient=True, auto_refresh=False) as bar:
        task = bar.add_task(label or f"decoding {total} images", total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)
            bar.refresh()

        yield advance
