"""How a job's settings are declared: once each, as a dataclass field made by `setting(...)`, which
holds its help text, the rule that checks it and how the command line spells it. A job's settings
class (settings.config.TrainConfig, ...) is the one place a setting is written; its command-line
options (cli.app.with_settings), checks (settings.checks) and docs (settings.reference) are made
from the declarations that `declared(cls)` lists."""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, ClassVar

from imgclf.core.errors import from_settings

REQUIRED = dataclasses.MISSING  # a setting's default where it has none: the command line requires its option


def setting(
    default: Any = None,
    help: str = "",
    rule=None,
    *,
    flag: str | None = None,
    cli: bool = True,
    cli_type=None,
    envvar: str | None = None,
    metavar: str | None = None,
):
    """One setting's declaration. `default`: REQUIRED where there is none (its option must be given);
    `help`: what `--help`, config checks and the docs say of it; `rule`: settings.checks' check of its
    values (None: checked as a structure, in checks._check_structured); `flag`: how the command line
    spells it when not --the-name (a true/false setting's single `--no-x` flag sets False, any other
    single flag True, `--a/--b` both; another setting's flag is its option's name, e.g. --verifier for
    verify; "--a, --b": two names of one option, the first the one refusals use); `cli`: False for settings only config files and the Python API take; `cli_type`: the type
    the command line reads, where it differs from the field's; `envvar`: an environment variable the
    command line reads it from when the option is not given; `metavar`: what `--help` shows for its
    value, where not the type's (--ray ADDRESS)."""
    meta = {
        "help": help,
        "rule": rule,
        "flag": flag,
        "cli": cli,
        "cli_type": cli_type,
        "envvar": envvar,
        "metavar": metavar,
    }
    if isinstance(default, dict):  # a fresh copy for each instance: a mutable default is never shared
        return dataclasses.field(default_factory=lambda: dict(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def ray_setting(help: str):
    """A job's `--ray ADDRESS` option (predict, faces identify): optional text, where a bare --ray is
    --ray=auto (cli.app.bare_options)."""
    from imgclf.settings.checks import Text

    return setting(None, help, Text(optional=True), flag="--ray", metavar="ADDRESS")


def declared(cls) -> list[tuple[dataclasses.Field, Any]]:
    """(field, the type it holds) of every setting of `cls`, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def rules(cls) -> dict:
    """Each setting's check rule (None: checked as a structure)."""
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(cls)}


def flags(cls) -> dict[str, str]:
    """Each setting's option as the command line spells it (--min-size): a refusal names it so,
    however the value came in (a flag, a Python keyword, a config file)."""
    return {
        f.name: (f.metadata["flag"] or "--" + f.name.replace("_", "-")).split("/")[0].split(", ")[0]
        for f in dataclasses.fields(cls)
    }


@functools.cache
def checker(cls):
    """check(**values) -> the values checked and normalised by `cls`'s declared rules, each refusal one
    line naming the option (settings.scan's check_scan, settings.predict's check_predict, ...)."""
    rule, flag = rules(cls), flags(cls)

    def check(**values) -> dict:  # a structured setting (no rule) passes as it is: its job checks it
        return {name: rule[name].check(flag[name], v) if rule[name] else v for name, v in values.items()}

    return check


class Declared:
    """The base of a job's settings dataclass whose values are checked as they are made (ScanSettings,
    PredictSettings, the faces settings): by their declared rules, refusals naming the flag."""

    WHAT: ClassVar[str] = "setting"  # how an unknown keyword's refusal names the settings

    def __post_init__(self):
        for name, value in checker(type(self))(**self.values()).items():
            setattr(self, name, value)

    @classmethod
    def of(cls, given: dict):
        """The settings a caller's keywords give (checked; an unknown one named with the valid ones)."""
        return from_settings(cls, given, cls.WHAT)

    def values(self) -> dict:
        """{name: value} of every setting (not dataclasses.asdict: that would copy a loaded verifier)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def help_of(cls, name: str) -> str:
    """One setting's help text, for a command that takes it as an argument rather than a flag."""
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)
