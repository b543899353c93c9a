"""What the feedback inbox accepts as a label (one folder name, safe on every file system) and as a
short text (who gave the feedback, what the model had said), and how a user-given name is shown back safely."""

from __future__ import annotations

import re
import unicodedata

from imgclf.core.errors import UserError

FEEDBACK_FILE = "feedback.jsonl"
# A label becomes a folder name and then a class name in a trained model, so it must be one
# unambiguous name on every file system (checked by check_label, for the service and for import alike).
MAX_LABEL_BYTES = 100  # in UTF-8; file names stop at 255 bytes, and 64 emoji are 256 under 100 characters
# "unknown" is what the service answers when it rejects an image; the inbox's own files; names
# Windows cannot create (a run copied there must still load).
RESERVED_LABELS = frozenset(
    {"unknown", FEEDBACK_FILE, "con", "prn", "aux", "nul", *(f"{p}{i}" for p in ("com", "lpt") for i in range(1, 10))}
)
# Invisible or blank yet categorised as letters or symbols: Hangul fillers, braille blank, and the like.
INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
LOOKALIKE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")
MAX_TEXT = 200  # who, predicted: short names, stored on every feedback record, never documents
# What a short text may hold: no control, format (bidirectional, zero-width) or line-break characters
# (Unicode 14's Cc, Cf, Zl and Zp in the Basic Multilingual Plane). A pattern, not a category test, so
# that the service's OpenAPI schema documents the very rule it applies (and in syntax both JSON Schema
# and Python read).
TEXT_PATTERN = (
    r"^[^\u0000-\u001f\u007f-\u009f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    r"\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]*$"
)
_TEXT = re.compile(TEXT_PATTERN)


def check_label(label: str) -> str:
    """The label as it is stored (NFC, stripped), or UserError saying why it cannot be a class folder.

    NFC is the one form of "é" that macOS, Linux and Windows agree on; invisible characters (control,
    bidirectional, zero-width) and letters mixing look-alike scripts (Latin "a", Cyrillic "а") would
    make two classes that look like one ("rose\\u200b" and "rose").

        >>> check_label("  rose ")
        'rose'
    """
    if not isinstance(label, str):
        raise UserError(f"label must be text, not {type(label).__name__}")
    s = unicodedata.normalize("NFC", label.strip())
    why = _label_problem(s)
    if why:
        raise UserError(f"label {s[:60]!r} cannot be used: {why}; use a plain class name such as 'rose'")
    return s


def check_text(name: str, value: str | None, limit: int = MAX_TEXT) -> str | None:
    """A short free-text field as stored (NFC, stripped; None when empty), or UserError when it is
    longer than `limit` characters or holds control or invisible characters. POST /feedback's form
    fields and `imgclf feedback import --who` share it, so neither stores what the other refuses.

        >>> check_text("--who", " ann ")
        'ann'
    """
    if value is None:
        return None
    # Both checked on the value as given, as the schema's maxLength and pattern are.
    if len(value) > limit:
        raise UserError(f"{name} is {len(value):,} characters long; at most {limit}")
    if not _TEXT.search(value):
        raise UserError(f"{name} contains control or invisible characters")
    return unicodedata.normalize("NFC", value.strip()) or None


def _label_problem(s: str) -> str | None:
    if not s:
        return "it is empty"
    size = len(s.encode("utf-8"))
    if size > MAX_LABEL_BYTES:
        return f"it is {size} bytes long in UTF-8 (at most {MAX_LABEL_BYTES}: it becomes a folder name)"
    hidden = [c for c in s if _invisible(c)]
    if hidden:
        return f"it contains invisible or control characters ({', '.join(f'U+{ord(c):04X}' for c in hidden[:3])})"
    plain = unicodedata.normalize("NFKC", s)
    if plain != s:
        return f"it uses compatibility characters (full-width, ligatures, styled letters); write {plain!r}"
    if "/" in s or "\\" in s:
        return "it contains a slash (labels become folder names)"
    scripts = {unicodedata.name(c, "").split(" ")[0] for c in s if c.isalpha()} & set(LOOKALIKE_SCRIPTS)
    if len(scripts) > 1:
        return f"it mixes look-alike alphabets ({', '.join(sorted(scripts))})"
    if s.lower() == "unknown":
        return "'unknown' is reserved for images the model declines to classify"
    if s.startswith(".") or s.lower() in RESERVED_LABELS or s.split(".")[0].strip().lower() in RESERVED_LABELS:
        return "it is a reserved name (the inbox's own files, hidden or device names)"
    if s.endswith((".", " ")):
        return "it ends with '.' or a space (Windows drops them from folder names)"
    return None


def shown(text: str) -> str:
    """Text for a terminal with invisible and control characters written as \\uXXXX, so a path
    holding them neither hides them nor reorders the line (bidirectional overrides)."""
    return "".join(f"\\u{ord(c):04x}" if _invisible(c) else c for c in str(text))


def _invisible(c: str) -> bool:
    # Cc control, Cf format (bidi overrides, zero-width joiners, soft hyphen), Co/Cs/Cn private,
    # surrogate, unassigned; Zl/Zp line breaks; any space but the plain one.
    category = unicodedata.category(c)
    return category[0] == "C" or category in ("Zl", "Zp") or (category == "Zs" and c != " ") or c in INVISIBLE
