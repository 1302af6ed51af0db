"""The HTTP API: request → scorer → response, with one documented error shape.

A FastAPI app mounted into the BentoML service (`service.py`), so that every route's rules,
answers and errors are declared once and published in the OpenAPI schema (`/openapi.json`,
read at `/docs`): the schema states every rule the server enforces (request models in
`schemas.py`; the served model's features, bounds and categories added from the champion), and
every error is RFC 9457 problem details (`problems.py`). Authentication, body limits, content
types, deadlines, security headers and metrics are the middleware's (`middleware.py`).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response

from churn_risk import __version__
from churn_risk.features.io import DataSourceError
from churn_risk.serving import problems
from churn_risk.serving.deadline import DeadlineExceeded
from churn_risk.serving.problems import Problem, ProblemDetails
from churn_risk.serving.schemas import (
    MAX_BATCH,
    MAX_EVENTS,
    EventsRequest,
    EventsResponse,
    ExplainChangeRequest,
    ExplainChangeResponse,
    ExplainRequest,
    ExplainResponse,
    OutcomesRequest,
    OutcomesResponse,
    ScoreRequest,
    ScoreResponse,
)

DESCRIPTION = f"""Churn-risk scores for every CRM channel: each customer's chance of leaving
(the target and its period are stated in every answer), risk band, value, the reasons behind the
risk (SHAP), next products and a recommended action.

**Authentication**: `Authorization: Bearer <API key>` on every route but `/healthz`, `/livez`,
`/readyz`, `/docs` and `/openapi.json` (and `/metrics` when the server was started with
`--public-metrics`). Integrations may have keys of their own (`CHURN_USERS_FILE`, role
`integrator`). People log in at `/login` for the customer pages (a session cookie); a browser
may also use HTTP Basic (any user name, an API key as password).

**Errors**: every error is `application/problem+json` (RFC 9457): `type`, `title`, `status`,
`detail`, `instance` and `errors` (at most {problems.MAX_ERRORS} `{{field, message}}`). The
types are {", ".join("`" + problems.URN + slug + "`" for slug in problems.PROBLEMS)}.

**Roles**: a key may `read` (every route but `/events` and `/outcomes`), `ingest` (only those) or
both, or be `admin`; a key without the role a route needs gets a 403.

**Limits**: at most {MAX_BATCH:,} customers or records per scoring request and {MAX_EVENTS:,}
records per `/events` request; request bodies up to the
server's `--max-body-mb` (413 above); JSON bodies only (415 otherwise); an answer within the
server's deadline (504 otherwise, and the work stops).
"""

# FastAPI's own OpenTelemetry layer (0.16x) turns itself on under BentoML's tracer provider: a
# span per request and per dependency, serialisation and endpoint, the pile-up the service's
# config avoids (`service.SERVICE_CONFIG`). Off, where this FastAPI has it.
_NO_TELEMETRY = ({"telemetry": {"tracing": False, "metrics": False, "logs": False,
                                "operation_spans": False}}
                 if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})

app = FastAPI(
    **_NO_TELEMETRY,
    title="churn-risk",
    version=__version__,
    description=DESCRIPTION,
    docs_url=None,
    redoc_url=None,
    openapi_url="/openapi.json",
    openapi_tags=[
        {"name": "scores", "description": "Scores, reasons and actions for CRM channels"},
        {"name": "pages", "description": "Pages account managers read"},
        {"name": "events", "description": "CRM events into the store (a key with the role "
                                          "ingest)"},
        {"name": "operations", "description": "Readiness and metrics"},
    ],
)


#: The serving state of this worker process (set by the BentoML service when it starts).
_serving: Any = None
#: Its writer to the store (`ingest.Ingestion`): events need no model, only the store.
_ingestion: Any = None


def attach(serving: Any, ingestion: Any = None) -> None:
    global _serving, _ingestion
    _serving, _ingestion = serving, ingestion


def ingestion() -> Any:
    if _ingestion is None:
        raise Problem("not-ready", "the service is starting")
    return _ingestion


def serving() -> Any:
    """The worker's serving state, or a 503 problem saying why it is not ready."""
    if _serving is None:
        raise Problem("not-ready", "the service is starting")
    reason = _serving.not_ready_reason()
    if reason is not None:
        raise Problem("not-ready", reason)
    return _serving


# ------------------------------------------------------------------------------------------------
# Errors: every one a problem


@app.exception_handler(Problem)
async def _problem(request: Request, exc: Problem) -> Response:
    path = request.url.path
    if (path in ("/", "/customers", "/worklist") or path.startswith("/customers/")) and \
            _wants_html(request):
        return _problem_page(exc, request.url.path)
    return problem_response(exc, request.url.path)


@app.exception_handler(DeadlineExceeded)
async def _late(request: Request, exc: DeadlineExceeded) -> Response:
    return problem_response(Problem("timeout", "no answer within the deadline: ask for fewer "
                                               "customers"), request.url.path)


@app.exception_handler(SQLAlchemyError)
@app.exception_handler(DataSourceError)
async def _store_failed(request: Request, exc: Exception) -> Response:
    """The store out of reach is no bug: a 503 asking to retry, and one line in the log. Any
    other failure of the store is (`_bug`). (A handler of these classes, unlike one of
    `Exception`, is the last word: Starlette does not raise the error again after it.)"""
    import logging

    from churn_risk.errors import first_line
    from churn_risk.features.store import unreachable

    if not unreachable(exc):
        return await _bug(request, exc)
    logging.getLogger("churn_risk.serving").warning(
        "%s %s: the store cannot be reached (%s)", request.method, request.url.path,
        first_line(exc))
    return await _problem(request, problems.store_unavailable())


@app.exception_handler(Exception)
async def _bug(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered in the same shape without internals."""
    import logging

    logging.getLogger("churn_risk.serving").exception("%s %s failed", request.method,
                                                      request.url.path, exc_info=exc)
    return problem_response(Problem("internal", "the service failed to answer; the error is "
                                                "logged"), request.url.path)


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/problem+json" not in accept


def _problem_page(problem: Problem, path: str) -> HTMLResponse:
    """The same problem for a person in a browser (a page route asked for HTML)."""
    import html

    body = problem.body(path)
    return HTMLResponse(
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(body['title'])}"
        f"</title><body style='font-family:system-ui;margin:3rem'><h1>"
        f"{html.escape(body['title'])}</h1><p>{html.escape(body['detail'])}</p></body></html>",
        status_code=problem.status, headers=problem.headers or None)


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        at = next(e for e in errors if e.get("type") == "json_invalid")
        where = at.get("ctx", {}).get("error", "")
        return problem_response(Problem("invalid-json", f"the body is not valid JSON ({where})"),
                                request.url.path)
    fields = [{"field": field_name(e["loc"]), "message": message(e)} for e in errors]
    return problem_response(Problem("invalid-request", f"{problems.plural(len(fields), 'field')}"
                                    f" {'is' if len(fields) == 1 else 'are'} invalid", fields),
                            request.url.path)


@app.exception_handler(StarletteHTTPException)
async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "invalid-request")
    detail = (f"no route {request.url.path}" if exc.status_code == 404 else
              f"{request.method} is not allowed on {request.url.path}"
              if exc.status_code == 405 else str(exc.detail))
    return problem_response(Problem(slug, detail, headers=dict(exc.headers or {})),
                            request.url.path)


def problem_response(problem: Problem, path: str) -> Response:
    return Response(problem.encode(path), status_code=problem.status,
                    media_type=problems.MEDIA_TYPE, headers=problem.headers or None)


def field_name(loc: tuple) -> str:
    """('body', 'records', 0, 'tenure_days') -> 'records[0].tenure_days'."""
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def message(error: dict) -> str:
    text = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        return "not a field of this request"
    return text


# ------------------------------------------------------------------------------------------------
# Routes

State = Annotated[Any, Depends(serving)]

SCORE_ERRORS = problems.responses(400, 401, 404, 413, 415, 422, 503, 504)
LOOKUP_ERRORS = problems.responses(400, 401, 404, 413, 415, 422, 503, 504)


def json_response(payload: dict) -> Response:
    """The scorer builds plain JSON-ready dicts in the response models' shape (declared for the
    schema); encoding them directly skips pydantic re-validating ~150 kB per 100 customers."""
    return Response(json.dumps(payload), media_type="application/json")


@app.post("/score", response_model=ScoreResponse, responses=SCORE_ERRORS, tags=["scores"],
          summary="Score customers (by id or what-if records)")
def score(request: ScoreRequest, state: State) -> Response:
    """Chance of leaving (the `target` says within which period), risk band, value, quadrant,
    top reasons, next products and the recommended action per customer; with `channel`, that
    channel's view. Ids not in the loaded snapshot are listed in `unknown_customer_ids`."""
    return json_response(state.score(request))


@app.post("/explain", response_model=ExplainResponse, responses=LOOKUP_ERRORS, tags=["scores"],
          summary="Every feature's contribution to one customer's score")
def explain(request: ExplainRequest, state: State) -> Response:
    """`base_value + sum(contributions) = margin` (log-odds) and `churn_probability =
    calibrate(margin)`; 404 for a customer not in the snapshot."""
    return json_response(state.explain(request))


@app.post("/explain_change", response_model=ExplainChangeResponse, responses=LOOKUP_ERRORS,
          tags=["scores"], summary="Why a customer's risk changed between two dates")
def explain_change(request: ExplainChangeRequest, state: State) -> Response:
    """Features rebuilt as of both dates, both explained, the change split into driver groups
    (they sum to `margin_change`); 404 for an unknown customer, 422 when `to_date` is not after
    `from_date`, a date is after the data end, or the customer was not a customer then."""
    return json_response(state.explain_change(request))


EVENT_ERRORS = problems.responses(400, 401, 403, 409, 413, 415, 422, 503, 504)


@app.post("/events", response_model=EventsResponse, responses=EVENT_ERRORS, tags=["events"],
          summary="Add new CRM records to the store")
def events(request: EventsRequest, writer: Annotated[Any, Depends(ingestion)]) -> Response:
    """Validated by the data contract against the store (a ticket may refer to a stored
    customer; new customers come through `customers`): one bad record rejects the whole batch
    (422 naming each record, column and rule) and nothing of it is stored. Records stored
    before are not stored twice (`already_stored`). The records are committed before the
    answer. Needs a key with the role `ingest` (or `admin`)."""
    return json_response(writer.ingest(request))


@app.post("/outcomes", response_model=OutcomesResponse, responses=EVENT_ERRORS,
          tags=["events"], summary="Report what a channel did with a score given out")
def outcomes(request: OutcomesRequest, writer: Annotated[Any, Depends(ingestion)]) -> Response:
    """Each report quotes a `prediction_id` (from `/score` or a batch row) and says whether the
    customer took or declined the action, by which channel and when, and later whether they
    stayed. Validated all together: one bad report rejects the batch (422 naming
    `records[i].field`, the rule and an example; an unknown prediction id is one) and nothing
    of it is stored; a resend stores nothing (`already_stored`). Committed before the answer.
    A score given out a moment ago may be quoted: scores are logged behind their answers, so
    an id not in the log yet is waited for (this worker's pending entries written, another's
    given their 0.5 s) before it is called unknown. A prediction's outcome is the newest
    report of each field. Success rates learn from them. Needs a key with the role `ingest`
    (or `admin`); a server on files has no log (409)."""
    return json_response(writer.report_outcomes(request, getattr(_serving, "predictions",
                                                                 None)))


@app.api_route("/customers/{customer_id}", methods=["GET", "HEAD"], tags=["pages"],
               response_class=HTMLResponse, summary="A customer's page",
               responses={200: {"content": {"text/html": {}}},
                          **problems.responses(401, 403, 404, 503)})
def customer_page(customer_id: str, state: State, request: Request) -> HTMLResponse:
    """The account manager's page: risk and its period, reasons, value, the recommended action,
    history. A person logs in at `/login` (an account manager sees the customers of their
    portfolio: 403 for others); a key with the role `read` may open it too (HTTP Basic in a
    browser: any user name, the key as password)."""
    return HTMLResponse(state.page(customer_id, viewer=principal(request)))


@app.api_route("/customers", methods=["GET", "HEAD"], tags=["pages"],
               response_class=HTMLResponse, summary="Customers, by value at risk",
               responses={200: {"content": {"text/html": {}}},
                          **problems.responses(401, 403, 422, 503)})
def customer_list(state: State, request: Request, quadrant: str | None = None,
                  risk_band: str | None = None, segment: str | None = None,
                  region: str | None = None, recommended_action: str | None = None,
                  q: str = "", page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    """The customers of the viewer's portfolio with these values (a quadrant of the risk
    matrix, a risk band, a segment, a region, an action), the largest value at risk first, 50
    a page; `q`: ids starting with it (an exact id opens that customer's page)."""
    from urllib.parse import quote

    filters = {"quadrant": quadrant, "risk_band": risk_band, "segment": segment,
               "region": region, "recommended_action": recommended_action}
    query = q.strip()
    if query and not any(filters.values()) and state.knows(query):
        return RedirectResponse(f"/customers/{quote(query, safe='')}", status_code=303)
    return HTMLResponse(state.customers(principal(request), filters, query, page))


@app.api_route("/worklist", methods=["GET", "HEAD"], tags=["pages"],
               response_class=HTMLResponse, summary="A channel's worklist of today",
               responses={200: {"content": {"text/html": {}}},
                          **problems.responses(401, 403, 422, 503)})
def worklist_page(state: State, request: Request, channel: str | None = None,
                  budget: Annotated[float, Query(ge=0, le=1e12)] = 5_000.0,
                  capacity: Annotated[int, Query(ge=0, le=5_000)] = 50,
                  gap: Annotated[int, Query(ge=0, le=365)] = 30) -> HTMLResponse:
    """Whom a channel contacts today, with what: each customer's best action of the channel
    that pays, the most expected profit first, within `budget` and `capacity`, none contacted
    in the last `gap` days by a campaign or by an action a channel reported (the engine of
    `churn worklist`). For a retention lead (or an admin)."""
    return HTMLResponse(state.worklist(principal(request), channel, budget, capacity, gap))


@app.get("/search", include_in_schema=False)
def search(q: str = "") -> RedirectResponse:
    """The search box's old address: the customer list searches (`/customers?q=`)."""
    from urllib.parse import urlencode

    return RedirectResponse("/customers" + (f"?{urlencode({'q': q})}" if q else ""),
                            status_code=303)


def principal(request: Request):
    """Who sent the request (`people.Principal`, set by the middleware)."""
    return getattr(request.state, "principal", None)


# ------------------------------------------------------------------------------------------------
# Logging in and out (people.py): a form, a signed session cookie

#: The largest login form accepted.
MAX_FORM_BYTES = 4096


@app.get("/login", include_in_schema=False)
def login_form(next: str = "/") -> HTMLResponse:  # noqa: A002 - the query parameter's name
    from churn_risk.serving.page import render_login

    return HTMLResponse(render_login(safe_next(next)))


@app.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Check the user name and password (Argon2, off the event loop); 303 to `next` with a
    session cookie, or the form again with a 401."""
    from urllib.parse import parse_qs

    from starlette.concurrency import run_in_threadpool

    from churn_risk.serving import middleware, people
    from churn_risk.serving.page import render_login
    from churn_risk.serving.service import SETTINGS

    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Problem("payload-too-large", f"a login form is at most {MAX_FORM_BYTES} bytes")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    name, password = form.get("user", "").strip(), form.get("password", "")
    target = safe_next(form.get("next", "/"))
    everyone = middleware.settings_people(SETTINGS) if SETTINGS is not None else None
    if not isinstance(everyone, people.People) or not everyone.users:
        raise Problem("not-found", "this server has no users to log in (CHURN_USERS_FILE); use "
                                   "an API key")
    user = everyone.users.get(name)
    audit = middleware.audit_log(SETTINGS)
    address = request.client.host if request.client is not None else "?"
    attempts = middleware.LOGIN_ATTEMPTS
    wait = attempts.attempt(name, address)
    if wait > 0:  # the password is not even checked: guessing on learns nothing
        audit.write(name or None, "login_failed", 429)
        minutes = max(1, round(wait / 60))
        return HTMLResponse(render_login(
            target, f"Too many wrong passwords: try again in {minutes} minute"
                    f"{'' if minutes == 1 else 's'}.", name),
            status_code=429, headers={"Retry-After": str(int(wait) + 1)})
    if not await run_in_threadpool(people.check_password, user, password):
        audit.write(name or None, "login_failed", 401)
        return HTMLResponse(render_login(target, "Wrong user name or password.", name),
                            status_code=401)
    attempts.succeeded(name, address)
    audit.write(user.principal(session=True), "login", 303)
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(people.SESSION_COOKIE, middleware.sessions(SETTINGS).issue(user),
                      max_age=people.SESSION_SECONDS, path="/", httponly=True, samesite="lax",
                      secure=request.url.scheme == "https")
    return answer


@app.post("/logout", include_in_schema=False)
def logout(request: Request) -> Response:
    from churn_risk.serving import middleware, people
    from churn_risk.serving.service import SETTINGS

    if SETTINGS is not None:
        everyone = middleware.settings_people(SETTINGS)
        if isinstance(everyone, people.People) and everyone.users:
            cookie = request.cookies.get(people.SESSION_COOKIE)
            user = middleware.sessions(SETTINGS).user_of(cookie, everyone)
            if user is not None:
                middleware.sessions(SETTINGS).end(cookie)
                middleware.audit_log(SETTINGS).write(user.principal(True), "logout", 303)
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(people.SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return answer


def safe_next(target: str) -> str:
    """Where to go after logging in: a path of this server only (never another site)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
         responses={200: {"content": {"text/plain": {}}}, **problems.responses(401)})
def metrics() -> Response:
    """Requests by route template and status, scores by model version and channel, the score
    distribution and the champion in service; no customer data. Behind the key unless the
    server was started with `--public-metrics`."""
    from churn_risk.serving.metrics import CONTENT_TYPE, render

    return Response(render(), media_type=CONTENT_TYPE)


# ------------------------------------------------------------------------------------------------
# Documentation, served from this machine (the Swagger UI files BentoML ships)

_SWAGGER = Path(__import__("bentoml").__file__).parent / "_internal/server/static_content"
app.mount("/docs/assets", StaticFiles(directory=_SWAGGER), name="docs-assets")


@app.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title="churn-risk API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon-light-32x32.png")


@app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
def home(state: State, request: Request) -> HTMLResponse:
    """The portfolio home: the risk matrix and bands of the viewer's portfolio, each a link to
    its customers, and the customers with most value at risk (the API is documented at
    /docs)."""
    return HTMLResponse(state.home(viewer=principal(request)))


def openapi() -> dict:
    """The schema, with the security schemes, the problem shape and the served model's record
    rules (feature names, bounds, category levels) added."""
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes, tags=app.openapi_tags)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["ProblemDetails"] = ProblemDetails.model_json_schema(
        ref_template="#/components/schemas/{model}")
    for name, sub in ProblemDetails.model_json_schema(
            ref_template="#/components/schemas/{model}").get("$defs", {}).items():
        components["schemas"][name] = sub
    components["schemas"]["ProblemDetails"].pop("$defs", None)
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
        "basic": {"type": "http", "scheme": "basic",
                  "description": "any user name, the API key as password (browsers)"},
    }
    schema["security"] = [{"bearer": []}, {"basic": []}]
    state = _serving
    if state is not None and state.ready:
        _replace_records(schema, state.record_schema())
        _real_examples(schema, state.examples())
    return schema


def _real_examples(schema: dict, examples: dict) -> None:
    """Examples that work on this server (a customer of the snapshot, dates it can explain),
    so the documentation's "try it" and contract tests reach the scoring itself."""
    components = schema["components"]["schemas"]
    customer = examples["customer_id"]
    components["ScoreRequest"]["examples"] = [
        {"customer_ids": [customer], "channel": "contact_center", "top_k": 3},
        {"records": [{"customer_id": customer}]}]
    components["ExplainRequest"]["examples"] = [{"customer_id": customer},
                                                {"record": {"customer_id": customer}}]
    change = components["ExplainChangeRequest"]["properties"]
    change["from_date"]["examples"] = [examples["from_date"]]
    change["to_date"]["examples"] = [examples["to_date"]]
    change["customer_id"] = {**change["customer_id"], "examples": [customer]}
    page = schema["paths"]["/customers/{customer_id}"]
    for operation in page.values():
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "customer_id":
                parameter["schema"]["examples"] = [str(customer)]
                parameter["example"] = str(customer)


def _replace_records(schema: dict, record: dict) -> None:
    """Point every what-if record at the served model's record schema."""
    schema["components"]["schemas"]["FeatureRecord"] = record
    ref = {"$ref": "#/components/schemas/FeatureRecord"}
    for name in ("ScoreRequest", "ExplainRequest"):
        properties = schema["components"]["schemas"][name]["properties"]
        if name == "ScoreRequest":
            properties["records"]["items"] = ref
        else:
            properties["record"] = {**ref, "description": "a what-if record"}


app.openapi = openapi  # type: ignore[method-assign]
