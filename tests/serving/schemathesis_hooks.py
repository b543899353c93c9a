"""Schemathesis hooks for fuzzing `imgclf serve` (loaded by schemathesis.toml, at the repository root,
for `schemathesis run` there and for tests/serving/test_schemathesis.py): the three judgements of
`--checks all` that no OpenAPI schema can settle are made here, each on the request actually sent.

- positive_data_acceptance: a request the schema allows is refused with 415 or 422 because an image
  in it does not decode. A binary string allows any bytes, and random bytes are hardly ever an image;
  "decodes as an image" is not something a schema can say. The refusal is dropped only when the
  request carried an image that Pillow (the service's decoder) cannot open and load.
- positive_data_acceptance: POST /scan refuses (422) `tiles`, a detector's option, in a scan by the crop
  model (`positive` given, or the run's own class to find), as `imgclf scan` does: OpenAPI describes
  each query parameter on its own, so "this one only without that one" is no schema's to say. Dropped
  only for that refusal of a request that did send `tiles`.
- negative_data_rejection: a form (multipart or urlencoded) whose field had its type changed was
  accepted, though what went over the wire is a valid form: forms carry text, so `confidence` made
  a one-item array is sent as the same text, an empty array as no field at all. Schemathesis drops
  these itself (its `_form_body_is_valid_as_sent`) except when the form has a file part, which its
  validator cannot read; here the file parts are read as the non-empty strings they are on the wire.

Every other failure of these checks, and every failure of the other checks, is kept.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.openapi.checks import RejectedPositiveData

IMAGE_REFUSALS = (415, 422)  # the spec's "not an image" / "corrupt or truncated image" answers
FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
# Refusals of query parameters each valid alone but not together: (operation, parameter, the refusal's start).
COMBINATIONS = [("POST /scan", "tiles", "tiles is an option of the detector")]


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Whether to keep `failure`: False only for the two judgements above."""
    if isinstance(failure, RejectedPositiveData):
        if response.status_code in IMAGE_REFUSALS and any(not _decodes(b) for b in _binaries(case.body)):
            return False
        return not (response.status_code == 422 and _combination_refused(case, response))
    if isinstance(failure, AcceptedNegativeData):
        return not _form_valid_as_sent(case, response)
    return True


def _combination_refused(case, response) -> bool:
    try:
        detail = str(response.json().get("detail", ""))
    except Exception:  # noqa: BLE001 - not the service's JSON refusal
        return False
    query = case.query or {}
    return any(
        case.operation.label == op and name in query and detail.startswith(start) for op, name, start in COMBINATIONS
    )


def _binaries(value):
    """The bytes of every binary value (a raw body, file parts) in a generated body."""
    if isinstance(value, (bytes, bytearray)):
        yield bytes(value)
    elif hasattr(value, "data") and isinstance(value.data, (bytes, bytearray)):  # schemathesis' Binary
        yield bytes(value.data)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _binaries(v)
    elif isinstance(value, list):
        for v in value:
            yield from _binaries(v)


def _decodes(data: bytes) -> bool:
    try:
        from PIL import Image
    except ImportError:  # no decoder to judge with: keep the failure
        return True
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception:  # noqa: BLE001 - Pillow raises many types for bytes that are not an image
        return False
    return True


def _form_valid_as_sent(case, response) -> bool:
    """Schemathesis' own test of a form as sent, with its file parts given as the strings they are."""
    media = (case.media_type or "").split(";")[0].strip().lower()
    if media not in FORMS or not isinstance(case.body, dict):
        return False
    try:
        from schemathesis.specs.openapi.checks import _form_body_is_valid_as_sent
    except ImportError:  # another schemathesis: keep the failure
        return False
    # It reads the case's body and operation only; a Case itself will not be copied.
    as_text = SimpleNamespace(body={k: _as_text(v) for k, v in case.body.items()}, operation=case.operation)
    return _form_body_is_valid_as_sent(response, as_text, media)


def _as_text(value):
    """A file part as the validator can read it: a string as long as its bytes."""
    data = next(_binaries(value), None) if not isinstance(value, (dict, list)) else None
    if data is None:
        return [_as_text(v) for v in value] if isinstance(value, list) else value
    return "x" * len(data)
