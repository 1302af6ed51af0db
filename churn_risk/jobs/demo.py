"""`churn demo`: the main job end to end on demo data. Generate (data ending now) → validate and
load the store → point-in-time features → train (tracked in MLflow) → promote the champion →
serve it live from the store, ask about two customers, send one of them a new ticket through
`POST /events` and ask again; report outcomes through `POST /outcomes` (the ticket customer's
action taken, and simulated matured reports with a known effect) and show the action's success
rate learning from them.

The data are read and validated once; every later stage works on that one prepared copy (the
service, a separate process, reads its own). What each stage produced goes to a `DemoReport`
as soon as it is done, so a long run shows where it is.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

STAGES = (
    "Generate demo CRM data",
    "Validate against the data contract and load the store",
    "Point-in-time lifecycle features for the latest month",
    "Train churn and next-product models (tracked in MLflow)",
    "Promote the new version to @champion if it is at least as good",
    "Serve the champion live from the store; a new ticket reaches the score",
    "Channels report outcomes; the action's success rate learns from them",
)

#: The service is asked about this many customers; the demo shows the riskiest and the safest.
ASKED = 200
#: The demo's simulated channel: half of the customers offered the action take it, and of the
#: would-be churners among them (churned in the data) this share stays.
SIMULATED_SUCCESS = 0.40
#: At most this many simulated reports (one `POST /outcomes` request).
REPORTED = 5_000


class DemoSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    out: Path = Path("demo-data")
    customers: int = Field(20_000, ge=10)
    months: int = Field(36, ge=6)
    seed: int = 42


@dataclass(frozen=True)
class ServedAnswer:
    base_url: str
    #: The service's answer for the first `ASKED` customers, as it sent it.
    answer: dict
    #: The riskiest and the safest of them.
    two: list[dict]
    #: The events sent (`POST /events` body) and the service's answer.
    event: dict
    accepted: dict
    #: The customer's answer before the event and the first one after it that reflects it.
    before: dict
    after: dict
    #: Seconds from the accepted event to the first answer reflecting it.
    seconds: float
    #: `POST /outcomes`: the ticket customer's recommendation taken, and the answer.
    outcome: dict
    outcome_answer: dict
    #: Matured reports simulated for one action (`SIMULATED_SUCCESS`) and what was learned.
    simulated: dict
    learned: object  # jobs.outcomes.LearnedRate


class DemoReport(Protocol):
    """What `run` tells as it goes (the CLI prints it)."""

    def stage(self, number: int, title: str) -> None: ...
    def progress(self, what: str, done: int, total: int) -> None: ...
    def generated(self, demo, seconds: float) -> None: ...
    def validated(self, source, crm) -> None: ...
    def stored(self, written, store_url: str) -> None: ...
    def features(self, frame: pd.DataFrame, specs, as_of: pd.Timestamp,
                 seconds: float) -> None: ...
    def trained(self, result, source) -> None: ...
    def promoted(self, result) -> None: ...
    def served(self, served: ServedAnswer) -> None:
        """Called while the service still runs (it stops when this returns)."""


@dataclass(frozen=True)
class DemoResult:
    train: object  # jobs.train.TrainResult
    promote: object  # jobs.promote.PromoteResult
    served: ServedAnswer


def run(settings: DemoSettings, report: DemoReport) -> DemoResult:
    from churn_risk.demo import write_demo
    from churn_risk.features.config import FeatureConfig
    from churn_risk.features.io import DataSource, data_source
    from churn_risk.features.labels import resolve_target
    from churn_risk.features.lifecycle import feature_specs, prepare
    from churn_risk.features.live import live_now
    from churn_risk.features.snapshots import build_snapshot, monthly_as_ofs
    from churn_risk.features.store import Store
    from churn_risk.features.validation import load_crm
    from churn_risk.jobs import promote as promote_job
    from churn_risk.jobs import train as train_job
    from churn_risk.training.config import TrainConfig
    from churn_risk.training.tracking import configure_tracking

    configure_tracking()  # an unusable tracking store stops the demo before any work
    report.stage(1, STAGES[0])
    started = time.perf_counter()
    demo = write_demo(settings.out, customers=settings.customers, months=settings.months,
                      seed=settings.seed, end=live_now(), progress=lambda done, total: (
                          report.progress("simulating months", done + 1, total)))
    report.generated(demo, time.perf_counter() - started)

    report.stage(2, STAGES[1])
    source = data_source(str(settings.out))
    crm = load_crm(source)  # the one read of the data
    report.validated(source, crm)
    store_url = _new_store(settings.out)
    with Store(store_url) as store:
        report.stored(store.write(crm, progress=lambda done, total: report.progress(
            "storing records", done, total)), store_url)

    report.stage(3, STAGES[2])
    prep = prepare(crm)
    cfg = FeatureConfig()
    latest = monthly_as_ofs(prep, cfg)[-1]
    started = time.perf_counter()
    frame = build_snapshot(prep, latest, cfg, resolve_target(prep, horizon_given=True))
    report.features(frame, feature_specs(prep, cfg), latest, time.perf_counter() - started)

    report.stage(4, STAGES[3])
    trained = train_job.run(source, TrainConfig(), prep, step=lambda stage, done, total: (
        report.progress(stage, done, total)))
    report.trained(trained, source)

    report.stage(5, STAGES[4])
    promoted = promote_job.run(source, promote_job.PromoteSettings(), prep)
    report.promoted(promoted)

    report.stage(6, STAGES[5])
    served = _serve_and_ask(DataSource(store_url, store=True),
                            prep.customers["customer_id"].tolist()[:ASKED], report, prep)
    return DemoResult(trained, promoted, served)


def _new_store(out: Path) -> str:
    """The demo's own store, in its data folder, made afresh with the data (a store keeps
    every record it is given: yesterday's demo data are not today's)."""
    for old in out.glob("churn-store.db*"):
        old.unlink()
    return f"sqlite:///{out / 'churn-store.db'}"


def _serve_and_ask(source, customer_ids: list, report: DemoReport, prep) -> ServedAnswer:
    from churn_risk.features.live import live_now
    from churn_risk.serving import launch

    process, base = launch.start(launch.server_env(source, insecure=True))
    try:
        launch.wait_ready(base, process)
        answer = _post(f"{base}/score", {"customer_ids": customer_ids, "top_k": 3})
        ranked = sorted(answer["results"], key=lambda r: r["churn_probability"])
        before = ranked[len(ranked) // 2]  # a customer of middling risk gets a new ticket
        customer = before["customer_id"]
        sent = live_now()
        opened = sent - pd.Timedelta(minutes=1)
        event = {"table": "tickets", "records": [{
            "customer_id": customer, "opened_at": f"{opened:%Y-%m-%dT%H:%M:%S}",
            "category": "delivery"}]}
        accepted = _post(f"{base}/events", event)
        posted = time.perf_counter()
        after = before
        while time.perf_counter() - posted < 10:  # until an answer's data include the event
            after = _post(f"{base}/score", {"customer_ids": [customer], "top_k": 3})["results"][0]
            if after["data_watermark"] >= accepted["watermark"]:
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - posted
        report.stage(7, STAGES[6])
        action = after["recommended_action"] or {"action": "service_recovery",
                                                  "channel": "service"}
        outcome = {"records": [{
            "prediction_id": after["prediction_id"], "customer_id": customer,
            "action": action["action"], "response": "taken", "channel": action["channel"],
            "occurred_at": f"{live_now():%Y-%m-%dT%H:%M:%SZ}"}]}
        outcome_answer = _post(f"{base}/outcomes", outcome)
        simulated, learned = _simulated_outcomes(base, source, prep, report)
        served = ServedAnswer(base, answer, [ranked[-1], ranked[0]], event, accepted, before,
                              after, seconds, outcome, outcome_answer, simulated, learned)
        report.served(served)
        return served
    finally:
        launch.stop(process)


def _simulated_outcomes(base: str, source, prep, report: DemoReport) -> tuple[dict, object]:
    """A horizon ago, the champion's recommendations for the portfolio (scored now as of then,
    logged with their ids); the channels report on up to `REPORTED` retention recommendations:
    half took the action, and whether each stayed is what the data say, except that a would-be
    churner who took it stays with probability `SIMULATED_SUCCESS` (the demo's known truth).
    Then the success rate of the most reported action before and after the reports."""
    import numpy as np

    from churn_risk.features.labels import churn_labels, population
    from churn_risk.features.live import live_now
    from churn_risk.jobs.common import CHAMPION_URI, registered_bundle
    from churn_risk.jobs.outcomes import rates
    from churn_risk.jobs.score import log_given_out, with_provenance
    from churn_risk.serving.batch import score_portfolio

    bundle, name, version = registered_bundle(CHAMPION_URI)
    horizon = bundle.target.horizon_days
    as_of = (live_now() - pd.Timedelta(days=horizon + 7)).normalize()
    scores = with_provenance(score_portfolio(source, as_of, bundle, name, version, prep=prep),
                             source)
    log_given_out(scores, source, "batch")
    retention = {a.name for a in bundle.policy.actions if a.kind == "retention"}
    offered = scores.loc[scores["recommended_action"].isin(retention)].head(REPORTED)
    action = offered["recommended_action"].value_counts().index[0]  # the one shown
    customers = population(prep, np.datetime64(as_of), bundle.target)
    churned = pd.Series(churn_labels(prep, customers, np.datetime64(as_of), bundle.target),
                        index=customers["customer_id"].to_numpy()).reindex(
                            offered["customer_id"]).to_numpy()
    rng = np.random.default_rng(7)
    taken = rng.random(len(offered)) < 0.5
    stayed = (churned == 0) | (taken & (rng.random(len(offered)) < SIMULATED_SUCCESS))
    known = ~np.isnan(churned)
    now = f"{live_now():%Y-%m-%dT%H:%M:%SZ}"
    records = [{"prediction_id": p, "customer_id": c, "response": "taken" if t else "declined",
                "channel": bundle.policy.action(a).channel, "occurred_at": now,
                "stayed": bool(s)}
               for p, c, a, t, s, k in zip(offered["prediction_id"], offered["customer_id"],
                                           offered["recommended_action"], taken, stayed, known,
                                           strict=True) if k]
    report.progress("reporting outcomes", 0, len(records))
    answer = _post(f"{base}/outcomes", {"records": records})
    report.progress("reporting outcomes", len(records), len(records))
    learned = next(r for r in rates(source.location, CHAMPION_URI) if r.action == action)
    return {"action": action, "as_of": f"{as_of:%Y-%m-%d}", "reports": len(records),
            "taken": int(sum(r["response"] == "taken" for r in records)),
            "actions": int(offered["recommended_action"].nunique()),
            "stored": answer["stored"], "truth": SIMULATED_SUCCESS}, learned


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
