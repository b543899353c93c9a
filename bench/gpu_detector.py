"""The pretrained person detector's photos/s on the machine at hand: PyTorch on the GPU (one photo a
call, then batches of 16) against the CPU backends, the same photos, JPEG decoding included.

    python bench/gpu_detector.py PHOTOS_DIR [--csv-dir DIR]   (bench/gpu_session.sh: the street scenes)

Prints one table; also how many photos each engine called present, which must agree.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables  # noqa: E402

from imgclf.detection.detector import load_detector  # noqa: E402


def rate(det, files: list[Path], batch: int) -> tuple[float, int]:
    det.detect(Image.open(files[0]).convert("RGB"))  # warm-up (cuDNN's search, ORT's first run)
    present, start = 0, time.perf_counter()
    for i in range(0, len(files), batch):
        imgs = [Image.open(f).convert("RGB") for f in files[i : i + batch]]
        present += sum(r["present"] for r in det.detect_batch(imgs))
    return len(files) / (time.perf_counter() - start), present


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", type=Path, help="a folder of JPEG photos (searched recursively)")
    tables.add_csv_dir(ap)
    files = sorted(ap.parse_args().photos.rglob("*.jpg"))
    runs = [("onnx", "cpu", 1), ("torch", "cpu", 1)]
    if torch.cuda.is_available():
        runs += [("torch", "cuda", 1), ("torch", "cuda", 16)]
    rows = []
    for backend, device, batch in runs:
        det = load_detector(device=device, backend=backend)
        r, present = rate(det, files, batch)
        rows.append([f"{backend} on {device}", batch, tables.V(r, ".1f"), present])
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    tables.emit(
        "gpu_detector",
        ["engine", "photos a call", "photos/s (decoding included)", "present"],
        rows,
        title=f"\n{len(files)} photos, {name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads:",
    )


if __name__ == "__main__":
    main()
