"""What `imgclf faces identify --out DIR` writes: faces.csv (one row a face: image,x1,y1,x2,y2,name,
similarity,found; found is "detected", or "whole photo" for a small photo in which the detector found
no face, read whole as a face crop), faces.json (every image's answer and the settings) and
annotated/ copies of the photos with each face's box and name drawn (strangers in grey), by the
scan's writer (inference.box_files)."""

from __future__ import annotations

from pathlib import Path

NAMED, STRANGER = (40, 160, 255), (150, 150, 150)


def face_outputs(out: str | Path, resumable: dict | None = None):
    """`resumable`: the settings an interrupted identify into `out` must share for its answers to count."""
    from imgclf.inference.box_files import ScanOutputs

    columns = ("x1", "y1", "x2", "y2", "name", "similarity", "found")
    return ScanOutputs(
        out, table="faces.csv", record="faces.json", key="faces", columns=columns, draw=draw_faces, resumable=resumable
    )


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
