"""The fields of POST /feedback, checked before anything is stored (422 with the reason).

The label's rule is the inbox's (imgclf.store.inbox.check_label: `imgclf feedback import` applies the
same one); the numbers' are the settings' (serving.params, over imgclf.settings.checks).
"""

from __future__ import annotations

import re
import unicodedata

from imgclf.core.errors import UserError
from imgclf.serving.limits import Rejected
from imgclf.serving.params import CONFIDENCE, checked
from imgclf.settings.checks import check_number
from imgclf.store import inbox

MAX_TEXT = 200  # who, predicted: short names, never documents
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
    value = unicodedata.normalize("NFC", value.strip())
    if len(value) > limit:
        raise Rejected(422, f"'{name}' is {len(value):,} characters long; at most {limit}", "bad_field")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise Rejected(422, f"'{name}' contains control or invisible characters", "bad_field")
    return value or None


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
