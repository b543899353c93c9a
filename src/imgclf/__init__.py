"""imgclf: from a folder of labeled images to a trained, evaluated CNN.

    import imgclf
    run = imgclf.train("photos/")          # trains, evaluates, writes runs/photos-1/
    model = imgclf.load(run.path)
    model.predict("new.jpg")               # [{"label": "cat", "confidence": 0.97, ...}]

Heavy parts (torch, timm) are imported lazily so `import imgclf` and `imgclf --help` stay fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["train", "load", "evaluate", "check", "demo", "report", "ensemble", "compare", "export", "serve",
           "predict_folder", "predict_video", "tune", "list_models", "lr_find", "monitor", "update", "explain", "feedback_import",
           "scan", "negatives", "__version__"]


def __getattr__(name: str):
    if name in ("train", "load", "evaluate", "check", "demo", "report", "ensemble", "compare", "export", "serve",
                "predict_folder", "predict_video", "tune", "list_models", "lr_find", "monitor", "update", "explain",
                "feedback_import", "scan", "negatives"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'imgclf' has no attribute {name!r}")
