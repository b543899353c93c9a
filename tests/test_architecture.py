"""The house rules of docs/architecture.md, checked: stages import downwards only and never in a
circle (import-linter's contracts in pyproject.toml), modules and functions stay readable, and the
code passes ruff."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "imgclf"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def test_stages_import_downwards_and_never_in_a_circle():
    importlinter = pytest.importorskip("importlinter.cli")
    # No cache: a stale one could hide an import added since.
    assert importlinter.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_the_contract_catches_an_upward_import(tmp_path):
    """The contract is not vacuous: a data module importing the API breaks it."""
    pytest.importorskip("importlinter.cli")
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "imgclf", ignore=shutil.ignore_patterns("__pycache__"))
    bad = copy / "imgclf" / "data" / "paths.py"
    bad.write_text(bad.read_text() + "\n\ndef _upward():\n    from imgclf import api  # noqa: F401\n")
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    code = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(copy), "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert code.returncode == 1, code.stdout + code.stderr
    assert "imgclf.data is not allowed to import imgclf.api" in code.stdout


def _long_functions(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            # A comment right above the function (or its decorators) starting "# long" or "# Long" says why.
            said_why = any(line.strip().lower().startswith("# long") for line in lines[max(0, first - 4) : first - 1])
            if length > MAX_FUNCTION_LINES and not said_why:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_modules_and_functions_stay_readable():
    long_modules = [
        f"{p.relative_to(ROOT)} ({n} lines)"
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    long_functions = [f for p in sorted(PACKAGE.rglob("*.py")) for f in _long_functions(p)]
    assert not long_modules, "split these modules: " + "; ".join(long_modules)
    assert not long_functions, "split these functions, or say why above them (# long: ...): " + "; ".join(
        long_functions
    )


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' brings it)")
    done = subprocess.run([ruff, *command, "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
