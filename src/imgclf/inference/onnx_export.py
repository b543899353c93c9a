"""ONNX export of a run, checked against PyTorch on real images (running one: onnx_runtime.py).

    imgclf export runs/photos-1                    # -> runs/photos-1/model.onnx (+ export.json)
    imgclf.export("runs/photos-1")["max_prob_diff"]

Input contract: the graph takes `input`, float32 NCHW (N, 3, size, size), RGB, already normalised:
((pixel / 255) - mean) / std after the run's resize, and returns `logits` (N, classes). The batch
axis is dynamic. Preprocessing, test-time augmentation and the calibration temperature stay
outside the graph, so imgclf's own predictor runs them identically on either backend, and the
metadata (see `metadata`) carries every number a phone or JavaScript app needs to redo them:
probabilities are softmax(logits / temperature).

The export is installed only after the parity check passes: ONNX Runtime's calibrated
probabilities must match PyTorch's (fp32, no autocast) within 1e-4 on up to 64 of the run's own
images (test split first). The result goes to RUN/export.json.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np

from imgclf.core.console import silent_stdout
from imgclf.core.errors import UserError
from imgclf.core.files import atomic_path, write_json
from imgclf.core.version import __version__
from imgclf.evaluation.operating_point import OperatingPoint
from imgclf.store.run_meta import RunMeta, load_run_meta
from imgclf.store.runs import find_run, read_splits

TOLERANCE = 1e-4  # max |p_onnx - p_torch| over every class of every checked image
CHECK_IMAGES = 64
EXAMPLE_BATCH = 2  # export traces with 2: a batch of 1 can get specialised into the graph
RESIZE_HELP = {
    "squash": "resize the whole image to size x size, ignoring its aspect ratio (bilinear, antialiased)",
    "crop": "resize the centre square (side = the shorter side) to size x size (bilinear, antialiased)",
    "pad": "letterbox: fit the longer side to size, centre on a grey (114,114,114) square (bilinear)",
}


def export_onnx(
    run: str | Path,
    out: str | Path | None = None,
    opset: int | None = None,
    data: str | Path | None = None,
    check: bool = True,
) -> dict:
    """Write the run's network as ONNX (default RUN/model.onnx) and check it against PyTorch.

    Returns {path, max_prob_diff, max_logit_diff, n_images, opset, exporter, seconds}; the diffs are
    None when `check=False`. Raises UserError (and leaves no file) when the check fails.

        info = export_onnx("runs/photos-1", data="photos/test")
        info["max_prob_diff"]      # e.g. 3e-07
    """
    import torch

    from imgclf.inference.model import load_torch_net
    from imgclf.models.headonly import refuse_unexportable

    start = time.perf_counter()
    low, high = opset_range()
    if opset is not None and not low <= opset <= high:
        raise UserError(
            f"--opset must be an integer from {low} to {high} (what the installed torch and onnx export), not {opset}"
        )
    run = find_run(run)
    meta = load_run_meta(run)
    if meta.is_ensemble:
        raise UserError(f"{run} is an ensemble bundle; export its member runs one by one (imgclf export MEMBER_RUN)")
    out = Path(out).expanduser() if out else run / "model.onnx"
    net = load_torch_net(run, meta).float()
    refuse_unexportable(net)
    size, in_chans = meta.input.size, meta.architecture.in_chans
    example = torch.randn(EXAMPLE_BATCH, in_chans, size, size)
    # Images are read before the (slow) export, so a --data folder without usable images fails fast.
    images, source = _check_images(run, meta, data) if check else (None, None)
    with atomic_path(out) as tmp:
        exporter = _export(net, example, tmp, opset, meta.architecture.name)
        result = _finish(run, tmp, out, net, meta, exporter, images)
        if check:
            result["images_from"] = source
    result["seconds"] = round(time.perf_counter() - start, 2)
    _record(run, result)
    return result


def install_onnx(run: Path, graph: bytes, net, meta: RunMeta, images: np.ndarray, source: str) -> dict:
    """Install `graph` (the run's network as ONNX, made in memory with the names of the input contract)
    as RUN/model.onnx, checked like export_onnx's on `images`: what training does on a CPU, where the
    evaluation after training ran this very graph, so that predict and serve find it (backend auto).
    Returns export_onnx's record; raises UserError (and leaves no file) when the check fails."""
    start = time.perf_counter()
    out = run / "model.onnx"
    with atomic_path(out) as tmp:
        tmp.write_bytes(graph)
        result = {**_finish(run, tmp, out, net, meta, "torchscript", images), "images_from": source}
    result["seconds"] = round(time.perf_counter() - start, 2)
    _record(run, result)
    return result


def _finish(run: Path, tmp: Path, out: Path, net, meta: RunMeta, exporter: str, images: np.ndarray | None) -> dict:
    """Give the graph at `tmp` its metadata and the weights' digest, and check it against `net` on
    `images` (None: no check). Raises UserError when the check fails."""
    import onnx

    proto = onnx.load(str(tmp))
    onnx.helper.set_model_props(proto, {**metadata(meta), "weights_sha256": weights_digest(run)})
    proto.doc_string = meta.preprocessing or ""
    onnx.save(proto, str(tmp))
    result = {
        "path": str(out),
        "max_prob_diff": None,
        "max_logit_diff": None,
        "n_images": 0,
        "opset": _opset(proto),
        "exporter": exporter,
    }
    if images is not None:
        result.update(parity(net, tmp, meta, images))
        if not result["max_prob_diff"] <= TOLERANCE:
            raise UserError(
                f"ONNX export of {meta.architecture.name} does not match PyTorch: max "
                f"probability difference {result['max_prob_diff']:.2e} > {TOLERANCE:g} on "
                f"{result['n_images']} images; nothing written. Try another --opset"
            )
    return result


def _record(run: Path, result: dict) -> None:
    """RUN/export.json: what was exported, how well it matched, and with which versions."""
    import onnx
    import torch

    write_json(
        run / "export.json",
        {
            **result,
            "format": "onnx",
            "tolerance": TOLERANCE,
            "imgclf_version": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": _ort_version(),
        },
    )


def metadata(meta: RunMeta) -> dict[str, str]:
    """ONNX metadata_props (strings): everything needed to preprocess and decide without imgclf."""
    size = meta.input.size
    props = {
        "classes": json.dumps(meta.classes, ensure_ascii=False),
        "input_name": "input",
        "output_name": "logits",
        "input_layout": "NCHW",
        "input_dtype": "float32",
        "channel_order": "RGB",
        "input_size": str(size),
        "resize": meta.input.resize,
        "resize_description": RESIZE_HELP.get(meta.input.resize, ""),
        "value_scale": str(1 / 255),
        "mean": json.dumps(meta.normalization.mean),
        "std": json.dumps(meta.normalization.std),
        "preprocessing": (
            f"decode to RGB (EXIF-rotated, alpha on white); {meta.input.resize}-resize to "
            f"{size}x{size}; x = (pixel * value_scale - mean) / std per channel; HWC -> CHW"
        ),
        "postprocessing": "probabilities = softmax(logits / temperature); label = argmax unless "
        "decision_threshold or rejection_threshold says otherwise",
        "temperature": str(meta.temperature),
        "tta": meta.tta,
        "tta_description": "averaged logits of test-time views, applied outside the graph: none | flip "
        "(image and its mirror) | crop | flip-crop (see imgclf.models.forward.tta_logits)",
        "architecture": meta.architecture.name,
        "imgclf_version": __version__,
    }
    return {**props, **OperatingPoint.of(meta).onnx_metadata()}


def weights_digest(run: Path) -> str:
    """SHA-256 of RUN/model.safetensors: ties an export to the exact weights it was made from, so a
    retrained, resumed or copied-over run is re-exported instead of answering with stale weights."""
    from imgclf.store.run_schema import WEIGHTS, sha256_file

    return sha256_file(run / WEIGHTS)


def fresh_onnx(run: Path, why: str = "") -> Path:
    """RUN/model.onnx, exported (and checked) first when missing or made from other weights than
    the run's model.safetensors (a retrained or resumed run). `why`: what it is wanted for, printed."""
    import sys

    path = run / "model.onnx"
    if onnx_weights(path) != weights_digest(run):
        print(f"exporting {path}{f' ({why})' if why else ''} ...", file=sys.stderr, flush=True)
        export_onnx(run)
    return path


def onnx_weights(path: Path) -> str | None:
    """The weights_sha256 an exported file records (None: no such file, or not a readable ONNX file)."""
    import onnx

    if not path.is_file():
        return None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a damaged file counts as missing: it is made again
        return None
    return next((p.value for p in proto.metadata_props if p.key == "weights_sha256"), None)


def parity(net, onnx_path: Path, meta: RunMeta, images: np.ndarray) -> dict:
    """Max |difference| of calibrated probabilities and of logits, PyTorch fp32 vs ONNX Runtime,
    on preprocessed uint8 images (N, size, size, 3) run through the predictor's own code path."""
    import torch

    from imgclf.inference.model import OnnxNet
    from imgclf.inference.onnx_runtime import open_session
    from imgclf.models.forward import predict_logits, softmax

    norm, t = meta.normalization, meta.temperature
    cpu = torch.device("cpu")
    ref = predict_logits(net, images, norm.mean, norm.std, cpu, amp=None)
    got = predict_logits(OnnxNet(open_session(onnx_path)), images, norm.mean, norm.std, cpu, amp=None)
    return {
        "max_prob_diff": float(np.abs(softmax(got / t) - softmax(ref / t)).max()),
        "max_logit_diff": float(np.abs(got - ref).max()),
        "n_images": int(len(images)),
    }


def _export(net, example, path: Path, opset: int | None, name: str) -> str:
    """Export with the TorchScript tracer, padding fixed and the graph optimised (models.tracing:
    ~1 s, and as fast in ONNX Runtime as torch.export's graph), else with torch.export (dynamo, ~11 s
    for Lite0 on 2 cores: networks the tracer cannot take, and a torch without the tracer); the name
    of the one that worked. Both keep the batch axis dynamic."""
    import torch

    from imgclf.models.tracing import trace_onnx

    errors = []
    with warnings.catch_warnings(), silent_stdout():
        warnings.simplefilter("ignore")  # exporter deprecation/trace chatter, not the user's concern
        try:
            path.write_bytes(trace_onnx(net, example, "input", ["logits"], opset or 17))
            return "torchscript"
        except Exception as e:  # noqa: BLE001 - any tracing failure: fall back, then report both
            errors.append(f"TorchScript: {type(e).__name__}: {_first_line(e)}")
        # In-place activations (timm's ReLU6(inplace=True), 33 in Lite0) go through torch.export's slow
        # functionalising decompositions: out of place, Lite0 exports in 11 s instead of 16 (this 2-core
        # VM). The same arithmetic; the network is in eval mode and runs no backward.
        for m in net.modules():
            if getattr(m, "inplace", None) is True:
                m.inplace = False
        try:
            torch.onnx.export(
                net,
                (example,),
                str(path),
                input_names=["input"],
                output_names=["logits"],
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
            import onnx

            # Below its own opset (18) the dynamo exporter converts down, and keeps 18 when that fails.
            got = _opset(onnx.load(str(path), load_external_data=False))
            if opset is None or got == opset:
                return "dynamo"
            errors.append(f"torch.export: gave opset {got}")
        except Exception as e:  # noqa: BLE001
            errors.append(f"torch.export: {type(e).__name__}: {_first_line(e)}")
    raise UserError(f"cannot export model '{name}' to ONNX ({'; '.join(errors)})")


def _check_images(run: Path, meta: RunMeta, data: str | Path | None) -> tuple[np.ndarray, str]:
    """Up to CHECK_IMAGES real images, preprocessed as the predictor does: from `data` (a folder),
    else the run's test split, else its validation or training split, else (a run moved away from
    its data) seeded uniform noise, so an export still gets a numeric check and says so."""
    from imgclf.data.images import UnusableImage, load_resized
    from imgclf.data.spec import files_under, is_image

    if data is not None:
        folder = Path(data).expanduser()
        if not folder.is_dir():
            raise UserError(f"--data {data} is not a folder of images")
        paths, source = [str(f) for f in files_under(folder) if is_image(f)], str(folder)
    else:
        paths, source = _split_paths(run)
    # Evenly spaced over the list, so every class of a sorted folder or split shows up.
    picked = [paths[i] for i in np.linspace(0, len(paths) - 1, min(len(paths), CHECK_IMAGES)).round().astype(int)]
    arrays = []
    for p in dict.fromkeys(picked):
        try:
            arrays.append(load_resized(p, meta.input.size, meta.input.resize))
        except (UnusableImage, OSError):
            continue
    if arrays:
        return np.stack(arrays), source
    if data is not None:
        raise UserError(
            f"no readable images in {data} to check the export with; give a folder of images "
            "with --data, or skip the check with --no-check"
        )
    size = meta.input.size
    noise = np.random.default_rng(0).integers(0, 256, (CHECK_IMAGES, size, size, 3), dtype=np.uint8)
    return noise, "random noise: the run's images were not found; check on real ones with --data DIR"


def _split_paths(run: Path) -> tuple[list[str], str]:
    rows = [r for r in read_splits(run) if Path(r["path"]).is_file()]
    for split in ("test", "val", "train"):
        paths = [r["path"] for r in rows if r["split"] == split]
        if paths:
            return paths, f"{split} split"
    return [], f"{run}/splits.csv"


def opset_range() -> tuple[int, int]:
    """The opsets torch can export to that the installed onnx knows."""
    import onnx
    from torch.onnx import _constants  # private, so read defensively: torch 2.x's bounds otherwise

    return (
        getattr(_constants, "ONNX_MIN_OPSET", 7),
        min(getattr(_constants, "ONNX_MAX_OPSET", 20), onnx.defs.onnx_opset_version()),
    )


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def load_onnx_session(run: Path, device: str = "auto", export: bool = True):
    """An ONNX Runtime session on RUN/model.onnx, exported first when missing or made from other weights
    than the run's model.safetensors. `export=False`: None instead of an export (a damaged file too)."""
    import sys

    from imgclf.inference.onnx_runtime import open_session

    path = run / "model.onnx"
    dev = session_device(device)
    try:
        session = open_session(path, dev) if path.is_file() else None
    except UserError:
        if export:
            raise
        session = None  # a damaged file: backend auto runs PyTorch
    made_from = session and session.get_modelmeta().custom_metadata_map.get("weights_sha256")
    if made_from != weights_digest(run):
        if not export:
            return None
        why = "missing" if session is None else "made from other weights than model.safetensors"
        print(f"exporting {path} ({why}) ...", file=sys.stderr, flush=True)
        export_onnx(run)
        session = open_session(path, dev)
    return session


def session_device(name: str):
    """The device for open_session: None (the CPU) where `name` means the CPU, found without torch."""
    from imgclf.core.device import device_named

    device = device_named(name)
    return None if device == "cpu" else device
