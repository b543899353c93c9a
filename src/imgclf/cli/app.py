"""The Typer app, the flags several commands share, and `main`, which turns a user's mistake into one
line on stderr and exit status 2 (never a traceback)."""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Optional

import typer

from imgclf.core.errors import Interrupted, UserError, disk_full, mask_secrets, refused

# rich_markup_mode=None: rich markup would swallow every "[default: ...]" in the help texts.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Train, evaluate and use image classifiers from folders of labeled images; find people (a pretrained "
    "detector, fine-tunable on your boxes) and name faces (a gallery enrolled from a few photos each).",
)


def _version(asked: bool) -> None:
    if asked:
        print(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print imgclf's version (and its engines') and exit."
    ),
) -> None:
    pass


def version_line() -> str:
    """'imgclf 0.1.0 (Python 3.11.7; torch 2.14.1, ...)': what a bug report needs, read from the installed
    packages' metadata (importing torch to ask it would cost seconds)."""
    import platform
    from importlib import metadata

    from imgclf.core.version import __version__

    engines = []
    for name in ("torch", "torchvision", "timm", "onnxruntime", "numpy", "pillow"):
        try:
            engines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return f"imgclf {__version__} (Python {platform.python_version()}; {', '.join(engines)})"


def with_settings(cls=None, only: tuple[str, ...] | None = None, after: str | None = None, into: str = "settings"):
    """The command's options for a job's settings, made from their declarations (settings.declare:
    type, help, spelling; `cls` defaults to the training settings, settings.config.TrainConfig),
    placed after the command's parameter `after` (default: its first); the command receives the ones
    given as `settings` (a dict), so a setting's option, check and help are written once. `only`: a
    subset, for commands that take a few of them. A setting declared with no default (REQUIRED) is
    an option the command requires. `into`: the command's parameter that receives them, so that a
    command may take two classes' settings (check: its own, and train's split settings)."""
    import functools
    import inspect

    from imgclf.settings.config import TrainConfig
    from imgclf.settings.declare import REQUIRED, checker, declared

    made, single, settings_cls = [], {}, cls or TrainConfig
    for f, kind in declared(settings_cls):
        if not f.metadata["cli"] or (only is not None and f.name not in only):
            continue
        flag = f.metadata["flag"]
        cli_type = f.metadata["cli_type"] or next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        if flag and "/" not in flag and cli_type is bool:  # `--no-flip` sets flip False; `--dedupe` dedupe True
            single[f.name] = not flag.startswith("--no-")
        decls, envvar = flag.split(", ") if flag else [], f.metadata.get("envvar")
        metavar = f.metadata.get("metavar")
        default = ... if f.default is REQUIRED and f.default_factory is REQUIRED else None  # ...: required
        option = typer.Option(
            default, *decls, help=f.metadata["help"], show_default=False, envvar=envvar, metavar=metavar
        )
        made.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[cli_type])
        )

    def decorate(command):
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != into]
        at = next(i for i, p in enumerate(own) if p.name == after) + 1 if after else 1
        names = [p.name for p in made]

        @functools.wraps(command)
        def run(**given):
            chosen = {n: given.pop(n) for n in names}
            chosen = {n: (single[n] if n in single else v) for n, v in chosen.items() if v is not None}
            # Refused here, as the user typed it (--img-size 8), not as the job names it later (img_size,
            # the key a config file and the Python API use); the job still checks and normalises them.
            checker(settings_cls)(**chosen)
            return command(**given, **{into: chosen})

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        run.__signature__ = inspect.Signature(params[:at] + made + params[at:])
        return run

    return decorate


def refuse_empty(argv: list[str]) -> None:
    """An empty argument, most often an unset shell variable (`imgclf train "$DATA"`), refused: a path
    made of it is the current folder (Path("") is "."), so `imgclf train ""` trained on whatever lay
    there, `imgclf scan ""` scanned it and `imgclf feedback import ""` copied it into the inbox."""
    for i, arg in enumerate(argv):
        if arg.startswith("--") and arg.endswith("="):
            where = arg[:-1]
        elif not arg:  # blank (" ") is a value the option's own check names better
            where = f"the argument after {argv[i - 1] if i else 'imgclf'!r}"
        else:
            continue
        raise UserError(
            f"{where} is empty (an unset shell variable?): give a value, or leave it out "
            "(an empty path would mean the current folder)"
        )


def bare_options(argv: list[str]) -> list[str]:
    """Options that may stand alone, their value then `auto`: Typer options always take one. A bare
    `--ray` (last, or before anything not an address) is this machine or the cluster RAY_ADDRESS names;
    a bare `--resume` of `imgclf train` (last, or before another option) the newest interrupted
    training of DATA (api.train finds it in runs/)."""
    from imgclf.core.raysupport import ADDRESS

    takes = {  # option: (the command that takes it, None for any; whether the next argument is its value)
        "--ray": (None, lambda nxt: bool(ADDRESS.match(nxt))),
        "--resume": ("train", lambda nxt: not nxt.startswith("-")),
    }
    out = []
    for i, arg in enumerate(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        command, valued = takes.get(arg, ("", None))
        bare = valued is not None and command in (None, argv[0]) and (nxt is None or not valued(nxt))
        out.append(f"{arg}=auto" if bare else arg)
    return out


def entry() -> None:
    """The `imgclf` command and `python -m imgclf`: main(), then a fast exit (leave). main() itself
    ends in SystemExit, as a caller in the same process (a test, a notebook) expects."""
    code = 0
    try:
        main()
    except SystemExit as e:  # Typer ends every command so, a success with code 0
        code = e.code
    leave(code)  # out here, the command's frames (its traceback's) are gone: their open files closed


def leave(code) -> None:
    """Exit with `code` (SystemExit's: None, a number or a message) without tearing every module down:
    after torch and timm that teardown took 1.1-1.6 s, half of a one-photo `imgclf predict`. What an
    exit must still do is done first: atexit's handlers (Ray's shutdown, multiprocessing's children,
    logging) and the flush of stdout and stderr. A thread that would hold the exit open (a non-daemon
    one still alive) gets the ordinary exit, which waits for it."""
    import atexit
    import gc
    import os
    import threading

    waiting = any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread())
    if waiting or not hasattr(atexit, "_run_exitfuncs"):
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # as sys.exit("message") prints it
        code = 1
    gc.collect()  # objects in reference cycles (a writer with a __del__) finalised, as an exit's last collection does
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (imgclf predict ... | head): nothing left to say
            pass
    os._exit(code or 0)


def main() -> None:
    unfailing_streams()
    plain_warnings()
    one_line_usage_errors()
    try:
        refuse_empty(sys.argv[1:])
        sys.argv[1:] = bare_options(sys.argv[1:])
        app()
    except UserError as e:
        print(f"error: {mask_secrets(str(e))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        print(interrupted(e), file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        if (line := disk_full(e) or refused(e)) is None:
            raise
        print(f"error: {mask_secrets(line)}", file=sys.stderr)
        sys.exit(1)
    except SystemExit as e:
        # Typer turns Ctrl-C into a silent exit 130 (raised from the KeyboardInterrupt); a command
        # that said its own word on it (tune) raised its exit inside the handler instead.
        ctrl_c = getattr(e.__context__, "__cause__", None)
        if e.code == 130 and isinstance(ctrl_c, KeyboardInterrupt):
            print(interrupted(ctrl_c), file=sys.stderr)
        raise


def unfailing_streams() -> None:
    """Class names, paths and the output's own signs (≥, →) written whatever the streams' encoding.
    On Windows, output sent to a file or a pipe is encoded in the ANSI code page (cp1252): a class
    named 玫瑰 ended `imgclf predict RUN photos/ > out.txt` in a UnicodeEncodeError traceback. Sent to
    a file or pipe, the streams now write UTF-8 (lossless, as Python's UTF-8 mode does); on a console
    whose code page lacks a character, it is replaced rather than fatal."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("_", "-")
        if encoding in ("utf-8", "utf8") or not hasattr(stream, "reconfigure"):
            continue
        try:
            if stream.isatty():
                stream.reconfigure(errors="replace")
            else:
                stream.reconfigure(encoding="utf-8")
        except (OSError, ValueError):  # a closed or detached stream: left as it is
            pass


def plain_warnings() -> None:
    """imgclf's own warnings as one line each, `warning: ...`, without Python's file, line number and
    source line, which say nothing to a user; other libraries' keep their usual form."""
    import warnings

    ours, usual = str(Path(__file__).resolve().parents[1]), warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not str(filename).startswith(ours):
            return usual(message, category, filename, lineno, file, line)
        print(f"warning: {mask_secrets(str(message))}", file=file or sys.stderr)

    warnings.showwarning = show


def one_line_usage_errors() -> None:
    """Click's usage errors (an unknown option, a value of the wrong type, a missing argument) as
    one line, `error: ...; see imgclf CMD --help`, as imgclf's own mistakes are said: Click prints
    three lines, the usage and a hint before the error itself. The exit status stays Click's 2.
    Typer 0.2x carries its own copy of Click (typer.core._click), older ones Click itself."""
    import typer.core

    click = getattr(typer.core, "_click", None) or typer.core.click

    def show(self, file=None) -> None:
        said = " ".join(self.format_message().split()).rstrip(".")
        if self.ctx is not None:  # "Did you mean 'train'? See imgclf --help"; "Missing argument 'run'; see ..."
            said += f"{' See' if said.endswith('?') else '; see'} {self.ctx.command_path} --help"
        print(f"error: {said}", file=file or sys.stderr)

    click.exceptions.UsageError.show = show  # not NoArgsIsHelpError's: a bare command still prints its help


def interrupted(e: KeyboardInterrupt) -> str:
    if isinstance(e, Interrupted):  # training knew its run folder
        return f"interrupted. Continue the training with: {e.resume}"
    return "interrupted. Run the same command again to go on (a training: imgclf train --resume RUN_FOLDER)"
