"""The campaign evaluation (and uplift model) into the active MLflow run."""

from __future__ import annotations

import re

import mlflow
import numpy as np

from churn_risk.training.campaigns.effects import CampaignEvaluation
from churn_risk.training.campaigns.figures import forest_figure, qini_figure
from churn_risk.training.campaigns.uplift import UpliftModel

__all__ = ["log_campaign_evaluation"]

#: The figures logged per campaign and per pooled offer (`campaign.<id>.<name>`).
METRIC_NAMES = ("uplift", "uplift_low", "uplift_high", "relative_churn_reduction",
                "relative_churn_reduction_low", "relative_churn_reduction_high", "n_treatment",
                "n_control")


def _key(value: object) -> str:
    """A metric-name-safe version of a campaign id or offer."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", str(value))


def log_campaign_evaluation(
    evaluation: CampaignEvaluation, uplift: UpliftModel | None = None
) -> None:
    """Log the evaluation into the active MLflow run: per-campaign and per-offer metrics
    (`campaign.<id>.uplift`, `.uplift_low`, `.uplift_high`, `.relative_churn_reduction`, ...),
    the tables as CSV under `campaigns/`, the forest plot, and the uplift model's Qini figures."""
    if mlflow.active_run() is None:
        raise RuntimeError("log_campaign_evaluation needs an active MLflow run "
                           "(inside `with mlflow.start_run():`)")
    mlflow.log_params({
        "campaigns.confidence": evaluation.confidence,
        "campaigns.horizon_days": evaluation.horizon_days,
        "campaigns.churn_definition": evaluation.churn_definition,
        "campaigns.pooling": "mantel_haenszel_by_campaign",
    })
    mlflow.log_metrics(_metrics(evaluation, uplift))
    for name, frame in (("campaigns", evaluation.campaigns), ("segments", evaluation.segments),
                        ("offers", evaluation.offers)):
        mlflow.log_text(frame.to_csv(index=False), f"campaigns/{name}.csv")
    if len(evaluation.campaigns):
        mlflow.log_figure(forest_figure(evaluation), "campaigns/forest.png")
    if uplift is not None:
        mlflow.log_text(uplift.deciles.to_csv(index=False), "campaigns/uplift_deciles.csv")
        mlflow.log_text("\n".join(uplift.notes), "campaigns/uplift_notes.txt")
        mlflow.log_figure(qini_figure(uplift), "campaigns/qini.png")


def _metrics(evaluation: CampaignEvaluation, uplift: UpliftModel | None) -> dict[str, float]:
    """The finite figures per campaign and per offer, the evaluable counts, and the Qini."""
    metrics: dict[str, float] = {}
    for prefix, frame, key in (("campaign", evaluation.campaigns, "campaign_id"),
                               ("offer", evaluation.offers, "offer")):
        for r in frame.to_dict("records"):
            for name in METRIC_NAMES:
                value = float(r[name])
                if np.isfinite(value):
                    metrics[f"{prefix}.{_key(r[key])}.{name}"] = value
    metrics["campaigns.evaluable"] = float(evaluation.campaigns["evaluable"].sum())
    metrics["campaigns.not_evaluable"] = float((~evaluation.campaigns["evaluable"]).sum())
    if uplift is not None:
        metrics.update({f"uplift_model.qini.{k}": float(v) for k, v in uplift.qini.items()
                        if np.isfinite(v)})
    return metrics
