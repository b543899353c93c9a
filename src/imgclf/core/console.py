"""The terminal: one rich Console per command, quiet when the caller asked for no output."""

from __future__ import annotations


def console_for(verbose: bool):
    from rich.console import Console

    return Console(quiet=not verbose, highlight=False, soft_wrap=True)
