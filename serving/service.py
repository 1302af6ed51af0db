"""The BentoML service: a thin shell around the API (`api.py`) and this worker's serving state.

Started by `churn serve` (or `bentoml serve churn_risk.serving.service:ChurnService`), each
worker loads `models:/churn-risk@champion` and the latest snapshot of the CRM data named by
`CHURN_DATA` in the background, precomputes every score and explanation of that snapshot, and
follows the champion alias. Until it is ready `/readyz` answers 503 with the reason; a data set
or champion that cannot be loaded is reported to `churn serve` (which stops with the reason) and
retried, never a crash loop. A new champion that cannot be loaded leaves the last good one in
service (`/readyz` says so); the workers of one server switch together (`SwitchBarrier`).

Routes (all documented at `/docs`, schema at `/openapi.json`): `POST /score`, `/explain`,
`/explain_change`, `GET /customers/{id}`, `/metrics`; BentoML's `/healthz` and `/livez`, and
`/readyz` (answered by the middleware with the model in service).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import bentoml

from churn_risk.runtime import configure_offline
from churn_risk.serving import api
from churn_risk.serving.middleware import ServiceMiddleware
from churn_risk.serving.problems import Problem
from churn_risk.serving.settings import ServiceSettings, report_startup_failure

logger = logging.getLogger("churn_risk.serving")

# BentoML's timeout middleware schedules a `traffic.timeout` timer per request and never cancels
# it; the timer holds the request's context and, through it, an always-recording OpenTelemetry
# span. At the default 60 s, ~30k spans and a million objects pile up and full garbage
# collections stall requests for 0.1-0.8 s. No tracing on the hot paths and a 3 s timeout (above
# the API's own 2.5 s deadline, which answers first with a problem and stops the work, below
# uvicorn's 5 s keep-alive) remove the pile-up; freezing the start-up heap (below) removes the
# remaining ~150 ms collections. BentoML's request metrics and access log label raw paths (a
# customer's id in a page's path): both are off, and the middleware records and logs route
# templates instead.
SERVICE_CONFIG: dict[str, Any] = {
    "name": "churn-risk",
    # Two workers for two cores: batches of 100 went from 13.5k to 21.9k customers/s. On files
    # each worker holds its own precomputed snapshot; live, they read the portfolio scored into
    # the store and the first worker keeps it fresh. Each follows the alias.
    "workers": 2,
    "traffic": {"timeout": 3},
    "tracing": {"excluded_urls": ["/score", "/explain", "/explain_change", "/customers",
                                  "/metrics", "/readyz"]},
    "metrics": {"enabled": False},
    "logging": {"access": {"enabled": False}},
}

#: This worker's settings and serving state (read by the middleware and the API).
SETTINGS: ServiceSettings | None = None
SERVING: Serving | None = None


class SwitchBarrier:
    """Lets the workers of one server switch to a new champion together: each says when it
    has built (or failed to build) the version, and waits until every worker has built it
    (switch) or one failed (keep the last good one), at most `timeout` seconds."""

    def __init__(self, folder: Path, workers: int, timeout: float = 60.0):
        self.folder = folder
        self.workers = workers
        self.timeout = timeout

    def failed(self, version: str) -> bool:
        """Whether a worker could not build `version`."""
        return any((self.folder / f"v{version}").glob("*.failed"))

    def __call__(self, version: str, built: bool) -> bool:
        where = self.folder / f"v{version}"
        where.mkdir(parents=True, exist_ok=True)
        (where / f"{os.getpid()}.{'ready' if built else 'failed'}").touch()
        if not built:
            return False
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if any(where.glob("*.failed")):
                return False
            if len(list(where.glob("*.ready"))) >= self.workers:
                return True
            time.sleep(0.05)
        logger.warning("switching to v%s without the other workers after %.0f s", version,
                       self.timeout)
        return True


class Serving:
    """This worker's state: the scorer once loaded, or why it is not ready."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.scorer = None
        #: Live: every score given out goes to the store's prediction log.
        self.predictions = None
        self.problem: str | None = "loading the data and the champion"
        self.reported = False
        self._stop = threading.Event()
        self._previous: tuple[str, str] | None = None
        threading.Thread(target=self._run, name="champion-follower", daemon=True).start()

    # ---------------------------------------------------------------- lifecycle

    def _run(self) -> None:
        while True:
            try:
                if self.scorer is None:
                    self._load()
                else:
                    self.scorer.refresh()
                    self._model_metric()
            except Exception as exc:  # never let the follower die; say why, one line
                try:
                    self._failed(exc)
                except Exception:  # reporting itself failed: still keep following
                    logger.exception("could not report a failure")
            if self._stop.wait(self.settings.poll_seconds):
                return

    def _load(self) -> None:
        from churn_risk.features.io import DataSource, data_source
        from churn_risk.serving.scorer import Scorer
        from churn_risk.training.tracking import configure_tracking

        project = self.settings.project_dir
        configure_tracking(None if project is None else Path(project))
        barrier = None
        folder = self.settings.instance_path("switch")
        if folder is not None:
            barrier = SwitchBarrier(folder, self.settings.workers)
        started = time.perf_counter()
        source = data_source(self.settings.data, self.settings.mapping)
        if self.settings.store is not None:
            source = DataSource(self.settings.store, store=True)
        # Live, one worker scores into the store and the others read: the first.
        refresher = bentoml.server_context.worker_index in (None, 1)
        scorer = Scorer(source, on_switch=_freeze_heap, before_switch=barrier,
                        rescore_seconds=self.settings.rescore_seconds, refresher=refresher)
        if scorer.live:  # before any answer: every score given out is logged with its id
            from churn_risk.serving.predlog import PredictionLog

            self.predictions = PredictionLog(scorer.feed.store)
        self.scorer = scorer
        self.problem = None
        if scorer.live:
            threading.Thread(target=self._follow_store, name="store-follower",
                             daemon=True).start()
        try:
            self._warm_pages()
            self._model_metric()
            _freeze_heap()
        finally:  # last, whatever these did: the server answers from now on
            ready = self.settings.instance_path("ready")
            if ready is not None:
                ready.mkdir(exist_ok=True)
                (ready / str(os.getpid())).touch()
        state = self.scorer.state
        logger.info("ready: serving %s version %s (%s) on %d customers as of %s after %.1f s",
                    state.model.name, state.model.version, state.bundle.target,
                    state.customers, state.features_as_of, time.perf_counter() - started)

    def _warm_pages(self) -> None:
        """Render one customer's page before saying ready: the first page a worker renders
        compiles its templates and fills its caches (0.25-0.4 s, not a person's wait)."""
        from churn_risk.errors import first_line

        state = self.scorer.state
        if not len(state.ids):
            return
        try:
            self.page(str(state.ids[0]))
        except Exception as exc:  # a page that cannot be drawn is the page's own answer
            logger.warning("could not warm the pages up (%s)", first_line(exc))

    def _follow_store(self) -> None:
        """Live: apply the store's new writes as they commit (every `follow_seconds`)."""
        from churn_risk.errors import first_line

        gauges_due = 0.0
        while not self._stop.wait(self.settings.follow_seconds):
            try:
                self.scorer.follow()
                if self.scorer.refresher and time.monotonic() >= gauges_due:
                    self._portfolio_metrics()
                    gauges_due = time.monotonic() + self.settings.gauge_seconds
            except Exception as exc:  # the store may be briefly unreachable: say so, go on
                logger.error("cannot follow the store's new records (%s)", first_line(exc))
                self._stop.wait(5.0)

    def _portfolio_metrics(self) -> None:
        """The served portfolio's gauges (`metrics.observe_portfolio`), its score PSI against
        the model's training reference, the newest `churn monitor` verdict's gauges, and the
        home page's counts (`home.recount`)."""
        from churn_risk.serving import metrics

        state = self.scorer.state
        store = self.scorer.feed.store
        reference = state.bundle.info.get("reference")
        score_edges = tuple(reference["score"]["edges"]) if reference else ()
        summary = store.portfolio_summary(state.model.name, state.model.version,
                                          metrics.PROBABILITY_EDGES + score_edges)
        if summary is not None:
            metrics.observe_portfolio(state.model.version, summary,
                                      tuple(name for name, _ in state.bundle.risk_bands))
            if reference:
                from churn_risk.training.monitor import portfolio_score_psi

                metrics.SCORE_PSI.labels(state.model.version).set(portfolio_score_psi(
                    reference["score"], summary["at_most"], summary["customers"]))
        check = store.latest_check(state.model.name, state.model.version)
        if check is not None:
            metrics.observe_check(state.model.version, check)
        from churn_risk.serving.home import recount

        recount(store, state.model.name, state.model.version)  # the home page's counts

    def _failed(self, exc: Exception) -> None:
        from churn_risk.errors import first_line
        from churn_risk.features.validation import DataContractError
        from churn_risk.serving import metrics

        metrics.LOAD_FAILURES.inc()
        if self.scorer is not None:  # the last good model keeps serving
            reason = f"cannot follow the champion ({first_line(exc)})"
            self.scorer.problem = reason
            logger.error("%s; still serving v%s", reason, self.scorer.state.model.version)
            return
        full = str(exc) if isinstance(exc, DataContractError) else first_line(exc)
        self.problem = f"cannot start: {first_line(exc)}"
        logger.error("%s", self.problem)
        if not self.reported:
            report_startup_failure(self.settings, full)
            self.reported = True

    def _model_metric(self) -> None:
        from churn_risk.serving import metrics

        state = self.scorer.state
        now = (state.model.version, str(state.bundle.target))
        if now != self._previous:
            metrics.serving_model(*now, previous=self._previous)
            self._previous = now

    # ---------------------------------------------------------------- state

    @property
    def ready(self) -> bool:
        return self.scorer is not None

    def not_ready_reason(self) -> str | None:
        """Why this server cannot answer yet: this worker is loading (or cannot), or another
        worker of the server still is (a request may reach any of them)."""
        if self.scorer is None:
            return self.problem
        folder = self.settings.instance_path("ready")
        if folder is None:
            return None
        live = [p for p in folder.iterdir() if p.name.isdigit() and _alive(int(p.name))]
        if len(live) < self.settings.workers:
            return f"{len(live)} of {self.settings.workers} workers ready"
        return None

    def readiness(self) -> dict:
        state = self.scorer.state
        return {"status": "degraded" if self.scorer.problem else "ready",
                "model": state.model_dict, "target": state.target,
                "features_as_of": state.features_as_of, "customers": state.customers,
                "problem": self.scorer.problem}

    # ---------------------------------------------------------------- requests

    def score(self, request) -> dict:
        from churn_risk.serving import metrics
        from churn_risk.serving.scorer import BadRecord

        state = self.scorer.state  # one model version for the whole answer
        if request.customer_ids is not None:
            results, unknown = state.score_ids(request.customer_ids, request.top_k,
                                               request.channel)
        else:
            try:
                results, unknown = state.score_records(request.records, request.top_k,
                                                       request.channel), []
            except BadRecord as exc:
                raise record_problem(exc) from None
        metrics.observe_scores(state.model.version, request.channel,
                               [r["churn_probability"] for r in results])
        if self.predictions is not None:
            results = self.predictions.record(results, request.channel)
        return {"results": results, "unknown_customer_ids": unknown, "target": state.target,
                "model": state.model_dict}

    def explain(self, request) -> dict:
        from churn_risk.serving.scorer import BadRecord, UnknownCustomer

        try:
            return self.scorer.state.explain(request.customer_id, request.record)
        except UnknownCustomer:
            raise Problem("unknown-customer", "no such customer in the loaded snapshot",
                          [{"field": "customer_id", "message": "not in the loaded snapshot"}]
                          ) from None
        except BadRecord as exc:
            raise record_problem(exc) from None

    def explain_change(self, request) -> dict:
        from churn_risk.serving.change import (
            ChangeRequestError,
            CustomerNotFound,
            InvalidDates,
        )

        try:
            return self.scorer.state.explain_change(request.customer_id, request.from_date,
                                                    request.to_date)
        except ChangeRequestError as exc:
            slug = ("unknown-customer" if isinstance(exc, CustomerNotFound) else
                    "invalid-dates" if isinstance(exc, InvalidDates) else "not-a-customer")
            message = exc.problem + (f" (e.g. {exc.example})" if exc.example else "")
            raise Problem(slug, str(exc), [{"field": exc.field, "message": message}]) from None

    def page(self, customer_id: str, viewer=None) -> str:
        """The customer's page for `viewer` (`people.Principal`): a 403 when the customer is
        not in an account manager's portfolio."""
        from churn_risk.serving.page import render_customer_page, render_former
        from churn_risk.serving.scorer import UnknownCustomer

        try:
            page = self.scorer.state.page_model(customer_id)
        except UnknownCustomer:
            former = self.scorer.state.former(customer_id)
            if former is None:
                raise Problem("unknown-customer", "no such customer in the loaded snapshot"
                              ) from None
            if viewer is not None and not viewer.may_see(former.segment, former.region):
                raise Problem("forbidden", f"customer {customer_id} is not in your portfolio "
                                           f"({viewer.portfolio.describe()})") from None
            return render_former(former, viewer, self.scorer.state)
        if viewer is not None and not viewer.may_see(page.profile.segment, page.profile.region):
            raise Problem("forbidden", f"customer {customer_id} is not in your portfolio "
                                       f"({viewer.portfolio.describe()})")
        if self.predictions is not None:  # live: the scores given out and their outcomes
            page = self._with_past(page)
        return render_customer_page(page, viewer)

    def home(self, viewer=None) -> str:
        """The portfolio home (`home.home`) for `viewer`."""
        from churn_risk.serving import home
        from churn_risk.serving.page import render_home

        state = self.scorer.state
        bands = tuple(name for name, _ in state.bundle.risk_bands)
        rows = self._rows()
        return render_home(home.home(rows, viewer, bands, state.bundle.policy, rows.drivers()),
                           viewer, state)

    def customers(self, viewer=None, filters: dict | None = None, query: str = "",
                  page: int = 1) -> str:
        """A list of customers (`home.listing`) for `viewer`."""
        from churn_risk.serving import home
        from churn_risk.serving.page import render_listing

        state = self.scorer.state
        return render_listing(home.listing(self._rows(), viewer, state.bundle.policy,
                                           filters or {}, query, page), viewer, state)

    def worklist(self, viewer=None, channel: str | None = None, budget: float | None = None,
                 capacity: int | None = None, gap_days: int | None = None) -> str:
        """A channel's worklist of today (`home.worklist`) for `viewer`."""
        from churn_risk.serving import home
        from churn_risk.serving.page import render_worklist

        state = self.scorer.state
        page = home.worklist(self._rows(), viewer, state.bundle, channel,
                             home.DEFAULT_BUDGET if budget is None else budget,
                             home.DEFAULT_CAPACITY if capacity is None else capacity,
                             home.DEFAULT_GAP_DAYS if gap_days is None else gap_days)
        return render_worklist(page, viewer, state)

    def knows(self, customer_id: str) -> bool:
        """Whether the served portfolio holds this customer (a search for an exact id)."""
        return self._rows().has(customer_id)

    def _rows(self):
        """The served portfolio by its summary columns: the store's rows when live, else the
        snapshot's (built once per snapshot)."""
        from churn_risk.serving import home

        state = self.scorer.state
        if self.scorer.live:
            return home.StoreRows(self.scorer.feed.store, state.model.name, state.model.version)
        cached = getattr(self, "_frame_rows", None)
        if cached is None or cached[0] is not state:
            cached = self._frame_rows = (state, home.FrameRows(state))
        return cached[1]

    def _with_past(self, page):
        """`page` with the customer's past recommendations (`pagemodel.past_recommendations`);
        as it was when the store cannot say (the rest of the page is still worth reading)."""
        from dataclasses import replace

        from churn_risk.serving.pagemodel import past_recommendations

        try:
            return replace(page, past=past_recommendations(self.predictions.store,
                                                           page.customer_id))
        except Exception as exc:  # noqa: BLE001 - the store briefly away: the page without it
            logger.error("page of a customer without past recommendations (%s)", exc)
            return page

    def record_schema(self) -> dict:
        return self.scorer.state.record_schema()

    def examples(self) -> dict:
        """A customer of the snapshot who was one three months earlier too, and those dates."""
        return self.scorer.state.examples()


def record_problem(exc) -> Problem:
    """A what-if record that cannot be scored: 404 when it names a customer not in the
    snapshot (and nothing else is wrong), else 422 naming every field."""
    if exc.errors and all(e.get("unknown_customer") for e in exc.errors):
        return Problem("unknown-customer", "no such customer in the loaded snapshot",
                       [{k: v for k, v in e.items() if k != "unknown_customer"}
                        for e in exc.errors])
    return Problem("invalid-record", f"{len(exc.errors)} value(s) cannot be scored",
                   [{k: v for k, v in e.items() if k != "unknown_customer"} for e in exc.errors])


@bentoml.asgi_app(api.app, path="/")
@bentoml.service(**SERVICE_CONFIG)
class ChurnService:
    def __init__(self) -> None:
        global SETTINGS, SERVING

        configure_offline()
        from churn_risk.serving.launch import die_with_parent

        die_with_parent()  # a killed server leaves no worker behind
        logging.getLogger("churn_risk").setLevel(logging.INFO)  # switches, 4xx (one line)
        SETTINGS = ServiceSettings.from_environment()
        SERVING = Serving(SETTINGS)
        from churn_risk.serving.ingest import Ingestion

        api.attach(SERVING, Ingestion(SETTINGS.store))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _freeze_heap() -> None:
    """Move the long-lived heap (model, snapshot, precomputed explanations) out of the garbage
    collector's reach, so full collections only walk what requests allocate."""
    import gc

    gc.collect()
    gc.freeze()


ChurnService.add_asgi_middleware(ServiceMiddleware)
