"""What `imgclf update` learns from: the parent version's recorded data (its frozen test split
included) and the new images or feedback inbox, with the new images already known left out."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.data.discover import find
from imgclf.data.manifest import MISSING, file_sha256
from imgclf.store.inbox import default_inbox
from imgclf.store.runs import find_run, read_splits


def resolve_parent(ref, registry) -> tuple[Path, int | None, Path]:
    """(run folder, version or None, registry). REGISTRY/ALIAS works as well as --registry + ALIAS."""
    from imgclf.store import registry as reg

    p = Path(str(ref)).expanduser()
    if p.exists() and not (p / "versions").is_dir():  # a folder, finished or not: find_run says what it is
        return find_run(p), None, Path(registry)
    if not p.exists() and (p.parent / "versions").is_dir():
        registry, ref = p.parent, p.name
    if not (Path(registry) / "versions").is_dir():  # not "the registry has no versions yet": there is none
        raise UserError(
            f"no run folder {ref} and no registry {registry}/ holding a version {ref}: give a run folder "
            "(imgclf update RUN NEW_DATA), or the registry's folder with --registry"
        )
    n = reg.version_number(registry, ref)
    return reg.resolve(registry, n), n, Path(registry)


def gather_rows(parent: Path, version: int | None, registry: Path, new_data, from_inbox, console, data_root=None):
    """(old rows, their report, new rows, duplicate report, new data's source): the recorded data
    still there unchanged (under `data_root` when it moved), and the new images minus copies of it."""
    from rich.markup import escape  # paths and labels are the user's text, not markup

    old, old_report = _old_rows(parent, registry, version, data_root)
    console.print(
        f"  recorded data: {len(old)} images usable ({by_split(old)})"
        + (
            f"; left out: {old_report['missing']} missing, {old_report['changed']} changed since recorded"
            if old_report["missing"] or old_report["changed"]
            else ""
        )
    )
    for line in old_report["examples"]:
        console.print(f"[yellow]warning[/]: {escape(line)}")
    if from_inbox:
        source = Path(from_inbox) if not isinstance(from_inbox, bool) else feedback_inbox(parent, registry)
        console.print(f"  inbox: {escape(str(source))}")
        new = _inbox_rows(source)
    else:
        source = Path(new_data)
        new = _new_rows(source)
    _match_old_names(new, sorted({r["label"] for r in old}), console)
    new, dup_report = _dedupe_new(new, old)
    for line in dup_report["lines"]:
        console.print(f"  {escape(line)}")
    if not new:
        raise UserError(f"no new images left to learn from in {source} (all are copies of the recorded data)")
    return old, old_report, new, dup_report, source


def _match_old_names(new: list[dict], classes: list[str], console) -> None:
    """A new label that differs from a recorded class only in case, spaces, '_' or '-' (`Daisy/` for
    `daisy`) is that class, not a new one beside it: relabelled in place and said."""
    from rich.markup import escape

    from imgclf.data.spec import near_names
    from imgclf.evaluation.elsewhere import match_classes

    named, unknown = match_classes(sorted({r["label"] for r in new}), classes)
    renamed = {a: b for a, b in named.items() if a != b}
    for r in new:
        r["label"] = renamed.get(r["label"], r["label"])
    if renamed:
        said = ", ".join(f"{a} -> {b}" for a, b in renamed.items())
        console.print(escape(f"  new data: classes matched by name to the recorded ones: {said}"))
    if close := near_names(unknown, classes):  # `roses/` beside `rose`: a new class of the same flowers
        console.print(
            "[yellow]warning[/]: "
            + escape(
                f"new class folders named near recorded classes ({', '.join(close)}) become classes of their own; "
                "if they are the same classes, rename the folders and run again"
            )
        )


def _old_rows(run: Path, registry: Path, version: int | None, data_root=None) -> tuple[list[dict], dict]:
    """The recorded rows whose file is still there with the same bytes; and what was left out."""
    from concurrent.futures import ThreadPoolExecutor

    from imgclf.store import registry as reg

    if version is not None:
        rows = reg.read_manifest(registry, version, data_root, required=True)
    else:  # a plain run: its splits.csv, hashed now (nothing recorded to check against)
        rows = [{**r, "sha256": None} for r in read_splits(run, data_root, required=True)]
    with ThreadPoolExecutor(8) as pool:
        now = list(pool.map(file_sha256, [r["path"] for r in rows]))
    keep, missing, changed, examples = [], 0, 0, []
    for r, h in zip(rows, now):
        if r["split"] not in ("train", "val", "test"):  # skipped or deduplicated when it trained
            continue
        if h == MISSING:
            missing += 1
            examples.append(f"recorded image missing, left out: {r['path']}")
        elif r.get("sha256") not in (None, h, MISSING):
            changed += 1
            examples.append(f"recorded image changed since (hash differs), left out: {r['path']}")
        else:
            keep.append(
                {
                    "path": os.path.abspath(r["path"]),
                    "sha256": h,
                    "label": r["label"],
                    "split": r["split"],
                    "origin": "old",
                }
            )
    if not keep:
        raise UserError(
            f"none of the {len(rows)} recorded images of {run} is still there unchanged; "
            "restore the data, or train a new model with: imgclf train DATA"
        )
    if not any(r["split"] == "test" for r in keep):
        raise UserError(f"{run} has no recorded test split left to compare on; the update needs it frozen")
    return keep, {"recorded": len(rows), "missing": missing, "changed": changed, "examples": examples[:10]}


def feedback_inbox(run: Path, registry: Path) -> Path:
    """Where the service put the feedback on this version or run (store.inbox.default_inbox)."""
    return default_inbox(registry) if (registry / "versions").is_dir() else default_inbox(run=run)


def _new_rows(source: Path) -> list[dict]:
    """Labeled images in any layout train reads (data.discover.find: class or split folders, a CSV of
    labels, a .zip), including a single class (one folder per class is all an update with one new
    class has). Given splits are kept; the rest are assigned later."""
    if not source.exists():
        raise UserError(f"new data not found: {source} (a folder with one sub-folder per class, or a CSV manifest)")
    spec = find(source)
    rows = [
        {"path": os.path.abspath(p), "label": spec.classes[label], "split": split}
        for p, label, split in zip(spec.paths, spec.labels, spec.splits)
    ]
    if not rows:
        raise UserError(f"no labeled images in {source}: put them in one sub-folder per class (NEW/<class>/<image>)")
    return rows


def _inbox_rows(inbox: Path) -> list[dict]:
    """The feedback inbox (contracts: INBOX/<label>/<sha256>.<ext>; the latest label per image wins)."""
    if not inbox.is_dir():
        raise UserError(
            f"no inbox at {inbox}: send feedback (POST /feedback, imgclf feedback import) or give --from-inbox DIR"
        )
    try:
        from imgclf.store.inbox import records
    except ImportError:
        records = None
    if records is not None:
        rows = [
            {"path": os.path.abspath(inbox / r["path"]), "label": r["label"], "split": ""}
            for r in records(inbox)
            if (inbox / r["path"]).is_file()
        ]
    else:
        rows = _new_rows(inbox) if any(d.is_dir() for d in inbox.iterdir()) else []
    if not rows:
        raise UserError(f"the inbox {inbox} holds no labeled images yet")
    return rows


def _dedupe_new(new: list[dict], old: list[dict]) -> tuple[list[dict], dict]:
    """Drop new images whose bytes are already in the recorded data (same label: a plain copy; another
    label: a conflict, named), and repeated new images (conflicting repeats: all dropped)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        hashes = list(pool.map(file_sha256, [r["path"] for r in new]))
    old_by_hash = {r["sha256"]: r for r in old}
    labels_of = defaultdict(set)
    for r, h in zip(new, hashes):
        labels_of[h].add(r["label"])
    keep, copies, conflicts, repeats, unreadable, seen = [], [], [], 0, [], set()
    for r, h in zip(new, hashes):
        if h == MISSING:
            unreadable.append(r["path"])
        elif h in old_by_hash:
            o = old_by_hash[h]
            (copies if o["label"] == r["label"] else conflicts).append(
                {"path": r["path"], "label": r["label"], "old_path": o["path"], "old_label": o["label"]}
            )
        elif len(labels_of[h]) > 1:
            conflicts.append(
                {
                    "path": r["path"],
                    "label": r["label"],
                    "old_path": None,
                    "old_label": "/".join(sorted(labels_of[h] - {r["label"]})),
                }
            )
        elif h in seen:
            repeats += 1
        else:
            seen.add(h)
            keep.append({**r, "sha256": h, "origin": "new"})
    lines = []
    if copies:
        lines.append(
            f"dropped {len(copies)} new image(s) identical to recorded ones with the same label "
            f"(e.g. {copies[0]['path']} = {copies[0]['old_path']})"
        )
    if repeats:
        lines.append(f"dropped {repeats} repeated copy(ies) within the new data")
    for c in conflicts[:10]:
        lines.append(
            f"conflict: {c['path']} is labeled '{c['label']}' but the same image is "
            f"'{c['old_label']}'{' in ' + c['old_path'] if c['old_path'] else ' elsewhere in the new data'}"
            "; left out (fix one of the labels)"
        )
    if len(conflicts) > 10:
        lines.append(f"... and {len(conflicts) - 10} more conflicts (update.json lists them)")
    for p in unreadable:
        lines.append(f"cannot read {p}; left out")
    return keep, {
        "copies_dropped": len(copies),
        "repeats_dropped": repeats,
        "conflicts": conflicts,
        "unreadable": unreadable,
        "lines": lines,
    }


def split_counts(rows: list[dict]) -> dict:
    return dict(Counter(r["split"] for r in rows))


def by_split(rows: list[dict]) -> str:
    c = split_counts(rows)
    return ", ".join(f"{c.get(s, 0)} {s}" for s in ("train", "val", "test"))
