"""`churn evaluate`: a registered model on the newest labelled snapshot (its own held-out
customers when it was trained on a customer holdout), logged as an MLflow run."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from churn_risk.features.io import DataSourceLike, source_name
from churn_risk.features.lifecycle import PreparedData
from churn_risk.jobs.common import CHAMPION_URI, prepared, registered_bundle


class EvaluateSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = CHAMPION_URI


@dataclass(frozen=True)
class EvaluateResult:
    metrics: dict[str, float]
    judged_on: str
    run_id: str
    ui_command: str


def run(source: DataSourceLike, settings: EvaluateSettings | None = None,
        prep: PreparedData | None = None) -> EvaluateResult:
    settings = settings or EvaluateSettings()
    import mlflow

    from churn_risk.training.evaluate import HoldoutEvaluator
    from churn_risk.training.tracking import configure_tracking

    tracking = configure_tracking()
    registered_bundle(settings.model)  # no such model: a UsageError naming it
    judge = HoldoutEvaluator(prepared(source, prep))
    judge.begin([settings.model])
    metrics = judge(settings.model)
    name = f"evaluate {settings.model} on {source_name(source)} {judge.as_of:%Y-%m-%d}"
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags({"job": "evaluate", "model_uri": settings.model,
                         "as_of": f"{judge.as_of:%Y-%m-%d}", "data": str(source),
                         "target": str(judge.target)})
        mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})
    return EvaluateResult(metrics, judge.description, run.info.run_id, tracking.ui_command)
