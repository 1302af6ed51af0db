"""`churn monitor`: the current portfolio against the model's training reference (feature and
score drift, `training.monitor`), the prediction log's score distribution and reason mix by month
(from a store), the realised accuracy of matured predictions, a verdict, one MLflow run.

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
    realised, realised_reason, realised_auc = _realised(prep, log, name, version,
                                                        settings.auc_drop)
    decided = verdict(report, settings.thresholds, realised_reason)
    if log is not None:  # a store: the service exports the verdict (`serving.metrics`)
        _record_check(source, name, version, report, decided, realised_auc)
    run_id = _log_run(source, settings, name, version, reference, report, decided, log_scores,
                      reason_mix, realised)
    return MonitorResult(name, version, report, decided, log_scores, reason_mix, realised,
                         run_id, tracking.ui_command)


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


def _realised(prep: PreparedData, log: pd.DataFrame | None, name: str, version: str,
              auc_drop: float) -> tuple[str | None, str | None, float | None]:
    """(the realised accuracy in words, the `auc_drop` reason or None, the realised ROC-AUC).

    ---- issue 14: realised accuracy joins the verdict HERE -----------------------------------
    `training.realised` (written separately) judges matured predictions of the prediction log;
    its overall realised ROC-AUC for this model version is compared with the version's test
    ROC-AUC at training (the `test_roc_auc` metric of its training run) by
    `training.monitor.auc_drop_reason`, whose reason joins the verdict. Without a store (no
    prediction log) or without that module, nothing is judged here.
    """
    if log is None or not len(log):
        return None, None, None
    try:
        from churn_risk.training.realised import realised_performance
    except ImportError:  # not there yet: drift only
        return None, None, None
    from churn_risk.training.monitor import auc_drop_reason

    perf = realised_performance(prep, log, model_name=name or None,
                                model_version=version or None)
    if perf.empty:
        return perf.summary, None, None
    auc = perf.overall.get("roc_auc")
    return perf.summary, auc_drop_reason(_test_auc(name, version), auc, auc_drop), auc


def _record_check(source: DataSourceLike, name: str, version: str, report: DriftReport | None,
                  decided: Verdict, realised_auc: float | None) -> None:
    """Keep the verdict in the store, where the service reads its drift gauges."""
    from churn_risk.features.io import as_source
    from churn_risk.features.store import Store

    features = {} if report is None else {
        r.feature: {"psi": float(r.psi), "missing_change": float(r.missing_change)}
        for r in report.features.itertuples()}
    with Store(as_source(source).location) as store:
        store.record_check({
            "model_name": name, "model_version": str(version),
            "as_of": None if report is None else report.as_of,
            "retraining_due": bool(decided.retraining_due), "verdict": decided.text,
            "score_psi": None if report is None else float(report.score_psi),
            "realised_roc_auc": None if realised_auc is None or realised_auc != realised_auc
            else float(realised_auc),
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
             reason_mix: pd.DataFrame, realised: str | None) -> str:
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
                         "reference": "none" if report is None else str(report.reference_as_of)})
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
        lines = [decided.text, *decided.watch]
        if realised is not None:
            lines.append(f"realised: {realised}")
        mlflow.log_text("\n".join(lines) + "\n", "verdict.txt")
    return active.info.run_id
