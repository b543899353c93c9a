"""Errors caused by the user's input. The CLI prints these as one line, without a stack trace."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import shutil
from contextlib import contextmanager

# user:password@ in any URL (the password runs to the last @ before the host, so an unescaped @ in it is
# covered too), and password-like query parameters (?password=..., &token=...).
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s:/@]*):[^\s/]*@")
_QUERY_SECRET = re.compile(r"\b(password|passwd|pwd|secret|token|api_key|apikey|access_key)=[^&\s]*", re.IGNORECASE)


class UserError(ValueError):
    """Something the user can fix: a bad path, an empty class, an unknown option."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, with the command that continues it (the CLI prints it)."""

    def __init__(self, resume: str):
        super().__init__(resume)
        self.resume = resume


@contextmanager
def resumable(command: str):
    """Around work that leaves its finished steps on disk: Ctrl-C, or a disk that fills up, ends it
    with `command`, which goes on from there (an inner resumable's command is replaced by this one)."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(command) from None
    except Exception as e:
        if (line := disk_full(e, then=f"go on with: {command}")) is None:
            raise
        raise UserError(line) from e


def from_settings(cls, d: dict, what: str = "setting"):
    """Build dataclass `cls` from a user's mapping, naming any unknown keys and the valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        meant = closest(unknown, known)
        raise UserError(
            f"unknown {what}(s) {', '.join(map(str, unknown))}"
            + (f" (did you mean {meant}?)" if meant else "")
            + f"; valid: {', '.join(sorted(known))}"
        )
    return cls(**d)


def closest(unknown, known) -> str:
    """'epochs' for 'epocs', 'img_size' for 'img-size': the valid names a typo was probably meant
    as, joined; "" when none is close. A list of 50 valid names hides the one the user wanted."""
    import difflib

    names = {k.replace("_", "-"): k for k in known}
    found = []
    for u in unknown:
        match = difflib.get_close_matches(str(u).replace("_", "-"), list(names), n=1, cutoff=0.75)
        found += [names[match[0]]] if match else []
    return " or ".join(f"'{f}'" for f in dict.fromkeys(found))


def mask_secrets(text: str) -> str:
    """`text` with the passwords of URLs (postgresql://user:***@host) and secret query parameters masked:
    error messages and stored descriptions end up in logs, terminals and shared reports."""
    return _QUERY_SECRET.sub(r"\1=***", _URL_PASSWORD.sub(r"\1:***@", text))


# A full disk (or a quota) as libraries report it: OSError's errno, or the message of a writer that
# wraps the OS error in its own type (safetensors' Rust "I/O error: No space left on device (os error 28)").
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_NO_SPACE_WORDS = ("No space left on device", "Disk quota exceeded", "os error 28", "os error 122")


def out_of_space(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from, says the disk (or the user's quota) is full."""
    return bool(_space_errors(exc))


def disk_full(exc: BaseException, then: str = "run the same command again") -> str | None:
    """One line for a user whose disk filled up under `exc`: what was being written, the space left
    there, and what to do (`then`: after freeing space); None when `exc` has another cause."""
    found = _space_errors(exc)
    if not found:
        return None
    for e in found:  # imgclf's own words (the decode cache's) say more than the OS's
        if isinstance(e, OSError) and e.strerror and e.strerror != os.strerror(e.errno or 0):
            return f"the disk is full: {e.strerror}; then {then}"
    where = next((e.filename for e in found if getattr(e, "filename", None)), None)
    line = f"the disk is full: no room to write {where}" if where else "the disk is full (or over its quota)"
    if where and (free := _free_bytes(where)) is not None:
        line += f" ({describe_bytes(free)} free there)"
    return f"{line}; free some space (IMGCLF_CACHE_DIR moves imgclf's cache to another disk), then {then}"


def refused(exc: BaseException) -> str | None:
    """One line for a path the system refused (a read-only disk, no permission) that no check caught
    before the work began; None for other errors."""
    e = exc if isinstance(exc, OSError) else None
    if e is None or e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not e.filename:
        return None
    return (
        f"{e.filename}: {e.strerror}; choose a folder you can write to, or run imgclf from one (runs/ and "
        "tunes/ go in the current folder; IMGCLF_CACHE_DIR moves imgclf's cache)"
    )


def _space_errors(exc: BaseException | None) -> list[BaseException]:
    """The errors in `exc`'s chain (itself, then what it was raised from) that say the disk is full."""
    found, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS or any(w in str(exc) for w in _NO_SPACE_WORDS):
            found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def _free_bytes(path: str) -> int | None:
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        return shutil.disk_usage(folder or "/").free
    except OSError:
        return None


def describe_bytes(n: float) -> str:
    """'29.5 MB', '812 bytes': sizes as messages print them."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"
