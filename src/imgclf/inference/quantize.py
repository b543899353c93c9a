"""int8 ONNX of a run: static post-training quantization, kept only when it costs little accuracy.

    imgclf export runs/photos-1 --int8             # -> runs/photos-1/model.int8.onnx (+ export_int8.json)
    imgclf.load("runs/photos-1", backend="onnx-int8").predict("new.jpg")

The fp32 graph (RUN/model.onnx, exported first when missing or stale) is quantized by ONNX Runtime's
`quantize_static` in QDQ format: weights int8 per output channel, activations uint8 with ranges
from min-max calibration on the run's own training images (up to 300, the same number per class,
preprocessed as the predictor does); the output layer stays fp32 (see head_nodes). uint8
activations times int8 weights is the pairing x86's VNNI instructions (vpdpbusd) multiply natively:
a Lite0 at 128 px ran 1.6x the images/s with uint8 activations than with int8 ones on the 2-core
AVX512-VNNI machine of docs/benchmarks/int8.md (batch 32, ONNX Runtime 1.32).

The quantized model is then scored on the run's test split beside fp32 ONNX Runtime, through the
predictor's own code (the run's test-time augmentation included), and installed only when it loses
at most `max_loss` accuracy points; the numbers go to RUN/export_int8.json (an int8 model written
elsewhere with `out` gets none). A refused export leaves no int8 model in the run, and
RUN/model.onnx as it was.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.files import atomic_path, read_json, write_json
from imgclf.core.version import __version__
from imgclf.store.run_meta import RunMeta, load_run_meta
from imgclf.store.runs import find_run, read_splits, recorded_root, require_data

INT8_FILE = "model.int8.onnx"
RECORD = "export_int8.json"
MAX_LOSS = 1.0  # accuracy points (of 100) int8 may lose against fp32 on the test split
CALIBRATION = 300  # "a few hundred": min-max ranges settle well before that (ORT's examples use 100-500)
# Fewer and the activation ranges come from too few images: a class missing from calibration can
# see its features clipped, and the test split of such a run is too small to notice.
MIN_CALIBRATION = 50
CALIBRATION_BATCH = 16


def export_int8(
    run: str | Path,
    out: str | Path | None = None,
    max_loss: float = MAX_LOSS,
    calibration: int = CALIBRATION,
    data_root: str | Path | None = None,
) -> dict:
    """Quantize the run's network to int8 (default RUN/model.int8.onnx) and measure what it costs.

    Returns {path, accuracy_fp32, accuracy_int8, loss_points, agreement, n_test, n_calibration, ...}.
    Raises UserError, leaving no int8 model, when the run has fewer than MIN_CALIBRATION training
    images or the loss is above `max_loss` points.

        export_int8("runs/photos-1")["accuracy_int8"]      # e.g. 0.842 (fp32: 0.844)
    """
    import onnx
    import onnxruntime

    from imgclf.inference.onnx_export import fresh_onnx, weights_digest
    from imgclf.inference.onnx_runtime import model_props

    start = time.perf_counter()
    max_loss = _check_max_loss(max_loss)
    run = find_run(run)
    meta = load_run_meta(run)
    if meta.is_ensemble:
        raise UserError(
            f"{run} is an ensemble bundle; quantize its member runs one by one (imgclf export MEMBER --int8)"
        )
    out = Path(out).expanduser() if out else run / INT8_FILE
    try:
        calib, per_class = calibration_images(run, meta, calibration, data_root)
        test, labels = _test_images(run, meta, data_root)
        fp32 = fresh_onnx(run, "fp32, the graph to quantize")
        with atomic_path(out) as tmp:
            # model.onnx's metadata (classes, preprocessing, thresholds) rides along into the int8 graph.
            props = model_props(onnx.load(str(fp32), load_external_data=False))
            quantize(fp32, tmp, _normalized(calib, meta), weights_digest(run), props)
            scores = compare(fp32, tmp, meta, run, test, labels)
            if scores["loss_points"] > max_loss:
                raise UserError(
                    f"int8 loses {scores['loss_points']:.1f} accuracy points on the test split "
                    f"({scores['accuracy_int8']:.3f} against fp32's {scores['accuracy_fp32']:.3f}, "
                    f"n={scores['n_test']}), more than --max-loss {max_loss:g}; no int8 model written, "
                    f"{fp32.name} stays as it was (a higher --max-loss accepts it)"
                )
    except UserError:
        if out == run / INT8_FILE:  # an earlier int8 model would otherwise stay loadable beside the refusal
            out.unlink(missing_ok=True)
            (run / RECORD).unlink(missing_ok=True)
        raise
    result = {
        "path": str(out),
        **scores,
        "max_loss_points": max_loss,
        "n_calibration": int(len(calib)),
        "calibration_per_class": per_class,
        "calibration_from": "train split",
        "format": "onnx-qdq",
        "weights": "int8, per channel; the output layer fp32",
        "activations": "uint8, min-max calibrated",
        "seconds": round(time.perf_counter() - start, 2),
        "imgclf_version": __version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if out == run / INT8_FILE:  # the record describes the run's own int8 model, not a copy written elsewhere
        write_json(run / RECORD, result)
    return result


def quantize(fp32: Path, out: Path, batches: list[np.ndarray], weights_sha256: str, props: dict | None = None) -> None:
    """ONNX Runtime's static QDQ quantization of `fp32` into `out`, calibrated on normalised float batches.
    `out` is stamped with `props`, `precision: int8`, how its weights were quantized and
    `weights_sha256` (what the int8 graph was made from: loaders refuse it once that changes)."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter({"input": b} for b in batches)

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="imgclf-int8-") as tmp:
        # Shape inference and ORT's graph optimisations first: BatchNorm folded into the convolutions,
        # so they quantize as one int8 op instead of int8 conv -> fp32 BatchNorm -> quantize again.
        src = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32), str(src))
        except Exception:  # noqa: BLE001 - a graph the pre-processor cannot handle quantizes as exported
            src = fp32
        try:
            quantize_static(
                str(src),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                # 7-bit weights: on x86 without VNNI (AVX2 laptops, older servers) ORT multiplies
                # uint8 by int8 with vpmaddubsw, whose int16 pair sums saturate at full range. An int8
                # person detector made at 8 bits there answered 5 of 20 photos unlike fp32 (an empty
                # scene scored 0.87); at 7 bits 0 of 20. The file may move to such a machine, so always.
                reduce_range=True,
                nodes_to_exclude=head_nodes(str(src)),
            )
        except Exception as e:  # noqa: BLE001 - ORT's quantizer raises plain Exceptions and asserts
            raise UserError(
                f"ONNX Runtime cannot quantize {fp32} ({type(e).__name__}: {str(e).strip()[:200]}); "
                "the fp32 model stays as it was"
            ) from None
    import onnx

    from imgclf.core.device import WEIGHTS_7BIT, WEIGHTS_PROP
    from imgclf.inference.onnx_runtime import model_props

    proto = onnx.load(str(out))
    stamp = {"precision": "int8", WEIGHTS_PROP: WEIGHTS_7BIT, "weights_sha256": weights_sha256}
    onnx.helper.set_model_props(proto, {**model_props(proto), **(props or {}), **stamp})
    onnx.save(proto, str(out))


# Between the output layer and the graph's output: ops that only reshape, scale or shift the logits.
PASSTHROUGH = {"Add", "Mul", "Div", "Reshape", "Flatten", "Squeeze", "Identity", "Cast"}


def head_nodes(path: str) -> list[str]:
    """The output layer (the Gemm, MatMul or Conv nearest the graph's output), kept in fp32: its error
    lands on the logits unaveraged, where softmax, the calibration temperature and the thresholds
    read it, and it is a sliver of the compute. On the flowers5 Lite0 run of docs/benchmarks/int8.md
    this raised int8's label agreement with fp32 from 95.1 % to 96.5 % (test accuracy 0.740 -> 0.752)."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    found = []
    for out in graph.output:
        node = producer.get(out.name)
        while node is not None and node.op_type in PASSTHROUGH:
            node = next((producer[i] for i in node.input if i in producer), None)
        if node is not None and node.op_type in ("Gemm", "MatMul", "Conv"):
            found.append(node.name)
    return found


def compare(fp32: Path, int8: Path, meta: RunMeta, run: Path, images: np.ndarray, labels: np.ndarray) -> dict:
    """Test accuracy of the fp32 and int8 graphs through the predictor (same TTA, same batches)."""
    import torch

    from imgclf.inference.model import Model, OnnxNet
    from imgclf.inference.onnx_runtime import open_session

    cpu = torch.device("cpu")
    p32 = Model(OnnxNet(open_session(fp32)), meta, cpu, run).predict_proba(images)
    p8 = Model(OnnxNet(open_session(int8)), meta, cpu, run).predict_proba(images)
    acc32, acc8 = float((p32.argmax(1) == labels).mean()), float((p8.argmax(1) == labels).mean())
    return {
        "accuracy_fp32": round(acc32, 4),
        "accuracy_int8": round(acc8, 4),
        "loss_points": round(100 * (acc32 - acc8), 2),
        "agreement": round(float((p32.argmax(1) == p8.argmax(1)).mean()), 4),
        "max_prob_diff": round(float(np.abs(p32 - p8).max()), 4),
        "n_test": int(len(images)),
        "tta": meta.tta,
    }


def calibration_images(
    run: Path, meta: RunMeta, want: int = CALIBRATION, data_root=None
) -> tuple[np.ndarray, dict[str, int]]:
    """Up to `want` of the run's training images, the same number from each class (evenly spaced
    through each class's list), as the predictor's uint8 input; and how many per class."""
    from imgclf.data.images import UnusableImage, load_resized

    rows = [r for r in read_splits(run, data_root) if r["split"] == "train"]
    require_data(run, [r["path"] for r in rows], recorded_root(run), None if data_root is None else str(data_root))
    by_class: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_class[r["label"]].append(r["path"])
    quota = math.ceil(want / max(1, len(by_class)))
    arrays, per_class = [], {}
    for label, paths in by_class.items():
        got = 0
        for i in np.linspace(0, len(paths) - 1, min(len(paths), quota)).round().astype(int):
            try:
                arrays.append(load_resized(paths[i], meta.input.size, meta.input.resize))
                got += 1
            except (UnusableImage, OSError):
                continue  # a file gone or broken since training: the others calibrate
        per_class[label] = got
    if len(arrays) < MIN_CALIBRATION:
        raise UserError(
            f"int8 calibration needs at least {MIN_CALIBRATION} training images and {run} has "
            f"{len(arrays)} readable ones; no int8 model written, the fp32 model stays in use "
            "(imgclf export RUN without --int8)"
        )
    return np.stack(arrays), per_class


def _test_images(run: Path, meta: RunMeta, data_root) -> tuple[np.ndarray, np.ndarray]:
    from imgclf.data.cache import build_cache

    rows = [r for r in read_splits(run, data_root) if r["split"] == "test"]
    if not rows:
        raise UserError(f"{run} has no test split to measure the int8 model's accuracy on; no int8 model written")
    paths = [r["path"] for r in rows]
    require_data(run, paths, recorded_root(run), None if data_root is None else str(data_root))
    labels = np.array([meta.classes.index(r["label"]) for r in rows])
    cache = build_cache(paths, meta.input.size, meta.input.resize, progress=False)
    keep = np.array([i for i in range(len(paths)) if i not in cache.bad], dtype=np.int64)
    return cache.images[keep], labels[keep]


def _normalized(images: np.ndarray, meta: RunMeta) -> list[np.ndarray]:
    """The graph's float input, as predict_logits makes it (no test-time views: the graph never sees them)."""
    from imgclf.models.arrays import standardised

    norm = meta.normalization
    return [
        standardised(images[i : i + CALIBRATION_BATCH], norm.mean, norm.std)
        for i in range(0, len(images), CALIBRATION_BATCH)
    ]


def _check_max_loss(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise UserError(f"--max-loss must be a number of accuracy points from 0 to 100 (1 = one point), not {value}")
    return float(value)


def int8_path(run: Path) -> Path:
    """RUN/model.int8.onnx when it is there and was made from the run's current weights. Never made
    here: quantizing takes a minute and may be refused, so a missing or stale file is one line
    saying how to make it."""
    from imgclf.inference.onnx_export import onnx_weights, weights_digest

    path = run / INT8_FILE
    if not path.is_file():
        raise UserError(f"{run} has no int8 model; make one with: imgclf export {run} --int8")
    if onnx_weights(path) != weights_digest(run):
        raise UserError(
            f"{path} was made from other weights than {run}/model.safetensors (retrained or resumed since); "
            f"make it again with: imgclf export {run} --int8"
        )
    return path


def load_int8_session(run: Path, device: str = "auto"):
    """An ONNX Runtime session on RUN/model.int8.onnx (backend "onnx-int8"), or one line saying how to make it."""
    from imgclf.inference.onnx_export import session_device
    from imgclf.inference.onnx_runtime import open_session

    return open_session(int8_path(run), session_device(device))


def int8_record(run: Path) -> dict | None:
    """RUN/export_int8.json when the run has a current int8 model, else None."""
    if not (run / INT8_FILE).is_file() or not (run / RECORD).is_file():
        return None
    return read_json(run / RECORD)
