"""`churn monitor`: the current portfolio against the model's training reference (feature and
score drift, `training.monitor`), the prediction log's score distribution and reason mix by month
(from a store), the realised accuracy of matured predictions, a verdict, one MLflow run (with
a store also the realised metrics `realised.*`, by-month and by-segment tables and the realised
figures: reliability diagram, AUC by month, gains).

The portfolio is featured as of `as_of` (default: now for a store, else the day after the data
end, as `churn score`) by the same feature functions as training and scoring, with the model's
own feature set and target (who is a customer).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from churn_risk.features.io import DataSourceLike
from churn_risk.features.lifecycle import PreparedData
from churn_risk.jobs.common import CHAMPION_URI, prepared, registered_bundle
from churn_risk.training.monitor import DriftReport, Thresholds, Verdict
from churn_risk.training.realised import RealisedPerformance

#: The exit code of `churn monitor` when retraining is due (`errors.py` lists every code).
RETRAINING_DUE = 4


class MonitorSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    model: str = CHAMPION_URI
    as_of: pd.Timestamp | None = None  # None: now for a store, else the day after the data end
    psi_alert: float = Field(0.25, gt=0)
    missing_alert: float = Field(0.10, gt=0, le=1)
    score_psi_alert: float = Field(0.25, gt=0)
    auc_drop: float = Field(0.05, gt=0, le=1)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.psi_alert, self.missing_alert, self.score_psi_alert,
                          self.auc_drop)


@dataclass(frozen=True)
class MonitorResult:
    model_name: str
    version: str
    #: None: the model has no training reference (trained before `churn monitor` existed).
    report: DriftReport | None
    verdict: Verdict
    #: Per month of the prediction log: score distribution and reason mix (empty without store).
    log_scores: pd.DataFrame
    reason_mix: pd.DataFrame
    #: The realised accuracy of matured predictions in words (None: not computed).
    realised: str | None
    run_id: str
    ui_command: str


def run(source: DataSourceLike, settings: MonitorSettings | None = None,
        prep: PreparedData | None = None) -> MonitorResult:
    settings = settings or MonitorSettings()
    from churn_risk.training.monitor import compare, prediction_log_by_month, verdict
    from churn_risk.training.tracking import configure_tracking

    tracking = configure_tracking()
    bundle, name, version = registered_bundle(settings.model)
    prep = prepared(source, prep)
    reference = bundle.info.get("reference")
    report = None
    if reference is not None:
        frame, as_of = _portfolio(source, prep, bundle, settings.as_of)
        probability = bundle.predict(frame)["churn_probability"].to_numpy()
        report = compare(reference, frame, bundle.specs, probability, as_of)
    log = _prediction_log(source)
    log_scores, reason_mix = prediction_log_by_month(log)
    realised = _realised(prep, log, name, version, settings.auc_drop)
    decided = verdict(report, settings.thresholds, realised.reason)
    if log is not None:  # a store: the service exports the verdict (`serving.metrics`)
        _record_check(source, name, version, report, decided, realised)
    run_id = _log_run(source, settings, name, version, reference, report, decided, log_scores,
                      reason_mix, realised)
    return MonitorResult(name, version, report, decided, log_scores, reason_mix,
                         realised.summary, run_id, tracking.ui_command)


def _portfolio(source: DataSourceLike, prep: PreparedData, bundle, as_of):
    """The portfolio's features as of `as_of` (see the module doc) and that moment."""
    from churn_risk.errors import DataError
    from churn_risk.serving.batch import portfolio_frame

    frame, as_of = portfolio_frame(source, as_of, bundle, prep)
    if not len(frame):
        raise DataError(f"no customer to monitor at {as_of:%Y-%m-%d} ({bundle.target}: nobody "
                        "is a customer then)")
    return frame, as_of


def _prediction_log(source: DataSourceLike) -> pd.DataFrame | None:
    """The store's prediction log (None for files: they hold none)."""
    from churn_risk.features.io import as_source

    source = as_source(source)
    if not source.store:
        return None
    from churn_risk.features.store import Store

    with Store(source.location) as store:
        return store.predictions()


@dataclass(frozen=True)
class _Realised:
    """The realised accuracy of the model version's matured predictions (`training.realised`)."""

    #: None: no prediction log (files, or an empty log): nothing judged.
    performance: RealisedPerformance | None = None
    #: The version's test ROC-AUC at training (None: unknown).
    test_auc: float | None = None
    #: The `auc_drop` reason of the verdict, or None.
    reason: str | None = None

    @property
    def summary(self) -> str | None:
        return None if self.performance is None else self.performance.summary


def _realised(prep: PreparedData, log: pd.DataFrame | None, name: str, version: str,
              auc_drop: float) -> _Realised:
    """The realised accuracy of this model version's matured predictions of the prediction log
    (`training.realised`): its overall realised ROC-AUC is compared with the version's test
    ROC-AUC at training (the `test_roc_auc` metric of its training run) by
    `training.monitor.auc_drop_reason`, whose reason joins the verdict. Without a store (no
    prediction log) nothing is judged."""
    if log is None or not len(log):
        return _Realised()
    from churn_risk.training.monitor import auc_drop_reason
    from churn_risk.training.realised import realised_performance

    perf = realised_performance(prep, log, model_name=name or None,
                                model_version=version or None)
    if perf.empty:
        return _Realised(perf)
    test_auc = _test_auc(name, version)
    return _Realised(perf, test_auc,
                     auc_drop_reason(test_auc, perf.overall.get("roc_auc"), auc_drop))


def _record_check(source: DataSourceLike, name: str, version: str, report: DriftReport | None,
                  decided: Verdict, realised: _Realised) -> None:
    """Keep the verdict in the store, where the service reads its drift gauges."""
    from churn_risk.features.io import as_source
    from churn_risk.features.store import Store

    features = {} if report is None else {
        r.feature: {"psi": float(r.psi), "missing_change": float(r.missing_change)}
        for r in report.features.itertuples()}
    auc = (None if realised.performance is None or realised.performance.empty
           else realised.performance.overall.get("roc_auc"))
    with Store(as_source(source).location) as store:
        store.record_check({
            "model_name": name, "model_version": str(version),
            "as_of": None if report is None else report.as_of,
            "retraining_due": bool(decided.retraining_due), "verdict": decided.text,
            "score_psi": None if report is None else float(report.score_psi),
            "realised_roc_auc": None if auc is None or auc != auc else float(auc),
            "features": features})


def _test_auc(name: str, version: str) -> float | None:
    """The test ROC-AUC of the version's training run (None when unknown)."""
    if not name:
        return None
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = client.get_model_version(name, version).run_id
    return client.get_run(run_id).data.metrics.get("test_roc_auc") if run_id else None


def _log_run(source, settings: MonitorSettings, name: str, version: str, reference,
             report: DriftReport | None, decided: Verdict, log_scores: pd.DataFrame,
             reason_mix: pd.DataFrame, realised: _Realised) -> str:
    import mlflow

    from churn_risk.features.io import source_name
    from churn_risk.training.monitor import psi_figure, score_shift_figure
    from churn_risk.training.tracking import job_tags

    as_of = report.as_of if report is not None else "no reference"
    with mlflow.start_run(run_name=f"monitor {settings.model} on {source_name(source)} "
                                   f"{as_of}") as active:
        mlflow.set_tags({**job_tags(), "job": "monitor", "model_uri": settings.model,
                         "model_version": str(version), "data": str(source),
                         "verdict": "retraining due" if decided.retraining_due else "stable",
                         "reference": "none" if report is None else str(report.reference_as_of),
                         "same_month_reference": "none" if report is None
                         else str(report.same_month_as_of or "none")})
        mlflow.log_params({k: v for k, v in settings.thresholds.__dict__.items()})
        metrics = {"retraining_due": float(decided.retraining_due)}
        if report is not None:
            t = report.features
            metrics.update({f"psi_{r.feature}": float(r.psi) for r in t.itertuples()})
            metrics.update({f"missing_change_{r.feature}": float(r.missing_change)
                            for r in t.itertuples()})
            metrics.update({"score_psi": report.score_psi, "rows": float(report.rows),
                            "score_mean": report.score_current_mean,
                            "features_drifted": float((t["psi"] >= settings.psi_alert).sum())})
            mlflow.log_figure(psi_figure(report, settings.psi_alert), "plots/psi.png")
            mlflow.log_figure(score_shift_figure(report, reference),
                              "plots/score_distribution.png")
            mlflow.log_text(t.to_csv(index=False), "tables/drift.csv")
        mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})
        if len(log_scores):
            mlflow.log_text(log_scores.to_csv(index=False), "tables/prediction_log_by_month.csv")
            mlflow.log_text(reason_mix.to_csv(index=False), "tables/reason_mix_by_month.csv")
        _log_realised(realised)
        # a stable verdict names what to watch in its text already
        lines = [decided.text, *(decided.watch if decided.retraining_due else [])]
        if realised.summary is not None:
            lines.append(f"realised: {realised.summary}")
        mlflow.log_text("\n".join(lines) + "\n", "verdict.txt")
    return active.info.run_id


def _log_realised(realised: _Realised) -> None:
    """Into the active run: the realised metrics (`realised.<metric>`, by month and segment
    too: `RealisedPerformance.mlflow_metrics`) and the test ROC-AUC they are judged against,
    the by-month, by-segment and reliability tables, and the realised figures."""
    import mlflow

    from churn_risk.training.realised import realised_figures

    perf = realised.performance
    if perf is None:
        return
    metrics = perf.mlflow_metrics()
    if realised.test_auc is not None:
        metrics["test_roc_auc_at_training"] = float(realised.test_auc)
    mlflow.log_metrics(metrics)
    if perf.empty:
        return
    for name, table in (("by_month", perf.by_month), ("by_segment", perf.by_segment),
                        ("reliability", perf.reliability)):
        mlflow.log_text(table.to_csv(index=False), f"tables/realised_{name}.csv")
    for name, figure in realised_figures(perf, realised.test_auc).items():
        mlflow.log_figure(figure, f"plots/{name}.png")
