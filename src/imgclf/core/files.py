"""Atomic file writes: a crash mid-write must never leave a half-written run file. Files written as
they go (streamed CSVs) are fsynced when closed (open_stream)."""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it onto `path` only on success.

    Same-folder temp files make the final `os.replace` atomic on POSIX and Windows. The temp file
    is fsynced before the rename and the folder after it: without both, a power cut soon after can
    leave an empty file or the old name (ext4, XFS delay data and the rename separately).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = new_temp(path.parent, f".{path.name}.")
    mode = stat.S_IMODE(tmp_path.stat().st_mode)  # 0666 less the umask, as open() would give
    try:
        yield tmp_path
        # The writer may have put its own file there (safetensors writes a 0600 temp and renames it).
        if stat.S_IMODE(tmp_path.stat().st_mode) != mode:
            os.chmod(tmp_path, mode)
        commit(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temporary file (in `path`'s folder) onto `path`, durably: the file is fsynced
    before the rename and the folder after it. For writers that name their own temp file (OpenCV's
    VideoWriter picks the container from the name's extension); others use atomic_path."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


def new_temp(folder: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> Path:
    """Create an empty, uniquely named file in `folder` and return its path.

    Unlike `tempfile.mkstemp` (always 0600) the file is created 0666 less the umask, so a file
    renamed into place gets the same mode as one made by `open()`; no need to read the umask.
    """
    for _ in range(100):
        p = Path(folder) / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
            return p
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {folder}")


def new_temp_dir(folder: str | os.PathLike, prefix: str) -> Path:
    """Create an empty, uniquely named folder in `folder` and return its path: 0777 less the umask,
    where `tempfile.mkdtemp` always gives 0700 (a folder later renamed into place, shared with a team)."""
    for _ in range(100):
        p = Path(folder) / f"{prefix}{secrets.token_hex(6)}"
        try:
            p.mkdir(0o777)
            return p
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary folder name in {folder}")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one whole line to a log, fsynced (and its folder, when the log is new). A failed write
    (a full disk) is cut back off, so the log never ends in half a line. Unbuffered on purpose: a
    buffered file would retry the failed bytes when truncated or closed."""
    path = Path(path)
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            data = line.encode("utf-8")
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename or a new file in `folder` durable. Windows cannot open a folder, and some file
    systems refuse to fsync one (EINVAL); there the rename is as durable as that system makes it."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def output_file(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a file to write; a folder there (or a file where a parent folder should be) is the
    user's mistake, told before any work rather than as an IsADirectoryError after it."""
    from imgclf.core.errors import UserError

    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'predictions.csv'}")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UserError(f"{flag} {path} cannot be written: {blocker} is a file, not a folder")
    return path


class open_stream:
    """A text file written as it goes and read meanwhile (a CSV followed with `tail -f`, or one a
    killed run resumes), so written in place, never replaced atomically: created 0666 less the umask
    as by open(), and fsynced on close, with its folder when the file is new, so that a finished
    file and its name survive a power cut.

        with open_stream("preds.csv", append=True) as f:
            f.write("...")
    """

    def __init__(self, path: str | os.PathLike, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.new = not self.path.exists()
        self.file = open(self.path, "a" if append else "w", newline="", encoding="utf-8")

    def close(self) -> None:
        if self.file.closed:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
        finally:
            self.file.close()
        if self.new:
            fsync_dir(self.path.parent)

    def __enter__(self):
        return self.file

    def __exit__(self, *exc) -> None:
        self.close()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:  # atomic_path fsyncs it
            f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the block: one writer at a time across
    processes, e.g. two promoters must not both read the old aliases and each write their own. On
    Windows there is no flock; callers' atomic replaces still keep every file whole."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
