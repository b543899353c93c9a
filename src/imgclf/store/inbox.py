"""The feedback inbox: corrected labels for images the model saw, kept as a class-folder dataset.

INBOX/ <label>/<sha256>.<ext>   the image bytes, named by their content (never a client's name), so the
                                same image sent twice is stored once and INBOX is itself trainable data
       feedback.jsonl           one record appended per feedback, the full history (who, when, what the
                                model had said): {"sha256", "path", "label", "known_class", "time", "who",
                                "source", "previous", "prediction_id"}

Written by `POST /feedback` (the service) and `imgclf feedback import FOLDER`; read by
`imgclf update --from-inbox`. The same image given another label moves to that label's folder
(the latest word wins); the history keeps every word. A label the model does not know is kept as
a proposed new class (`known_class: false`) for a person to accept by retraining.

    from imgclf.store import inbox
    inbox.add("registry/inbox", open("x.jpg", "rb").read(), "rose", classes=["rose", "tulip"])
    inbox.import_folder("corrections/", "registry/inbox")      # corrections/<label>/<images>
    inbox.summary("registry/inbox", classes=["rose", "tulip"])  # counts per label, proposed classes
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from imgclf.core.errors import UserError
from imgclf.core.files import append_line, file_lock, fsync_dir, new_temp, output_folder, read_regular
from imgclf.data.formats import IMAGE_EXTENSIONS
from imgclf.data.images import UnusableImage, load_resized, opened
from imgclf.data.keep import keepable
from imgclf.store.labels import FEEDBACK_FILE, check_label, check_text

LOCK_FILE = ".lock"
# flock excludes other processes; threads of one process (the server's worker pool) also take this.
_THREAD_LOCK = threading.Lock()


def image_file(data: bytes) -> tuple[bytes, str]:
    """(bytes, extension) to store image bytes as (the format from the decoded file, never from a
    name; a format training does not list becomes a PNG, data.images.keepable); UserError naming why
    when the bytes are not a complete image, or more pixels than training decodes."""
    if not data:
        raise UserError("the image is empty (0 bytes)")
    try:
        # Every pixel decodes as training will decode it (a phone's 200 MP JPEG at reduced scale): a
        # truncated file fails here, not in training ...
        load_resized(io.BytesIO(data), 32)
        with opened(io.BytesIO(data), scalable=True) as img:
            img.verify()  # ... and its structure and checksums (PNG CRCs) hold
    except UnusableImage as e:
        if e.reason.startswith("too large"):
            raise UserError(f"the image is {e.reason}") from None
        kinds = ["JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF"] + [
            k for k in ("HEIC", "AVIF") if f".{k.lower()}" in IMAGE_EXTENSIONS
        ]
        why = "not an image format PIL knows" if e.reason.startswith("not an image") else e.reason
        raise UserError(f"not a readable image ({why}); send a {', '.join(kinds[:-1])} or {kinds[-1]} file") from e
    return keepable(data)


def add(
    inbox: str | Path,
    data: bytes,
    label: str,
    *,
    classes: list[str] | None,
    who: str | None = None,
    previous: dict | None = None,
    source: str = "import",
    prediction_id: str | None = None,
) -> dict:
    """Store one image under `label` and append its feedback record; return the record plus
    "action": "added" (new image), "already there" (same image, same label) or "relabelled"
    (same image, moved from another label's folder).

    `classes`: the model's classes, to mark a label it does not know as a proposed new class
    (None: not known, recorded as null). `previous`: what the model had answered
    ({"label", "confidence", "model", "version"}).

        >>> add("inbox", png_bytes, "tulip", classes=["rose", "tulip"], who="ann")["action"]
        'added'
    """
    label = check_label(label)
    data, ext = image_file(data)
    sha = hashlib.sha256(data).hexdigest()
    root = Path(inbox).expanduser()
    name = f"{sha}.{ext}"
    target = root / label / name
    root.mkdir(parents=True, exist_ok=True)
    # Written (and fsynced) before taking the lock, so concurrent senders wait only for renames;
    # skipped when the image is already there under this label (re-imports, repeated feedback).
    tmp = None if target.is_file() else _write_temp(root, data)
    try:
        with _locked(root):
            found = [p for p in _label_dirs(root) if (p / name).is_file()]
            if target.parent in found:
                action = "already there"
            else:
                target.parent.mkdir(exist_ok=True)
                if not found and tmp is None:  # it was there a moment ago; someone moved it since
                    tmp = _write_temp(root, data)
                source_path = found[0] / name if found else tmp
                os.replace(source_path, target)
                action = "relabelled" if found else "added"
            record = {
                "sha256": sha,
                "path": f"{label}/{name}",
                "label": label,
                "known_class": None if classes is None else label in classes,
                "time": _now(),
                "who": who,
                "source": source,
                "previous": previous,
                "prediction_id": prediction_id,
            }
            try:
                append_line(root / FEEDBACK_FILE, json.dumps(record, ensure_ascii=False) + "\n")
                if action != "already there":
                    fsync_dir(target.parent)
            except BaseException:
                # No record, no move: the image goes back where it was (the temp file is unlinked
                # below), so a full disk leaves the inbox as it was before this feedback.
                if action == "relabelled":
                    os.replace(target, source_path)
                elif action == "added":
                    target.unlink(missing_ok=True)
                if action != "already there":
                    _remove_if_empty(target.parent)
                raise
            for old in found:
                if old != target.parent:
                    (old / name).unlink(missing_ok=True)
                    _remove_if_empty(old)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return {**record, "action": action}


def import_folder(
    folder: str | Path, inbox: str | Path, *, classes: list[str] | None = None, who: str | None = None
) -> dict:
    """Add every image of FOLDER/<label>/ to the inbox (source "import"). Never stops on a bad file:
    unreadable files, files outside a class folder, sub-folders and unusable labels are listed
    under "skipped" with the reason.

    Returns {"folder", "inbox", "added", "already there", "relabelled", "skipped": [{"path", "reason"}],
    "labels": {label: {"added", "already there", "relabelled", "known_class"}}, "proposed": [...]}.

        >>> import_folder("corrections/", "registry/inbox")["added"]
        12
    """
    if not str(folder).strip():  # Path("") is the current folder: all of it would be imported
        raise UserError("the folder to import is empty (an unset variable?): give a folder of label folders")
    src = Path(folder).expanduser()
    if not src.is_dir():
        raise UserError(
            f"{folder} is not a folder; give a folder with one sub-folder per label "
            "(corrections/rose/*.jpg, corrections/tulip/*.jpg)"
        )
    who = check_text("--who", who) or _user()  # the service's cap: it is stored on every record
    output_folder(inbox, "--inbox")  # a file there would fail every image, each skipped with the same reason
    out = {
        "folder": str(src),
        "inbox": str(Path(inbox).expanduser()),
        "added": 0,
        "already there": 0,
        "relabelled": 0,
        "skipped": [],
        "labels": {},
        "proposed": [],
    }
    entries = sorted(p for p in src.iterdir() if not p.name.startswith("."))
    for p in entries:
        if not p.is_dir():
            out["skipped"].append({"path": str(p), "reason": "not inside a label folder (FOLDER/<label>/<image>)"})
            continue
        try:
            label = check_label(p.name)
        except UserError as e:
            out["skipped"].append({"path": str(p), "reason": str(e)})
            continue
        counts = out["labels"].setdefault(
            label,
            {
                "added": 0,
                "already there": 0,
                "relabelled": 0,
                "known_class": None if classes is None else label in classes,
            },
        )
        for f in sorted(q for q in p.iterdir() if not q.name.startswith(".")):
            if f.is_dir():
                out["skipped"].append(
                    {"path": str(f), "reason": "a sub-folder: only one level of label folders is read"}
                )
                continue
            try:
                # Regular files only (core.files): a FIFO here would hang the import forever.
                r = add(inbox, read_regular(f), label, classes=classes, who=who, source="import")
            except (UserError, OSError) as e:
                out["skipped"].append({"path": str(f), "reason": str(e)})
                continue
            counts[r["action"]] += 1
            out[r["action"]] += 1
    out["proposed"] = sorted(lb for lb, c in out["labels"].items() if c["known_class"] is False)
    if not out["labels"] and not out["skipped"]:
        raise UserError(f"{folder} has no label folders; put images in {folder}/<label>/")
    return out


def records(inbox: str | Path) -> list[dict]:
    """The latest feedback record per image (sha256), oldest first; [] for an inbox not created yet."""
    p = Path(inbox).expanduser() / FEEDBACK_FILE
    if not p.is_file():
        return []
    latest: dict[str, dict] = {}
    with open(p, encoding="utf-8") as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash mid-write: skip it, keep the rest
                continue
            latest.pop(r.get("sha256"), None)  # re-inserted last, so the order is by latest feedback
            latest[r.get("sha256")] = r
    return list(latest.values())


def summary(inbox: str | Path, classes: list[str] | None = None) -> dict:
    """What the inbox holds now: images per label folder (what `update --from-inbox` trains on),
    the labels `classes` does not know ("proposed"), the feedback count and the latest time.

        >>> summary("registry/inbox", ["rose", "tulip"])
        {"inbox": "registry/inbox", "images": 3, "labels": {"rose": 2, "lily": 1}, "proposed": ["lily"], ...}
    """
    root = Path(inbox).expanduser()
    if root.exists() and not root.is_dir():
        raise UserError(f"--inbox {root} is a file; give the inbox folder")
    labels = {d.name: sum(1 for f in d.iterdir() if _is_image(f)) for d in _label_dirs(root)}
    labels = {k: n for k, n in sorted(labels.items()) if n}
    recs = records(root)
    n_feedback = 0
    if (root / FEEDBACK_FILE).is_file():
        with open(root / FEEDBACK_FILE, "rb") as f:
            n_feedback = sum(1 for _ in f)
    return {
        "inbox": str(root),
        "images": sum(labels.values()),
        "labels": labels,
        "proposed": [] if classes is None else [lb for lb in labels if lb not in classes],
        "feedback": n_feedback,
        "last": max((r.get("time") or "" for r in recs), default=None),
    }


def default_inbox(registry: str | Path | None = None, run: str | Path | None = None) -> Path:
    """Where feedback goes when no --inbox is given: REGISTRY/inbox when a registry is in use; for a
    run in a runs/ folder, inbox/ beside that runs/ (PROJECT/runs/x -> PROJECT/inbox, wherever the
    service was started); else ./inbox, where `imgclf feedback list` and `update --from-inbox` look.
    (A run's grandparent is not used for other runs: --out model/ would put the inbox above the
    user's project.)"""
    if registry is not None:
        return Path(registry).expanduser() / "inbox"
    if run is not None and (home := Path(run).expanduser().resolve().parent).name == "runs":
        return home.parent / "inbox"
    return Path("inbox")


def locate(inbox: str | Path | None = None, registry: str | Path | None = None) -> tuple[Path, Path | None]:
    """(inbox folder, registry or None) for commands given neither, one or both: --inbox wins, then
    REGISTRY/inbox, then ./registry/inbox when ./registry is a registry, else ./inbox."""
    for flag, given in (("--inbox", inbox), ("--registry", registry)):
        if given is not None and not str(given).strip():  # Path("") is ".": the current folder as an inbox
            raise UserError(f"{flag} is empty; give a folder")
    if registry is None and (Path("registry") / "versions").is_dir():
        registry = Path("registry")
    reg = Path(registry).expanduser() if registry is not None else None
    return (Path(inbox).expanduser() if inbox is not None else default_inbox(reg)), reg


def registry_classes(registry: str | Path | None) -> list[str] | None:
    """The classes of the registry's production version (the model feedback is about); None without one."""
    if registry is None or not (Path(registry) / "versions").is_dir():
        return None
    from imgclf.store import registry as reg

    try:
        return reg.show(registry, "production")["classes"]
    except UserError:  # versions but no production alias yet: the newest version's classes
        versions = reg.list_versions(registry)
        return versions[-1]["classes"] if versions else None


# ---------------------------------------------------------------- helpers


def _label_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _write_temp(root: Path, data: bytes) -> Path:
    """The bytes in a dot-named temp file at the inbox root (hidden from dataset discovery; the
    same file system, so the rename into a label folder is atomic)."""
    tmp = new_temp(root, ".incoming-")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink()
        raise
    return tmp


def _remove_if_empty(d: Path) -> None:
    # An empty label folder would make the inbox fail as a dataset ("class folder has no images").
    try:
        d.rmdir()
    except OSError:
        pass


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    # The thread lock serialises one server's requests even where flock is missing (Windows).
    with _THREAD_LOCK, file_lock(root / LOCK_FILE):
        yield


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"
