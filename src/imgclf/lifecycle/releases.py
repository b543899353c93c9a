"""Registering, promoting and rolling back model versions (store.registry), each mirrored to an
MLflow model registry when given a tracking URI. imgclf.api re-exports these functions."""

from __future__ import annotations

from pathlib import Path

from imgclf.lifecycle.tracking import checked_uri
from imgclf.settings.improve import RegistryAddSettings, RegistryAliasSettings


def registry_add(
    run: str | Path,
    registry: str | Path = "registry",
    *,
    parent: str | int | None = None,
    alias: str | None = None,
    data_root: str | Path | None = None,
    mlflow: str | None = None,
) -> dict:
    """Register RUN as the registry's next version, with the hashes and labels of its training data;
    `alias` (candidate, production) also points at it. `mlflow` mirrors the version to MLflow.
    See imgclf.store.registry.

        imgclf.registry_add("runs/photos-1", alias="candidate")["version"]      # 1
    """
    from imgclf.store import registry as reg

    RegistryAddSettings(registry=registry, parent=parent, alias=alias, mlflow=mlflow, data_root=data_root)
    uri = checked_uri(mlflow)
    version = reg.add(run, registry, parent=parent, alias=alias, data_root=data_root)
    _mirror_registry(registry, version, uri)
    return version


def registry_versions(registry: str | Path = "registry") -> list[dict]:
    """Every version, oldest first, with its aliases and test metrics ([] for no registry yet)."""
    from imgclf.store import registry as reg

    return reg.list_versions(registry)


def registry_show(ref: str | int, registry: str | Path = "registry") -> dict:
    """Everything recorded about one version (a number or an alias)."""
    from imgclf.store import registry as reg

    return reg.show(registry, ref)


def registry_promote(
    ref: str | int, alias: str = "production", registry: str | Path = "registry", *, mlflow: str | None = None
) -> dict:
    """Point ALIAS at version REF (an atomic swap of aliases.json); returns the event (from, to, ...)."""
    from imgclf.store import registry as reg

    RegistryAliasSettings(alias=alias, registry=registry, mlflow=mlflow)  # checked as declared
    uri = checked_uri(mlflow)
    event = reg.promote(registry, ref, alias)
    _mirror_registry(registry, event, uri)
    return event


def registry_rollback(
    alias: str = "production", registry: str | Path = "registry", *, mlflow: str | None = None
) -> dict:
    """Point ALIAS back at the version it had before its last change; returns the event."""
    from imgclf.store import registry as reg

    RegistryAliasSettings(alias=alias, registry=registry, mlflow=mlflow)  # checked as declared
    uri = checked_uri(mlflow)
    event = reg.rollback(registry, alias)
    _mirror_registry(registry, event, uri)
    return event


def _mirror_registry(registry, event: dict, uri: str | None) -> None:
    if uri:
        from imgclf.lifecycle.tracking import log_registry_event

        log_registry_event(registry, event, uri)
