"""The fields of POST /feedback, checked before anything is stored (422 with the reason).

The label's rule is the inbox's (imgclf.store.inbox.check_label: `imgclf feedback import` applies the
same one); the numbers' are the settings' (serving.params, over imgclf.settings.checks).
"""

from __future__ import annotations

import functools
import re

from imgclf.core.errors import UserError
from imgclf.serving.limits import Rejected
from imgclf.serving.params import CONFIDENCE, checked
from imgclf.settings.checks import check_number
from imgclf.store import inbox
from imgclf.store.labels import FEEDBACK_FILE, MAX_LABEL_BYTES, MAX_TEXT, RESERVED_LABELS, TEXT_PATTERN, check_text

# The id exactly as documented: checked with the schema's own anchored pattern and re.search, as a
# schema validator reads it, on the value as sent (not stripped: " id" breaks the pattern, so it is refused).
PREDICTION_ID_PATTERN = "^[0-9a-f]{16}-[0-9]{1,16}$"
PREDICTION_ID = re.compile(PREDICTION_ID_PATTERN)
TEXT_SCHEMA = {"type": "string", "maxLength": MAX_TEXT, "pattern": TEXT_PATTERN}


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# A new class proposed through the service: a plain ASCII name, so that the schema can state the whole
# rule (inbox.check_label's, for these characters: no reserved or device name, no leading '.', no
# trailing '.' or space) and a fuzzer's valid label is one the route accepts. Names in any script,
# look-alike checks and all, come in through `imgclf feedback import`; the model's own classes are
# accepted here whatever their script.
_RESERVED = "|".join(_any_case(n) for n in sorted(RESERVED_LABELS) if "." not in n)
# Spaces around a name are dropped when it is stored, so they may surround it here too.
NEW_LABEL_PATTERN = (
    f"^ *(?!(?:{_RESERVED}) *(?:\\.| *$)|{_any_case(FEEDBACK_FILE)} *$)"
    f"[A-Za-z0-9_+-](?:[A-Za-z0-9_ .+-]{{0,{MAX_LABEL_BYTES - 2}}}[A-Za-z0-9_+-])? *$"
)
_SPECIAL = set("\\^$.|?*+()[]{}/-")  # escaped with a backslash, which ECMAScript and Python read alike


def known_labels(classes: list[str]) -> list[str]:
    """The model's classes that are usable labels as they stand (every class, in practice)."""
    out = []
    for c in classes:
        try:
            if inbox.check_label(c) == c:
                out.append(c)
        except UserError:
            pass
    return out


def label_pattern(classes: list[str]) -> str:
    """One pattern for the label: the model's classes as they are, or a new class's plain name. One
    pattern rather than an anyOf of an enum and a pattern: fuzzers misjudge values sent as text against
    an anyOf (a null sent as "null" is a fine plain name)."""
    known = "|".join("".join(f"\\{c}" if c in _SPECIAL else c for c in name) for name in known_labels(classes))
    return f"^ *(?:{known}) *$|{NEW_LABEL_PATTERN}" if known else NEW_LABEL_PATTERN


@functools.lru_cache(maxsize=8)
def _label_re(classes: tuple[str, ...]) -> re.Pattern:
    return re.compile(label_pattern(list(classes)))


def label_schema(classes: list[str]) -> dict:
    return {
        "type": "string",
        "pattern": label_pattern(classes),
        "maxLength": MAX_LABEL_BYTES,
        "description": "the right class: one of the model's, or a new class's plain name (ASCII letters, digits, "
        "spaces and . _ + -; names in other scripts with: imgclf feedback import)",
    }


def known(form, names: tuple[str, ...]) -> None:
    """Rejected(422) naming a form field the route does not take: a misspelt `labels` would otherwise
    be dropped silently (and the schema says no other fields)."""
    unknown = sorted({k for k in form.keys() if k not in names})
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise Rejected(422, f"unknown form field(s) {shown}; the fields are {', '.join(names)}", "bad_field")


def label(raw, classes: list[str]) -> str:
    """The label as it will be stored, or Rejected(422) saying what is wrong with it (a form's
    value: text, a file part or None): the inbox's rule, then the documented pattern (the model's
    `classes`, or a plain ASCII name), read as a schema validator reads it."""
    try:
        stored = inbox.check_label(raw if isinstance(raw, str) else "")
    except UserError as e:
        raise Rejected(422, f"bad {e}", "bad_label") from None
    if len(raw) > MAX_LABEL_BYTES or not _label_re(tuple(classes)).search(raw):  # the schema's maxLength, pattern
        raise Rejected(
            422,
            f"bad label {raw[:60]!r}: a new class named through the service is a plain name (at most {MAX_LABEL_BYTES} "
            "characters) of ASCII letters, "
            "digits, spaces and . _ + - (names in other scripts: imgclf feedback import)",
            "bad_label",
        )
    return stored


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
    pid = form.get("prediction_id")
    if pid is None:
        return None
    if not isinstance(pid, str) or not PREDICTION_ID.search(pid):
        raise Rejected(
            422,
            f"'prediction_id' {str(pid)[:40]!r} is not an id from the prediction log (16 hex digits, '-', a number)",
            "bad_field",
        )
    return pid


def confidence(form) -> float | None:
    """The model's earlier confidence a client reports (with `predicted`): a probability, else 422."""
    raw = text(form, "confidence", MAX_TEXT)
    return checked(lambda: check_number("confidence", raw, CONFIDENCE))
