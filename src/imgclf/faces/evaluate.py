"""A face gallery scored on labelled photos: `imgclf evaluate GALLERY PEOPLE/`, PEOPLE/<name>/ a
folder of photos per person. How often are the enrolled named right, and are strangers (folders of
people not enrolled) answered "unknown"? Before the gallery names anyone at the door.

Each photo's subject is its largest face, as enrolment takes it. An enrolled person's photo is
right (named), wrong (named as someone else), unknown or no face found; a stranger's is unknown
(right) or a false accept. Photos that were enrolled (same bytes) are counted and said: their
scores are not held out. Written to a folder: report.html, metrics.json and photos.csv.

    imgclf.faces.evaluate.evaluate_gallery("staff-gallery", "door-photos/")["named_right"]
"""

from __future__ import annotations

import csv
import hashlib
import html
from collections import Counter
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.data.paths import source_name
from imgclf.faces.gallery import UNKNOWN, load_gallery

SHOWN = 12  # photos in the report: the false accepts and wrong names first


def evaluate_gallery(gallery, data, out=None, device: str = "auto", verbose: bool = True) -> dict:
    """The metrics dict (also out/metrics.json), with "report": out/report.html. `out` defaults to
    evaluations/<gallery's name>-on-<data's name>."""
    from imgclf.core.files import output_folder
    from imgclf.models.face.model import FaceModel

    model = FaceModel(device)
    g = load_gallery(gallery, model)
    spec = _people(data)
    folder = output_folder(out if out is not None else _default_out(gallery, data), "--out")
    by_lower = {p.lower(): p for p in g.people}
    enrolled_shas = {s["sha256"] for s in g.sources}
    say = print if verbose else (lambda *a: None)
    strangers = [c for c in spec.classes if c.lower() not in by_lower]
    if strangers:
        say(f"  not enrolled, so their photos should come back unknown: {', '.join(strangers)}")
    rows, own, unreadable = [], 0, []
    for path, label in zip(spec.paths, spec.labels):
        name = spec.classes[label]
        person = by_lower.get(name.lower())
        answer = _answer(model, g, Path(path))
        if answer is None:
            unreadable.append(str(path))
            continue
        own += hashlib.sha256(Path(path).read_bytes()).hexdigest() in enrolled_shas
        rows.append({"path": str(path), "person": person or name, "enrolled": person is not None, **answer})
    if not rows:
        raise UserError(f"no readable photo in the person folders of {data}")
    m = _metrics(rows, g.threshold, str(gallery), str(data), unreadable, own)
    say(summary(m))
    if own:
        say(f"warning: {own} of these photos were enrolled (the same files): scores on them are not held out")
    m["report"] = str(_write(folder, m, rows))
    say(f"report: {m['report']}  (every photo's answer: {folder / 'photos.csv'})")
    return m


def _people(data):
    """DATA read as enrol reads people (and `imgclf train` classes): a folder per person, also zipped,
    a CSV of photo and name, LFW's Ada_Lovelace_0001.jpg names."""
    from imgclf.data.discover import find

    if not Path(data).expanduser().exists():
        raise UserError(f"{data} not found: give a folder of people, one sub-folder of photos each")
    spec = find(Path(data).expanduser())
    if not spec.classes:
        raise UserError(f"no people in {data}: one sub-folder of photos per person (the folder name is the name)")
    return spec


def _default_out(gallery, data) -> Path:
    return Path("evaluations") / f"{source_name(gallery)}-on-{source_name(data)}"


def _answer(model, g, path: Path) -> dict | None:
    """The largest face's name and similarity (None for a file that is not a readable image)."""
    from imgclf.data.images import UnusableImage, read_scaled
    from imgclf.faces import name_faces
    from imgclf.models.face.model import DETECT_SIDE

    try:
        img, size = read_scaled(path, DETECT_SIDE)
    except UnusableImage:
        return None
    faces = name_faces(model, g, img, size=size)["faces"]
    if not faces:
        return {"answer": "", "similarity": None, "box": None}
    face = max(faces, key=lambda b: (b["x2"] - b["x1"]) * (b["y2"] - b["y1"]))
    return {
        "answer": face["name"],
        "similarity": face["similarity"],
        "box": [face[k] for k in ("x1", "y1", "x2", "y2")],
    }


def outcome(row: dict) -> str:
    if not row["answer"]:
        return "no face found"
    if row["enrolled"]:
        return "right" if row["answer"] == row["person"] else UNKNOWN if row["answer"] == UNKNOWN else "wrong name"
    return "rejected" if row["answer"] == UNKNOWN else "false accept"


def _metrics(rows, threshold, gallery, data, unreadable, own) -> dict:
    known = [r for r in rows if r["enrolled"]]
    strangers = [r for r in rows if not r["enrolled"]]
    share = lambda part, whole: round(len(part) / len(whole), 4) if whole else None  # noqa: E731
    per_person = {}
    for r in known:
        p = per_person.setdefault(r["person"], {"photos": 0, "right": 0})
        p["photos"] += 1
        p["right"] += outcome(r) == "right"
    return {
        "gallery": gallery,
        "data": data,
        "threshold": threshold,
        "photos": len(rows),
        "unreadable": unreadable,
        "enrolled_photos_among_them": own,
        "enrolled": {"photos": len(known), **Counter(outcome(r) for r in known)},
        "strangers": {"photos": len(strangers), **Counter(outcome(r) for r in strangers)},
        "named_right": share([r for r in known if outcome(r) == "right"], known),
        "strangers_rejected": share([r for r in strangers if outcome(r) == "rejected"], strangers),
        # The people named worst first: whom to enrol more photos of.
        "per_person": {
            p: {**v, "recall": round(v["right"] / v["photos"], 4)}
            for p, v in sorted(per_person.items(), key=lambda pv: (pv[1]["right"] / pv[1]["photos"], pv[0]))
        },
    }


def summary(m: dict) -> str:
    e, s = m["enrolled"], m["strangers"]
    text = f"{m['data']}: {m['photos']} photos, gallery {m['gallery']} at threshold {m['threshold']:.3f}: "
    if e["photos"]:
        text += (
            f"enrolled people named right {m['named_right']:.1%} ({e.get('right', 0)} of {e['photos']}; "
            f"{e.get(UNKNOWN, 0)} unknown, {e.get('wrong name', 0)} wrong name, {e.get('no face found', 0)} no face)"
        )
    if s["photos"]:
        text += ("; " if e["photos"] else "") + (
            f"strangers answered unknown {m['strangers_rejected']:.1%} ({s.get('rejected', 0)} of {s['photos']}; "
            f"{s.get('false accept', 0)} named as someone)"
        )
    return text


def _write(folder: Path, m: dict, rows: list[dict]) -> Path:
    from imgclf.core.figures import data_uri, jpeg_bytes
    from imgclf.core.files import atomic_path, write_json, write_text
    from imgclf.data.images import read_rgb
    from imgclf.faces.outputs import draw_faces

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "metrics.json", m)
    with atomic_path(folder / "photos.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "person", "enrolled", "answer", "similarity", "outcome"])
        for r in rows:
            sim = "" if r["similarity"] is None else f"{r['similarity']:.4f}"
            w.writerow([r["path"], r["person"], int(r["enrolled"]), r["answer"], sim, outcome(r)])
    order = {"false accept": 0, "wrong name": 1, UNKNOWN: 2, "no face found": 3}
    worst = sorted((r for r in rows if outcome(r) in order), key=lambda r: order[outcome(r)])[:SHOWN]
    figures = []
    for r in worst:
        img = read_rgb(r["path"])
        if r["box"]:
            x1, y1, x2, y2 = r["box"]
            img = draw_faces(
                img, [{"x1": x1, "y1": y1, "x2": x2, "y2": y2, "name": r["answer"], "similarity": r["similarity"]}]
            )
        figures.append(
            f'<figure><img src="{data_uri(jpeg_bytes(img, 320))}" alt="">'
            f"<figcaption>{html.escape(r['person'])}: {html.escape(outcome(r))}"
            f"{' (' + html.escape(r['answer']) + ')' if outcome(r) in ('false accept', 'wrong name') else ''}</figcaption></figure>"
        )
    people = "".join(
        f"<tr><td>{html.escape(p)}</td><td>{v['right']} of {v['photos']}</td><td>{v['recall']:.1%}</td></tr>"
        for p, v in m["per_person"].items()
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(Path(m["gallery"]).name)} on {html.escape(m["data"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
td,th{{padding:.2rem .6rem;text-align:left}} figure{{display:inline-block;margin:.4rem}} img{{max-width:100%}}</style></head>
<body><h1>{html.escape(Path(m["gallery"]).name)} on {html.escape(Path(m["data"]).name)}</h1>
<p>{html.escape(summary(m))}.</p>
{"<p><b>Warning:</b> " + str(m["enrolled_photos_among_them"]) + " of these photos were enrolled: scores on them are not held out.</p>" if m["enrolled_photos_among_them"] else ""}
<h2>Enrolled people</h2><table><tr><th>person</th><th>named right</th><th>share</th></tr>{people}</table>
<h2>What went wrong</h2><p>False accepts (a stranger named) first, then wrong names, unknowns and photos with no face found.</p>{"".join(figures) or "<p>Nothing.</p>"}
</body></html>"""
    write_text(folder / "report.html", page)
    return folder / "report.html"
