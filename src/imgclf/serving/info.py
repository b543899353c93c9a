"""GET /model: what a client needs to know about the model, and nothing about the server's disk
(the run is named by its folder name only)."""

from __future__ import annotations

from imgclf.core.files import read_json
from imgclf.evaluation.operating_point import OperatingPoint
from imgclf.models import HEAD_ONLY  # a descriptor with a head, or the detector served as a classifier: no map
from imgclf.settings.serve import ServeSettings


def model_info(model, settings: ServeSettings | None = None) -> dict:
    """The model's description; with `settings`, also the service's limits (key "service")."""
    meta, path = model.meta, model.path
    backend = getattr(model, "backend", "torch")  # an ensemble runs its members in PyTorch
    arch = meta.architecture
    info = {
        "name": path.name if path else getattr(model, "name", "model"),  # the pretrained detector: its name
        "kind": meta.kind or "run",
        "classes": list(model.classes),
        "input": {"size": model.img_size, "resize": model.resize_mode, "channels": "RGB"},
        "architecture": {"name": meta.architecture_name, "parameters": arch.parameters if arch else None},
        "backend": backend,
        "precision": _precision(model, backend),
        "tta": model.tta,
        "calibration": {"method": "temperature", "temperature": model.temperature},
        "decision": OperatingPoint.of(meta).description(),
        "explain": meta.architecture_name not in HEAD_ONLY,  # POST /explain can map it (the page's button)
        "metrics": _metrics_summary(path),
        "imgclf_version": meta.imgclf_version,
    }
    if backend.endswith("-int8"):
        info["int8"] = _int8_summary(path)
    if settings is not None:
        info["service"] = service_info(settings)
    return info


def _precision(model, backend: str) -> str:
    """The number format the network computes in: int8, or fp32 unless the torch backend autocasts (a GPU)."""
    if backend.endswith("-int8"):
        return "int8"
    amp = getattr(model, "amp", None)
    return {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(amp), "fp32")


def _int8_summary(path) -> dict | None:
    """What the int8 export measured on the test split (RUN/export_int8.json), beside fp32."""
    from imgclf.inference.quantize import int8_record

    r = int8_record(path) if path is not None else None
    if r is None:
        return None
    return {
        k: r.get(k) for k in ("accuracy_int8", "accuracy_fp32", "loss_points", "agreement", "n_test", "n_calibration")
    }


def service_info(settings: ServeSettings) -> dict:
    return {
        "batching": settings.batching,
        "max_batch": settings.max_batch,
        "max_wait_ms": settings.max_wait_ms,
        "max_upload_mb": settings.max_upload_mb,
        "max_pixels": settings.max_pixels,
        "max_images": settings.max_images,
        "top_k": settings.top_k,
        "api_key_required": settings.api_key is not None,
        # /scan and /explain: refused from the image's header (413 / 422) before any work
        "max_side": settings.max_side,
        "max_aspect": settings.max_aspect,
        "max_windows": settings.max_windows,
        "max_scan_seconds": settings.max_scan_seconds,  # estimated from the model's measured cost
        "scan_queue": settings.scan_queue,
        "scan_deadline_s": settings.scan_deadline_s,
    }


def _metrics_summary(path) -> dict | None:
    """Headline test metrics from the run's metrics.json (None when the run was never evaluated)."""
    if path is None or not (path / "metrics.json").is_file():
        return None
    m = read_json(path / "metrics.json")
    cal = m.get("calibration", {})
    summary = {
        "accuracy": m.get("accuracy"),
        "n": m.get("n"),
        "macro_f1": m.get("macro_avg", {}).get("f1-score"),
        "top_k_accuracy": m.get("top_k_accuracy"),
        "log_loss": m.get("log_loss"),
        "ece_after_calibration": cal.get("ece_after"),
    }
    if "rejection" in m:
        summary["rejection"] = {k: m["rejection"].get(k) for k in ("coverage", "accuracy_accepted")}
    if "decision" in m:
        summary["decision"] = {k: m["decision"].get(k) for k in ("precision", "recall", "f1")}
    return summary
