"""The README's first command: the built-in digits demo trains to >= 95% test accuracy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import cli_env

pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture


def test_demo_end_to_end(tmp_path):
    env = cli_env()
    p = subprocess.run(
        [sys.executable, "-m", "imgclf.cli", "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 0, p.stderr
    run = tmp_path / p.stdout.strip().splitlines()[-1]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.95
    assert len(list((tmp_path / "demo_data" / "digits").rglob("*.png"))) == 1797
    assert p.stdout.count("demo_data/digits/") >= 5  # it predicted a few images
