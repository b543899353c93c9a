"""Image paths recorded relative to the data root, so a run folder and its data can move.

A run records each image as a path under the data root (POSIX separators, `cat/1.jpg`) and the
root itself as an absolute path. Read back, the paths join the recorded root, or the folder the
user says the data moved to (`--data DIR`). Paths outside the root (another drive) stay absolute;
an absolute path under the old root is moved along with it.

    root = data_root("photos", "folders", paths)          # '/home/ann/photos'
    rel = [relative_to(p, root) for p in paths]           # ['cat/1.jpg', ...]
    resolve(rel[0], root, moved_to="/mnt/photos")         # '/mnt/photos/cat/1.jpg'
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath

ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip", ".csv")  # what a source's name drops: photos.zip is "photos"


def source_name(data) -> str:
    """A data source's short name for what is made from it (runs/<name>-<n>, RUN/evaluations/<name>):
    `photos` for photos/, photos.zip, photos.tar.gz or photos.csv, safe as a folder name. `imgclf train .`
    is named after the folder it is in (abspath, not resolve: a symlink's own name is the one the user gave)."""
    name = os.path.basename(os.path.abspath(os.path.expanduser(str(data))))
    name = next((name[: -len(a)] for a in ARCHIVES if name.lower().endswith(a) and len(name) > len(a)), name)
    return re.sub(r"[^\w.-]+", "_", name).strip("_.") or "data"


def data_root(source: str, layout: str, paths: list[str]) -> str | None:
    """The absolute folder the images are recorded under: the data folder for the folder layouts;
    for a CSV manifest the deepest folder holding every listed file (they can be anywhere). None
    when they share no folder (Windows drives): the paths are then recorded absolute."""
    if layout != "manifest":
        return os.path.abspath(source)
    if not paths:
        return os.path.abspath(os.path.dirname(source))
    try:
        return os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    except ValueError:
        return None


def inside(path: str, root: str) -> str | None:
    """`path` relative to `root` (POSIX separators) when it lies under it, else None. Lexical: both
    are taken relative to the same working folder and no link is followed."""
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    except ValueError:  # another Windows drive
        return None
    parts = PurePath(rel).parts
    return None if not parts or parts[0] == os.pardir else PurePath(rel).as_posix()


def relative_to(path: str, root: str | None) -> str:
    """How a run records `path`: relative to `root` when under it, else absolute."""
    rel = inside(path, root) if root else None
    return rel if rel is not None else os.path.abspath(path)


def resolve(path: str, root: str | None, moved_to: str | None = None) -> str:
    """A recorded path as a path to open. Relative paths join `moved_to` (where the user says the
    data is now) or `root`; an absolute path under `root` follows it to `moved_to`. Without a
    root (runs recorded before roots were) the path is left as it is, for the working folder."""
    if root is None:
        return path
    if not os.path.isabs(path):
        return os.path.normpath(os.path.join(moved_to if moved_to is not None else root, path))
    return rebase(path, root, moved_to) if moved_to is not None else path


def rebase(path: str, old_root: str, new_root: str) -> str:
    """`path` moved from under `old_root` to under `new_root`; unchanged when not under `old_root`."""
    rel = inside(path, old_root)
    return path if rel is None else os.path.normpath(os.path.join(new_root, rel))
