"""What `imgclf faces identify --out DIR` writes: faces.csv (one row a face: image,x1,y1,x2,y2,name,
similarity), faces.json (every image's answer and the settings) and annotated/ copies of the photos
with each face's box and name drawn (strangers in grey)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from imgclf.core.files import atomic_path, write_json, write_text

NAMED, STRANGER = (40, 160, 255), (150, 150, 150)


class FaceOutputs:
    def __init__(self, out: str | Path):
        self.out = Path(out).expanduser()
        (self.out / "annotated").mkdir(parents=True, exist_ok=True)
        self.results: list[dict] = []
        self.names: set[str] = set()

    def add(self, result: dict, img) -> None:
        self.results.append(result)
        stem = Path(result.get("path") or f"image-{len(self.results)}").stem
        name = stem if stem not in self.names else f"{stem}-{len(self.results)}"
        self.names.add(name)
        result["annotated"] = str(self.out / "annotated" / f"{name}.jpg")
        with atomic_path(result["annotated"]) as tmp:  # the temp name has no .jpg: say the format
            draw_faces(img, result["faces"]).save(tmp, format="JPEG", quality=90)

    def close(self, settings: dict) -> None:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["image", "x1", "y1", "x2", "y2", "name", "similarity"])
        for r in self.results:
            for f in r.get("faces", []):
                w.writerow([r.get("path", ""), f["x1"], f["y1"], f["x2"], f["y2"], f["name"], f["similarity"]])
        write_text(self.out / "faces.csv", buf.getvalue())
        write_json(self.out / "faces.json", {"settings": settings, "images": self.results})


def draw_faces(img, faces: list[dict]):
    """A copy of the RGB image with each face outlined and named above its box."""
    from PIL import ImageDraw

    from imgclf.faces.gallery import UNKNOWN

    img = img.copy()
    draw = ImageDraw.Draw(img)
    line = max(1, round(min(img.size) / 150))
    for f in faces:
        colour = STRANGER if f["name"] == UNKNOWN else NAMED
        draw.rectangle([f["x1"], f["y1"], f["x2"], f["y2"]], outline=colour, width=line)
        text = f"{f['name']} {f['similarity']:.2f}"
        x, y = f["x1"], max(0, f["y1"] - 12)
        draw.rectangle(draw.textbbox((x, y), text), fill=colour)
        draw.text((x, y), text, fill=(255, 255, 255))
    return img
