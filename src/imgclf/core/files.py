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
    except Exception as e:
        _name_full_disk(e, path, always=True)  # the file meant, not the temp nor "error while serializing"
        raise
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


def writable_folder(folder: str | os.PathLike) -> Path:
    """`folder`, made if missing, once a file could be created in it; OSError where it cannot be (a
    read-only or missing home, a path through a file)."""
    import tempfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass
    return folder


def user_temp_folder(name: str) -> Path:
    """TEMP/NAME-<uid>: where a cache or settings go when their home cannot be written. Per user:
    another user's folder in a shared /tmp is not ours to write (Windows' temp folder is per user)."""
    import tempfile

    user = os.getuid() if hasattr(os, "getuid") else ""
    return Path(tempfile.gettempdir()) / f"{name}-{user}"


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


def output_file(path: str | os.PathLike, flag: str, example: str = "predictions.csv") -> Path:
    """`path` as a file to write, checked before any work: a folder there, something that is not a
    regular file (a FIFO or a device, which the atomic rename would replace), a file where a parent
    folder should be, or a place no file can be made (read-only, /proc) is the user's mistake, told
    in one line now rather than as a traceback after minutes of work.

        out = output_file(out, "--out")      # or UserError("--out x is a folder; give a file name, ...")
    """
    from imgclf.core.errors import UserError

    # A trailing separator says "a folder" even where none exists yet: Path() drops it, and the CSV
    # would be written as a file named like the folder the user meant.
    meant_folder = str(path).endswith(("/", os.sep))
    path = _given(path, flag)
    if path.is_dir() or meant_folder:
        raise UserError(f"{flag} {path} is a folder; give a file name, e.g. {path / example}")
    if path.exists() and not path.is_file():
        raise UserError(f"{flag} {path} is not a regular file (a FIFO, device or socket); give a file name")
    _check_writable(path, flag)
    return path


def output_folder(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a folder to write into (a run, a prediction log, an inbox; made when missing), checked
    as output_file checks a file: an existing file there is refused in one line before any work, not
    met as a FileExistsError when the first record is written."""
    from imgclf.core.errors import UserError

    path = _given(path, flag)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; give a folder (it is made when missing)")
    _check_writable(path, flag)
    return path


def _given(path: str | os.PathLike, flag: str) -> Path:
    from imgclf.core.errors import UserError

    if not str(path).strip():  # Path("") is ".": an unset $OUT would write into the current folder
        raise UserError(f"{flag} is empty; give a path")
    path = Path(path).expanduser()
    try:
        if "\0" in str(path):  # Path.exists() says False for it, and open() raises ValueError
            raise ValueError("embedded null byte")
        path.exists()
    except (OSError, ValueError) as e:  # a NUL byte, a name longer than the file system allows
        raise UserError(f"{flag} {str(path)[:200]!r} is not a usable path ({e})") from None
    return path


def _check_writable(path: Path, flag: str) -> None:
    """Refuse `path` when its nearest existing folder is a file or cannot take a new file. Tried by
    making (and removing) an empty file there: permission bits say nothing to root, nor about
    read-only mounts or /proc."""
    from imgclf.core.errors import UserError

    # An existing file at `path` is replaced (or appended to) in its folder: that folder is what must take a file.
    existing = next((p for p in (path, *path.parents) if p.exists() and not (p == path and p.is_file())), Path("."))
    if not existing.is_dir():
        raise UserError(f"{flag} {path} cannot be written: {existing} is a file, not a folder")
    try:
        new_temp(existing, ".imgclf-write-check-").unlink()
    except OSError as e:
        raise UserError(
            f"{flag} {path} cannot be written: no file can be made in {existing} ({e.strerror or e})"
        ) from None


def is_regular(path: str | os.PathLike) -> bool:
    """True for a regular file (links followed). A FIFO would block its reader forever and a device
    such as /dev/zero never ends, so every listing of files to read keeps only these."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


class NotRegularFile(OSError):
    """open_regular met a FIFO, device, socket or folder."""

    def __str__(self) -> str:  # the reason alone: callers list it beside the path
        return self.strerror


def open_regular(path: str | os.PathLike):
    """`path` opened for binary reading when it is a regular file, else NotRegularFile. Checked on the
    open file (no race with a swap after a listing), opened non-blocking so that a FIFO without a
    writer cannot hang the open itself; a regular file reads as usual."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file (a FIFO, device, socket or folder)", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file; NotRegularFile for anything else (see open_regular)."""
    with open_regular(path) as f:
        return f.read()


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

    def __exit__(self, kind, exc, tb) -> None:
        try:
            self.close()
        except OSError as e:
            _name_full_disk(e, self.path)
            raise
        if exc is not None:
            _name_full_disk(exc, self.path)


def _name_full_disk(e: BaseException, path: Path | str, always: bool = False) -> None:
    """Raise a full disk's error again naming `path` (the error of a write names no file); `always`:
    even where it names one (a temp file)."""
    from imgclf.core.errors import out_of_space

    if out_of_space(e) and (always or not getattr(e, "filename", None)):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e


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


class sole_writer:
    """Refuse a second process writing the same output (two `predict --out preds.csv` at once would
    interleave their rows and each resume from a file the other is changing): a non-blocking flock
    on `lock` for as long as this is held, and one line naming `target` for the process that comes
    second. The lock file is removed on release; a process that locked the name's old file in
    between retries on the new one. No flock on Windows: nothing is held there.

        with sole_writer(out / ".lock", out, "--out"):
            ...
    """

    def __init__(self, lock: str | os.PathLike, target: str | os.PathLike, flag: str):
        self.path, self.file = Path(lock), None
        try:
            import fcntl
        except ImportError:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            f = open(self.path, "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                from imgclf.core.errors import UserError

                raise UserError(
                    f"another imgclf is writing {target} right now: let it finish (or stop it), or give another {flag}"
                ) from None
            try:  # the holder before may have removed the name after this opened it
                same = os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.file = f
                return
            f.close()

    def release(self) -> None:
        if self.file is None:
            return
        self.path.unlink(missing_ok=True)  # while still held: a newcomer then locks a fresh file
        self.file.close()
        self.file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()
