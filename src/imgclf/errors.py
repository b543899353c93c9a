"""Errors caused by the user's input. The CLI prints these as one line, without a stack trace."""


class UserError(ValueError):
    """Something the user can fix: a bad path, an empty class, an unknown option."""
