"""imgclf: from a folder of labeled images to a trained, evaluated CNN.

    import imgclf
    run = imgclf.train("photos/")          # trains, evaluates, writes runs/photos-1/
    model = imgclf.load(run.path)
    model.predict("new.jpg")               # [{"label": "cat", "confidence": 0.97, ...}]

Heavy parts (torch, timm) are imported lazily so `import imgclf` and `imgclf --help` stay fast.
"""

from __future__ import annotations

from imgclf.core.version import __version__

# The API's functions, loaded from imgclf.api on first use.
_API = (
    "train",
    "load",
    "evaluate",
    "check",
    "demo",
    "report",
    "ensemble",
    "compare",
    "export",
    "serve",
    "predict_folder",
    "predict_on_ray",
    "predict_video",
    "tune",
    "list_models",
    "lr_find",
    "monitor",
    "update",
    "explain",
    "feedback_import",
    "feedback_summary",
    "scan",
    "negatives",
    "registry_add",
    "registry_versions",
    "registry_show",
    "registry_promote",
    "registry_rollback",
)
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from imgclf import api

        return getattr(api, name)
    raise AttributeError(f"module 'imgclf' has no attribute {name!r}")
