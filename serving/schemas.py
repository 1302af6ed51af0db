"""Typed request and response models of the scoring API (one module, shared by every route).

Requests are strict (`extra="forbid"`, no type coercion: `"5"` is not a number and `true` is not
an id) and every rule the server enforces is in the schema (batch sizes, `top_k`, channels, the
date pattern); the rules that depend on the served model (which features a what-if record may
carry, their bounds and category levels) are added to the published schema from the champion
(`api.openapi`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from churn_risk.features.contract import CHANNELS, TABLES
from churn_risk.serving.problems import FieldError
from churn_risk.serving.views import CAMPAIGN_REST_DAYS, CROSS_SELL_MIN_PROPENSITY

Channel = Literal[CHANNELS]  # type: ignore[valid-type]


def _integral(value):
    """JSON Schema counts 81.0 as an integer: so does the server."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _customer_id(value):
    value = _integral(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and 1 <= len(value) <= 64:
        return value
    raise ValueError("a customer id is a whole number or a text of 1 to 64 characters")


def _feature_value(value):
    if value is None or isinstance(value, str) and len(value) <= 200:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("numbers must be finite")
        return value
    raise ValueError("a feature value is a finite number, a text (up to 200 characters) or "
                     "null")


CustomerId = Annotated[
    Any, BeforeValidator(_customer_id),
    WithJsonSchema({"oneOf": [{"type": "integer"},
                              {"type": "string", "minLength": 1, "maxLength": 64}],
                    "description": "a customer id as the CRM writes it (number or text)",
                    "examples": [100123]}),
]
FeatureValue = Annotated[
    Any, BeforeValidator(_feature_value),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 200},
                              {"type": "null"}]}),
]
#: A what-if record: feature name -> value (the served model's features; see the schema).
FeatureRecord = dict[str, FeatureValue]

#: Largest batch one request may carry.
MAX_BATCH = 1000
STRICT = ConfigDict(extra="forbid", strict=True)


class ScoreRequest(BaseModel):
    """Score customers of the loaded snapshot by id, or inline feature records (what-if).

    Exactly one of `customer_ids` and `records`. A record may name a `customer_id` of the
    snapshot: its features start from that customer's and the record's other fields override
    them. Otherwise every feature must be given."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "oneOf": [{"required": ["customer_ids"]}, {"required": ["records"]}],
        "examples": [
            {"customer_ids": [100123, 100124], "channel": "contact_center", "top_k": 3},
            {"records": [{"customer_id": 100123, "tickets_open": 3}]},
        ]})

    # Absent, not null: the schema's "exactly one of" is about presence.
    customer_ids: list[CustomerId] = Field(default=None, min_length=1, max_length=MAX_BATCH)
    records: list[FeatureRecord] = Field(default=None, min_length=1, max_length=MAX_BATCH)
    channel: Channel | None = Field(default=None, description="adds that channel's view")
    top_k: Annotated[int, BeforeValidator(_integral)] = Field(
        default=5, ge=0, le=100, description="reasons listed per customer")

    @model_validator(mode="after")
    def _one_of(self) -> ScoreRequest:
        if (self.customer_ids is None) == (self.records is None):
            raise ValueError("give exactly one of customer_ids or records")
        return self


class ExplainRequest(BaseModel):
    """Explain one customer of the snapshot, or one what-if record: exactly one of the two."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "oneOf": [{"required": ["customer_id"]}, {"required": ["record"]}],
        "examples": [{"customer_id": 100123},
                     {"record": {"customer_id": 100123, "tickets_open": 3}}]})

    customer_id: CustomerId = None
    record: FeatureRecord = None

    @model_validator(mode="after")
    def _one_of(self) -> ExplainRequest:
        if (self.customer_id is None) == (self.record is None):
            raise ValueError("give exactly one of customer_id or record")
        return self


class TargetInfo(BaseModel):
    """What `churn_probability` is a probability of: the model's churn definition."""

    kind: Literal["labels", "subscription_end", "no_purchase"] = Field(
        description="labels: the company's own churn label; subscription_end: no active "
                    "subscription at the end of the horizon; no_purchase: no purchase in it")
    horizon_days: int = Field(description="the period the probability covers, in days")
    lapsed_after_days: int | None = Field(
        description="customers silent this long are former customers (purchases only)")
    description: str = Field(examples=["chance of leaving within 90 days (no active "
                                       "subscription at the end)"])


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


class RecommendedAction(BaseModel):
    """The next-best action: the one with the highest positive expected profit."""

    action: str = Field(description="name in the action catalogue")
    label: str
    kind: Literal["retention", "growth"]
    channel: Channel = Field(description="the channel that carries the action out")
    cost: float
    success_rate: float = Field(description="share of would-be churners kept (growth: of "
                                            "likely buyers converted)")
    success_rate_low: float | None = Field(None, description="the 95% interval of the success "
                                           "rate (null: a model trained before intervals)")
    success_rate_high: float | None = None
    success_source: str = Field(description="where the rate comes from: the catalogue's prior, "
                                            "updated by measured campaigns and reported "
                                            "outcomes, with the interval")
    expected_profit: float = Field(description="churn probability x lifetime value x "
                                               "success rate - cost (growth: propensity x gain "
                                               "x success rate - cost)")
    reason: str | None = Field(description="the driver group it answers, or the product family "
                                           "of a next product; null for a general offer")


class ChannelView(BaseModel):
    """What every channel's view carries: the customer's one recommended action, shown to the
    channel that carries it out, and named by its owner to every other."""

    recommended_action: RecommendedAction | None = Field(
        description="the result's `recommended_action` when this channel carries it out (its "
                    "`channel` is this view's); null when another channel does or no action "
                    "pays (`action_owner` tells which)")
    action_owner: Channel | None = Field(
        description="the channel that carries out the result's `recommended_action` (this "
                    "one or another); null when no action pays")


#: Rows of the customer's records: an open ticket (`opened_at`, `category`) or a late or
#: damaged delivery (`promised_date`, `delivered_date`, `days_late`, `damaged`, `arrived`),
#: with the columns the data has; dates YYYY-MM-DD.
RecordRows = list[dict[str, Any]]


class ContactCenterView(ChannelView):
    say: list[str] = Field(
        description="each reason raising the risk as a sentence an agent can read aloud: "
                    "what was measured, over which period, and what to do (the recommended "
                    "action when it answers that reason, else a suggestion for the reason's "
                    "driver group)",
        examples=[["Two late deliveries in the last three months — apologise and check that "
                   "the next delivery is on track."]])
    open_tickets: RecordRows = Field(description="tickets still open at `features_as_of`")
    delivery_issues: RecordRows = Field(description="the latest late or damaged deliveries")


class SalesView(ChannelView):
    next_products: list[NextProduct]
    retention_first: bool = Field(description="high or very high risk: keep before selling")


class ServiceView(ChannelView):
    open_tickets: RecordRows = Field(description="tickets still open at `features_as_of`")
    delivery_issues: RecordRows = Field(description="the latest late or damaged deliveries")


class WebView(ChannelView):
    show_retention_offer: bool = Field(description="whether `retention_offer` is not null")
    retention_offer: RecommendedAction | None = Field(
        description="the result's `recommended_action` when it is a retention action, "
                    "whichever channel carries it out (its `label`, `kind` and `channel` say "
                    "which offer and who makes it); null otherwise")
    show_support_shortcut: bool = Field(description="a service or delivery reason raises the "
                                                    "risk")
    suggest_families: list[str] = Field(
        description=f"product families with a propensity of at least "
                    f"{CROSS_SELL_MIN_PROPENSITY:.0%}")


class CampaignView(ChannelView):
    retention_eligible: bool = Field(description=f"high or very high risk and no campaign in "
                                                 f"the last {CAMPAIGN_REST_DAYS} days")
    cross_sell_eligible: bool = Field(description=f"lower risk, a likely next product and no "
                                                  f"campaign in the last {CAMPAIGN_REST_DAYS} "
                                                  "days")
    contacted_in_last_days: int | None = Field(
        description=f"{CAMPAIGN_REST_DAYS} when a campaign reached the customer in the last "
                    f"{CAMPAIGN_REST_DAYS} days, else null")


class CustomerScore(BaseModel):
    customer_id: CustomerId | None
    prediction_id: str | None = Field(
        default=None, description="this score's id in the prediction log, quoted to report "
                                  "what was done with it (`POST /outcomes`); null when the "
                                  "server reads files (no log)")
    churn_probability: float = Field(description="calibrated probability of churn in the horizon")
    target: TargetInfo
    risk_band: str
    top_reasons: list[Reason]
    next_products: list[NextProduct]
    model: ModelInfo
    features_as_of: str | None = Field(description="the moment the features describe: a date "
                                                   "(a day's snapshot) or a UTC time (live)")
    scored_at: str | None = Field(default=None, description="when this score was computed (UTC)")
    data_watermark: str | None = Field(
        default=None, description="the newest write of the store the features include (UTC; "
                                  "null for data read from files)")
    horizon_margin: float | None = Field(
        default=None, description="margin over the horizon if retained (null: no value model)")
    lifetime_value: float | None = Field(
        default=None, description="discounted margin over the lifetime if retained")
    value_at_risk: float | None = Field(
        default=None, description="churn_probability x lifetime_value")
    quadrant: Literal["protect_first", "keep", "grow", "let_go"] | None = Field(
        default=None, description="place in the value x risk matrix (null: no value model)")
    recommended_action: RecommendedAction | None = Field(
        default=None, description="null when no action pays")
    channel_view: (ContactCenterView | SalesView | ServiceView | WebView | CampaignView
                   | None) = Field(default=None, description="the view of the request's "
                                                         "`channel`; null without one")
    warnings: list[FieldError] = Field(
        default_factory=list, description="what-if values scored although the model never saw "
                                          "anything like them in training")


class ScoreResponse(BaseModel):
    results: list[CustomerScore]
    unknown_customer_ids: list[CustomerId] = Field(default_factory=list)
    target: TargetInfo
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
    target: TargetInfo
    model: ModelInfo
    features_as_of: str | None
    scored_at: str | None = None
    data_watermark: str | None = None


ISODate = Annotated[StrictStr, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$"),
                    WithJsonSchema({"type": "string", "format": "date",
                                    "pattern": r"^\d{4}-\d{2}-\d{2}$"})]


class ExplainChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    customer_id: CustomerId
    from_date: ISODate = Field(description="YYYY-MM-DD (ISO 8601)", examples=["2024-09-01"])
    to_date: ISODate = Field(description="YYYY-MM-DD, after from_date and up to the day after "
                                         "the data end", examples=["2024-12-01"])


class GroupChange(BaseModel):
    driver_group: str
    contribution_from: float = Field(description="log-odds contribution at from_date")
    contribution_to: float = Field(description="log-odds contribution at to_date")
    change: float = Field(description="contribution_to - contribution_from")


class FeatureChange(BaseModel):
    feature: str
    label: str
    driver_group: str
    value_from: float | str | None
    value_to: float | str | None
    contribution_from: float
    contribution_to: float
    change: float


class ExplainChangeResponse(BaseModel):
    customer_id: CustomerId
    from_date: str
    to_date: str
    base_value: float = Field(description="log-odds of a typical customer (same at both dates)")
    margin_from: float
    margin_to: float
    margin_change: float = Field(description="= sum of the groups' change")
    churn_probability_from: float
    churn_probability_to: float
    probability_change: float
    risk_band_from: str
    risk_band_to: str
    groups: list[GroupChange] = Field(description="every driver group, largest |change| first")
    features: list[FeatureChange] = Field(description="the largest feature-level changes")
    target: TargetInfo
    model: ModelInfo


# ------------------------------------------------------------------------------------ events

MAX_EVENTS = 10_000


def _event_value(value):
    if value is None or isinstance(value, bool) or isinstance(value, str) and len(value) <= 1000:
        return value
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("numbers must be finite")
        return value
    raise ValueError("a value is a number, a text (up to 1,000 characters), true/false or null")


EventValue = Annotated[
    Any, BeforeValidator(_event_value),
    WithJsonSchema({"oneOf": [{"type": "number"}, {"type": "string", "maxLength": 1000},
                              {"type": "boolean"}, {"type": "null"}]}),
]


class EventsRequest(BaseModel):
    """New records of one CRM table, as the data contract describes them (`/docs` lists the
    tables; dates ISO 8601). New customers arrive through `customers`; a batch is stored
    entirely or not at all, and records stored before are not stored twice."""

    model_config = ConfigDict(extra="forbid")

    table: Literal[tuple(TABLES)] = Field(  # type: ignore[valid-type]
        description="the contract table the records belong to", examples=["tickets"])
    records: list[dict[Annotated[str, StringConstraints(min_length=1, max_length=100)],
                       EventValue]] = Field(
        min_length=1, max_length=MAX_EVENTS,
        description=f"1 to {MAX_EVENTS:,} records: column name → value",
        examples=[[{"customer_id": 100001, "opened_at": "2026-12-02T09:30:00",
                    "category": "billing"}]])


class OutcomesRequest(BaseModel):
    """What channels did with scores given out: one report per record (`serving.outcomes`).
    A report is stored entirely with its batch or not at all, and a resend stores nothing."""

    model_config = ConfigDict(extra="forbid")

    records: list[dict[Annotated[str, StringConstraints(min_length=1, max_length=100)],
                       EventValue]] = Field(
        min_length=1, max_length=MAX_EVENTS,
        description=f"1 to {MAX_EVENTS:,} reports: `prediction_id` (of the score given out), "
                    "`response` (\"taken\" or \"declined\"), `occurred_at` (ISO 8601), and "
                    "optionally `customer_id` (checked against the prediction's), `action` "
                    "(default: the one recommended), `channel`, `stayed` (true/false once "
                    "known) and `outcome_id` (your id of the report). A later report of "
                    "whether the customer stayed needs only `prediction_id` and `stayed`",
        examples=[[{"prediction_id": "3f2a9c0e8b7d4e61a5c2f0d9e8b7a6c5", "customer_id": 100123,
                    "response": "taken", "channel": "contact_center",
                    "occurred_at": "2026-12-02T10:15:00Z"},
                   {"prediction_id": "3f2a9c0e8b7d4e61a5c2f0d9e8b7a6c5", "stayed": True}]])


class OutcomesResponse(BaseModel):
    received: int = Field(description="reports in the request")
    stored: int = Field(description="reports new to the store, stored before this answer")
    already_stored: int = Field(description="reports the store held already (a resend)")


class EventsResponse(BaseModel):
    table: str
    received: int = Field(description="records in the request")
    stored: int = Field(description="records new to the store, stored before this answer")
    already_stored: int = Field(description="records the store held already (a resend)")
    customer_ids: list[CustomerId] = Field(description="the customers the records are about")
    watermark: str = Field(description="when the newest record in the store was stored (UTC)")
