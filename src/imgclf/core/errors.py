"""Errors caused by the user's input. The CLI prints these as one line, without a stack trace."""

from __future__ import annotations

import dataclasses
import re

# user:password@ in any URL (the password runs to the last @ before the host, so an unescaped @ in it is
# covered too), and password-like query parameters (?password=..., &token=...).
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s:/@]*):[^\s/]*@")
_QUERY_SECRET = re.compile(r"\b(password|passwd|pwd|secret|token|api_key|apikey|access_key)=[^&\s]*", re.IGNORECASE)


class UserError(ValueError):
    """Something the user can fix: a bad path, an empty class, an unknown option."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, with the command that continues it (the CLI prints it)."""

    def __init__(self, resume: str):
        super().__init__(resume)
        self.resume = resume


def from_settings(cls, d: dict, what: str = "setting"):
    """Build dataclass `cls` from a user's mapping, naming any unknown keys and the valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise UserError(f"unknown {what}(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return cls(**d)


def mask_secrets(text: str) -> str:
    """`text` with the passwords of URLs (postgresql://user:***@host) and secret query parameters masked:
    error messages and stored descriptions end up in logs, terminals and shared reports."""
    return _QUERY_SECRET.sub(r"\1=***", _URL_PASSWORD.sub(r"\1:***@", text))
