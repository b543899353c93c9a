"""MLflow tracking (optional: pip install 'imgclf[mlflow]'): mirror runs and registry changes to an
MLflow server, so a team that already looks at MLflow sees imgclf's work there.

    log_run(run_dir, uri)                   one MLflow run named after the imgclf run: params from
                                            config.yaml and model.json, the test metrics, the
                                            per-epoch history, and the run's files as artefacts
    log_registry_event(registry, event, uri) after registry add/promote/rollback: a registered model
                                            (imgclf-<registry name>) with one model version per
                                            registry version and the same aliases (production, ...)

`uri=None` means $MLFLOW_TRACKING_URI; with neither, nothing is logged. Both return None and print
one warning line when the server cannot be reached: tracking never fails a training or a promotion.
The `imgclf train|update|registry ... --mlflow URI` commands call these after their own work:

    from imgclf.lifecycle import tracking
    tracking.log_run("runs/photos-2", "http://mlflow:5000")
    e = registry.promote("registry", "candidate")
    tracking.log_registry_event("registry", e, "http://mlflow:5000")
"""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from imgclf.core.console import quiet_logs
from imgclf.core.errors import UserError
from imgclf.lifecycle.tracking_fields import run_metrics, run_note, run_params

EXPERIMENT = "imgclf"  # overridden by $MLFLOW_EXPERIMENT_NAME, as MLflow itself does
RUN_PATH_TAG = "imgclf.run_path"
VERSION_TAG = "imgclf_version"
# The run's small files; the weights only on request (they can be hundreds of MB).
ARTEFACTS = (
    "report.html",
    "model.json",
    "config.yaml",
    "metrics.json",
    "history.csv",
    "data_report.json",
    "splits.csv",
    "learning_curves.png",
    "confusion_matrix.png",
    "reliability.png",
)
MAX_TAG = 8000
# Fail fast on an unreachable server instead of MLflow's default minutes of retries.
_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


def tracking_uri(uri: str | None = None) -> str | None:
    """The MLflow server to log to: `uri`, else $MLFLOW_TRACKING_URI, else None (no tracking)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def require(uri: str | None = None) -> str | None:
    """tracking_uri(uri), checked before the real work starts: a missing mlflow package is a UserError
    now rather than a surprise after an hour of training."""
    uri = tracking_uri(uri)
    if uri is not None:
        try:
            import mlflow  # noqa: F401
        except ImportError as e:
            where = "--mlflow" if os.environ.get("MLFLOW_TRACKING_URI") != uri else "MLFLOW_TRACKING_URI"
            raise UserError(
                f"{where} {uri} needs the mlflow package: pip install 'imgclf[mlflow]'"
                + (" (or unset MLFLOW_TRACKING_URI)" if where != "--mlflow" else "")
            ) from e
    return uri


def checked_uri(uri: str | None) -> str | None:
    """The MLflow URI a caller asked to mirror to, checked before the real work (a missing package is
    one line now, not a surprise after an hour of training); None or "": no mirroring. Unlike
    `require`, no URI means none, not $MLFLOW_TRACKING_URI (the command line reads that itself)."""
    return require(uri) if uri else None


def log_run(
    run_dir: str | Path,
    uri: str | None = None,
    *,
    weights: bool = False,
    tags: dict | None = None,
    experiment: str | None = None,
    verbose: bool = True,
) -> str | None:
    """Log a finished run folder as one MLflow run; return its MLflow run id (None when not logged).
    `tags`: extra run tags (imgclf update adds parent_version, version, promoted).

    Logging the same run folder again (the same path) updates its MLflow run instead of adding one.

        >>> tracking.log_run("runs/flowers-3", "http://127.0.0.1:5000")
        'a1b2c3...'
    """
    uri = tracking_uri(uri)
    if uri is None:
        return None
    from imgclf.store.runs import find_run

    run = find_run(run_dir).resolve()
    client = _client(uri)
    with _guard(uri, f"run {run.name}", f"imgclf.lifecycle.tracking.log_run('{run}', '{uri}')"):
        run_id = _log_run(client, run, weights, experiment, tags)
        _say(verbose, f"mlflow: run {run.name} logged to {uri} (run id {run_id})")
        return run_id
    return None


def log_registry_event(
    registry: str | Path,
    event: dict | None = None,
    uri: str | None = None,
    *,
    name: str | None = None,
    verbose: bool = True,
) -> str | None:
    """Bring the MLflow registered model in line with the imgclf registry after `event` (the record
    registry.add/promote/rollback returned): every registry version gets a model version (its run
    logged first when it is not in MLflow yet; tags imgclf_version, parent, run path), every alias
    points at the matching model version, and the event is kept in the model's `imgclf.history` tag.
    Returns the registered model's name (None when not logged).

        >>> tracking.log_registry_event("registry", registry.promote("registry", 3), "http://127.0.0.1:5000")
        'imgclf-flowers'
    """
    uri = tracking_uri(uri)
    if uri is None:
        return None
    from imgclf.store import registry as reg

    root = Path(registry).expanduser().resolve()
    name = name or model_name(root)
    versions = reg.list_versions(root)
    aliases = {a: v["version"] for v in versions for a in v["aliases"]}
    client = _client(uri)
    with _guard(
        uri, f"registry {root.name}", "the next registry add/promote/rollback with --mlflow brings MLflow up to date"
    ):
        _sync_registry(client, name, versions, aliases, event)
        shown = ", ".join(f"{a} -> {n}" for a, n in sorted(aliases.items())) or "no aliases"
        _say(
            verbose,
            f"mlflow: registered model {name} at {uri} ({len(versions)} "
            f"version{'s' if len(versions) != 1 else ''}; {shown})",
        )
        return name
    return None


def model_name(registry: Path) -> str:
    """imgclf-<registry folder>; the generic folder name "registry" gives way to its parent's name,
    so two projects' registry/ folders do not share one MLflow model."""
    registry = Path(registry).resolve()
    base = registry.parent.name if registry.name == "registry" and registry.parent.name else registry.name
    return "imgclf-" + re.sub(r"[^\w.-]+", "_", base)


# ---------------------------------------------------------------- runs


def _log_run(client, run: Path, weights: bool, experiment: str | None, extra_tags: dict | None = None) -> str:
    from mlflow.entities import Metric, Param, RunTag

    from imgclf.store.run_meta import load_run_meta

    exp_id = _experiment(client, experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
    meta = load_run_meta(run, loadable=False)  # what describes the run; its network is never loaded here
    old = _find_run(client, exp_id, run)
    if old is not None:
        run_id = old.info.run_id
    else:
        run_id = client.create_run(exp_id, run_name=run.name, tags={RUN_PATH_TAG: str(run)}).info.run_id
    tags = {
        RUN_PATH_TAG: str(run),
        "imgclf.run_uri": run.as_uri(),
        "imgclf.version": str(meta.imgclf_version),
        "mlflow.note.content": run_note(run, meta),
        **{str(k): str(v) for k, v in (extra_tags or {}).items()},
    }
    params = run_params(run, meta)
    if old is not None:  # MLflow refuses to change a logged param; keep the first value of each
        params = {k: v for k, v in params.items() if k not in old.data.params}
    metrics = [Metric(k, v, _now_ms(), step) for k, v, step in run_metrics(run, meta)]
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, v[:MAX_TAG]) for k, v in tags.items()],
    )
    for f in ARTEFACTS:
        if (run / f).is_file():
            client.log_artifact(run_id, str(run / f), "run")
    if weights:
        client.log_artifact(run_id, str(run / "model.safetensors"), "run")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _experiment(client, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # created meanwhile by another process
        return client.get_experiment_by_name(name).experiment_id


def _find_run(client, exp_id: str, run: Path):
    path = str(run).replace("\\", "\\\\").replace("'", "\\'")
    found = client.search_runs(
        [exp_id], f"tags.`{RUN_PATH_TAG}` = '{path}'", max_results=1, order_by=["attributes.start_time DESC"]
    )
    return found[0] if found else None


# ---------------------------------------------------------------- registry


def _sync_registry(client, name: str, versions: list[dict], aliases: dict, event: dict | None) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name,
            tags={"imgclf.store.registry": "true"},
            description="Mirrored from an imgclf registry: one model version per "
            "registry version (tag imgclf_version), the same aliases.",
        )
    except MlflowException as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code):
            raise
    mirrored = {}
    for mv in client.search_model_versions(f"name='{name}'"):
        if VERSION_TAG in mv.tags:
            mirrored[int(mv.tags[VERSION_TAG])] = mv.version
    for v in versions:
        n = v["version"]
        if n in mirrored or not v["run_exists"]:
            continue
        run = Path(v["run_path"]).resolve()
        # A run already logged (train --mlflow) is reused as is; logging it again would repeat its history.
        old = _find_run(client, _experiment(client, os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT), run)
        run_id = old.info.run_id if old is not None else _log_run(client, run, False, None)
        tags = {
            VERSION_TAG: str(n),
            "imgclf.parent": str(v.get("parent")),
            RUN_PATH_TAG: str(run),
            "imgclf.run_uri": run.as_uri(),
            "imgclf.created": str(v.get("created")),
        }
        acc = (v.get("metrics") or {}).get("accuracy")
        mv = client.create_model_version(
            name,
            f"runs:/{run_id}/run",
            run_id=run_id,
            tags=tags,
            description=f"imgclf registry version {n}: {run}"
            + (f", test accuracy {acc:.4f}" if acc is not None else ""),
        )
        mirrored[n] = mv.version
    for alias, n in aliases.items():
        if n in mirrored:
            try:
                client.set_registered_model_alias(name, alias, mirrored[n])
            except MlflowException as e:  # MLflow reserves some names imgclf allows ("latest")
                print(f"warning: mlflow: alias {alias!r} not mirrored: {str(e).splitlines()[0][:200]}", file=sys.stderr)
    if event:
        if "action" not in event:  # registry.add's record: the version.json, manifest and all
            event = {
                "time": event.get("created"),
                "user": event.get("user"),
                "action": "add",
                "version": event.get("version"),
                "parent": event.get("parent"),
            }
        rm = client.get_registered_model(name)
        history = json.loads(rm.tags.get("imgclf.history", "[]"))
        history.append(event)
        text = json.dumps(history)
        while len(text) > MAX_TAG and len(history) > 1:  # the tag keeps the latest events; history.jsonl has all
            history.pop(0)
            text = json.dumps(history)
        client.set_registered_model_tag(name, "imgclf.history", text)


# ---------------------------------------------------------------- plumbing


def _client(uri: str):
    try:
        from mlflow import MlflowClient
    except ImportError as e:
        raise UserError("MLflow tracking needs the mlflow package: pip install 'imgclf[mlflow]'") from e
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def _guard(uri: str, what: str, later: str) -> Iterator[None]:
    """A failure to reach or write to MLflow is a warning line: the imgclf work is already done."""
    saved = {k: os.environ.get(k) for k in _HTTP_ENV}
    os.environ.update({k: os.environ.get(k) or v for k, v in _HTTP_ENV.items()})
    try:
        with quiet_logs("mlflow"):  # no "waiting for model version" INFO lines in our output
            yield
    except UserError:
        raise
    except Exception as e:
        msg = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        if "Max retries exceeded" in msg or "NewConnectionError" in msg:  # requests' wording: say it plainly
            msg = "the server cannot be reached"
        print(
            f"warning: mlflow: could not log {what} to {uri} ({msg}); "
            f"the imgclf files are unaffected; to log later: {later}",
            file=sys.stderr,
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _say(verbose: bool, line: str) -> None:
    if verbose:
        print(line)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
