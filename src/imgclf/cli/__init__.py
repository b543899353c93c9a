"""The `imgclf` command line: a thin layer over imgclf.api. User mistakes print one line, no traceback.

cli/app.py holds the Typer app, shared flags and `main`; the commands are in cli/train.py (making a
model), cli/predict.py (using one), cli/deploy.py (exporting and serving it), cli/find.py (finding people in photos), cli/faces.py (naming them) and cli/lifecycle.py (keeping it good); cli/render.py prints
their results.
"""

from imgclf.cli.app import app, entry, main

# Importing a command module registers its commands, in this order in `imgclf --help`.
# isort: off
from imgclf.cli import train  # noqa: E402, F401
from imgclf.cli import predict  # noqa: E402, F401
from imgclf.cli import deploy  # noqa: E402, F401
from imgclf.cli import find  # noqa: E402, F401
from imgclf.cli import faces  # noqa: E402, F401
from imgclf.cli import lifecycle  # noqa: E402, F401
# isort: on

__all__ = ["app", "entry", "main"]
