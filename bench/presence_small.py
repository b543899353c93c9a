"""Small photos: how often the pretrained person detector answers "present" on photos smaller than its
300x300 input, with one threshold for every photo and with an enlarged photo answered at THRESHOLD_SOFT.

    .venv/bin/python bench/presence_small.py [--work /tmp/presencebench] [--sides 128,200,240]

A thumbnail, a small camera frame or a close crop is enlarged to the detector's input, and enlarged
blur looked like people to it. Sets (the shared datasets, unpacked under --work):
- street@S: the 61 street photos with people and the 40 without (COCO photos: they flatter the SSD),
  each shrunk to S px on its long side (Lanczos), so only the size differs from bench/presence.py;
- crops/close-ups: 400 INRIA person crops (96x160, one of each mirrored pair: the photos with a
  person) against 800 flowers5 close-ups (128x128, Flickr: the photos without; a few hold a person,
  counted as false alarms all the same), both far from COCO.
Per set and rule: photos with a person found (rate), person-free photos answered present (rate),
presence balanced accuracy. "one threshold": every photo at the detector's THRESHOLD; "enlarged at
THRESHOLD_SOFT": the default, where imgclf.detection.detector.enlarged tells the photo enlarged.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import tables  # bench/tables.py
from PIL import Image
from presence import SHARED, unpack


def shrunk(files: list[Path], side: int | None) -> list[Image.Image]:
    out = []
    for f in files:
        img = Image.open(f).convert("RGB")
        if side:
            img.thumbnail((side, side), Image.LANCZOS)
        out.append(img)
    return out


def rates(det, with_person: list, without: list) -> tuple[float, float, float]:
    found = np.mean([det.detect(img)["present"] for img in with_person])
    false = np.mean([det.detect(img)["present"] for img in without])
    return found, false, (found + 1 - false) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/presencebench", help="where the shared sets are unpacked")
    ap.add_argument("--sides", default="128,200,240", help="long sides the street photos are shrunk to")
    ap.add_argument("--seed", type=int, default=0, help="which crops and close-ups are drawn")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"bench/presence_small.py: skipped, {SHARED} is absent (it holds the photos)")
        return
    from imgclf.detection import load_detector

    work = Path(args.work)
    for name in ("street-scenes", "inria-person-crops", "flowers5"):
        unpack(name, work)
    det = load_detector("person")
    rules = {"one threshold": replace(det, enlarged_odds=None), "enlarged at THRESHOLD_SOFT (default)": det}
    print(f"{date.today()} · python {sys.version.split()[0]} · {det.describe()}")
    street = work / "street-scenes"
    people, nobody = sorted((street / "person").glob("*.jpg")), sorted((street / "no-person").glob("*.jpg"))
    rng = random.Random(args.seed)
    crops = sorted((work / "inria-person" / "person").glob("*a.png"))
    flowers = sorted((work / "flowers5").rglob("*.jpg"))
    sets = {f"street@{s}": (shrunk(people, s), shrunk(nobody, s)) for s in map(int, args.sides.split(","))}
    sets["street, own size"] = (shrunk(people, None), shrunk(nobody, None))
    sets["crops/close-ups"] = (shrunk(rng.sample(crops, 400), None), shrunk(rng.sample(flowers, 800), None))
    rows = []
    for set_name, (with_person, without) in sets.items():
        for rule, d in rules.items():
            found, false, balanced = rates(d, with_person, without)
            rows.append(
                [
                    set_name,
                    f"{len(with_person)} / {len(without)}",
                    rule,
                    tables.V(found, ".3f"),
                    tables.V(false, ".3f"),
                    tables.V(balanced, ".3f"),
                ]
            )
        print(f"{set_name}: done", flush=True)
    tables.emit(
        "presence-small",
        ["set", "photos with / without a person", "rule", "found", "false alarms", "balanced acc."],
        rows,
        title=f"\nsmall photos (THRESHOLD {det.threshold:g}, THRESHOLD_SOFT {det.enlarged_threshold:g}):",
    )


if __name__ == "__main__":
    main()
