"""One error shape for every error of every route: RFC 9457 problem details.

Every 4xx and 5xx the service sends is `application/problem+json`:

    {"type": "urn:churn-risk:problem:invalid-request", "title": "The request does not follow
     the schema", "status": 422, "detail": "2 fields are invalid", "instance": "/score",
     "errors": [{"field": "top_k", "message": "Input should be less than or equal to 100"}]}

`type` names the kind of problem (`PROBLEMS`, listed in the API documentation); `errors` names
each offending field (at most `MAX_ERRORS`, then one entry saying how many more). Messages never
echo request values back beyond a short sample, and never show internals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

MEDIA_TYPE = "application/problem+json"
#: Field errors listed in one answer; the rest are counted.
MAX_ERRORS = 20
#: Characters of a request value quoted back in a message.
MAX_QUOTE = 40
URN = "urn:churn-risk:problem:"

#: slug -> (status, title): every kind of problem the service answers with.
PROBLEMS: dict[str, tuple[int, str]] = {
    "invalid-json": (400, "The body is not valid JSON"),
    "unauthorized": (401, "A valid API key is needed"),
    "forbidden": (403, "The API key lacks the role this route needs"),
    "no-store": (409, "This server reads files, not a store"),
    "not-found": (404, "No such resource"),
    "unknown-customer": (404, "No such customer"),
    "method-not-allowed": (405, "Method not allowed on this resource"),
    "payload-too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "The body must be JSON"),
    "invalid-request": (422, "The request does not follow the schema"),
    "invalid-record": (422, "A record cannot be scored"),
    "invalid-dates": (422, "The dates cannot be compared"),
    "invalid-events": (422, "Records break the data contract"),
    "invalid-outcomes": (422, "Outcome reports break a rule"),
    "not-a-customer": (422, "Not a customer at that date"),
    "not-ready": (503, "The service is not ready"),
    "store-unavailable": (503, "The store cannot be reached"),
    "timeout": (504, "The request took too long"),
    "internal": (500, "Internal error"),
}


class FieldError(BaseModel):
    field: str = Field(description="where, e.g. records[0].tenure_days or body", examples=["top_k"])
    message: str = Field(examples=["Input should be less than or equal to 100"])


class ProblemDetails(BaseModel):
    """RFC 9457 problem details: the body of every error answer."""

    type: str = Field(description="the kind of problem, one of the documented urn:churn-risk:"
                                  "problem:<slug> names", examples=[URN + "invalid-request"])
    title: str = Field(examples=["The request does not follow the schema"])
    status: int = Field(ge=400, le=599, examples=[422])
    detail: str = Field(examples=["1 field is invalid"])
    instance: str | None = Field(default=None, description="the path of the request",
                                 examples=["/score"])
    errors: list[FieldError] = Field(default_factory=list, max_length=MAX_ERRORS + 1)


@dataclass
class Problem(Exception):
    """An error answer; raise it anywhere in a request."""

    slug: str
    detail: str
    errors: list[dict] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.slug not in PROBLEMS:
            raise ValueError(f"unknown problem type {self.slug!r}")
        super().__init__(self.detail)

    @property
    def status(self) -> int:
        return PROBLEMS[self.slug][0]

    def body(self, instance: str | None = None) -> dict:
        status, title = PROBLEMS[self.slug]
        errors = [{"field": str(e["field"]), "message": str(e["message"])}
                  for e in self.errors[:MAX_ERRORS]]
        if len(self.errors) > MAX_ERRORS:
            errors.append({"field": "(more)",
                           "message": f"{len(self.errors) - MAX_ERRORS} more errors not listed"})
        return {"type": URN + self.slug, "title": title, "status": status, "detail": self.detail,
                "instance": instance, "errors": errors}

    def encode(self, instance: str | None = None) -> bytes:
        return json.dumps(self.body(instance)).encode()


#: Seconds a client is asked to wait (`Retry-After`) while the store cannot be reached.
STORE_RETRY_SECONDS = 5


def store_unavailable() -> Problem:
    """The answer while the store is down or busy: a 503 that says to retry, and when. It never
    names the store's URL (which may hold a password); the server's log says what failed."""
    return Problem("store-unavailable", "the store cannot be reached just now: retry in "
                   f"{STORE_RETRY_SECONDS} s (events and outcomes sent again are stored once)",
                   headers={"Retry-After": str(STORE_RETRY_SECONDS)})


def quote(value: object) -> str:
    """A request value as it may appear in a message: short, never the whole payload."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 1] + "…"


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


async def send_problem(send, problem: Problem, path: str | None,
                       extra_headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Send `problem` as a complete ASGI response (for middleware, before any route)."""
    body = problem.encode(path)
    headers = [(b"content-type", MEDIA_TYPE.encode()),
               (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"),
               *[(k.lower().encode(), v.encode()) for k, v in problem.headers.items()],
               *extra_headers]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` entries for error statuses: the problem schema and an example."""
    out: dict[int | str, dict] = {}
    for status in statuses:
        kinds = [slug for slug, (s, _) in PROBLEMS.items() if s == status]
        example = Problem(kinds[0], "…").body("/…")
        out[status] = {
            "description": "; ".join(PROBLEMS[k][1] for k in kinds)
            + " (type " + ", ".join(URN + k for k in kinds) + ")",
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"},
                                     "example": example}},
        }
    return out
