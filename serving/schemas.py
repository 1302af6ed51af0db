"""Typed request and response models of the scoring API (one module, shared by every route)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Channel = Literal["sales", "contact_center", "web", "service", "campaign"]
CustomerId = int | str
FeatureValue = float | int | str | bool | None

#: Largest batch one request may carry (413 above).
MAX_BATCH = 1000


class ScoreRequest(BaseModel):
    """Score customers of the loaded snapshot by id, or inline feature records (what-if).

    A record may name a `customer_id` of the snapshot: its features start from that customer's
    and the record's other fields override them. Otherwise every feature must be given."""

    model_config = ConfigDict(extra="forbid")

    customer_ids: list[CustomerId] | None = Field(default=None, min_length=1)
    records: list[dict[str, FeatureValue]] | None = Field(default=None, min_length=1)
    channel: Channel | None = None
    top_k: int = Field(default=5, ge=0, le=100)

    @model_validator(mode="after")
    def _one_of(self) -> ScoreRequest:
        if (self.customer_ids is None) == (self.records is None):
            raise ValueError("give exactly one of customer_ids or records")
        return self


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId | None = None
    record: dict[str, FeatureValue] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ExplainRequest:
        if (self.customer_id is None) == (self.record is None):
            raise ValueError("give exactly one of customer_id or record")
        return self


class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str | None = None


class Reason(BaseModel):
    feature: str
    label: str
    driver_group: str
    value: float | str | None
    contribution: float = Field(description="SHAP contribution in log-odds")
    direction: Literal["raises_risk", "lowers_risk"]
    actionable: bool


class NextProduct(BaseModel):
    family: str
    propensity: float


class CustomerScore(BaseModel):
    customer_id: CustomerId | None
    churn_probability: float = Field(description="calibrated probability of churn in the horizon")
    risk_band: str
    top_reasons: list[Reason]
    next_products: list[NextProduct]
    model: ModelInfo
    features_as_of: str | None = Field(description="as-of date of the features used")
    # Filled by the portfolio-actions work; null until then.
    value: float | None = None
    quadrant: str | None = None
    recommended_action: dict | None = None
    channel_view: dict | None = None


class ScoreResponse(BaseModel):
    results: list[CustomerScore]
    unknown_customer_ids: list[CustomerId] = Field(default_factory=list)
    model: ModelInfo


class Contribution(BaseModel):
    feature: str
    label: str
    driver_group: str
    value: float | str | None
    contribution: float


class ExplainResponse(BaseModel):
    customer_id: CustomerId | None
    base_value: float = Field(description="log-odds of a typical customer")
    contributions: list[Contribution]
    groups: dict[str, float]
    margin: float = Field(description="base_value + sum(contributions), in log-odds")
    churn_probability: float = Field(description="calibrate(margin)")
    model: ModelInfo
    features_as_of: str | None
