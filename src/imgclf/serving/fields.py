"""The free-text fields of POST /feedback, checked before anything is stored (422 with the reason).

A label becomes a folder name in the inbox and then a class name in a trained model, so it must be
one unambiguous name on every file system: NFC (the one form of "é" that macOS, Linux and Windows
agree on), no invisible characters (control, bidirectional, zero-width: "rose\\u200b" and "rose"
would be two classes that look alike), no letters mixing look-alike scripts (Latin "a" and
Cyrillic "а"), at most MAX_LABEL_BYTES in UTF-8 (file names are limited to 255 bytes; 64 emoji
are under 100 characters but 256 bytes), and not a name the inbox or a file system reserves.
"""
from __future__ import annotations

import re
import unicodedata

from .limits import Rejected

MAX_LABEL_BYTES = 100
MAX_TEXT = 200                 # who, predicted: short names, never documents
# Files of the inbox itself, and names Windows cannot create (a run copied there must still load).
RESERVED = frozenset({"feedback.jsonl", "con", "prn", "aux", "nul", *(f"{p}{i}" for p in ("com", "lpt")
                                                                         for i in range(1, 10))})
# Invisible or blank yet categorised as letters or symbols: Hangul fillers, braille blank, and the like.
INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
LOOKALIKE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")
PREDICTION_ID = re.compile(r"[0-9a-f]{16}-[0-9]{1,16}")


def label(raw) -> str:
    """The label as it will be stored, or Rejected(422) saying what is wrong with it (a form's
    value: text, a file part or None)."""
    s = unicodedata.normalize("NFC", raw.strip() if isinstance(raw, str) else "")
    why = _label_problem(s)
    if why:
        raise Rejected(422, f"bad label {s[:60]!r}: {why}; use a plain class name such as 'rose'", "bad_label")
    return s


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
    scripts = {unicodedata.name(c, "").split(" ")[0] for c in s if c.isalpha()} & set(LOOKALIKE_SCRIPTS)
    if len(scripts) > 1:
        return f"it mixes look-alike alphabets ({', '.join(sorted(scripts))})"
    base = s.split(".")[0].strip().lower()
    if s.startswith(".") or s.lower() in RESERVED or base in RESERVED:
        return "it is a reserved name (the inbox's own files, hidden or device names)"
    if s.endswith((".", " ")):
        return "it ends with '.' or a space (Windows drops them from folder names)"
    return None


def _invisible(c: str) -> bool:
    # Cc control, Cf format (bidi overrides, zero-width joiners, soft hyphen), Co/Cs/Cn private,
    # surrogate, unassigned; Zl/Zp line breaks; any space but the plain one.
    category = unicodedata.category(c)
    return category[0] == "C" or category in ("Zl", "Zp") or (category == "Zs" and c != " ") or c in INVISIBLE


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
        raise Rejected(422, f"'prediction_id' {pid!r} is not an id from the prediction log (16 hex digits, '-', "
                       "a number)", "bad_field")
    return pid
