"""`churn score`: every output field for every customer of the portfolio at a date, written for
CRM import, with a portfolio report, both logged to MLflow."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from churn_risk.errors import DataError
from churn_risk.features.io import DataSourceLike
from churn_risk.features.lifecycle import PreparedData
from churn_risk.jobs.common import CHAMPION_URI, learn_from_outcomes, registered_bundle


class ScoreSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    out: Path
    as_of: pd.Timestamp | None = None  # None: now for a store, else the day after the data end
    model: str = CHAMPION_URI
    engine: str = "pandas"
    scheduler: str | None = None
    report: Path | None = None  # default: next to `out`
    chunk_rows: int = Field(50_000, ge=1)
    columns: str | None = None  # readable | codes; default: by the extension (`export_form`)
    page_base_url: str | None = None  # default: $CHURN_PAGE_BASE_URL, else localhost:3000

    @property
    def report_dir(self) -> Path:
        return self.report if self.report is not None else self.out.with_name(
            f"{self.out.stem}-report")


@dataclass(frozen=True)
class ScoreResult:
    scores: pd.DataFrame
    summary: dict
    report: Path
    run_id: str
    model_name: str
    version: str
    target_description: str
    seconds: float
    ui_command: str
    columns: str  # the form the scores were written in: readable | codes

    @property
    def features_as_of(self) -> str:
        return str(self.scores["features_as_of"].iloc[0])


def run(source: DataSourceLike, settings: ScoreSettings, prep: PreparedData | None = None,
        progress=None) -> ScoreResult:
    """Score, write the scores and the report, log both. With the pandas engine the data are
    read once here (or `prep`); the Dask engine reads them on its workers."""
    from churn_risk.jobs.common import prepared
    from churn_risk.serving.batch import check_output_path, score_portfolio
    from churn_risk.serving.export import export_form, write_export
    from churn_risk.serving.report import log_report_to_mlflow, portfolio_report, portfolio_summary
    from churn_risk.training.tracking import configure_tracking

    check_output_path(settings.out)
    form = export_form(settings.out, settings.columns, settings.page_base_url)
    tracking = configure_tracking()
    bundle, name, version = registered_bundle(settings.model)
    learn_from_outcomes(bundle, source)
    if settings.engine == "pandas":
        prep = prepared(source, prep)
    started = time.perf_counter()
    scores = score_portfolio(source, settings.as_of, bundle, name, version,
                             engine=settings.engine, chunk_rows=settings.chunk_rows,
                             scheduler=settings.scheduler, prep=prep, progress=progress)
    seconds = time.perf_counter() - started
    if not len(scores):
        day = "the default date" if settings.as_of is None else f"{settings.as_of:%Y-%m-%d}"
        raise DataError(f"no customer to score at {day} ({bundle.target}: nobody is a "
                        "customer then)")
    scores = with_provenance(scores, source)
    log_given_out(scores, source, "batch")
    # names from the customers table the pandas engine read (the Dask engine has none here)
    write_export(scores, settings.out, bundle, form, None if prep is None else prep.customers)
    features_as_of = scores["features_as_of"].iloc[0]
    page = portfolio_report(
        scores, scores.get("segment"), settings.report_dir,
        f"Portfolio report {features_as_of}", bundle.policy, bundle.risk_bands,
        {"model": f"{settings.model} (version {version})", "features as of": features_as_of,
         "churn probability": bundle.target.description,
         "engine": settings.engine, "customers": f"{len(scores):,}"},
    )
    summary = portfolio_summary(scores)
    run_id = log_report_to_mlflow(settings.report_dir, settings.out, summary, settings.model,
                                  version, features_as_of, settings.engine, name)
    return ScoreResult(scores, summary, page, run_id, name, version,
                       bundle.target.description, seconds, tracking.ui_command,
                       form.columns.value)


def with_provenance(scores: pd.DataFrame, source: DataSourceLike) -> pd.DataFrame:
    """`scored_at` and `data_watermark` (the store's newest write; none for files) after
    `features_as_of`; from a store, also each row's `prediction_id` (in the prediction log,
    quoted to report an outcome: `POST /outcomes`, `churn outcomes load`)."""
    from churn_risk.features.io import as_source
    from churn_risk.features.store import Store, new_prediction_id
    from churn_risk.serving.scorer import utc_now_text

    source = as_source(source)
    watermark = None
    if source.store:
        with Store(source.location) as store:
            newest = store.watermark()
        watermark = None if newest is None else f"{newest:%Y-%m-%dT%H:%M:%S.%f}Z"
    at = list(scores.columns).index("features_as_of") + 1
    scores = scores.copy()
    scores.insert(at, "scored_at", utc_now_text())
    scores.insert(at + 1, "data_watermark", watermark)
    if source.store:
        scores.insert(1, "prediction_id", [new_prediction_id() for _ in range(len(scores))])
    return scores


def log_given_out(scores: pd.DataFrame, source: DataSourceLike, kind: str) -> None:
    """Scores from a store given out by a batch job go to its prediction log (`kind`: batch,
    worklist)."""
    from churn_risk.features.io import as_source
    from churn_risk.features.store import Store

    source = as_source(source)
    if source.store:
        with Store(source.location) as store:
            store.log_predictions(batch_prediction_rows(scores, kind))


def batch_prediction_rows(scores: pd.DataFrame, kind: str = "batch") -> list[dict]:
    """`prediction_log` rows of batch scores (`source` = `kind`)."""
    def column(name):
        return scores[name].tolist() if name in scores else [None] * len(scores)

    keys = {"prediction_id": column("prediction_id"),
            "customer_id": [str(c) for c in scores["customer_id"]],
            "model_name": column("model_name"), "model_version": column("model_version"),
            "target": column("target"), "horizon_days": [int(h) for h in column("horizon_days")],
            "features_as_of": column("features_as_of"), "scored_at": column("scored_at"),
            "data_watermark": column("data_watermark"),
            "churn_probability": [float(p) for p in scores["churn_probability"]],
            "risk_band": column("risk_band"), "reason_1": column("reason_1_feature"),
            "reason_2": column("reason_2_feature"), "reason_3": column("reason_3_feature"),
            "recommended_action": column("recommended_action")}
    return [{"source": kind, "channel": None, **dict(zip(keys, values, strict=True))}
            for values in zip(*keys.values(), strict=True)]
