"""The BentoML service: request → scorer → response. It re-implements nothing.

Started by `churn serve` (or `bentoml serve churn_risk.serving.service:ChurnService`), it loads
`models:/churn-risk@champion` and the latest snapshot of the CRM data named by `CHURN_DATA`
once, precomputes every score and explanation of that snapshot, follows the champion alias,
and answers:

- `POST /score`, `POST /explain`, `POST /explain_change` (BentoML APIs, documented in its
  OpenAPI page);
- `GET /customers/{id}` (the account managers' page);
- `GET /healthz`, `/livez`, `/readyz`, `/metrics` (BentoML's own; open without a key).
"""

from __future__ import annotations

import json
import logging
import os
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException, InvalidArgument, NotFound
from fastapi import FastAPI
from starlette.responses import HTMLResponse, Response

from churn_risk.runtime import configure_offline
from churn_risk.serving import auth
from churn_risk.serving.schemas import (
    MAX_BATCH,
    Channel,
    CustomerId,
    ExplainChangeResponse,
    ExplainResponse,
    FeatureValue,
    ScoreResponse,
)

logger = logging.getLogger(__name__)

DATA_ENV = "CHURN_DATA"
MAPPING_ENV = "CHURN_MAPPING"
PROJECT_ENV = "CHURN_PROJECT_DIR"
POLL_ENV = "CHURN_POLL_SECONDS"
#: Paths answered without a key: health, metrics and the API documentation.
OPEN_PATHS = ("/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/")


class PayloadTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Unprocessable(BentoMLException):
    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


class ApiKeyMiddleware:
    """401 for every request without a valid key, except the open paths. The page asks a
    browser for HTTP Basic credentials (the key as password).

    Without any configured key (and without --insecure-dev) nothing is served: `churn serve`
    refuses to start, and a server started some other way is never ready (503 on /readyz and
    every protected path), so no data ever leaves it unauthenticated."""

    def __init__(self, app):
        self.app = app
        self.misconfigured: str | None = None
        try:
            self.keys = auth.required_keys()  # None in --insecure-dev mode
        except auth.NoKeysConfigured as exc:
            self.keys, self.misconfigured = frozenset(), str(exc)
            logger.error("%s", exc)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if self.misconfigured and path not in ("/healthz", "/livez", "/metrics"):
            return await _send_json(send, 503, {"error": self.misconfigured})
        if path in OPEN_PATHS or self.keys is None:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization", b"").decode("latin-1")
        if auth.authorized(header, self.keys):
            return await self.app(scope, receive, send)
        extra = ([(b"www-authenticate", b'Basic realm="churn-risk"')]
                 if path.startswith("/customers/") else [])
        await _send_json(send, 401, {"error": "missing or invalid API key: send "
                                              "'Authorization: Bearer <key>'"}, extra)


async def _send_json(send, status: int, payload: dict, extra_headers=()) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


pages = FastAPI(title="Account-manager pages", docs_url=None, redoc_url=None, openapi_url=None)

# BentoML's timeout middleware schedules a `traffic.timeout` timer per request and never cancels
# it; the timer holds the request's context and, through it, an always-recording OpenTelemetry
# span. At the default 60 s, ~30k spans and a million objects pile up and full garbage
# collections stall requests for 0.1-0.8 s. No tracing on the hot paths and a 3 s timeout (well
# above our slowest request, below uvicorn's 5 s keep-alive) remove the pile-up; freezing the
# start-up heap (below) removes the remaining ~150 ms collections. Prometheus metrics stay on.
SERVICE_CONFIG: dict[str, Any] = {
    "name": "churn-risk",
    # Two workers for two cores: batches of 100 went from 13.5k to 21.9k customers/s. Each
    # worker holds its own precomputed snapshot and follows the alias on its own.
    "workers": 2,
    "traffic": {"timeout": 3},
    "tracing": {"excluded_urls": ["/score", "/explain", "/explain_change", "/customers"]},
    "metrics": {"enabled": True},
}


@bentoml.asgi_app(pages, path="/customers")
@bentoml.service(**SERVICE_CONFIG)
class ChurnService:
    def __init__(self) -> None:
        configure_offline()
        from churn_risk.serving.scorer import Scorer
        from churn_risk.training.tracking import configure_tracking

        project = os.environ.get(PROJECT_ENV)
        configure_tracking(None if project is None else __import__("pathlib").Path(project))
        from churn_risk.features.io import data_source

        source = data_source(os.environ.get(DATA_ENV, "demo-data"),
                             os.environ.get(MAPPING_ENV) or None)
        self.scorer = Scorer(source, on_switch=_freeze_heap)
        self.scorer.follow_alias(float(os.environ.get(POLL_ENV, "5")))
        _freeze_heap()

    @bentoml.api(route="/score")
    def score(
        self,
        customer_ids: list[CustomerId] | None = None,
        records: list[dict[str, FeatureValue]] | None = None,
        channel: Channel | None = None,
        top_k: int = 5,
    ) -> ScoreResponse:
        """Scores, risk bands, top reasons and next products: by `customer_ids` of the loaded
        snapshot, or for inline feature `records` (what-if). Unknown ids are listed apart."""
        from churn_risk.serving.scorer import BadRecord

        if (customer_ids is None) == (records is None):
            raise InvalidArgument("give exactly one of customer_ids or records")
        batch = customer_ids if customer_ids is not None else records
        if not batch:
            raise InvalidArgument("the batch is empty")
        if len(batch) > MAX_BATCH:
            raise PayloadTooLarge(f"{len(batch)} customers in one request; at most {MAX_BATCH}")
        if not 0 <= top_k <= 100:
            raise InvalidArgument("top_k: must be between 0 and 100")
        state = self.scorer.state  # one model version for the whole answer
        if customer_ids is not None:
            results, unknown = state.score_ids(customer_ids, top_k, channel)
        else:
            try:
                results, unknown = state.score_records(records, top_k, channel), []
            except BadRecord as exc:
                raise Unprocessable(str(exc)) from None
        return _json_response({"results": results, "unknown_customer_ids": unknown,
                               "target": state.target, "model": state.model_dict})

    @bentoml.api(route="/explain")
    def explain(
        self,
        customer_id: CustomerId | None = None,
        record: dict[str, FeatureValue] | None = None,
    ) -> ExplainResponse:
        """Every feature's contribution (log-odds) with the base value: base_value +
        sum(contributions) = margin, and churn_probability = calibrate(margin)."""
        from churn_risk.serving.scorer import BadRecord, UnknownCustomer

        if (customer_id is None) == (record is None):
            raise InvalidArgument("give exactly one of customer_id or record")
        try:
            return _json_response(self.scorer.state.explain(customer_id, record))
        except UnknownCustomer:
            raise NotFound(f"customer_id: {customer_id!r} is not in the loaded snapshot") from None
        except BadRecord as exc:
            raise Unprocessable(str(exc)) from None

    @bentoml.api(route="/explain_change")
    def explain_change(
        self,
        customer_id: CustomerId,
        from_date: str,
        to_date: str,
    ) -> ExplainChangeResponse:
        """Why the customer's churn risk changed from `from_date` to `to_date` (YYYY-MM-DD):
        features rebuilt as of both dates, both explained (TreeSHAP), the change of the score
        split into driver groups (they sum to `margin_change`) and the largest feature-level
        changes with the feature's value at both dates. 404 for an unknown customer; 422 when
        `to_date` is not after `from_date`, a date is after the end of the data, or the customer
        was not a customer at one of the dates."""
        from churn_risk.serving.change import ChangeRequestError, CustomerNotFound

        try:
            return _json_response(
                self.scorer.state.explain_change(customer_id, from_date, to_date))
        except CustomerNotFound as exc:
            raise NotFound(str(exc)) from None
        except ChangeRequestError as exc:
            raise Unprocessable(str(exc)) from None

    @pages.get("/{customer_id}", response_class=HTMLResponse)
    def customer_page(self, customer_id: str) -> HTMLResponse:
        from churn_risk.serving.page import render_customer_page
        from churn_risk.serving.scorer import UnknownCustomer

        try:
            customer = self.scorer.state.page_data(customer_id)
        except UnknownCustomer:
            return HTMLResponse(
                f"<h1>Customer not found</h1><p>No customer {_escape(customer_id)} in the "
                "loaded snapshot.</p>", status_code=404)
        return HTMLResponse(render_customer_page(customer))


def _json_response(payload: dict) -> Response:
    """The scorer already builds plain JSON-ready dicts in the response models' shape (the
    annotations document them in the OpenAPI page); encoding them directly skips pydantic
    re-validating ~150 kB per 100 customers."""
    return Response(json.dumps(payload), media_type="application/json")


def _freeze_heap() -> None:
    """Move the long-lived heap (model, snapshot, precomputed explanations) out of the garbage
    collector's reach, so full collections only walk what requests allocate."""
    import gc

    gc.collect()
    gc.freeze()


def _escape(text: str) -> str:
    import html

    return html.escape(text)


ChurnService.add_asgi_middleware(ApiKeyMiddleware)
