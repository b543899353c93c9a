"""Where a cluster job's images come from and where its outputs go: local paths (which every node
must see under the same name: a shared filesystem), URIs that pyarrow opens (s3://, gs://, hdfs://,
file://), or web addresses of images and list files (http(s)://, fetched as predict fetches them).

    list_paths("photos/")                    # every image below, sorted, as absolute paths
    list_paths("s3://bucket/batch.txt")      # one path or URI a line; relative ones beside the list
    read_bytes("s3://bucket/a.jpg")
    OutputFolder("s3://bucket/preds").write("part-00000.parquet", data)
"""

from __future__ import annotations

import functools
import glob
import io
import os
import posixpath
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from imgclf.core.errors import UserError
from imgclf.core.files import atomic_path, read_json
from imgclf.data.archive import is_archive
from imgclf.data.discover import LIST_SUFFIXES as TEXT_LISTS
from imgclf.data.discover import list_entries, to_predict
from imgclf.data.formats import IMAGE_EXTENSIONS
from imgclf.data.images import UnusableImage, fetch_url, is_web_url, load_resized
from imgclf.data.spec import files_under

LIST_SUFFIXES = (*TEXT_LISTS, ".parquet")
GLOB_CHARS = frozenset("*?[")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_uri(text: str) -> bool:
    # Two letters at least: "C://x" is a Windows path.
    return URI.match(text) is not None


def list_paths(source) -> list[str]:
    """The images of `source`, sorted and without repeats: a folder (searched recursively), a glob
    pattern, a list file (.txt: a path a line; .csv: its `path` column, else its first; .parquet:
    its `path` column), a URI of any of these, or a list of them. Local paths come back absolute."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not items:
        raise UserError("no source given: name a folder, a glob pattern or a list file of image paths")
    found: set[str] = set()
    for item in items:
        found.update(_expand(os.fspath(item)))
    if not found:
        raise UserError(f"no images in {describe(source)} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return sorted(found)


def describe(source) -> str:
    """`source` as one short string, for messages and the manifest."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    items = [os.fspath(s) for s in source]
    return items[0] if len(items) == 1 else f"{items[0]} and {len(items) - 1} more"


def source_name(source) -> str:
    """A file-name-safe name for `source` (its folder's or list file's name), for a default output folder."""
    first = os.fspath(source if isinstance(source, (str, os.PathLike)) else next(iter(source), "source"))
    path = PurePosixPath(urlsplit(first).path if is_uri(first) else first.replace(os.sep, "/"))
    for part in (path, *path.parents):  # a glob's own name ("*.jpg") says nothing: its folder's does
        stem = part.stem if part.suffix.lower() in LIST_SUFFIXES else part.name
        if stem and not GLOB_CHARS & set(stem) and stem not in (".", ".."):
            return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)
    return "source"


def _expand(item: str) -> list[str]:
    if is_web_url(item):
        if _is_list(item):
            return _list_file(item)
        if to_predict(PurePosixPath(urlsplit(item).path)):
            return [item]
        # A web server lists no folder the way an object store does.
        raise UserError(f"cannot list {item}: name its images' addresses, or a .txt/.csv list of them")
    if is_uri(item):
        return _list_file(item) if _is_list(item) else _uri_images(item)
    path = Path(item).expanduser()
    if not path.exists() and GLOB_CHARS & set(item):
        matches = glob.glob(str(path), recursive=True)
        if not matches:
            raise UserError(f"no files match {item}")
        # A glob selects images: folders it matches are searched, other files it matches are left out.
        return [
            p
            for m in matches
            for p in (_images_under(Path(m)) if Path(m).is_dir() else [os.path.abspath(m)])
            if to_predict(Path(p))
        ]
    if not path.exists():
        raise UserError(f"no such file or folder: {item}")
    if path.is_file() and is_archive(path):
        # Unpacked into this machine's cache, which the cluster's other nodes do not see.
        raise UserError(f"--ray does not read archives ({item}): unzip it into a folder every node sees")
    if path.is_dir():
        return _images_under(path)
    return _list_file(item) if _is_list(item) else [os.path.abspath(path)]


def _images_under(folder: Path) -> list[str]:
    return [os.path.abspath(f) for f in files_under(folder) if to_predict(f)]


def _is_list(item: str) -> bool:
    return PurePosixPath(urlsplit(item).path if is_uri(item) else item).suffix.lower() in LIST_SUFFIXES


def _list_file(item: str) -> list[str]:
    """The entries of a list file; a relative local path is taken relative to the list's folder."""
    suffix = PurePosixPath(urlsplit(item).path if is_uri(item) else item).suffix.lower()
    try:
        entries = _parquet_paths(item) if suffix == ".parquet" else _text_paths(item, suffix)
    except UserError:
        raise
    except (OSError, ValueError, UnusableImage) as e:  # unreadable, not UTF-8, not Parquet, HTTP 404
        raise UserError(
            f"cannot read the list {item}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    if is_uri(item):
        return [_beside(item, e) for e in entries]
    folder = Path(os.path.abspath(Path(item).expanduser())).parent
    return [e if is_uri(e) else os.path.abspath(folder / Path(e).expanduser()) for e in entries]


def _beside(list_uri: str, entry: str) -> str:
    """An entry of a list read from a URI, as a URI: relative ones beside the list, /absolute ones
    on the same filesystem."""
    if is_uri(entry):
        return entry
    folder = posixpath.dirname(urlsplit(list_uri).path)
    return _root(list_uri) + posixpath.normpath(posixpath.join(folder, entry))


def _text_paths(item: str, suffix: str) -> list[str]:
    return list_entries(read_bytes(item).decode("utf-8-sig"), suffix)


def _parquet_paths(item: str) -> list[str]:
    import pyarrow.parquet as pq

    fs, path = resolve_uri(item) if is_uri(item) else (None, os.path.expanduser(item))
    names = pq.read_schema(path, filesystem=fs).names
    if "path" not in names:
        raise UserError(f"{item} has no `path` column (its columns: {', '.join(names)})")
    return [p for p in pq.read_table(path, filesystem=fs, columns=["path"]).column("path").to_pylist() if p]


def _uri_images(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, path = resolve_uri(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise UserError(f"no such file or folder: {uri}")
    if info.type == pafs.FileType.File:
        return [uri]
    root, base = _root(uri), _root_filesystem(_root(uri))[1]
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    names = (i.path for i in infos if i.type == pafs.FileType.File and to_predict(Path(i.path)))
    return [f"{root}/{n[len(base) :].lstrip('/')}" for n in names]


def resolve_uri(uri: str):
    """(pyarrow filesystem, path in it) for `uri`; the filesystem is made once per scheme and host."""
    fs, base = _root_filesystem(_root(uri))
    return fs, f"{base.rstrip('/')}/{unquote(urlsplit(uri).path).lstrip('/')}"


def _root(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


@functools.lru_cache(maxsize=32)
def _root_filesystem(root: str):
    """Made once per scheme://host: making one can cost a round trip (an S3 client asks its
    bucket's region). pyarrow also cannot parse every file name as a URI (a space), so only the
    root goes through it and the rest of each path is appended."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(root + "/")
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ... for a bad URI
        raise UserError(f"cannot open {root}: {str(e).splitlines()[0]}") from None


def read_bytes(path: str) -> bytes:
    """The bytes of a local file or a URI (a web address's failure is UnusableImage)."""
    if is_web_url(path):
        return fetch_url(path).getvalue()
    if not is_uri(path):
        return Path(path).expanduser().read_bytes()
    fs, p = resolve_uri(path)
    with fs.open_input_stream(p) as f:
        return f.read()


class OutputFolder:
    """A folder that receives whole files only: locally each one is written beside its name and
    renamed onto it (atomic), on an object store it is one upload (an object appears whole or not
    at all). A name that exists is therefore finished."""

    def __init__(self, out: str | os.PathLike):
        out = os.fspath(out)
        self.uri = is_uri(out) and not out.startswith("file://")
        self.path = (
            out.rstrip("/") if self.uri else os.path.abspath(Path(unquote(out.removeprefix("file://"))).expanduser())
        )

    def __str__(self) -> str:
        return self.path

    def exists(self, name: str) -> bool:
        if not self.uri:
            return os.path.isfile(os.path.join(self.path, name))
        import pyarrow.fs as pafs

        fs, p = resolve_uri(f"{self.path}/{name}")
        return fs.get_file_info(p).type == pafs.FileType.File

    def read_json(self, name: str):
        if not self.uri:
            return read_json(os.path.join(self.path, name))
        import json

        return json.loads(read_bytes(f"{self.path}/{name}"))

    def write(self, name: str, data: bytes) -> None:
        if not self.uri:
            if os.path.exists(self.path) and not os.path.isdir(self.path):
                raise UserError(f"--out {self.path} is a file; give a folder for the prediction shards")
            with atomic_path(os.path.join(self.path, name)) as tmp:
                tmp.write_bytes(data)  # atomic_path fsyncs it before the rename
            return
        fs, p = resolve_uri(f"{self.path}/{name}")
        with fs.open_output_stream(p) as f:
            f.write(data)


def fetch(path: str):
    """The bytes of a URI, read in a thread (an object store answers each read in tens of ms, which
    one reader at a time would wait out image after image); None for a local file; the error."""
    if not is_uri(path):
        return None
    try:
        return read_bytes(path)
    except UnusableImage as e:
        return e
    except (OSError, UserError) as e:
        return UnusableImage(f"cannot read file: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def decode_fetched(path: str, data, size: int, mode: str):
    """imgclf's safe decoder (uint8 HxWx3), on a local file or on the bytes `fetch` read from a URI."""
    if data is None:
        return load_resized(path, size, mode)
    if isinstance(data, UnusableImage):
        raise data
    if not data:
        raise UnusableImage("empty file (0 bytes)")
    return load_resized(io.BytesIO(data), size, mode)
