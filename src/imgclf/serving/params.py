"""The service's query and form parameters, checked by the rules every training setting is checked by
(imgclf.settings.checks: ranges, finiteness, types). A bad value is a JSON 422 naming the parameter, the
value and what is allowed: the line `imgclf train` prints for a bad flag.

    SCAN = Parameters(iou=Param("NMS IoU", Number(float, 0, 1, low_open=True), default=0.3))

    @app.post("/scan", openapi_extra={"parameters": SCAN.openapi()})
    async def scan(request: Request, q: dict = Depends(SCAN)): ...      # q["iou"] is a checked float

Parameters are read from the raw query string rather than declared as typed FastAPI arguments:
those would be checked by pydantic's rules (and refused with a list of error objects), not ours.
Their OpenAPI description is written from the same rules, so the documentation cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from imgclf.core.errors import UserError
from imgclf.serving.limits import Rejected
from imgclf.settings.checks import Number, check_choice, check_number

CONFIDENCE = Number(float, 0, 1, optional=True)  # POST /feedback's `confidence`: a probability


@dataclass(frozen=True)
class Param:
    description: str
    rule: Number | None = None  # a number's type and range
    choices: tuple = ()  # a fixed set of names; neither: text (a class name, checked by the route)
    default: Any = None
    # The served model's classes, for a class name: the spec's enum. The route checks the value against
    # the model serving the request (check_class), so a hot swap's new classes are not refused here.
    listed: tuple = ()

    def check(self, name: str, raw: str | None):
        if raw is None:
            return self.default
        if self.rule is not None:
            return checked(lambda: check_number(name, raw, self.rule))
        if self.choices:
            return checked(lambda: check_choice(name, raw, self.choices))
        return raw

    def schema(self) -> dict:
        if self.rule is not None:
            r = self.rule
            s = {
                "type": "integer" if r.kind is int else "number",
                "exclusiveMinimum" if r.low_open else "minimum": r.low,
                "exclusiveMaximum" if r.high_open else "maximum": r.high,
            }
        else:
            names = self.choices or self.listed
            s = {"type": "string", **({"enum": list(names)} if names else {})}
        return s if self.default is None else {**s, "default": self.default}


class Parameters:
    """A route's query parameters: a FastAPI dependency answering {name: checked value}, and the
    parameters' OpenAPI description (the route's openapi_extra)."""

    def __init__(self, **params: Param):
        self.params = params

    async def __call__(self, request: Request) -> dict:
        unknown = sorted(set(request.query_params) - set(self.params))
        if unknown:  # a misspelt ?topk=3 would otherwise be ignored, and the schema lists every parameter
            shown = ", ".join(repr(k[:40]) for k in unknown[:5])
            known = ", ".join(self.params) or "none"
            raise Rejected(422, f"unknown query parameter(s) {shown}; this route takes: {known}", "bad_parameter")
        return {name: p.check(name, request.query_params.get(name)) for name, p in self.params.items()}

    def openapi(self) -> list[dict]:
        return [
            {"name": name, "in": "query", "required": False, "description": p.description, "schema": p.schema()}
            for name, p in self.params.items()
        ]


def checked(check):
    """The value `check()` returns; its UserError becomes the 422 answer."""
    try:
        return check()
    except UserError as e:
        raise Rejected(422, str(e), "bad_parameter") from None


def check_class(name: str, value: str | None, classes: list[str]) -> str | None:
    """`value` when it names one of the served model's classes (or is absent), else 422."""
    return value if value is None else checked(lambda: check_choice(name, value, classes))
