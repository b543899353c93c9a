"""The run folder: the unit a user hands around.

runs/<name>/ model.safetensors  model.json  config.yaml  history.csv  metrics.json
             data_report.json   splits.csv  learning_curves.png  confusion_matrix.png
             last.safetensors   train_state.safetensors (for --resume)

splits.csv lists the images relative to the data root that model.json records (data.root), so the
run folder and the data can each move: `data_root=` (`--data DIR`) says where the data is now.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import io
import os
import re
from pathlib import Path
from typing import Iterator

from imgclf.core.errors import UserError
from imgclf.core.files import output_folder, write_text
from imgclf.data.paths import rebase, relative_to, resolve, source_name
from imgclf.store.run_meta import load_run_meta

# The pretrained person detector's names: where a command takes a run folder, these mean it (when no
# folder of that name exists).
PRETRAINED_DETECTORS = ("person", "ssdlite-person")


def names_pretrained_detector(path) -> bool:
    """Whether a command's run (or first photo) argument names the pretrained person detector: one of
    its names, where no file or folder of that name is there to mean something else."""
    return str(path) in PRETRAINED_DETECTORS and not Path(path).expanduser().exists()


def new_run_dir(data: str | Path, base: str | Path = "runs", reserve: bool = False, suffix: str = "") -> Path:
    """runs/<dataset-name><suffix>-<n>, n one more than the highest already there (data.paths.source_name).
    `reserve`: made here, so two trainings started together (two terminals) never share one folder;
    the first writes come only after decoding, seconds to minutes later."""
    name = source_name(data) + suffix
    base = Path(base)
    taken = [
        int(m.group(1)) for p in base.glob(f"{name}-*") if (m := re.fullmatch(rf"{re.escape(name)}-(\d+)", p.name))
    ]
    n = max(taken, default=0) + 1
    while reserve:
        try:
            (base / f"{name}-{n}").mkdir(parents=True)
            break
        except FileExistsError:
            n += 1
        except OSError as e:  # a read-only folder, no permission: runs/ goes where the command runs
            raise UserError(
                f"cannot make the run folder {base / f'{name}-{n}'} ({e.strerror or e}): run imgclf from a "
                "folder you can write to, or give one with --out"
            ) from None
    return base / f"{name}-{n}"


def interrupted_runs(data, base: str | Path = "runs") -> list[Path]:
    """Trainings of `data` in `base` (runs/<name>-<n>) that were interrupted: the same data by resolved
    path, a kept training state, no model.json, no process training them now. Newest first."""
    import yaml

    name, here = source_name(data), Path(data).expanduser().resolve()
    found = []
    for p in Path(base).glob(f"{name}-*"):
        if not re.fullmatch(rf"{re.escape(name)}-\d+", p.name) or (p / "model.json").exists():
            continue
        try:
            same = Path(str(yaml.safe_load((p / "config.yaml").read_text())["data"])).expanduser().resolve() == here
        except (OSError, yaml.YAMLError, TypeError, KeyError):
            continue
        if same and (p / "train_state.safetensors").is_file() and not _holder(p):
            found.append(p)
    return sorted(found, key=lambda p: (p / "train_state.safetensors").stat().st_mtime, reverse=True)


def interrupted_note(data, base: str | Path = "runs") -> str | None:
    """The line a new training of `data` in runs/ prints where an earlier one of the same data was
    interrupted: a crash or a closed laptop loses the "resume with" line, and running the same command
    again starts over beside it."""
    found = interrupted_runs(data, base)
    if not found:
        return None
    more = f" ({len(found) - 1} more like it in {base})" if len(found) > 1 else ""
    return f"  note: {found[0]} is an interrupted training of this data{more}: imgclf train --resume {found[0]} continues it"


# Files a run or bundle writes first (.training.pid when its training starts, choices.json, config.yaml,
# model.json last): a folder holding one is that run's (an unfinished one, another DDP rank's).
RUN_MARKS = frozenset(
    {
        ".training.pid",
        "choices.json",
        "config.yaml",
        "model.json",
        "splits.csv",
        "update.json",
        "tuning.json",
        "detector.json",
        "members",
    }
)


def refuse_finished_run(out: Path, flag: str = "--out", what: str = "a run") -> None:
    """No command writes a new model over a finished one (a run, a bundle), nor into a folder of other
    files, whose report.html or splits.csv it would replace (`--out .`, `--out ~/Desktop`, an unset
    `$OUT`): checked before its data is gathered, not minutes later."""
    if (Path(out) / "model.json").exists():
        raise UserError(f"{out} already holds {what}; choose another {flag}")
    try:
        others = sorted(p.name for p in Path(out).iterdir() if not p.name.startswith("."))  # .DS_Store: nothing
        ours = any((Path(out) / name).exists() for name in RUN_MARKS)
    except OSError:  # not there yet, or not a folder: output_folder says what is wrong with it
        return
    if others and not ours:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise UserError(f"{out} already holds other files ({shown}); give a new or empty folder as {flag}")


def check_new_run_dir(out: Path) -> None:
    """A new training never writes over a run: a finished one, or an interrupted one whose epochs
    `--resume` continues (starting over would silently throw them away)."""
    refuse_finished_run(out)
    if (out / "config.yaml").exists():
        raise UserError(
            f"{out} holds an unfinished training: add --resume {out} to continue it, "
            "or choose another --out (or delete that folder) to start over"
        )
    output_folder(out, "--out")  # a read-only disk, no permission: said now, not after the decoding


TRAINING_PID = ".training.pid"  # who holds the lock, for the message; removed when the training ends
_HELD: contextvars.ContextVar[list | None] = contextvars.ContextVar("imgclf_training_locks", default=None)


@contextlib.contextmanager
def training_locks() -> Iterator[None]:
    """Every run folder a training in this block locks (lock_for_training) is unlocked when the block
    ends, however it ends: a resume in the same process after Ctrl-C must find it free."""
    held: list = []
    token = _HELD.set(held)
    try:
        yield
    finally:
        _HELD.reset(token)
        for fd, run_dir in held:
            (run_dir / TRAINING_PID).unlink(missing_ok=True)
            os.close(fd)  # closing the folder's descriptor drops its flock


def lock_for_training(run_dir: Path) -> None:
    """An exclusive flock on the run folder itself, held while this process trains into it (inside
    training_locks; a killed process's lock goes with it): a `--resume` of it from another terminal
    while it still trains is refused in one line, rather than two processes writing one run. The
    folder, not a lock file: nothing is left in a finished run. Without flock (Windows), no lock."""
    held = _HELD.get()
    try:
        import fcntl
    except ImportError:
        return
    if held is None:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if not isinstance(e, BlockingIOError):  # a file system without flock (some NFS): no lock, as on Windows
            return
        raise UserError(
            f"{run_dir} is being trained right now by another process{_holder(run_dir)}: wait for it to "
            "finish, or stop it (Ctrl-C) and then resume"
        ) from None
    held.append((fd, run_dir))
    (run_dir / TRAINING_PID).write_text(str(os.getpid()), encoding="utf-8")


def _holder(run_dir: Path) -> str:
    """' (pid N)' when another process trains `run_dir` right now; '' when none does (or no flock)."""
    try:
        import fcntl

        fd = os.open(run_dir, os.O_RDONLY)
    except (ImportError, OSError):
        return ""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return ""
    except BlockingIOError:
        with contextlib.suppress(OSError):  # the training may end (and take its pid file) meanwhile
            return f" (pid {(run_dir / TRAINING_PID).read_text(encoding='utf-8').strip() or '?'})"
        return " (pid ?)"
    except OSError:  # no flock on this file system: nothing is known to hold it
        return ""
    finally:
        os.close(fd)


def find_run(path: str | Path) -> Path:
    """Accept a run folder, a model.safetensors/model.json inside one, or REGISTRY/ALIAS (or REGISTRY/VERSION)."""
    p = Path(path).expanduser()
    if not p.exists() and (p.parent / "versions").is_dir():
        from imgclf.store.versions import version_run  # "registry/production", "registry/3": the run behind it

        return find_run(version_run(p.parent, p.name))
    if p.is_file() and p.name in ("model.safetensors", "model.json"):
        p = p.parent
    if names_pretrained_detector(path):  # predict, evaluate, serve, export take it
        raise UserError(
            f"{path} is the pretrained person detector, not a run: imgclf scan PHOTOS (present or absent, and "
            f"where), imgclf predict {path} PHOTOS, imgclf serve {path}, imgclf evaluate {path} BOXES/"
        )
    if not p.exists():
        raise UserError(f"no such run folder: {path}{_in_registry(p) or _runs_beside(p)}")
    if (p / "gallery.safetensors").is_file():  # faces.gallery's file: `imgclf faces enrol` made it
        raise UserError(  # its every use, whichever command was given: a gallery holds embeddings, not a network
            f"{path} is a face gallery, not a run: name the people in photos with imgclf faces identify {path} "
            f"PHOTOS; serve it with imgclf serve --faces {path}; score it with imgclf evaluate {path} PEOPLE/"
        )
    # An ensemble bundle keeps its weights in members/<i>/ (see imgclf.inference.ensemble).
    weights = (p / "model.safetensors").is_file() or (p / "members").is_dir()
    if (p / "detector.json").is_file():  # imgclf train on box annotations (imgclf.detection)
        raise UserError(
            f"{path} is a detector run, not a classifier: scan with it (imgclf scan {path} PHOTOS; present or not: "
            f"imgclf predict {path} PHOTOS), export it "
            f"(imgclf export {path}), or serve it (imgclf serve {path}; beside a classifier: imgclf serve RUN --detector {path})"
        )
    if not (p / "model.json").is_file() or not weights:
        if holder := _holder(p):  # not interrupted: a resume now would make two processes train it
            raise UserError(f"{path} is still training{holder}: use it once that training has finished")
        if (p / "train_state.safetensors").is_file():  # killed mid-training: its state is there to go on from
            raise UserError(
                f"{path} is a training run that was interrupted before it finished; "
                f"resume it with: imgclf train --resume {path}"
            )
        if (p / "tuning.json").is_file() and not (p / "config.yaml").is_file():
            raise UserError(
                f"{path} holds only tuning.json: the retrain of a tune's best trial that stopped before it "
                "began; run the same imgclf tune command again to retrain it (or delete the folder)"
            )
        if _holds_images(p):  # a data folder given where the run belongs (predict, evaluate or serve)
            raise UserError(
                f"{path} is not a finished run folder but images: imgclf train {path} makes a run folder of them, "
                "and the run folder comes first (imgclf predict RUN IMAGES, imgclf evaluate RUN DATA, imgclf serve RUN)"
            )
        raise UserError(
            f"{path} is not a finished run folder (it needs model.json and model.safetensors); "
            "train one with: imgclf train DATA"
        )
    return p


def _holds_images(folder: Path) -> bool:
    """Photos in the folder or its class folders, by extension: a data folder given where the run
    belongs (`imgclf predict photos/ runs/x`). Looks at 200 names at most."""
    from itertools import chain, islice

    from imgclf.data.formats import IMAGE_EXTENSIONS

    try:
        names = islice(chain(folder.glob("*"), folder.glob("*/*")), 200)
        return any(f.suffix.lower() in IMAGE_EXTENSIONS for f in names)
    except OSError:
        return False


def _in_registry(missing: Path) -> str:
    """ "; did you mean registry/production ...?": a bare alias or version of ./registry given where a run goes
    (update and feedback find ./registry by themselves; the commands that read a run take REGISTRY/ALIAS)."""
    if len(missing.parts) != 1 or not (Path("registry") / "versions").is_dir():
        return ""
    from imgclf.store.versions import version_number

    try:
        version_number("registry", missing.name)
    except UserError:
        return ""
    return f"; did you mean registry/{missing.name} (the registry's {missing.name})?"


def _runs_beside(missing: Path) -> str:
    """ "; runs/ holds photos-1, photos-2": the finished runs where a mistyped one was looked for."""
    parent = missing.parent
    try:
        runs = [d for d in parent.iterdir() if (d / "model.json").is_file()] if parent.is_dir() else []
    except OSError:
        return ""
    if not runs:
        return ""
    newest = sorted(runs, key=lambda d: (d.stat().st_mtime, d.name))[-5:]
    return f"; {parent}/ holds {', '.join(d.name for d in newest)}" + (" (the newest 5)" if len(runs) > 5 else "")


def read_splits(run: Path, data_root: str | Path | None = None, required: bool = False) -> list[dict]:
    """The rows (path, label, split) of RUN/splits.csv, paths ready to open; [] when the run has none.
    `data_root`: where the run's data folder is now, when it moved since training. `required`: the
    caller reads the images, so a data folder not found is the user's to fix, in one line."""
    f = Path(run) / "splits.csv"
    if not f.is_file():
        return []
    with open(f, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    root, moved = recorded_root(run), moved_root(data_root)
    old_root = _old_root(run) if root is None and (moved is not None or required) else None
    for r in rows:
        if root is None and moved is not None and old_root is not None:
            r["path"] = rebase(r["path"], old_root, moved)
        else:
            r["path"] = resolve(r["path"], root, moved)
    if required:
        require_data(run, [r["path"] for r in rows], root or old_root, moved)
    return rows


def recorded_root(run: Path) -> str | None:
    """The absolute data root the run's splits.csv paths are relative to; None for runs made before
    roots were recorded (their paths are relative to the folder they were trained in)."""
    if not (Path(run) / "model.json").is_file():
        return None
    return load_run_meta(Path(run), loadable=False).data_root


def moved_root(data_root: str | Path | None) -> str | None:
    """`data_root` (where the user says the data is now) as an absolute folder; None when not given."""
    if data_root is None:
        return None
    moved = Path(data_root).expanduser()
    if not moved.is_dir():
        raise UserError(f"--data {data_root} is not a folder; give the folder the run's data moved to")
    return os.path.abspath(moved)


def _old_root(run: Path) -> str | None:
    """An old run's data root, from the data argument recorded in config.yaml (relative to the folder
    it was trained in, like its paths): the folder, or a CSV manifest's folder."""
    import yaml

    cfg = Path(run) / "config.yaml"
    data = (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("data") if cfg.is_file() else None
    if not data:
        return None
    return (os.path.dirname(data) or ".") if str(data).lower().endswith(".csv") else str(data)


def require_data(run: Path, paths: list[str], root: str | None, moved: str | None) -> None:
    """Refuse, in one line naming where the data was looked for, when none of `paths` is there.
    One found file is enough: single missing files are the callers' to report."""
    if not paths or any(os.path.isfile(p) for p in paths):
        return
    if moved is not None:
        raise UserError(
            f"--data {moved}: none of the {len(paths)} images {run} lists are there (e.g. {paths[0]}); "
            f"give the folder that now holds what was {root or 'its data folder'}"
        )
    if root is not None and os.path.isabs(root):
        raise UserError(
            f"the data of {run} is not at {root} any more (e.g. {paths[0]} is missing); "
            "if it moved, give its new place with --data DIR"
        )
    raise UserError(
        f"none of the {len(paths)} images of {run} is found from {Path.cwd()}: the run lists them "
        f"relative to the folder it was trained in; run from there, or give where its data "
        f"{f'folder {root} ' if root else ''}is now with --data DIR"
    )


def test_split(
    model, purpose: str = "evaluate on; give DATA: imgclf evaluate RUN DATA", data_root: str | Path | None = None
):
    """(paths, class indices in model.classes) of the run's held-out test split."""
    import numpy as np

    rows = [r for r in read_splits(model.path, data_root) if r["split"] == "test"]
    if not rows:
        raise UserError(f"{model.path} has no test split to {purpose}")
    require_data(
        model.path, [r["path"] for r in rows], recorded_root(model.path) or _old_root(model.path), moved_root(data_root)
    )
    return [r["path"] for r in rows], np.array([model.classes.index(r["label"]) for r in rows])


def write_splits(path: Path, paths: list[str], labels, splits, classes: list[str], root: str | None) -> None:
    """RUN/splits.csv with each path relative to `root` (the data root model.json records), POSIX
    separators; a path outside it (or with no root) is written absolute."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label", "split"])
    for p, y, s in zip(paths, labels, splits):
        w.writerow([relative_to(p, root), classes[int(y)], s])
    write_text(path, buf.getvalue())
