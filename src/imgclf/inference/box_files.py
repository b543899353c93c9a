"""What `imgclf scan --out DIR` writes, for the crop-model scanner and the detectors alike:
boxes.csv (image,x1,y1,x2,y2,score,label), scan.json (every image's answer) and annotated copies
of the photos with the boxes, labels and scores drawn. A resumable scan also journals each answer
as it comes (scan.partial.jsonl, removed when the scan ends), so the same command after Ctrl-C or a
kill answers only the photos not answered yet."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.files import atomic_path, open_stream, sole_writer, write_json, write_text

BOX_COLOUR = (255, 40, 40)


class ScanOutputs:
    """A scan's --out folder. The faces stage writes its own table through the same class: `table`
    and `record` name the files, `key` the list of boxes in each answer, `columns` the CSV's box
    columns after `image`, and `draw` the annotated copy."""

    def __init__(
        self,
        out: str | Path,
        *,
        table: str = "boxes.csv",
        record: str = "scan.json",
        key: str = "boxes",
        columns: tuple[str, ...] = ("x1", "y1", "x2", "y2", "score", "label"),
        draw=None,
        resumable: dict | None = None,
    ):
        self.out = Path(out).expanduser()
        (self.out / "annotated").mkdir(parents=True, exist_ok=True)
        self.table, self.record, self.key, self.columns = table, record, key, columns
        self.draw = draw or draw_boxes
        self.results: list[dict] = []
        self.names: set[str] = set()
        self.journal, self.earlier, self.settings, self.lock = None, {}, resumable, None
        if resumable is not None:  # the scan's settings: an earlier scan's answers count only under the same
            self.lock = sole_writer(self.out / ".lock", self.out, "--out")  # one scan a folder at a time
            self.journal = self.out / f"{Path(record).stem}.partial.jsonl"
            try:
                self.earlier = _journalled(self.journal, resumable)
            except UserError:
                self.lock.release()
                raise
            self.stream = open_stream(self.journal, append=bool(self.earlier))
            if not self.earlier:
                self.stream.file.write(json.dumps({"settings": resumable}, ensure_ascii=False) + "\n")

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> None:
        """A scan that raised (Ctrl-C, a full disk) keeps its journal for the next run and lets go of
        the folder: a notebook that keeps the traceback must not hold it."""
        if exc is not None and self.journal:
            try:
                self.stream.close()
            except OSError:  # the disk that stopped the scan: the journal keeps its whole lines
                pass
        if self.lock:
            self.lock.release()

    def resume(self, items, verbose: bool = True) -> tuple:
        """(the items an earlier, interrupted scan into this folder did not answer; the answers it gave,
        which join this scan's). Without such a scan, `items` untouched (a folder's paths, unlisted)."""
        if not self.earlier:
            return items, []
        todo, answered = [], []
        for item in items:
            earlier = self.earlier.pop(str(item), None) if isinstance(item, (str, Path)) else None
            if earlier is None:
                todo.append(item)
                continue
            answered.append(earlier)
            if "annotated" in earlier:
                self.names.add(Path(earlier["annotated"]).stem)
        self.results.extend(answered)
        if verbose:
            print(
                f"resuming {self.out}: {len(answered)} of {len(answered) + len(todo)} images answered before, skipped"
            )
        return todo, answered

    def add(self, result: dict, img) -> None:
        self.results.append(result)
        if img is not None:
            stem = Path(result.get("path") or f"image-{len(self.results)}").stem
            name = stem if stem not in self.names else f"{stem}-{len(self.results)}"
            self.names.add(name)
            result["annotated"] = str(self.out / "annotated" / f"{name}.jpg")
            with atomic_path(result["annotated"]) as tmp:  # the temp name has no .jpg: say the format
                self.draw(img, scaled(result[self.key], img.size, result)).save(tmp, format="JPEG", quality=90)
        if self.journal and "path" in result:  # after its annotated copy: a journalled answer is whole
            self.stream.file.write(json.dumps(result, ensure_ascii=False) + "\n")
            self.stream.file.flush()

    def close(self, settings: dict | None = None) -> None:
        """The table and the record (with `settings`: what the scan ran with; by default the resumable
        scan's own), and the journal gone."""
        settings = self.settings if settings is None else settings
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["image", *self.columns])
        for r in self.results:
            for b in r.get(self.key, []):
                # A crop-model scan's boxes carry no label: the answer's positive class is theirs.
                cells = {**b, "label": b.get("label", r.get("positive", ""))}
                w.writerow([r.get("path", ""), *(cells[c] for c in self.columns)])
        write_text(self.out / self.table, buf.getvalue())
        write_json(self.out / self.record, {"settings": settings, "images": self.results})
        if self.journal:  # the scan is whole: the next one into this folder starts afresh
            self.stream.close()
            self.journal.unlink(missing_ok=True)  # no lock on Windows: another scan may have ended first
            self.lock.release()


def _journalled(journal: Path, settings: dict) -> dict[str, dict]:
    """The answers an interrupted scan journalled, by path; refused when it ran with other settings.
    A last line cut short by a kill is dropped (its photo is answered again)."""
    if not journal.is_file():
        return {}
    lines = journal.read_text(encoding="utf-8", errors="replace").splitlines()
    try:
        earlier = json.loads(lines[0])["settings"] if lines else None
    except (ValueError, KeyError, TypeError):
        earlier = None
    if earlier is None:  # nothing journalled but (part of) the header: start afresh
        return {}
    now = json.loads(json.dumps(settings))  # as the journal holds them: tuples as lists
    if earlier != now:
        changed = sorted(k for k in {*earlier, *now} if earlier.get(k) != now.get(k))
        raise UserError(
            f"{journal.parent} holds an unfinished run with other settings ({', '.join(changed)}) in {journal.name}: "
            f"give the same settings to finish it, or choose another --out (or delete {journal.name} to start over)"
        )
    answers = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        answers[entry["path"]] = entry
    return answers


def scaled(boxes: list[dict], size: tuple[int, int], result: dict) -> list[dict]:
    """`boxes` in the answer's pixels (its width and height) moved onto an image of `size`: a large
    photo is decoded smaller for a detector (data.images.read_scaled) and annotated at that size."""
    width, height = result.get("width", size[0]), result.get("height", size[1])
    if (width, height) == tuple(size):
        return boxes
    sx, sy = size[0] / width, size[1] / height
    return [{**b, "x1": b["x1"] * sx, "y1": b["y1"] * sy, "x2": b["x2"] * sx, "y2": b["y2"] * sy} for b in boxes]


def draw_boxes(img, boxes: list[dict], colour=BOX_COLOUR):
    """A copy of the RGB image with each box outlined and its score (and a detector's label)
    written above it."""
    from PIL import ImageDraw

    img = img.copy()
    draw = ImageDraw.Draw(img)
    line = max(2, round(min(img.size) / 200))
    for b in boxes:
        draw.rectangle([b["x1"], b["y1"], b["x2"], b["y2"]], outline=colour, width=line)
        text = f"{b['label']} {b['score']:.2f}" if b.get("label") else f"{b['score']:.2f}"
        x, y = b["x1"], max(0, b["y1"] - 12)
        draw.rectangle(draw.textbbox((x, y), text), fill=colour)
        draw.text((x, y), text, fill=(255, 255, 255))
    return img
