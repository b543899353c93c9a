"""Corrected labels into the feedback inbox (store.inbox), which `imgclf update --from-inbox` trains
on. imgclf.api re-exports these functions."""

from __future__ import annotations

from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.settings.improve import FeedbackSettings


def feedback_import(
    folder: str | Path,
    inbox: str | Path | None = None,
    *,
    registry: str | Path | None = None,
    classes: list[str] | None = None,
    who: str | None = None,
) -> dict:
    """Add FOLDER/<label>/<images> to the feedback inbox that `imgclf update --from-inbox` trains on.
    `inbox` defaults to REGISTRY/inbox (./registry/inbox when ./registry is a registry), else ./inbox;
    labels the registry's production model does not know are kept as proposed new classes. Never stops
    on a bad file: the result lists what was added, already there, relabelled and skipped (with why).

        imgclf.feedback_import("corrections/", registry="registry")["added"]     # 12
    """
    from imgclf.store import inbox as box

    FeedbackSettings(inbox=inbox, registry=registry, who=who)  # checked as declared
    if isinstance(classes, str):  # `label in "rose"` would match "ros" and miss "tulip"
        raise UserError(f"classes must be a list of class names, e.g. [{classes!r}], not one string")
    where, reg = box.locate(inbox, registry)
    return box.import_folder(folder, where, classes=classes or box.registry_classes(reg), who=who)


def feedback_summary(inbox: str | Path | None = None, *, registry: str | Path | None = None) -> dict:
    """Images per label in the feedback inbox (located as in feedback_import; its path under "inbox"),
    and the labels the registry's production model does not know yet ("proposed")."""
    from imgclf.store import inbox as box

    FeedbackSettings(inbox=inbox, registry=registry)  # checked as declared
    where, reg = box.locate(inbox, registry)
    return box.summary(where, box.registry_classes(reg))
