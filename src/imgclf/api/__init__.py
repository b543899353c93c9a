"""The Python API, one function per job; the CLI and the web service are thin layers over it.

    run = imgclf.train("photos/", model="resnet_fast", epochs=20)
    model = imgclf.load(run.path)            # or imgclf.load("runs/photos-1")
    model.predict(["a.jpg", "folder/"], top_k=3)
    imgclf.evaluate("runs/photos-1")         # metrics on the run's held-out test split

The functions live in five modules by what they are for: api/making.py (train, lr_find, tune,
check, list_models, ensemble, demo), api/using.py (load, evaluate, report, predict_folder,
predict_on_ray, predict_video, serve, explain), api/exporting.py (export), api/finding.py (scan: a
pretrained detector or a crop model; negatives) and api/improving.py (compare, monitor, update,
feedback_import, feedback_summary, registry_*).
"""

from imgclf.api.exporting import export
from imgclf.api.finding import negatives, scan
from imgclf.api.improving import (
    compare,
    feedback_import,
    feedback_summary,
    monitor,
    registry_add,
    registry_promote,
    registry_rollback,
    registry_show,
    registry_versions,
    update,
)
from imgclf.api.making import check, demo, ensemble, list_models, lr_find, train, tune
from imgclf.api.using import (
    evaluate,
    explain,
    load,
    predict_folder,
    predict_on_ray,
    predict_video,
    report,
    serve,
)
from imgclf.workflows import Run

__all__ = [
    "Run",
    "check",
    "compare",
    "demo",
    "ensemble",
    "evaluate",
    "explain",
    "export",
    "feedback_import",
    "feedback_summary",
    "list_models",
    "load",
    "lr_find",
    "monitor",
    "negatives",
    "predict_folder",
    "predict_on_ray",
    "predict_video",
    "registry_add",
    "registry_promote",
    "registry_rollback",
    "registry_show",
    "registry_versions",
    "report",
    "scan",
    "serve",
    "train",
    "tune",
    "update",
]
