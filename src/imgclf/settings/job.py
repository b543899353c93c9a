"""The settings of `imgclf train` that say how the job runs rather than how the network trains: a
config file, a run to resume, MLflow, DDP workers and the Ray cluster. Declared once (settings.declare)
as the training settings are: `imgclf train`'s options (cli.app.with_settings), the checks
imgclf.train holds its keywords to, and the docs' reference (docs/settings.md) come from here. They
are not training settings: a run's config.yaml does not record them, and a config file cannot set them.
Beside them, the settings of the two commands around training: `imgclf models` (which architectures)
and `imgclf demo`.

    >>> TrainJobSettings(workers=0)
    UserError: --workers must be a whole number of workers, at least 1, not 0
"""

from __future__ import annotations

from dataclasses import dataclass

from imgclf.settings.checks import Flag, Number, PathSetting
from imgclf.settings.declare import Declared, ray_setting, setting
from imgclf.settings.improve import mlflow_setting


@dataclass
class TrainJobSettings(Declared):
    WHAT = "train setting"

    config: str | None = setting(None, "YAML file of settings (flags override it).", PathSetting(optional=True))
    resume: str | None = setting(
        None,
        "Continue the interrupted run in this folder (DATA, if given: where its data is now, when it moved); "
        "alone (imgclf train DATA --resume), the newest interrupted training of DATA in runs/.",
        PathSetting(optional=True),
    )
    mlflow: str | None = mlflow_setting()
    mlflow_weights: bool = setting(False, "Also upload model.safetensors to MLflow.", Flag(), flag="--mlflow-weights")
    workers: int = setting(
        1,
        "Train with PyTorch DDP over N Ray Train workers (pip install 'imgclf[ray]'): one per GPU, else a share "
        "of the CPUs each; --batch-size stays the global batch  [default: 1, this process]",
        Number(int, 1, 100_000, says="a whole number of workers, at least 1"),
    )
    ray: str | None = ray_setting(
        "Ray cluster for --workers: ray://HOST:10001 or HOST:6379; bare --ray: $RAY_ADDRESS, else this machine  "
        "[default: this machine]"
    )


@dataclass
class ModelsSettings(Declared):
    WHAT = "models setting"

    # a FLOPs count at 100,000 px took minutes and told nothing
    size: int = setting(
        224, "Input size in px for the FLOPs column.  [default: 224]", Number(int, 16, 4096, says="16 to 4096 px")
    )
    pretrained_only: bool = setting(
        False, "Only architectures with published weights.", Flag(), flag="--pretrained-only"
    )
    limit: int = setting(
        25,
        "Show at most this many (each is built to count its FLOPs).  [default: 25]",
        Number(int, 1, 10**6, says="at least 1"),
    )


@dataclass
class DemoSettings(Declared):
    WHAT = "demo setting"

    out: str | None = setting(None, "Run folder [default: runs/digits-<n>]", PathSetting(optional=True))
