"""What every request goes through before a route: the service's one ASGI middleware.

In order: health and readiness answers (open), authentication (401 problem; nothing in the
environment turns it off, and `--insecure-dev` only holds on a loopback address), JSON bodies
only (415) of at most `max_body_bytes` (413, counted as the body streams in, whatever
`Content-Length` claims), a deadline (504 problem, and the work stops: `deadline.py`), security
headers and `Cache-Control: no-store` on every answer, metrics by route template (never the raw
path, which may hold a customer id), and one INFO line per 4xx without request values.
BentoML's own index and schema routes are answered here too (the API's documentation is
`/docs`), so the documentation and its assets are consistently open.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import time

from churn_risk.serving import auth, deadline
from churn_risk.serving import people as people_module
from churn_risk.serving.people import Principal
from churn_risk.serving.problems import MEDIA_TYPE, Problem, send_problem

logger = logging.getLogger("churn_risk.serving")

#: Answered without a key.
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/docs", "/openapi.json", "/login",
                        "/logout"})
OPEN_PREFIXES = ("/docs/assets/",)
#: BentoML's own documentation routes, superseded by /docs.
BENTOML_DOCS = frozenset({"/docs.json", "/schema.json"})
BENTOML_DOCS_PREFIXES = ("/static_content/", "/assets/")
#: Route templates for metrics and logs (a raw path may hold a customer id).
TEMPLATES = ((re.compile(r"^/customers/[^/]+$"), "/customers/{customer_id}"),)
#: Routes that take a JSON body (others answer 405 to a POST: the router's).
BODY_ROUTES = frozenset({"/score", "/explain", "/explain_change", "/events", "/outcomes"})
KNOWN = frozenset({"/score", "/explain", "/explain_change", "/events", "/outcomes", "/metrics",
                   "/healthz", "/livez", "/readyz", "/docs", "/openapi.json", "/", "/login",
                   "/logout", "/customers", "/worklist", "/search"})
#: The permission a route needs (`auth.ROLES`, `people.ROLES`); every other route needs `read`.
ROUTE_ROLES = {"/events": "ingest", "/outcomes": "ingest", "/customers/{customer_id}": "pages",
               "/": "pages", "/customers": "pages", "/worklist": "worklists",
               "/search": "pages"}
CUSTOMER_PAGE = "/customers/{customer_id}"
#: Routes a person opens in a browser: without a session they are sent to /login.
PAGE_ROUTES = frozenset({"/customers/{customer_id}", "/", "/customers", "/worklist",
                         "/search"})
#: Routes answering a person with HTML, errors included (pages' security headers).
HTML_ROUTES = PAGE_ROUTES | {"/login"}
JSON_TYPE = re.compile(r"^application/([a-z0-9.+-]+\+)?json\s*(;.*)?$", re.IGNORECASE)

PAGE_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; "
                                 b"img-src 'self' data:; frame-ancestors 'none'; "
                                 b"base-uri 'none'; form-action 'self'"),
]
DOCS_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 b"script-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                 b"frame-ancestors 'none'"),
]
COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def route_of(path: str) -> str:
    """The route template of a path, for metrics and logs."""
    if path in KNOWN:
        return path
    if path.startswith("/docs/assets/"):
        return "/docs/assets/{file}"
    for pattern, template in TEMPLATES:
        if pattern.match(path):
            return template
    return "(other)"


def loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ServiceMiddleware:
    """See the module doc. `settings`, `serving` and `metrics` are looked up per request from
    the service module (set when the worker starts)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from churn_risk.serving import metrics, service

        path = scope["path"]
        route = route_of(path)
        started = time.perf_counter()
        status = {"code": 0}

        replaced = {"start": None}

        async def send_tracked(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                if status["code"] >= 400 and not _is_problem(headers) and not (
                        route in HTML_ROUTES and _is_html(headers)):
                    replaced["start"] = message  # an error in another shape: made a problem
                    return
                message = {**message, "headers": _secured(headers, route)}
            elif replaced["start"] is not None:
                if not message.get("more_body", False):
                    await self._as_problem(replaced["start"], path, send, route)
                return
            await send(message)

        try:
            await self._handle(scope, receive, send_tracked, route, service)
        finally:
            code = status["code"] or 500
            metrics.observe_request(route if code != 401 else "(unauthorized)", scope["method"],
                                    code, time.perf_counter() - started)
            if 400 <= code < 500:
                logger.info("%s %s %d", scope["method"], route, code)
            who = (scope.get("state") or {}).get("principal")
            if route == CUSTOMER_PAGE and who is not None:
                _audit(service.SETTINGS, who, "page", code, path)

    @staticmethod
    async def _as_problem(start, path, send, route) -> None:
        """Send an error response someone else made (BentoML's router, a server internal) as
        the one documented shape, keeping its status and `Allow` header."""
        code = start["status"]
        slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large",
                415: "unsupported-media-type", 503: "not-ready", 504: "timeout"}.get(
            code, "internal" if code >= 500 else "invalid-request")
        detail = f"no route {path}" if code == 404 else "the request cannot be answered"
        body = Problem(slug, detail).body(path)
        body["status"] = code
        payload = json.dumps(body).encode()
        allow = [(k, v) for k, v in start.get("headers", []) if k.lower() == b"allow"]
        headers = [(b"content-type", MEDIA_TYPE.encode()),
                   (b"content-length", str(len(payload)).encode()), *allow]
        await send({"type": "http.response.start", "status": code,
                    "headers": _secured(headers, route)})
        await send({"type": "http.response.body", "body": payload})

    async def _handle(self, scope, receive, send, route, service):
        path = scope["path"]
        settings = service.SETTINGS
        if path == "/readyz":
            return await _readyz(send, service.SERVING)
        if path in ("/healthz", "/livez"):
            return await self.app(scope, receive, send)
        if path in BENTOML_DOCS or path.startswith(BENTOML_DOCS_PREFIXES):
            return await send_problem(send, Problem("not-found", f"no route {path}; the API is "
                                                    "documented at /docs"), path)
        public = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or (
            path == "/metrics" and settings is not None and settings.options.public_metrics)
        if not public:
            who = _authenticate(scope, settings, ROUTE_ROLES.get(route, "read"))
            if isinstance(who, Problem):
                if route == CUSTOMER_PAGE:
                    _audit(settings, _principal_of(scope, settings), "denied", who.status,
                           path)
                if route in PAGE_ROUTES and who.status == 401 and _login_page_wanted(scope,
                                                                                     settings):
                    query = scope.get("query_string", b"").decode("latin-1")
                    return await _to_login(send, f"{path}?{query}" if query else path)
                extra = ([(b"www-authenticate", b'Basic realm="churn-risk"')]
                         if route in PAGE_ROUTES else
                         [(b"www-authenticate", b'Bearer realm="churn-risk"')])
                return await send_problem(send, who, path, extra)
            scope.setdefault("state", {})["principal"] = who
        if scope["method"] == "POST" and path in BODY_ROUTES:
            problem = _bad_content_type(scope)
            if problem is not None:
                return await send_problem(send, problem, path)
            limit = settings.max_body_bytes if settings is not None else 4 * 1024 * 1024
            try:
                receive = await _capped(scope, receive, limit)
            except Problem as problem:
                return await send_problem(send, problem, path)
        seconds = settings.request_timeout if settings is not None else 2.5
        await _with_deadline(self.app, scope, receive, send, seconds)


def _authenticate(scope, settings, needed: str) -> Principal | Problem:
    """Who the request comes from (`people.Principal`), or the problem: 401 without valid
    credentials (a key of `CHURN_API_KEYS`, an integration's key, or a browser session), 403
    when they may not do what the route needs."""
    if settings is None:
        return Problem("not-ready", "the service is starting")
    keys, people = settings_keys(settings), settings_people(settings)
    for problem in (keys, people):
        if isinstance(problem, Problem):
            return problem
    if keys is None and not people:  # --insecure-dev: loopback only
        host = (scope.get("server") or (None,))[0]
        if not loopback(host):
            return Problem("not-ready", "started with --insecure-dev but listening on a "
                                        "non-loopback address: refused")
        return Principal("local demo (--insecure-dev)", "admin", frozenset({"admin"}))
    who = _principal_of(scope, settings)
    if who is None:
        return Problem("unauthorized", "missing or invalid credentials: send 'Authorization: "
                                       "Bearer <key>', or log in at /login")
    if not who.may(needed):
        return Problem("forbidden", f"{who.name} ({who.role}) may not use {scope['path']}: it "
                                    f"needs the permission {needed!r}")
    return who


def _principal_of(scope, settings) -> Principal | None:
    """The principal the request's credentials name, or None."""
    keys, people = settings_keys(settings), settings_people(settings)
    if isinstance(keys, Problem) or isinstance(people, Problem):
        return None
    headers = dict(scope.get("headers") or [])
    header = headers.get(b"authorization", b"").decode("latin-1")
    if header:
        key = auth.key_of(header)
        roles = auth.roles_of(header, keys or {})
        if roles is not None:
            return Principal(f"API key …{people_module.key_digest(key)[-6:]}",
                             "+".join(sorted(roles)), auth.permissions(roles))
        integration = people.integration_of(key) if people and key else None
        return integration.principal() if integration is not None else None
    if people.users:
        user = sessions(settings).user_of(cookie_of(scope, people_module.SESSION_COOKIE),
                                          people)
        if user is not None:
            return user.principal(session=True)
    return None


def cookie_of(scope, name: str) -> str | None:
    from http.cookies import CookieError, SimpleCookie

    headers = dict(scope.get("headers") or [])
    raw = headers.get(b"cookie", b"").decode("latin-1")
    if not raw:
        return None
    try:
        jar = SimpleCookie(raw)
    except CookieError:
        return None
    return jar[name].value if name in jar else None


def _login_page_wanted(scope, settings) -> bool:
    """A person in a browser (asks for HTML, sends no Authorization) on a server with users."""
    people = settings_people(settings)
    headers = dict(scope.get("headers") or [])
    return (not isinstance(people, Problem) and bool(people.users)
            and scope["method"] in ("GET", "HEAD") and b"authorization" not in headers
            and b"text/html" in headers.get(b"accept", b""))


async def _to_login(send, path: str) -> None:
    from urllib.parse import quote

    location = f"/login?next={quote(path, safe='/')}".encode("latin-1")
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location), (b"content-length", b"0"),
                            (b"cache-control", b"no-store"), *COMMON_HEADERS]})
    await send({"type": "http.response.body", "body": b""})


def _audit(settings, who, action: str, status: int, path: str) -> None:
    """An audit line for a customer page (its id from the path)."""
    from urllib.parse import unquote

    log = audit_log(settings)
    if log is not None:
        log.write(who, action, status, unquote(path.rsplit("/", 1)[-1]))


_people_cache: dict = {}
_sessions_cache: dict = {}
_audit_cache: dict = {}


def settings_people(settings):
    """The users file's people (`people.load_people`), read again when the file changes; an
    empty `People` without a file; a 503 problem when it cannot be used."""
    path = settings.users_file
    if path is None:
        return people_module.People()
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        stamp = None
    cached = _people_cache.get(id(settings))
    if cached is None or cached[0] != stamp:
        try:
            loaded = people_module.load_people(path)
        except people_module.PeopleFileError as exc:
            logger.error("%s", exc)
            loaded = Problem("not-ready", str(exc))
        _people_cache[id(settings)] = cached = (stamp, loaded)
    return cached[1]


def sessions(settings) -> people_module.Sessions:
    if id(settings) not in _sessions_cache:
        _sessions_cache[id(settings)] = people_module.Sessions(
            people_module.session_secret(settings.instance_dir),
            settings.instance_path(people_module.ENDED_SESSIONS_FILE))
    return _sessions_cache[id(settings)]


#: This worker's failed logins (`people.LoginAttempts`).
LOGIN_ATTEMPTS = people_module.LoginAttempts()


def audit_log(settings) -> people_module.AuditLog | None:
    if settings is None:
        return None
    if id(settings) not in _audit_cache:
        _audit_cache[id(settings)] = people_module.AuditLog(settings.audit_file)
    return _audit_cache[id(settings)]


_keys_cache: dict = {}


def settings_keys(settings):
    """The configured keys (None in --insecure-dev mode), or a 503 problem when none usable."""
    if id(settings) not in _keys_cache:
        try:
            _keys_cache[id(settings)] = auth.required_keys(
                insecure_dev=settings.options.insecure_dev, people=settings.users_file is not None)
        except auth.NoKeysConfigured as exc:
            logger.error("%s", exc)
            _keys_cache[id(settings)] = Problem("not-ready", str(exc))
    return _keys_cache[id(settings)]


def _bad_content_type(scope) -> Problem | None:
    headers = dict(scope.get("headers") or [])
    content_type = headers.get(b"content-type", b"").decode("latin-1").strip()
    if JSON_TYPE.match(content_type):
        return None
    shown = content_type.split(";")[0][:60] or "none"
    return Problem("unsupported-media-type", f"the body must be application/json (got "
                                             f"{shown})")


async def _capped(scope, receive, limit: int):
    """Read the whole body, refusing more than `limit` bytes (413); a receive callable that
    replays it."""
    headers = dict(scope.get("headers") or [])
    declared = headers.get(b"content-length")
    too_large = Problem("payload-too-large", f"the body is larger than {limit:,} bytes")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _with_deadline(app, scope, receive, send, seconds: float) -> None:
    """Run the route with a deadline: past it, a 504 problem goes out and the route's work
    stops at its next `deadline.check()`."""
    started = {"done": False}

    async def send_once(message):
        if message["type"] == "http.response.start":
            started["done"] = True
        await send(message)

    deadline.start(seconds)
    task = asyncio.ensure_future(app(scope, receive, send_once))
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=seconds + 0.2)
    except TimeoutError:
        task.cancel()
        if not started["done"]:
            await send_problem(send, Problem("timeout", f"no answer within {seconds:g} s: "
                                                        "ask for fewer customers"), scope["path"])


def _is_problem(headers: list) -> bool:
    return any(k.lower() == b"content-type" and v.startswith(MEDIA_TYPE.encode())
               for k, v in headers)


def _is_html(headers: list) -> bool:
    """The page's own problem page, for a person in a browser (`api._problem_page`)."""
    return any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)


def _secured(headers: list, route: str) -> list:
    names = {k.lower() for k, _ in headers}
    extra = list(COMMON_HEADERS)
    if route in HTML_ROUTES:
        extra += PAGE_HEADERS
    elif route.startswith("/docs"):
        extra += DOCS_HEADERS
    if b"cache-control" not in names and not route.startswith("/docs/assets"):
        extra.append((b"cache-control", b"no-store"))
    return headers + [(k, v) for k, v in extra if k not in names]


async def _readyz(send, state) -> None:
    """200 with the model in service (and why a newer champion is not, if so), else 503."""
    if state is None:
        return await send_problem(send, Problem("not-ready", "the service is starting"),
                                  "/readyz")
    reason = state.not_ready_reason()
    if reason is not None:
        return await send_problem(send, Problem("not-ready", reason), "/readyz")
    body = json.dumps(state.readiness()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
