"""Records as the service writes them, for tests that put them in a store directly."""

from __future__ import annotations

import pandas as pd

from churn_risk.features.store import new_prediction_id


def utc_text(offset_minutes: float = 0) -> str:
    """Now (plus `offset_minutes`) as the API writes a moment: 2026-12-02T10:15:00Z."""
    moment = pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=offset_minutes)
    return f"{moment:%Y-%m-%dT%H:%M:%S}Z"


def logged_prediction(customer_id, action="service_recovery", probability=0.42,
                      channel="contact_center", scored_minutes_ago: float = 60,
                      source="api") -> dict:
    """A prediction log row as the service writes it (`serving.predlog.prediction_rows`)."""
    return {"prediction_id": new_prediction_id(), "source": source, "channel": channel,
            "customer_id": str(customer_id), "model_name": "churn-risk", "model_version": "1",
            "target": "no_purchase", "horizon_days": 90, "features_as_of": "2026-12-01",
            "scored_at": utc_text(-scored_minutes_ago), "data_watermark": None,
            "churn_probability": probability, "risk_band": "high", "reason_1": "tickets_open",
            "reason_2": None, "reason_3": None, "recommended_action": action}
