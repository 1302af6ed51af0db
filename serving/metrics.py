"""Prometheus metrics without customer data, summed over the server's workers.

BentoML's own request metrics label each raw path (a customer page's path holds the customer's
id, and an anonymous caller can make the label set grow without bound), so they are off
(`service.SERVICE_CONFIG`) and these take their place:

- `churn_requests_total{route, method, status}` and `churn_request_duration_seconds{route}`: by
  route template (`/customers/{customer_id}`), 401s as route `(unauthorized)`, unknown paths as
  `(other)`;
- `churn_customers_scored_total{model_version, channel}` and
  `churn_churn_probability{model_version}` (the distribution of the probabilities served);
- `churn_model_info{model_version, target}`: the champion each worker serves (1), and
  `churn_model_load_failures_total`;
- live (on a store), the served portfolio in aggregate, refreshed every `CHURN_GAUGE_SECONDS`
  (60) by the worker that keeps it fresh: `churn_portfolio_customers{model_version, risk_band}`,
  `churn_portfolio_band_share{model_version, risk_band}`,
  `churn_portfolio_probability_at_most{model_version, le}` (customers whose churn probability
  over the target's horizon is at most `le`: the score distribution) and
  `churn_portfolio_mean_probability{model_version}`, and `churn_score_psi{model_version}`: the
  population stability index of those probabilities against the model's training reference;
- live, the newest `churn monitor --store` verdict on the served version:
  `churn_retraining_due{model_version}` (1 or 0), `churn_feature_psi{model_version, feature}`,
  `churn_feature_missing_change{model_version, feature}`, `churn_realised_roc_auc{model_version}`
  (of matured predictions) and `churn_monitor_checked_timestamp_seconds{model_version}`.

Workers write to the Prometheus multiprocess folder BentoML gives them (`PROMETHEUS_MULTIPROC_DIR`,
inside this server's own instance folder: `settings.py`), and `/metrics` sums them.
"""

from __future__ import annotations

import os
from datetime import UTC

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter("churn_requests_total", "HTTP requests by route template, method and status",
                   ["route", "method", "status"])
DURATION = Histogram("churn_request_duration_seconds", "HTTP request duration by route template",
                     ["route"], buckets=(.002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5))
SCORED = Counter("churn_customers_scored_total", "Customers scored, by model version and channel",
                 ["model_version", "channel"])
#: The bounds of the probability distributions (served, and of the portfolio).
PROBABILITY_EDGES = (.01, .02, .05, .1, .15, .2, .3, .4, .5, .7, .9, 1.0)
PROBABILITY = Histogram("churn_churn_probability", "Churn probabilities served",
                        ["model_version"], buckets=PROBABILITY_EDGES)
MODEL = Gauge("churn_model_info", "The model version each worker serves (1)",
              ["model_version", "target"], multiprocess_mode="liveall")
_LIVE = "livemostrecent"  # set by one worker; gone with it
PORTFOLIO = Gauge("churn_portfolio_customers", "Customers of the served portfolio by risk band",
                  ["model_version", "risk_band"], multiprocess_mode=_LIVE)
PORTFOLIO_SHARE = Gauge("churn_portfolio_band_share", "Share of the served portfolio by risk band",
                        ["model_version", "risk_band"], multiprocess_mode=_LIVE)
PORTFOLIO_AT_MOST = Gauge("churn_portfolio_probability_at_most",
                          "Customers of the served portfolio whose churn probability (over the "
                          "target's horizon) is at most le", ["model_version", "le"],
                          multiprocess_mode=_LIVE)
PORTFOLIO_MEAN = Gauge("churn_portfolio_mean_probability",
                       "Mean churn probability of the served portfolio", ["model_version"],
                       multiprocess_mode=_LIVE)
SCORE_PSI = Gauge("churn_score_psi", "Population stability index of the served portfolio's churn "
                  "probabilities against the model's training reference", ["model_version"],
                  multiprocess_mode=_LIVE)
RETRAINING_DUE = Gauge("churn_retraining_due", "1 when the newest churn monitor said retraining "
                       "is due, else 0", ["model_version"], multiprocess_mode=_LIVE)
FEATURE_PSI = Gauge("churn_feature_psi", "Population stability index of each model feature, "
                    "portfolio against the training reference (newest churn monitor)",
                    ["model_version", "feature"], multiprocess_mode=_LIVE)
MISSING_CHANGE = Gauge("churn_feature_missing_change", "Change of each model feature's missing "
                       "share since training (newest churn monitor)",
                       ["model_version", "feature"], multiprocess_mode=_LIVE)
REALISED_AUC = Gauge("churn_realised_roc_auc", "Realised ROC-AUC of matured predictions (newest "
                     "churn monitor)", ["model_version"], multiprocess_mode=_LIVE)
CHECKED = Gauge("churn_monitor_checked_timestamp_seconds", "When churn monitor last judged the "
                "model (Unix time)", ["model_version"], multiprocess_mode=_LIVE)
LOAD_FAILURES = Counter("churn_model_load_failures_total",
                        "Failed attempts to load the champion (the last good one keeps serving)")


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    DURATION.labels(route).observe(seconds)


def observe_scores(version: str, channel: str | None, probabilities) -> None:
    SCORED.labels(version, channel or "none").inc(len(probabilities))
    histogram = PROBABILITY.labels(version)
    for p in probabilities:
        histogram.observe(p)


def observe_portfolio(version: str, summary: dict, bands: tuple[str, ...]) -> None:
    """The gauges of the served portfolio from `Store.portfolio_summary` (every band, also
    those without customers)."""
    total = max(summary["customers"], 1)
    for band in bands:
        n = summary["bands"].get(band, 0)
        PORTFOLIO.labels(version, band).set(n)
        PORTFOLIO_SHARE.labels(version, band).set(n / total)
    for edge in PROBABILITY_EDGES:
        PORTFOLIO_AT_MOST.labels(version, f"{edge:g}").set(summary["at_most"][edge])
    PORTFOLIO_MEAN.labels(version).set(summary["mean_probability"])


def observe_check(version: str, check: dict) -> None:
    """The gauges of the newest `churn monitor` verdict (`Store.latest_check`)."""
    RETRAINING_DUE.labels(version).set(float(check["retraining_due"]))
    CHECKED.labels(version).set(check["checked_at"].replace(tzinfo=UTC).timestamp())
    if check["realised_roc_auc"] is not None:
        REALISED_AUC.labels(version).set(check["realised_roc_auc"])
    for feature, figures in check["features"].items():
        FEATURE_PSI.labels(version, feature).set(figures["psi"])
        MISSING_CHANGE.labels(version, feature).set(figures["missing_change"])


def serving_model(version: str, target: str, previous: tuple[str, str] | None = None) -> None:
    """This worker now serves `version` (and no longer `previous`)."""
    if previous is not None and previous != (version, target):
        MODEL.labels(*previous).set(0)
    MODEL.labels(version, target).set(1)


def render() -> bytes:
    """The metrics of every worker of this server (multiprocess mode), or this process's."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and os.path.isdir(folder):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)
        return generate_latest(registry)
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY)
