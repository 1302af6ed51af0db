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
  `churn_model_load_failures_total`.

Workers write to the Prometheus multiprocess folder BentoML gives them (`PROMETHEUS_MULTIPROC_DIR`,
inside this server's own instance folder: `settings.py`), and `/metrics` sums them.
"""

from __future__ import annotations

import os

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
PROBABILITY = Histogram("churn_churn_probability", "Churn probabilities served",
                        ["model_version"],
                        buckets=(.01, .02, .05, .1, .15, .2, .3, .4, .5, .7, .9, 1.0))
MODEL = Gauge("churn_model_info", "The model version each worker serves (1)",
              ["model_version", "target"], multiprocess_mode="liveall")
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
