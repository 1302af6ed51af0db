"""`churn explain-change`: why a customer's risk changed between two dates, by driver group."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from churn_risk.features.io import DataSourceLike
from churn_risk.features.lifecycle import PreparedData
from churn_risk.jobs.common import CHAMPION_URI, prepared, registered_bundle


class ExplainChangeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    customer: str
    from_date: str
    to_date: str
    model: str = CHAMPION_URI


def run(source: DataSourceLike, settings: ExplainChangeSettings,
        prep: PreparedData | None = None) -> tuple[dict, str]:
    """(the change, as `serving.change.explain_change` returns it; the target's description).
    Raises `ChangeRequestError` subclasses naming the field for bad input."""
    from churn_risk.serving.change import explain_change
    from churn_risk.training.tracking import configure_tracking

    configure_tracking()
    bundle, _, _ = registered_bundle(settings.model)
    change = explain_change(bundle, prepared(source, prep), settings.customer,
                            settings.from_date, settings.to_date)
    return change, bundle.target.description
