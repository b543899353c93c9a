"""The face embedder at int8: dlib's face network (resnet.py) quantized by ONNX Runtime's static QDQ
quantization, calibrated on faces from photos the user gives, kept only when it embeds them as fp32 does.

    imgclf export faces --int8 --calibration photos/     # once: the int8 graph, into imgclf's cache
    imgclf faces identify GALLERY photos/ --backend onnx-int8

The network ships with no photos, so calibration takes the faces found in the user's photos (any
people: a gallery's enrolment folder does). An int8 embedding is compared with the fp32 one of the
same face: a gallery enrolled in fp32 identifies with int8 and the other way round, so the check is
that every calibration face's two embeddings stay within MAX_DRIFT of each other (cosine). On the
ORL faces (bench/int8.py) the two were 0.994 or closer for every face, and identification accuracy
the same; chips/s of the embedder 2.1-2.3x.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.models.packaged import int8_file

# Cosine distance an int8 embedding may be from fp32's, for any face. A gallery's threshold sits
# near 0.9 similarity and people are told apart by tenths, so a hundredth changes no name; on ORL
# the largest measured was 0.006 (docs/benchmarks/int8.md).
MAX_DRIFT = 0.01
MIN_FACES = 20  # fewer, and the activation ranges come from too few faces
MOST_FACES = 300


def export_embedder_int8(calibration: str | Path | None, out: str | Path | None = None) -> dict:
    """Quantize the face embedder, calibrated on the faces in `calibration` (a folder of photos).
    Returns {path, n_faces, min_cosine, mean_cosine, ...}; UserError, leaving no int8 graph, when
    there are fewer than MIN_FACES faces or an embedding moves more than MAX_DRIFT."""
    import onnxruntime

    from imgclf.core.files import atomic_path, write_json
    from imgclf.core.version import __version__
    from imgclf.data.images import UnusableImage, read_rgb
    from imgclf.inference.onnx_runtime import open_session
    from imgclf.inference.predictor import expand_inputs
    from imgclf.inference.quantize import quantize
    from imgclf.models.face.model import FaceModel
    from imgclf.models.packaged import sha256

    start = time.perf_counter()
    if calibration is None or not Path(calibration).expanduser().is_dir():
        raise UserError(
            "the face embedder has no photos of its own to calibrate int8 on: give --calibration DIR, a folder "
            f"of photos with {MIN_FACES} or more faces in them (a gallery's enrolment folder will do)"
        )
    model = FaceModel("cpu")
    chips = []
    for path in list(expand_inputs(str(Path(calibration).expanduser()))):
        try:
            rgb = np.ascontiguousarray(np.asarray(read_rgb(path)))
        except (UnusableImage, OSError):
            continue
        chips += [model.chip(rgb, rect) for rect, _ in model.find(rgb)]
        if len(chips) >= MOST_FACES:
            break
    if len(chips) < MIN_FACES:
        raise UserError(
            f"int8 calibration needs at least {MIN_FACES} faces and {calibration} has {len(chips)}; "
            "no int8 model written, the fp32 embedder stays in use"
        )
    fp32 = model.embed.graph
    own = int8_file(fp32)
    out = Path(out).expanduser() if out else own
    x = np.stack(chips).transpose(0, 3, 1, 2).astype(np.float32)
    try:
        with atomic_path(out) as tmp:
            quantize(fp32, tmp, [np.ascontiguousarray(x[i : i + 16]) for i in range(0, len(x), 16)], sha256(fp32))
            a = model.embed(np.stack(chips))
            b = np.concatenate([open_session(tmp).run(None, {"input": x[i : i + 16]})[0] for i in range(0, len(x), 16)])
            cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            if 1 - cos.min() > MAX_DRIFT:
                raise UserError(
                    f"int8 moves a face's embedding {1 - cos.min():.3f} (cosine distance) from fp32's, more than "
                    f"{MAX_DRIFT}; no int8 model written, the fp32 embedder stays in use"
                )
    except UserError:
        if out == own:
            out.unlink(missing_ok=True)
        raise
    result = {
        "path": str(out),
        "n_faces": len(chips),
        "min_cosine": round(float(cos.min()), 5),
        "mean_cosine": round(float(cos.mean()), 5),
        "max_drift": MAX_DRIFT,
        "calibration_from": str(calibration),
        "format": "onnx-qdq",
        "seconds": round(time.perf_counter() - start, 2),
        "imgclf_version": __version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if out == own:
        write_json(own.with_name(own.name.replace(".onnx", ".json")), result)
    return result
