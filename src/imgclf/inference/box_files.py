"""What `imgclf scan --out DIR` writes, for the crop-model scanner and the detectors alike:
boxes.csv (image,x1,y1,x2,y2,score,label), scan.json (every image's answer) and annotated copies
of the photos with the boxes, labels and scores drawn."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from imgclf.core.files import atomic_path, write_json, write_text

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
    ):
        self.out = Path(out).expanduser()
        (self.out / "annotated").mkdir(parents=True, exist_ok=True)
        self.table, self.record, self.key, self.columns = table, record, key, columns
        self.draw = draw or draw_boxes
        self.results: list[dict] = []
        self.names: set[str] = set()

    def add(self, result: dict, img) -> None:
        self.results.append(result)
        if img is None:
            return
        stem = Path(result.get("path") or f"image-{len(self.results)}").stem
        name = stem if stem not in self.names else f"{stem}-{len(self.results)}"
        self.names.add(name)
        result["annotated"] = str(self.out / "annotated" / f"{name}.jpg")
        with atomic_path(result["annotated"]) as tmp:  # the temp name has no .jpg: say the format
            self.draw(img, scaled(result[self.key], img.size, result)).save(tmp, format="JPEG", quality=90)

    def close(self, settings: dict) -> None:
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
