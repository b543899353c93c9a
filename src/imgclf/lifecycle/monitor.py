"""imgclf monitor: is the model still seeing what it was tested on, and which images to label next.

The reference is the run's frozen test split, predicted by the same model (cached in OUT, keyed by
the weights, so re-runs read JSON only); the live side is the service's prediction log
(`imgclf serve --log-predictions DIR`, format in predlog / the contracts). Both are reduced to the
same per-image numbers: predicted class, calibrated confidence, top-1 minus top-2 margin, and the
input's width, height and colour mode (file header) and brightness (mean luma of the decoded model
input, computed as predlog does); evaluation.drift compares them.

    r = imgclf.monitor("registry/production", "logs/")
    r["status"], r["verdict"]     # ('drift', 'Drift: the model sees darker images (mean brightness 52 vs 118 ...')
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.files import output_folder, read_json, write_json, write_text
from imgclf.evaluation import drift
from imgclf.lifecycle.verdict import low_line, statistics, verdict
from imgclf.store.predlog import brightness, log_files, parse_time

REFERENCE_FORMAT = 1
# Below this calibrated confidence an answer counts as low-confidence, unless the run has a rejection
# threshold. Two classes: the top probability is never below 0.5, so 0.75 (halfway to certain).
DEFAULT_LOW = 0.5
DEFAULT_LOW_TWO_CLASSES = 0.75
TO_LABEL_COLUMNS = ["id", "time", "image", "label", "confidence", "margin", "sha256", "logged_image"]


# ---- the two sides ------------------------------------------------------------------------------


def header_stats(path: str) -> dict:
    """width, height and mode from the file's header, as the prediction log records them for uploads
    (stored size, before EXIF rotation); {} when the file cannot be read now."""
    from imgclf.data.images import opened

    try:
        with opened(path, scalable=True) as img:
            return {"width": img.width, "height": img.height, "mode": img.mode}
    except Exception:  # noqa: BLE001 - a test image gone or broken since training: no input stats
        return {}


def reference(model, out: Path, verbose: bool = True, data_root: str | Path | None = None) -> dict:
    """Per-image answers and input stats on the run's test split (its images under `data_root` when
    the data folder moved since training); read from OUT/reference.json when it was made by the
    same weights, model.json and splits.csv."""
    key = reference_key(model.path)
    cached = out / "reference.json"
    if cached.is_file():
        try:
            ref = read_json(cached)
            if ref.get("key") == key and ref.get("format") == REFERENCE_FORMAT:
                return ref
        except (OSError, ValueError):
            pass  # unreadable cache: recompute
    from imgclf.data.cache import build_cache
    from imgclf.store.runs import test_split

    paths, _ = test_split(model, "compare live traffic with (monitor needs the run's splits.csv)", data_root)
    cache = build_cache(paths, model.img_size, model.resize_mode, progress=verbose)
    keep = [i for i in range(len(paths)) if i not in cache.bad]
    if not keep:
        raise UserError(
            f"none of the {len(paths)} test images of {model.path} can be read any more; "
            "monitor compares live traffic with them"
        )
    probs = model.predict_proba(cache.images[np.array(keep)])
    answers = model.answers(probs, top_k=2)
    top2 = np.sort(probs, axis=1)[:, -2:]
    ref = {
        "format": REFERENCE_FORMAT,
        "key": key,
        "model": model.path.name,
        "n": len(keep),
        "skipped": len(paths) - len(keep),
        "path": [paths[i] for i in keep],
        "label": [a["label"] for a in answers],
        "confidence": [a["confidence"] for a in answers],
        "margin": (top2[:, 1] - top2[:, 0]).tolist(),
    }
    stats = [header_stats(paths[i]) for i in keep]
    for k in ("width", "height", "mode"):
        ref[k] = [s.get(k) for s in stats]
    # Brightness of the decoded model input, computed exactly as the log does for uploads.
    ref["brightness"] = [round(brightness(img), 3) for img in cache.images[np.array(keep)]]
    write_json(cached, ref)
    return ref


def reference_key(run: Path) -> str:
    """sha256 over what decides the reference answers: weights, model.json (temperature, thresholds,
    TTA) and splits.csv (which images)."""
    h = hashlib.sha256()
    weights = sorted(run.glob("members/*/model.safetensors")) or [run / "model.safetensors"]
    for f in [*weights, run / "model.json", run / "splits.csv"]:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def read_log(path: str | Path) -> tuple[list[dict], Path, int]:
    """(records oldest first, the log folder image paths are relative to, lines that were not JSON).
    `path` is the log folder (every predictions*.jsonl in it: rotated ones, named by their UTC time,
    then the current one) or one .jsonl file."""
    p = Path(path).expanduser()
    if p.is_dir():
        files, folder = log_files(p), p
        if not files:
            raise UserError(
                f"{p} holds no predictions*.jsonl; start the service with "
                f"imgclf serve RUN --log-predictions {p} (or give --log the .jsonl file)"
            )
    elif p.is_file():
        files, folder = [p], p.parent
    else:
        raise UserError(
            f"no prediction log at {p}: give the folder passed to imgclf serve --log-predictions, "
            "or one predictions*.jsonl in it"
        )
    records, bad = [], 0
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except ValueError:  # a line cut short by a crash mid-write
                    bad += 1
                    continue
                if isinstance(r, dict) and isinstance(r.get("confidence"), (int, float)):
                    records.append(r)
                else:
                    bad += 1
    if bad and not records:  # an image or some other file given as --log: not "too few predictions"
        raise UserError(
            f"{p} holds no prediction records ({bad} lines that are not the service's JSON): give the folder "
            "passed to imgclf serve --log-predictions, or one predictions*.jsonl in it"
        )
    return records, folder, bad


def select(records: list[dict], model_name: str, since: str | None) -> tuple[list[dict], dict]:
    """The records of this model (a log may hold several: a hot swap, a shared folder) at or after
    `since`; and counts of what was left out."""
    names = sorted({str(r.get("model")) for r in records})
    mine = [r for r in records if r.get("model") == model_name]
    if records and not mine:
        raise UserError(
            f"the log holds predictions of {', '.join(names)}, none of {model_name}; "
            "monitor the run that served them (a run folder or REGISTRY/VERSION)"
        )
    left = {"other_models": len(records) - len(mine), "before_since": 0}
    if since:
        start = parse_time(since)
        if start is None:
            raise UserError(f"--since {since!r} is not an ISO date or time; e.g. 2026-11-23 or 2026-11-23T08:00")
        kept = [r for r in mine if (t := parse_time(r.get("time"))) is not None and t >= start]
        left["before_since"] = len(mine) - len(kept)
        mine = kept
    return mine, left


# ---- what to label next -------------------------------------------------------------------------


def pick_to_label(live: list[dict], log_dir: Path, top: int, done: set[str]) -> list[dict]:
    """Logged predictions with their image kept, least confident first (ties: smallest margin), one per
    image (sha256), skipping images already sorted into a class folder (`done`) and images the log
    has rotated away."""
    best: dict[str, dict] = {}
    for r in live:
        sha, image = r.get("sha256"), r.get("image")
        if not sha or not image or sha in done:
            continue
        key = (r["confidence"], r.get("margin") if isinstance(r.get("margin"), (int, float)) else 1.0)
        if sha not in best or key < best[sha][0]:
            best[sha] = (key, r)
    picks = []
    for _, r in sorted(best.values(), key=lambda kr: kr[0]):
        f = log_dir / r["image"]
        # Paths come from a file on disk: keep them inside the log folder.
        if ".." in Path(r["image"]).parts or Path(r["image"]).is_absolute() or not f.is_file():
            continue
        picks.append(
            {
                "id": r.get("id"),
                "time": r.get("time"),
                "label": r.get("label"),
                "confidence": float(r["confidence"]),
                "margin": r.get("margin"),
                "sha256": r["sha256"],
                "logged_image": str(f),
                "image": f"to_label/{r['sha256']}{f.suffix.lower()}",
            }
        )
        if len(picks) == top:
            break
    return picks


def write_to_label(picks: list[dict], out: Path) -> None:
    """OUT/to_label.csv and a copy of each image in OUT/to_label/ (named by its sha256), ready to be
    sorted into OUT/to_label/<class>/ folders; last time's unsorted copies that left the list go."""
    folder = out / "to_label"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {Path(p["image"]).name for p in picks}
    for f in folder.iterdir():
        if f.is_file() and f.name not in wanted and len(f.stem) == 64:
            f.unlink()
    for p in picks:
        dest = out / p["image"]
        if not dest.exists():
            shutil.copyfile(p["logged_image"], dest)
    buf = io.StringIO()
    w = csv.DictWriter(buf, TO_LABEL_COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(picks)
    write_text(out / "to_label.csv", buf.getvalue())


def _sorted_already(out: Path) -> set[str]:
    """sha256 names of images the user already moved into OUT/to_label/<class>/."""
    folder = out / "to_label"
    if not folder.is_dir():
        return set()
    return {f.stem for d in folder.iterdir() if d.is_dir() for f in d.iterdir() if f.is_file()}


# ---- the whole command --------------------------------------------------------------------------


def resolve_run(ref: str | Path, registry: str | Path | None) -> tuple[Path, int | None, Path | None]:
    """(run folder, registry version, registry folder; both None for a plain run) for a run folder,
    REGISTRY/ALIAS, or with `registry` a bare version number or alias."""
    from imgclf.store import registry as reg
    from imgclf.store.runs import find_run

    p = Path(ref).expanduser()
    if registry is not None and not p.exists():
        return reg.resolve(registry, str(ref)), reg.version_number(registry, str(ref)), Path(registry)
    if not p.exists() and (p.parent / "versions").is_dir():
        return reg.resolve(p.parent, p.name), reg.version_number(p.parent, p.name), p.parent
    return find_run(p), None, None


def monitor(ref, log, *, verbose: bool = True, **given) -> dict:
    """See imgclf.api.monitor; `given`: settings.improve.MonitorSettings' settings, checked as declared."""
    from imgclf.reporting.monitor import write_monitor_report
    from imgclf.settings.improve import MonitorSettings
    from imgclf.workflows import load

    s = MonitorSettings.of({"log": log, **given})
    log, out, registry, top, since = s.log, s.out, s.registry, s.top, s.since
    low_confidence, device, data_root = s.low_confidence, s.device, s.data_root
    run, version, reg_dir = resolve_run(ref, registry)
    out = output_folder(out if out is not None else Path("monitors") / run.name, "--out")
    records, log_dir, bad_lines = read_log(log)  # the user's mistakes first, before any work
    live, left = select(records, run.name, since)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    model = load(run, device)
    try:
        ref_data = reference(model, out, verbose, data_root)
    except UserError:
        if created:  # e.g. the data folder moved: no half-made monitor folder left behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    low, low_why = (low_confidence, "--low-confidence") if low_confidence is not None else low_line(model)
    stats = statistics(ref_data, live, model.classes, low)
    picks = pick_to_label(live, log_dir, top, _sorted_already(out)) if top > 0 else []
    write_to_label(picks, out)
    kept = sum(1 for r in live if r.get("image"))
    labelling = _labelling(picks, live, kept, out)
    status, text = verdict(stats, len(live), ref_data["n"], labelling)
    times = sorted(t for r in live if (t := parse_time(r.get("time"))) is not None)
    result = {
        "status": status,
        "verdict": text,
        "model": run.name,
        "version": version,
        "run": str(run),
        "log": str(Path(log)),
        "n_live": len(live),
        "n_reference": ref_data["n"],
        "left_out": {**left, "unreadable_lines": bad_lines},
        "span": [times[0].isoformat(), times[-1].isoformat()] if times else None,
        "low_confidence": {"threshold": low, "why": low_why},
        "rules": {
            "psi": f"< {drift.PSI_MODERATE} no shift, {drift.PSI_MODERATE}-{drift.PSI_MAJOR} moderate, "
            f"> {drift.PSI_MAJOR} major (the industry convention)",
            "shift": f"reported when PSI >= {drift.PSI_MODERATE} (a rate: moved >= {drift.MIN_RATE_CHANGE:.0%}) "
            f"and the test's p < {drift.ALPHA}",
            "min_live": drift.MIN_LIVE,
        },
        "statistics": stats,
        "to_label": [{k: p[k] for k in TO_LABEL_COLUMNS} for p in picks],
        "images_kept": kept,
        # Into the registry's inbox when the model came from one (feedback import's own default otherwise).
        "import_command": f"imgclf feedback import {out / 'to_label'}" + (f" --registry {reg_dir}" if reg_dir else ""),
        "paths": {
            "json": str(out / "monitor.json"),
            "html": str(out / "monitor.html"),
            "to_label_csv": str(out / "to_label.csv"),
            "to_label": str(out / "to_label"),
        },
    }
    write_json(out / "monitor.json", result)
    write_monitor_report(result, ref_data, live, out / "monitor.html")
    _record_in_run(run, result, model, data_root)
    return result


def _labelling(picks: list[dict], live: list[dict], kept: int, out: Path) -> str:
    """The verdict's last sentence: what to label next, and how."""
    if picks:
        return (
            f"Label some of the images listed below ({len(picks)} in {out / 'to_label'}, least confident "
            f"first) and run imgclf update."
        )
    elif live and not kept:
        return (
            "The log keeps no images (--log-images hash), so none can be listed for labelling; "
            "collect labeled examples of the new traffic and run imgclf update."
        )
    return "Label new examples of the traffic and run imgclf update."


MONITORING_KEPT = 50  # checks listed in RUN/monitoring.json; the report shows the newest 10


def _record_in_run(run: Path, result: dict, model, data_root) -> None:
    """Append this check to RUN/monitoring.json and redraw RUN/report.html (when the run has one),
    so the run's report links its monitoring history: the report is what users hand around."""
    path = run / "monitoring.json"
    checks = read_json(path)["checks"] if path.is_file() else []
    checks.append(
        {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "status": result["status"],
            "verdict": result["verdict"],
            "n_live": result["n_live"],
            "log": result["log"],
            "html": str(Path(result["paths"]["html"]).resolve()),
        }
    )
    write_json(path, {"checks": checks[-MONITORING_KEPT:]})
    if (run / "report.html").is_file():
        from imgclf.workflows import report

        try:
            report(model, verbose=False, data_root=data_root)
        except Exception as e:  # noqa: BLE001 - the report is a view: the check is done and recorded
            print(f"warning: could not redraw {run / 'report.html'} ({type(e).__name__}: {e})", file=sys.stderr)
