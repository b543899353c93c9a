"""The service's OpenAPI schema, fuzzed by Schemathesis (issue 19): every operation of a real server
over a tiny trained run gets requests generated from what /openapi.json documents, valid and not.
No answer may be a 5xx, and every answer's status and content type must be one the schema documents.
The operations whose schema states their whole rule (issue 37) pass every check Schemathesis has:
a valid request is accepted and an invalid one refused. Two of its judgements are set aside, each
for a reason no schema can change: bytes that are not an image are refused though a binary string
allows any (the schema cannot say "decodes as an image"), and a form field whose type was changed
is sent as the same text (multipart and urlencoded carry text only).

Bounded (EXAMPLES valid and EXAMPLES invalid requests an operation, no shrinking) to take seconds,
beside the tiny run's training, which the other service tests share. Skipped when schemathesis is not
installed (pip install -e ".[test]"). Its pytest integration (schema.parametrize) is not used: its
fixture-loaded schemas fail with pytest 9.2 (schemathesis 4.32); plain Hypothesis over each
operation's strategy does the same."""

from __future__ import annotations

import re

import pytest
from helpers import trained_run

import imgclf

schemathesis = pytest.importorskip("schemathesis")
serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
# After the skip: Hypothesis comes with schemathesis.
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture

EXAMPLES = 40  # per operation, valid and invalid each: a few hundred requests in all


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """(the loaded schema of a live server, real images to send it)."""
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
    with serving.BackgroundServer(serving.create_app(imgclf.load(run), settings_)) as url:
        yield (
            schemathesis.openapi.from_url(f"{url}/openapi.json"),
            [(data / cls / f"{cls}_000.png").read_bytes() for cls in ("square", "disc")],
        )


# Operations checked with every check; the others (scan, explain, faces) with those that held before.
EXACT = {"GET /", "GET /health", "GET /model", "GET /metrics", "POST /predict", "POST /feedback"}
NOT_AN_IMAGE = re.compile(r"not an image|not a readable image|unreadable|empty|truncated|corrupt")


def _all_checks() -> list:
    from schemathesis.checks import CHECKS, load_all_checks
    from schemathesis.core.mutations import OperatorKind
    from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

    load_all_checks()

    def images_accepted(ctx, response, case):
        try:
            return positive_data_acceptance(ctx, response, case)
        except AssertionError:  # schemathesis' failures are AssertionErrors
            if response.status_code in (400, 415, 422) and NOT_AN_IMAGE.search(response.text):
                return None
            raise

    def invalid_refused(ctx, response, case):
        try:
            return negative_data_rejection(ctx, response, case)
        except AssertionError:
            mutations = getattr(getattr(case.meta.phase, "data", None), "mutations", ()) if case.meta else ()
            form = (case.media_type or "").startswith(("multipart/form-data", "application/x-www-form-urlencoded"))
            if form and mutations and all(m.operator == OperatorKind.CHANGE_TYPE for m in mutations):
                return None
            raise

    plain = [c for c in CHECKS.get_all() if c not in (positive_data_acceptance, negative_data_rejection)]
    return [*plain, images_accepted, invalid_refused]


def test_no_server_errors_and_only_documented_answers(api):
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    schema, images = api
    some = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    every = _all_checks()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /predict", "POST /feedback", "POST /scan", "POST /explain"}
    for op in operations:
        checks = every if op.label in EXACT else some
        # Random bytes are hardly ever an image: requests with real ones too, so that classifying,
        # explaining, scanning and storing feedback are fuzzed as well as the refusals.
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
