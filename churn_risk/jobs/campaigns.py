"""`churn campaigns evaluate`: the retention uplift of past campaigns (treatment vs control, with
intervals, per campaign, segment and offer), the success rates the next-best actions use, and an
uplift model of who is persuadable; one MLflow run."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from churn_risk.features.io import DataSourceLike, source_name
from churn_risk.features.lifecycle import PreparedData
from churn_risk.jobs.common import prepared


class CampaignSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Retention is measured over this many days after the send date.
    horizon_days: int = Field(90, ge=1, le=3660)
    #: Coverage of the confidence intervals.
    confidence: float = Field(0.95, ge=0.5, le=0.999)
    #: Customer columns to break the results down by.
    segments: tuple[str, ...] = ("segment",)
    #: Fit the uplift model when the control groups are large enough.
    uplift: bool = True


@dataclass(frozen=True)
class CampaignResult:
    evaluation: object  # training.campaigns.CampaignEvaluation
    success_rates: dict[str, dict]
    uplift: object | None  # training.campaigns.UpliftModel
    #: Why there is no uplift model (None when there is one or none was asked for).
    no_uplift: str | None
    run_id: str
    ui_command: str


def run(source: DataSourceLike, settings: CampaignSettings | None = None,
        prep: PreparedData | None = None) -> CampaignResult:
    """`DataError` when the data hold no campaigns."""
    import mlflow

    from churn_risk.errors import DataError
    from churn_risk.features.config import FeatureConfig
    from churn_risk.training.campaigns import (
        NotEnoughControls,
        campaign_target,
        evaluate_campaigns,
        fit_uplift_model,
        log_campaign_evaluation,
        success_rates,
    )
    from churn_risk.training.tracking import configure_tracking, job_tags

    settings = settings or CampaignSettings()
    tracking = configure_tracking()
    prep = prepared(source, prep)
    if not prep.has("campaigns") or not len(prep.events["campaigns"]):
        raise DataError(f"{source}: no campaigns table (or it is empty): nothing to evaluate")
    cfg = FeatureConfig()
    target = campaign_target(prep, settings.horizon_days)
    evaluation = evaluate_campaigns(prep, cfg, target, settings.segments, settings.confidence)
    model, why_not = None, None
    if settings.uplift:
        try:
            model = fit_uplift_model(prep, evaluation, cfg)
        except NotEnoughControls as exc:
            why_not = str(exc)
    name = f"campaigns evaluate {settings.horizon_days}d on {source_name(source)}"
    with mlflow.start_run(run_name=name) as active:
        mlflow.set_tags({**job_tags(), "job": "campaigns evaluate", "data": str(source),
                         "target": str(target)})
        mlflow.log_param("campaigns.segments", ",".join(settings.segments))
        log_campaign_evaluation(evaluation, model)
    return CampaignResult(evaluation, success_rates(evaluation), model, why_not,
                          active.info.run_id, tracking.ui_command)
