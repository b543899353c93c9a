"""`imgclf compare`, `monitor`, `update`, `registry ...`, `feedback ...`: keeping a deployed model good."""

from __future__ import annotations

from typing import Optional

import typer

from imgclf.cli import render
from imgclf.cli.app import app, with_settings
from imgclf.core.errors import UserError
from imgclf.settings.improve import (
    CompareSettings,
    FeedbackSettings,
    MonitorSettings,
    RegistryAddSettings,
    RegistryAliasSettings,
    UpdateSettings,
)


@app.command()
@with_settings(CompareSettings, after="new_data")
def compare(
    a: str = typer.Argument(
        ..., help="Champion: run folder or REGISTRY/ALIAS (its test split is the frozen test set)."
    ),
    b: str = typer.Argument(..., help="Challenger: run folder or REGISTRY/ALIAS."),
    new_data: Optional[str] = typer.Argument(
        None, metavar="data", help="Labeled folder of new data: a second evaluation slice (as evaluate takes it)."
    ),
    settings: dict = None,
):
    """Champion/challenger: both models on the same images; prints PROMOTE or KEEP and why (exit 0 either way)."""
    # Every option comes from its declaration (settings.improve.CompareSettings); api.compare checks them.
    from imgclf import api

    data = settings.pop("data", None)
    if new_data is not None and data is not None and new_data != data:
        raise UserError(f"two folders of new data ({new_data} and --data {data}): give one, as DATA or as --data")
    render.comparison(api.compare(a, b, data=data or new_data, **settings))


@app.command()
@with_settings(MonitorSettings)
def monitor(
    run: str = typer.Argument(..., help="Run folder, REGISTRY/ALIAS, or a version number or alias with --registry."),
    settings: dict = None,
):
    """Has live traffic drifted from the test set? Prints a verdict, writes monitor.html and the images to label next."""
    # Every option comes from its declaration (settings.improve.MonitorSettings); api.monitor checks them.
    from imgclf import api

    render.monitor_summary(api.monitor(run, **settings))


@app.command()
@with_settings(UpdateSettings, after="new_data")
def update(
    version: str = typer.Argument(
        ...,
        help="Registry version number or alias (e.g. production), REGISTRY/ALIAS, "
        "or a run folder (then nothing is registered).",
    ),
    new_data: Optional[str] = typer.Argument(
        None, help="New labeled images: class folders (one class is fine), split folders or a CSV manifest."
    ),
    settings: dict = None,
):
    """Retrain VERSION on its recorded data plus new images; register it as candidate; compare with VERSION
    on the frozen test split and the new test slice; promote with --promote only if it wins (exit 0 either way)."""
    # Every option comes from its declaration (settings.improve.UpdateSettings); api.update checks them.
    from imgclf import api

    print(api.update(version, new_data, **settings)["run"])


registry_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Numbered versions of run folders with aliases (production, candidate); "
    "promote and rollback swap a pointer, nothing is copied.",
)
app.add_typer(registry_app, name="registry")
# Every registry option comes from its declaration (settings.improve: RegistryAddSettings,
# RegistryAliasSettings) via with_settings; the registry functions check them (given ones only here).


@registry_app.command("add")
@with_settings(RegistryAddSettings)
def registry_add(run: str = typer.Argument(..., help="Run folder."), settings: dict = None):
    """Register RUN as the next version, with the hashes and labels of its training data."""
    from imgclf import api

    v = api.registry_add(run, **settings)
    m = v["manifest"]
    print(
        f"version {v['version']}: {v['run']} ({m['files']} files hashed, {m['missing']} missing)"
        + (f", now {settings['alias']}" if settings.get("alias") else "")
    )


@registry_app.command("list")
@with_settings(RegistryAliasSettings, only=("registry",))
def registry_list(settings: dict = None):
    """All versions with their aliases and test metrics."""
    from imgclf import api

    registry = RegistryAliasSettings.of(settings).registry  # the default's name, for the refusal below
    versions = api.registry_versions(registry)
    if not versions:
        raise UserError(f"the registry {registry} has no versions yet; add one with: imgclf registry add RUN")
    render.registry_versions(versions)


@registry_app.command("show")
@with_settings(RegistryAliasSettings, only=("registry",))
def registry_show(ref: str = typer.Argument(..., help="Version number or alias."), settings: dict = None):
    """Everything recorded about one version, as JSON."""
    from imgclf import api

    render.print_json(api.registry_show(ref, RegistryAliasSettings.of(settings).registry))


@registry_app.command("promote")
@with_settings(RegistryAliasSettings)
def registry_promote(
    ref: str = typer.Argument(..., help="Version number or alias (e.g. candidate)."), settings: dict = None
):
    """Point ALIAS at a version: an atomic swap of aliases.json."""
    from imgclf import api

    e = api.registry_promote(ref, **settings)
    print(f"{e['alias']}: {e['from'] if e['from'] is not None else '-'} -> {e['to']}")


@registry_app.command("rollback")
@with_settings(RegistryAliasSettings)
def registry_rollback(settings: dict = None):
    """Point ALIAS back at the version it had before its last change."""
    from imgclf import api

    e = api.registry_rollback(**settings)
    print(f"{e['alias']}: {e['from']} -> {e['to']}")


feedback_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="The feedback inbox: corrected labels, kept as INBOX/<label>/<sha256>.<ext> plus "
    "feedback.jsonl; imgclf update --from-inbox trains on it.",
)
app.add_typer(feedback_app, name="feedback")
# Every feedback option comes from its declaration (settings.improve.FeedbackSettings) via with_settings.


@feedback_app.command("import")
@with_settings(FeedbackSettings, only=("inbox", "registry", "who"))
def feedback_import(
    folder: str = typer.Argument(..., help="Folder with one sub-folder per label: FOLDER/<label>/*.jpg"),
    settings: dict = None,
):
    """Copy labeled images into the inbox (named by content, so importing twice adds nothing)."""
    from imgclf import api

    render.feedback_imported(api.feedback_import(folder, **settings))


@feedback_app.command("list")
@with_settings(FeedbackSettings, only=("inbox", "registry", "format"))
def feedback_list(settings: dict = None):
    """Images per label in the inbox, and the labels the production model does not know yet."""
    from imgclf import api

    format = FeedbackSettings.of(settings).format  # the one setting feedback_summary does not take
    s = api.feedback_summary(**{k: v for k, v in settings.items() if k != "format"})
    render.feedback_summary(s, s["inbox"], format)
