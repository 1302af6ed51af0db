"""The account manager's page as typed data, built directly from a `ScoringState`.

`CustomerPage.build(state, customer_id)` reads the state's arrays (calibrated probability, risk
band, TreeSHAP contributions, feature values, propensities, the portfolio fields) and history
frames, and answers with frozen dataclasses holding real values: `datetime.date` for dates,
`float` for numbers, `None` for what is unknown. Nothing here is formatted for reading; the
template's filters (`page.py`) do that, in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn_risk.features.contract import CHANNELS
from churn_risk.features.dates import moment_or_none
from churn_risk.features.lifecycle import FeatureSpec, delivery_lateness
from churn_risk.models.portfolio import QUADRANT_LABELS
from churn_risk.serving import change, views
from churn_risk.serving.jsonable import plain

if TYPE_CHECKING:
    from churn_risk.serving.scorer import ModelRef, ScoringState

#: Reasons listed (the largest contributions that raise the risk).
REASONS = 5
#: Next products listed (the most likely families).
PRODUCTS = 3
#: Past recommendations listed (`past_recommendations`).
PAST_RECOMMENDATIONS = 5


# --------------------------------------------------------------------------------------------
# Explanation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Factor:
    """One feature's part in the score: its value and TreeSHAP contribution (log-odds)."""

    feature: str
    label: str
    group: str
    value: float | str | None
    contribution: float
    actionable: bool
    #: The value is a share in [0, 1] (shown as a percentage).
    share: bool = False
    #: The top of a survey score's scale (`FeatureSpec.scale`: "2 out of 10").
    scale: float | None = None


@dataclass(frozen=True)
class Explanation:
    base_value: float  # the typical customer's score (log-odds)
    margin: float  # this customer's score: base_value + every contribution
    factors: tuple[Factor, ...]  # every feature, the largest |contribution| first

    def raising(self, among: int, limit: int = REASONS) -> tuple[Factor, ...]:
        """Up to `limit` factors raising the risk among the `among` strongest, the largest
        first: with `among` the waterfall's bars, every reason listed is a bar of the chart (a
        low-risk customer's strongest factors lower the risk, and a reason the chart does not
        show cannot be explained by it)."""
        top = sorted(self.factors[:among], key=lambda f: -f.contribution)
        return tuple(f for f in top if f.contribution > 0)[:limit]

    def in_favour(self, among: int, limit: int = 3) -> tuple[Factor, ...]:
        """Up to `limit` factors lowering the risk among the `among` strongest."""
        return tuple(f for f in self.factors[:among] if f.contribution < 0)[:limit]


# --------------------------------------------------------------------------------------------
# Header, value, action, products
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Risk:
    probability: float  # calibrated
    band: str  # a risk band name of the bundle ("low", "medium", ...)
    period: str  # the target's horizon in words: "90 days"
    description: str  # what the probability is of, in full


@dataclass(frozen=True)
class Profile:
    segment: str | None = None
    region: str | None = None
    tenure_days: float | None = None
    lifecycle_stage: str | None = None


@dataclass(frozen=True)
class Product:
    family: str
    propensity: float


@dataclass(frozen=True)
class Value:
    horizon_days: int
    horizon_margin: float | None = None
    lifetime_value: float | None = None
    value_at_risk: float | None = None
    quadrant: str | None = None
    quadrant_label: str | None = None

    @property
    def known(self) -> bool:
        return any(v is not None for v in (self.horizon_margin, self.lifetime_value,
                                           self.value_at_risk))


@dataclass(frozen=True)
class Action:
    """The next-best action (`scorer.portfolio_fields`)."""

    action: str
    label: str
    kind: str  # "retention" | "growth"
    channel: str
    cost: float
    success_rate: float
    success_source: str
    expected_profit: float
    reason: str | None = None  # the driver group it answers, or the family it offers
    success_rate_low: float | None = None  # its 95% interval (None: an older model)
    success_rate_high: float | None = None


# --------------------------------------------------------------------------------------------
# Why did risk change
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupChange:
    group: str
    contribution_from: float
    contribution_to: float
    change: float


@dataclass(frozen=True)
class FeatureChange:
    feature: str
    label: str
    group: str
    value_from: float | str | None
    value_to: float | str | None
    change: float
    share: bool = False
    scale: float | None = None


@dataclass(frozen=True)
class RiskChange:
    """The snapshot against `change.PAGE_MONTHS_BACK` months earlier (`change.explain_change`);
    `unavailable` says why there is no comparison."""

    from_date: date
    to_date: date
    unavailable: str | None = None
    probability_from: float | None = None
    probability_to: float | None = None
    margin_change: float = 0.0
    groups: tuple[GroupChange, ...] = ()  # the largest |change| first
    features: tuple[FeatureChange, ...] = ()  # the largest |change| first


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    opened: date
    closed: date | None  # None: still open at the snapshot
    category: str | None
    resolved: bool | None
    days: int | None  # open so far, or until closed

    @property
    def status(self) -> str:
        """"open", "unsolved" (closed without a solution), "solved" or "closed"."""
        if self.closed is None:
            return "open"
        return {False: "unsolved", True: "solved"}.get(self.resolved, "closed")


@dataclass(frozen=True)
class Delivery:
    promised: date
    delivered: date | None  # None: not delivered at the snapshot
    damaged: bool
    days_late: float  # so far, when not delivered

    @property
    def late(self) -> bool:
        return self.days_late > 0


@dataclass(frozen=True)
class ContactMonth:
    month: date  # its first day
    counts: dict[str, int]  # channel -> contacts

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Survey:
    day: date
    satisfaction: float | None
    nps: float | None


@dataclass(frozen=True)
class History:
    """The last `scorer.HISTORY_DAYS` before the snapshot, as known then."""

    tickets: tuple[Ticket, ...] = ()  # the most recent first
    deliveries: tuple[Delivery, ...] = ()  # the most recent first
    contacts: tuple[ContactMonth, ...] = ()  # oldest month first
    surveys: tuple[Survey, ...] = ()  # oldest first

    @property
    def open_tickets(self) -> int:
        return sum(t.status == "open" for t in self.tickets)

    @property
    def unsolved_tickets(self) -> int:
        return sum(t.status == "unsolved" for t in self.tickets)

    @property
    def late_deliveries(self) -> int:
        return sum(d.late for d in self.deliveries)

    @property
    def damaged_deliveries(self) -> int:
        return sum(d.damaged for d in self.deliveries)

    @property
    def pending_deliveries(self) -> int:
        return sum(d.delivered is None for d in self.deliveries)

    @property
    def contacts_total(self) -> int:
        return sum(m.total for m in self.contacts)


# --------------------------------------------------------------------------------------------
# Past recommendations and their outcomes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PastRecommendation:
    """A score given out for the customer (`prediction_log`) and, once a channel reported it
    (`POST /outcomes`), what became of it: the newest report of each field
    (`Store.outcome_state`)."""

    prediction_id: str
    scored_at: datetime | None
    probability: float | None
    action: str | None  # recommended (None: no action paid)
    channel: str | None  # the channel it was given to (None: a batch or an unnamed caller)
    source: str | None  # "api", "batch", "worklist"
    response: str | None = None  # "taken" | "declined"; None: nothing reported yet
    action_reported: str | None = None  # the action taken or declined
    reported_by: str | None = None  # the channel that acted on it
    occurred_at: datetime | None = None
    stayed: bool | None = None  # None: not (yet) reported

    @property
    def other_action(self) -> bool:
        """The channel acted with another action than the one recommended."""
        return self.action_reported is not None and self.action_reported != self.action


def past_recommendations(store, customer_id, limit: int = PAST_RECOMMENDATIONS
                         ) -> tuple[PastRecommendation, ...]:
    """The customer's scores given out and their outcomes from the store's prediction log, the
    newest first, at most `limit`: those with a reported outcome first (an account manager
    wants what was done; the log also holds every routine score), then the newest others."""
    key = str(customer_id)
    state = store.outcome_state(key)
    if len(state):
        state = state.assign(_when=pd.to_datetime(state["scored_at"], errors="coerce",
                                                  utc=True))
        state = state.sort_values("_when", ascending=False, na_position="last").head(limit)
    reported = {r["prediction_id"]: r for r in _rows(state)}
    recent = [i for i in store.predictions(key, newest=limit)["prediction_id"].iloc[::-1]
              if not _missing(i) and i not in reported]
    chosen = [*reported, *recent][:limit]
    logged = store.predictions_by_id(chosen)
    past = []
    for prediction_id in chosen:
        row, outcome = logged.get(prediction_id), reported.get(prediction_id, {})
        if row is None:
            continue
        action = _value(row.get("recommended_action"))
        past.append((row["id"], PastRecommendation(
            prediction_id=prediction_id,
            scored_at=_moment(row.get("scored_at")),
            probability=_number(row.get("churn_probability")),
            action=None if action == "none" else action,
            channel=_value(row.get("channel")),
            source=_value(row.get("source")),
            response=_value(outcome.get("response")),
            action_reported=_value(outcome.get("action")),
            reported_by=_value(outcome.get("channel")),
            occurred_at=_moment(outcome.get("occurred_at")),
            stayed=_flag(outcome.get("stayed")),
        )))
    # scored_at is to the second: the log's order breaks ties
    past.sort(key=lambda p: (p[1].scored_at or datetime.min, p[0]), reverse=True)
    return tuple(p for _, p in past)


# --------------------------------------------------------------------------------------------
# A former customer: their last known state, no score
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormerCustomer:
    """A customer the data know who is no longer scored (`labels.left_on`), as they were when
    they left: who they were, how long they stayed, what they bought, their last contacts."""

    customer_id: object
    name: str | None
    left_on: date
    signup: date | None
    segment: str | None
    region: str | None
    purchases: int  # recorded purchases, all time
    spend: float | None  # their total, in the model's currency (None: no transactions table)
    last_purchase: date | None
    last_contact: date | None
    tickets: int  # tickets ever opened
    open_tickets: int  # of them, not closed when they left

    @property
    def tenure_days(self) -> float | None:
        return None if self.signup is None else float((self.left_on - self.signup).days)


def former_customer(prep, customer_id, left: date) -> FormerCustomer:
    """`customer_id`'s last known state from their records in `prep` (as known when they left)."""
    customers = prep.customers
    pos = int(np.flatnonzero(customers["customer_id"].astype(str).to_numpy()
                             == str(customer_id))[0])  # events' `_pos`: the row in the table
    row = customers.iloc[pos]
    cut = pd.Timestamp(left) + pd.Timedelta(days=1)

    def events(table: str, column: str) -> pd.DataFrame:
        if not prep.has(table) or column not in prep.events[table]:
            return pd.DataFrame(columns=[column])
        frame = prep.events[table]
        frame = frame.loc[frame["_pos"].to_numpy() == pos]
        return frame.loc[pd.to_datetime(frame[column]) < cut]

    bought = events("transactions", "timestamp")
    contacts = events("interactions", "timestamp")
    tickets = events("tickets", "opened_at")
    closed = (pd.to_datetime(tickets["closed_at"]) < cut if "closed_at" in tickets
              else pd.Series(False, index=tickets.index))
    return FormerCustomer(
        customer_id=plain(row["customer_id"]), name=_value(row.get("name")), left_on=left,
        signup=_day(row.get("signup_date")), segment=_value(row.get("segment")),
        region=_value(row.get("region")), purchases=len(bought),
        spend=float(bought["amount"].sum()) if "amount" in bought else None,
        last_purchase=_day(pd.to_datetime(bought["timestamp"]).max()) if len(bought) else None,
        last_contact=_day(pd.to_datetime(contacts["timestamp"]).max()) if len(contacts)
        else None,
        tickets=len(tickets), open_tickets=int((~closed.fillna(False)).sum()))


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerPage:
    customer_id: int | str
    features_as_of: date
    model: ModelRef
    risk: Risk
    profile: Profile
    explanation: Explanation
    next_products: tuple[Product, ...]
    value: Value
    action: Action | None  # None: no action pays
    risk_change: RiskChange
    history: History
    #: The currency of every amount (`ValueSettings.currency`: the model's transactions).
    currency: str
    #: Scores given out and their outcomes (`past_recommendations`); None: this server keeps
    #: no prediction log (it reads files).
    past: tuple[PastRecommendation, ...] | None = None
    #: The customer's name, when the customers table has names.
    name: str | None = None

    @classmethod
    def build(cls, state: ScoringState, customer_id) -> CustomerPage:
        """The page of one customer of the state's snapshot; `UnknownCustomer` otherwise."""
        from churn_risk.serving.scorer import UnknownCustomer

        i = state.row_of.get(str(customer_id))
        if i is None:
            raise UnknownCustomer(customer_id)
        key = state.ids[i]
        contributions = np.asarray(state.contributions[i], dtype=float)
        order = np.argsort(-np.abs(contributions), kind="stable")
        factors = tuple(_factor(state.specs[j], contributions[j], state.values[i][j])
                        for j in order)
        propensity = np.asarray(state.propensity[i], dtype=float)
        products = tuple(Product(state.families[j], float(propensity[j]))
                         for j in np.argsort(-propensity, kind="stable")[:PRODUCTS])
        horizon_margin, lifetime_value, value_at_risk, quadrant, action = state.portfolio[i]
        target = state.bundle.target
        row = state.frame.iloc[i]
        return cls(
            customer_id=plain(key),
            features_as_of=state.as_of.date(),
            model=state.model,
            risk=Risk(float(state.probability[i]), str(state.band[i]), target.period,
                      target.description),
            profile=Profile(**{k: _value(row[k]) for k in
                               ("segment", "region", "tenure_days", "lifecycle_stage")
                               if k in row}),
            explanation=Explanation(float(state.base_value),
                                    float(state.base_value) + float(contributions.sum()),
                                    factors),
            next_products=products,
            value=Value(target.horizon_days, horizon_margin, lifetime_value, value_at_risk,
                        quadrant, QUADRANT_LABELS.get(quadrant) if quadrant else None),
            action=Action(**action) if action else None,
            risk_change=_risk_change(state, key),
            history=_history(state, key),
            currency=state.bundle.policy.value.currency,
            name=_name(state, key),
        )


def _factor(spec: FeatureSpec, contribution: float, value) -> Factor:
    return Factor(spec.name, spec.label, spec.group, _value(value), float(contribution),
                  spec.actionable, spec.is_share, spec.scale)


def _risk_change(state: ScoringState, customer_id) -> RiskChange:
    earlier = state.as_of - pd.DateOffset(months=change.PAGE_MONTHS_BACK)
    dates = pd.Timestamp(earlier).date(), state.as_of.date()
    try:
        answer = change.explain_change(state.bundle, state.prep, customer_id, earlier,
                                       state.as_of, limit=state.date_limit)
    except change.ChangeRequestError as exc:
        return RiskChange(*dates, unavailable=exc.problem)
    specs = {s.name: s for s in state.specs}
    return RiskChange(
        *dates,
        probability_from=answer["churn_probability_from"],
        probability_to=answer["churn_probability_to"],
        margin_change=answer["margin_change"],
        groups=tuple(GroupChange(g["driver_group"], g["contribution_from"],
                                 g["contribution_to"], g["change"]) for g in answer["groups"]),
        features=tuple(
            FeatureChange(f["feature"], f["label"], f["driver_group"], _value(f["value_from"]),
                          _value(f["value_to"]), f["change"], specs[f["feature"]].is_share,
                          specs[f["feature"]].scale)
            for f in answer["features"]),
    )


def _history(state: ScoringState, customer_id) -> History:
    h, as_of = state.history, state.as_of
    today = as_of.date()

    tickets = []
    for t in _rows(views.as_known_at(h.of("tickets", customer_id), as_of)):
        opened, closed = _day(t.get("opened_at")), _day(t.get("closed_at"))
        end = closed or today
        tickets.append(Ticket(opened, closed, _value(t.get("category")),
                              _flag(t.get("resolved")) if closed else None,
                              (end - opened).days if end >= opened else None))

    frame = views.as_known_at(h.of("deliveries", customer_id), as_of)
    late = delivery_lateness(frame, as_of.to_datetime64())[0] if len(frame) else []
    deliveries = [
        Delivery(_day(d["promised_date"]), _day(d.get("delivered_date")),
                 _flag(d.get("damaged")) is True, float(days))
        for d, days in zip(_rows(frame), late, strict=True)
    ]

    contacts = []
    frame = h.of("interactions", customer_id)
    if len(frame):
        table = pd.crosstab(frame["timestamp"].dt.to_period("M"), frame["channel"])
        # every month the history reaches, zero where there was no contact: a gap is news too
        last = (as_of - pd.Timedelta(1, "ns")).to_period("M")  # events are before `as_of`
        table = table.reindex(pd.period_range(h.start.to_period("M"), last, freq="M"),
                              fill_value=0)
        channels = [c for c in CHANNELS if c in table] + [c for c in table if c not in CHANNELS]
        contacts = [ContactMonth(date(m.year, m.month, 1),
                                 {str(c): int(table.loc[m, c]) for c in channels})
                    for m in table.index]

    surveys = []
    for s in _rows(h.of("surveys", customer_id)):
        point = Survey(_day(s["timestamp"]), _number(s.get("satisfaction")),
                       _number(s.get("nps")))
        if point.satisfaction is not None or point.nps is not None:
            surveys.append(point)

    return History(
        tickets=tuple(sorted(tickets, key=lambda t: t.opened, reverse=True)),
        deliveries=tuple(sorted(deliveries, key=lambda d: d.promised, reverse=True)),
        contacts=tuple(contacts),
        surveys=tuple(sorted(surveys, key=lambda s: s.day)),
    )


# --------------------------------------------------------------------------------------------
# Values out of pandas and NumPy
# --------------------------------------------------------------------------------------------


def _rows(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict("records") if len(frame) else []


def _missing(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float | np.floating) and math.isnan(value))


def _day(value) -> date | None:
    return None if _missing(value) else pd.Timestamp(value).date()


def _moment(value) -> datetime | None:
    moment = moment_or_none(value)
    return None if moment is None else moment.to_pydatetime()


def _name(state: ScoringState, key) -> str | None:
    names = getattr(state, "names", None)
    return None if names is None else _value(names.get(str(key)))


def _flag(value) -> bool | None:
    return None if _missing(value) else bool(value)


def _number(value) -> float | None:
    if _missing(value) or isinstance(value, str):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _value(value) -> float | str | None:
    """A feature or profile value: a number, a category, or None when missing."""
    if _missing(value):
        return None
    if isinstance(value, str):
        return value
    try:
        return _number(value)
    except (TypeError, ValueError):
        return str(value)


