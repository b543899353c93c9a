"""A dataset given as the archive it was downloaded as (`imgclf train flowers.zip`): unpacked once
into the cache, keyed by the archive's path, size and modification time, and read from there like
any folder. Unpacking is atomic (a temporary folder renamed into place), so an interrupted one is
never taken for a whole dataset; names that would land outside the folder are refused (zip slip)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.data.cache import default_cache_dir, writable_dir
from imgclf.data.spec import is_submission

SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def archive_within(folder: Path) -> tuple[Path | None, str]:
    """The archive to read in a folder that holds archives and nothing else but submission templates
    (Kaggle's download unzipped once: train.zip and test1.zip beside sampleSubmission.csv), and a note
    naming the archives left out; (None, "") where the folder holds anything more (images,
    sub-folders, a CSV of labels: read as a folder). Several archives: the one with "train" in its name."""
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    archives = sorted(p for p in entries if p.is_file() and is_archive(p))
    others = [p for p in entries if p not in archives and not is_submission(p)]
    if not archives or others:
        return None, ""
    chosen = archives if len(archives) == 1 else [p for p in archives if "train" in p.name.lower()]
    if len(chosen) != 1:
        raise UserError(
            f"{folder} holds {len(archives)} archives ({', '.join(p.name for p in archives)}) and no images: "
            f"give the one with the labelled photos, e.g. imgclf train {(chosen or archives)[0]}"
        )
    left = [p.name for p in archives if p != chosen[0]]
    return chosen[0], f"{', '.join(left)} left out (only {chosen[0].name} is read)" if left else ""


def unpacked(archive: Path, cache_dir: Path | None = None) -> tuple[Path, str]:
    """(the folder holding `archive`'s files, a line saying where they were unpacked)."""
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    name, root = f"{_stem(archive)}-{key}", (cache_dir or default_cache_dir()) / "unpacked"
    if not (root / name).is_dir():  # else unpacked before; where the cache cannot be written, the per-user temp folder
        root = writable_dir(root, "unpacked", "imgclf's cache")
    final = root / name
    if final.is_dir():
        return final, f"{archive.name} unpacked before, to {final}"
    need = _unpacked_size(archive)
    if need > (free := shutil.disk_usage(root).free):
        raise UserError(
            f"{archive.name} unpacks to {need / 1e9:.1f} GB but {root} has {free / 1e9:.1f} GB free; "
            "unpack it yourself onto a larger disk, or set IMGCLF_CACHE_DIR"
        )
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".unpacking-"))
    try:
        _extract(archive, tmp)
        try:
            os.replace(tmp, final)
        except OSError:  # another process unpacked it first
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final, f"{archive.name} unpacked to {final}"


def _stem(archive: Path) -> str:
    name = archive.name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "data"
    return name


def _unpacked_size(archive: Path) -> int:
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                return sum(i.file_size for i in z.infolist())
        with tarfile.open(archive) as t:
            return sum(m.size for m in t.getmembers() if m.isfile())
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise UserError(f"cannot read {archive}: {_first_line(e)}; is it a whole, uncorrupted archive?") from None


def _extract(archive: Path, into: Path) -> None:
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    target = (into / name).resolve()
                    if not target.is_relative_to(into.resolve()):
                        raise UserError(f"{archive} holds a file that would unpack outside its folder: {name}")
                z.extractall(into)
            return
        if not hasattr(tarfile, "data_filter"):  # Python < 3.10.12 / 3.11.4: no safe tar extraction
            raise UserError(f"this Python cannot unpack {archive.name} safely; unpack it yourself and give the folder")
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise UserError(f"cannot unpack {archive}: {_first_line(e)}; is it a whole, uncorrupted archive?") from None


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0].rstrip(":")
