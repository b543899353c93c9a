"""Errors caused by the user's input. The CLI prints these as one line, without a stack trace."""
from __future__ import annotations

import dataclasses


class UserError(ValueError):
    """Something the user can fix: a bad path, an empty class, an unknown option."""


def from_settings(cls, d: dict, what: str = "setting"):
    """Build dataclass `cls` from a user's mapping, naming any unknown keys and the valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise UserError(f"unknown {what}(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return cls(**d)
