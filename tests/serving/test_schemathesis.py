"""The service's OpenAPI schema, fuzzed by Schemathesis with every check it has (issues 19, 37): a
real server over a tiny trained run gets requests generated from what /openapi.json documents, valid
and not. No answer may be a 5xx, every answer's status, content type and body must be ones the schema
documents, a valid request must be accepted and an invalid one refused (with the other checks:
missing headers, unsupported methods, Allow headers).

Three judgements no schema can settle are made by the project's Schemathesis hooks
(schemathesis_hooks.py, named by schemathesis.toml at the repository root), from the request actually
sent: bytes that do not decode as an image are refused though a binary string allows any; /scan
refuses `tiles` (a detector's option) in a crop-model scan, a tie between query parameters OpenAPI
cannot state; and a form field whose type was changed is sent as the same valid text. Every other
failure counts.

Two tests: the command line docs/deployment.md gives (`schemathesis run --checks all`, with that
config), and the same checks through Hypothesis with real images too, so that classifying, explaining,
scanning and storing feedback are fuzzed as well as the refusals (random bytes are hardly ever an
image). Bounded (few examples an operation, no shrinking) to take seconds, beside the tiny run's
training, which the other service tests share. Skipped when schemathesis is not installed
(pip install -e ".[test]"). Its pytest integration (schema.parametrize) is not used: its
fixture-loaded schemas fail with pytest 9.2 (schemathesis 4.32)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import trained_run

import imgclf

schemathesis = pytest.importorskip("schemathesis")
serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
# After the skip: Hypothesis comes with schemathesis.
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = 25  # per operation, valid and invalid each, with real images too: a few hundred requests
CLI_EXAMPLES = 25  # per operation and phase, for the command line


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """(the live server's URL, its schema loaded with the project's config, real images to send it,
    that config as the command line gets it)."""
    run, data = trained_run(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("fuzzed")
    # Logging and an inbox, so /feedback and prediction ids are live; small caps keep /scan quick.
    # A face gallery too (a stranger's one: any face-free shape photo is answered with no faces).
    settings_ = serving.ServeSettings(
        inbox=str(tmp / "inbox"),
        log_predictions=str(tmp / "log"),
        max_side=256,
        max_windows=2_000,
        faces=_gallery(tmp, data),
    )
    config = _config(tmp)
    with serving.BackgroundServer(serving.create_app(imgclf.load(run), settings_)) as url:
        from schemathesis.config import SchemathesisConfig

        yield (
            url,
            schemathesis.openapi.from_url(f"{url}/openapi.json", config=SchemathesisConfig.from_path(config)),
            [(data / cls / f"{cls}_000.png").read_bytes() for cls in ("square", "disc")],
            config,
        )


def _config(tmp: Path) -> Path:
    """The repository's schemathesis.toml, its hooks' path (the one setting read from the directory
    schemathesis runs in: the repository root) made absolute, so that it runs from `tmp`: no
    .schemathesis or .hypothesis folder is left in the repository."""
    text = (ROOT / "schemathesis.toml").read_text()
    hooks = re.search(r'^hooks = "([^"]+)"$', text, re.MULTILINE).group(1)
    assert (ROOT / hooks).is_file(), hooks
    path = tmp / "schemathesis.toml"
    path.write_text(text.replace(f'"{hooks}"', f'"{(ROOT / hooks).as_posix()}"'))
    return path


def test_the_command_line_finds_no_failures(api):
    """docs/deployment.md's command: every check on every operation, coverage and fuzzing phases."""
    url, schema, _, config = api
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run"]
    options = ["--checks", "all", "--max-examples", str(CLI_EXAMPLES), "--seed", "0", "--workers", "1"]
    done = subprocess.run(
        [*command, *options, f"{url}/openapi.json"], cwd=config.parent, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "No issues found" in done.stdout, done.stdout[-6000:] + done.stderr[-2000:]
    assert f"Tested: {len(list(schema.get_all_operations()))}" in done.stdout, done.stdout[-3000:]


def test_every_check_with_real_images(api):
    from schemathesis import GenerationMode
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    _, schema, images, _ = api
    checks = CHECKS.get_all()
    assert {"positive_data_acceptance", "negative_data_rejection"} <= {c.__name__ for c in checks}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /predict", "POST /feedback", "POST /scan", "POST /explain"}
    for op in operations:
        valid = [op.as_strategy()] + [
            op.as_strategy(body=body, media_type=media) for body, media in _image_bodies(op.label, images)
        ]
        # Valid and invalid requests are drawn apart; GET /health has nothing to get wrong.
        invalid = [op.as_strategy(GenerationMode.NEGATIVE)] if len(op.query) or len(op.body) else []
        for cases in (st.one_of(valid), *invalid):

            @given(case=cases)
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case):
                case.call_and_validate(checks=checks, timeout=30)

            fuzz()


def test_the_hooks_drop_only_what_no_schema_can_say(api):
    """Through the hooks the config loaded: a refusal of bytes that are no image is dropped, of a real
    image kept; an accepted form is dropped when valid as sent, kept when not (an empty image)."""
    from schemathesis.core.failures import AcceptedNegativeData
    from schemathesis.hooks import should_keep_failure
    from schemathesis.openapi.checks import RejectedPositiveData
    from schemathesis.transport.serialization import Binary

    _, schema, images, _ = api
    predict, feedback = schema["/predict"]["POST"], schema["/feedback"]["POST"]
    for body, status, kept in [(b"no image", 415, False), (images[0], 422, True), (b"no image", 400, True)]:
        case = predict.Case(body=Binary(body), media_type="image/png")
        refused = RejectedPositiveData(operation=predict.label, message="", status_code=status, allowed_statuses=[])
        assert should_keep_failure(refused, case, SimpleNamespace(status_code=status)) is kept
    for body, kept in [
        ({"file": Binary(images[0]), "label": "disc", "confidence": []}, False),  # sent as a valid form
        ({"file": Binary(images[0]), "label": "disc", "confidence": [2]}, True),  # sent as 2: over 1
        ({"file": Binary(b""), "label": "disc"}, True),  # an empty image
    ]:
        case = feedback.Case(body=body, media_type="multipart/form-data")
        accepted = AcceptedNegativeData(operation=feedback.label, message="", status_code=200, expected_statuses=[])
        assert should_keep_failure(accepted, case, case.call()) is kept


def _gallery(tmp, data) -> str | None:
    """A gallery of one person enrolled from shape photos taken whole (no face in them: the small
    photos are taken as face crops), or None where the face models are not installed."""
    try:
        import imgclf.faces as F

        model = F.FaceModel()
    except Exception:  # noqa: BLE001 - no dlib or no face models here: fuzz without the route
        return None
    known = tmp / "known" / "shape"
    known.mkdir(parents=True)
    for f in sorted((data / "square").iterdir())[:2]:
        (known / f.name).write_bytes(f.read_bytes())
    F.enrol(known.parent, tmp / "gallery", model=model, verbose=False)
    return str(tmp / "gallery")


def _image_bodies(operation: str, images: list[bytes]) -> list[tuple]:
    """(body, media type) pairs carrying a real image, for the operations that take one."""
    from schemathesis.transport.serialization import Binary  # how schemathesis itself holds bytes

    if operation in ("POST /predict", "POST /scan", "POST /explain", "POST /faces/identify"):
        return [(Binary(image), "image/png") for image in images]
    if operation == "POST /feedback":
        return [
            ({"file": Binary(image), "label": label}, "multipart/form-data")
            for image, label in zip(images, ("square", "a new class"))
        ]
    return []
