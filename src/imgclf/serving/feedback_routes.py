"""POST /feedback: a user says what an image really shows; the image goes to the feedback inbox
(imgclf.store.inbox: INBOX/<label>/<sha256>.<ext> plus a record in INBOX/feedback.jsonl), where
`imgclf update --from-inbox` picks it up.

    curl -F file=@photo.jpg -F label=tulip http://localhost:8000/feedback
    curl -d prediction_id=3f2a...-1763859723123 -d label=tulip http://localhost:8000/feedback   # a logged image
    -> {"sha256": "...", "label": "tulip", "known_class": true, "path": "tulip/<sha256>.jpg"}

The model's earlier answer is recorded with it: from the prediction log when `prediction_id` names
a logged prediction, else from the optional `predicted` and `confidence` fields the page sends.
Labels and text fields are checked by serving.fields; on a keyless service only the service's own
page may post here from a browser (serving.guards).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from imgclf.core.errors import UserError
from imgclf.serving import fields
from imgclf.serving.limits import IMAGE as ANY_IMAGE
from imgclf.serving.limits import Rejected, request_body
from imgclf.store import inbox

FIELDS = ("file", "label", "who", "predicted", "confidence")
IMAGE = {**ANY_IMAGE, "description": "the image"}
IMAGE_TYPES = "image/jpeg, image/png, image/webp, image/gif, image/bmp, image/tiff"


def feedback_body(plog, classes: list[str]) -> dict:
    """The form as the route checks it, for this service's prediction log `plog`: the image as a
    multipart file part; with a log, a prediction_id may name the logged answer; where the log keeps
    images, a urlencoded form with the id alone stands for the image (two media types rather than an
    anyOf, which schema fuzzers misread)."""
    text = {
        "label": fields.label_schema(classes),
        "who": fields.TEXT_SCHEMA,
        "predicted": fields.TEXT_SCHEMA,
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    }
    if plog is not None:
        text["prediction_id"] = {
            "type": "string",
            "pattern": fields.PREDICTION_ID_PATTERN,
            "description": "id of a logged prediction: its answer is recorded with the feedback",
        }
    form = {"type": "object", "properties": {"file": IMAGE, **text}, "required": ["file", "label"]}
    content = {
        "multipart/form-data": {
            "schema": {**form, "additionalProperties": False},
            "encoding": {"file": {"contentType": IMAGE_TYPES}},
        }
    }
    if by_id(plog):
        by_ref = {"type": "object", "properties": text, "required": ["prediction_id", "label"]}
        content["application/x-www-form-urlencoded"] = {"schema": {**by_ref, "additionalProperties": False}}
    return {"required": True, "content": content}


def by_id(plog) -> bool:
    """Whether a prediction_id can stand for the image: the log keeps the uploaded images."""
    return plog is not None and plog.keep_images


def register(app: FastAPI, holder, settings, guarded: list, plog=None) -> None:
    folder = settings.inbox or str(inbox.default_inbox(run=holder.model.path))

    @app.post(
        "/feedback",
        summary="Give the right label for an image (stored in the feedback inbox)",
        dependencies=guarded,
        openapi_extra={"requestBody": feedback_body(plog, list(holder.model.classes))},
        responses={
            400: {"description": "no image or prediction_id"},
            403: {"description": "a cross-site post to a keyless service"},
            404: {"description": "unknown prediction_id"},
            413: {"description": "body over the limit"},
            415: {"description": "not a form body"},
            422: {
                "description": "bad label, a text field too long, a confidence not in [0, 1], or an unreadable image"
            },
        },
    )
    async def feedback(request: Request):
        served = holder.current
        body = await request_body(request, settings.max_upload_bytes)
        form, multipart = await _form(request, body, by_id(plog))
        names = (FIELDS if multipart else FIELDS[1:]) + (("prediction_id",) if plog else ())
        fields.known(form, names)
        label = fields.label(form.get("label"), served.model.classes)
        who = fields.text(form, "who")
        data, previous, pid = await _image_and_previous(form, multipart, plog, served)
        try:
            rec = await run_in_threadpool(
                inbox.add,
                folder,
                data,
                label,
                classes=list(served.model.classes),
                who=who,
                previous=previous,
                source="serve",
                prediction_id=pid,
            )
        except UserError as e:
            raise Rejected(422, str(e), "corrupt") from e
        return {k: rec[k] for k in ("sha256", "label", "known_class", "path")}


async def _form(request: Request, body: bytes, urlencoded: bool):
    """The form of an already size-checked body, and whether it is multipart (else urlencoded: a
    prediction_id and no image, taken where `urlencoded`)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = kind == "multipart/form-data"
    if not (multipart or (urlencoded and kind == "application/x-www-form-urlencoded")):
        raise Rejected(
            415,
            "send the feedback as multipart/form-data: curl -F file=@photo.jpg -F label=LABEL"
            + (
                " (or urlencoded with a logged prediction's id: curl -d prediction_id=ID -d label=LABEL)"
                if urlencoded
                else ""
            ),
            "unsupported",
        )

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, receive).form(max_files=2, max_fields=10), multipart
    except Exception as e:  # noqa: BLE001 - starlette raises several types on a bad body
        raise Rejected(400, f"malformed form body: {e}", "malformed") from e


async def _image_and_previous(form, multipart: bool, plog, served) -> tuple[bytes, dict | None, str | None]:
    """The image bytes, the model's earlier answer and the prediction id: from the file part of a
    multipart form (required there, as documented), or from the log for a urlencoded id."""
    pid = fields.prediction_id(form)
    confidence = fields.confidence(form)  # checked even when unused: nan or 7 is a client's bug to hear of
    upload = form.get("file")
    found = await run_in_threadpool(plog.find, pid) if (plog and pid) else None
    if isinstance(upload, UploadFile):
        data = await upload.read()
    elif multipart:
        raise Rejected(
            400,
            "no image: send a 'file' part (curl -F file=@photo.jpg -F label=LABEL)"
            + (
                ", or a logged prediction's id urlencoded (curl -d prediction_id=ID -d label=LABEL)"
                if by_id(plog)
                else ""
            ),
            "malformed",
        )
    elif pid:  # a urlencoded form: only taken where the log keeps images
        if found is None:
            raise Rejected(404, f"no logged prediction {pid!r}: send the image as the 'file' part", "not_found")
        if found[1] is None:
            raise Rejected(
                400,
                f"prediction {pid!r} was logged without its image (--log-images hash); "
                "send the image as the 'file' part",
                "malformed",
            )
        data = found[1]
    else:
        raise Rejected(
            400,
            "no image: give the 'prediction_id' of a logged prediction, or post the image as multipart/form-data "
            "(curl -F file=@photo.jpg -F label=LABEL)",
            "malformed",
        )
    if not data:
        raise Rejected(400, "the image is empty (0 bytes)", "empty")
    if found is not None:
        rec = found[0]
        previous = {
            "label": rec["label"],
            "confidence": rec["confidence"],
            "model": rec["model"],
            "version": rec["version"],
        }
    elif fields.text(form, "predicted"):
        previous = {
            "label": fields.text(form, "predicted"),
            "confidence": confidence,
            "model": served.info["name"],
            "version": served.version,
        }
    else:
        previous = None
    return data, previous, pid
