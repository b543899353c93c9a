"""The fields of POST /feedback, checked before anything is stored (422 with the reason).

The label's rule is the inbox's (imgclf.store.inbox.check_label: `imgclf feedback import` applies the
same one); the numbers' are the settings' (serving.params, over imgclf.settings.checks).
"""

from __future__ import annotations

import re

from imgclf.core.errors import UserError
from imgclf.serving.limits import Rejected
from imgclf.serving.params import CONFIDENCE, checked
from imgclf.settings.checks import check_number
from imgclf.store import inbox
from imgclf.store.labels import MAX_TEXT, check_text

PREDICTION_ID = re.compile(r"[0-9a-f]{16}-[0-9]{1,16}")


def label(raw) -> str:
    """The label as it will be stored, or Rejected(422) saying what is wrong with it (a form's
    value: text, a file part or None)."""
    try:
        return inbox.check_label(raw if isinstance(raw, str) else "")
    except UserError as e:
        raise Rejected(422, f"bad {e}", "bad_label") from None


def text(form, name: str, limit: int = MAX_TEXT) -> str | None:
    """A short optional text field, NFC, stripped; Rejected(422) when too long or not plain text."""
    value = form.get(name)
    if not isinstance(value, str):
        return None
    try:
        return check_text(f"'{name}'", value, limit)
    except UserError as e:
        raise Rejected(422, str(e), "bad_field") from None


def prediction_id(form) -> str | None:
    """A prediction id as the log writes them (sha256 prefix - milliseconds), else Rejected(422)."""
    pid = text(form, "prediction_id", 64)
    if pid is not None and not PREDICTION_ID.fullmatch(pid):
        raise Rejected(
            422,
            f"'prediction_id' {pid!r} is not an id from the prediction log (16 hex digits, '-', a number)",
            "bad_field",
        )
    return pid


def confidence(form) -> float | None:
    """The model's earlier confidence a client reports (with `predicted`): a probability, else 422."""
    raw = text(form, "confidence", 32)
    return checked(lambda: check_number("confidence", raw, CONFIDENCE))
