"""Channel views: one model call, what each channel needs from it.

- contact_center: the reasons as sentences an agent can read aloud, and open problems;
- sales: next products with propensities;
- service: open tickets and delivery issues;
- web: flags for personalisation, and which retention offer to show;
- campaign: eligibility for retention and cross-sell campaigns.

The customer's recommended action has one source, the top-level `recommended_action`: every
view shows it when the view's channel carries it out (the action's catalogue `channel`), else
null, and says in `action_owner` which channel does, so no channel reads "no action" for a
customer another channel is about to call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn_risk.features.contract import CHANNELS
from churn_risk.features.lifecycle import FeatureSpec, delivery_lateness
from churn_risk.serving import wording
from churn_risk.serving.jsonable import plain

if TYPE_CHECKING:
    from churn_risk.serving.scorer import ScoringState

HIGH_RISK_BANDS = ("high", "very_high")
CROSS_SELL_MIN_PROPENSITY = 0.02
CAMPAIGN_REST_DAYS = 30


def carries_out(action: dict | None, channel: str) -> bool:
    """Whether `channel` is the one to carry out `action`: the catalogue names one channel per
    action, so it is that one."""
    return action is not None and action["channel"] == channel


# --------------------------------------------------------------------------------------------
# Sentences an agent can read aloud


#: What an agent can do in the conversation about a reason of each driver group when the
#: customer's recommended action does not answer it (the only wording of it).
SUGGESTIONS = {
    "delivery": "apologise and check that the next delivery is on track",
    "service": "check they are being handled",
    "communication": "offer to be their contact from now on",
    "satisfaction": "ask what would make it better",
    "price": "explain the plan options",
    "engagement": "ask how they are getting on with us",
    "products": "ask whether their products still fit their needs",
    "tenure": "thank them for staying with us",
    "value": "check that their plan still fits how they buy",
    "profile": "listen for what matters to them",
}


@dataclass(frozen=True)
class Facts:
    """What a sentence may say besides the reason's own value."""

    currency: str
    #: Age of the customer's oldest open ticket (None: no open ticket known).
    oldest_open_days: int | None = None


def sentence(reason: dict, spec: FeatureSpec, facts: Facts, action: dict | None,
             channel: str = "contact_center") -> str:
    """A reason an agent can read aloud, and what to do about it, e.g. "Two late deliveries
    in the last three months — apologise and check that the next delivery is on track."

    What to do is the recommended action when it answers the reason's driver group (naming the
    channel carrying it out when it is another), else the group's `SUGGESTIONS`."""
    said = _said(reason["value"], spec, facts)
    return f"{said[:1].upper()}{said[1:]} — {_what_to_do(spec.group, action, channel)}."


def _what_to_do(group: str, action: dict | None, channel: str) -> str:
    if action is None or action["kind"] != "retention" or action["reason"] != group:
        return SUGGESTIONS[group]
    label = action["label"][:1].lower() + action["label"][1:]
    return label if carries_out(action, channel) else (
        f"{label} (by the {wording.words(action['channel'])} team)")


def _said(value, spec: FeatureSpec, facts: Facts) -> str:
    """The reason's measure in words: its template (by the feature's `stem`), else its label
    and value."""
    template = PHRASES.get(spec.stem)
    if template is None and spec.source == "surveys" and spec.name.startswith("survey_"):
        template = _survey_driver
    if template is not None and isinstance(value, int | float) and np.isfinite(value):
        return template(Phrase(value, spec, facts))
    if value is None and spec.source in NOTHING_ON_RECORD:
        return f"no {NOTHING_ON_RECORD[spec.source]} on record"
    if spec.kind == "numeric" and isinstance(value, int | float):
        return f"{spec.label}: {_amount(value, spec, facts)}"
    return f"{spec.label}: {wording.feature_value(wording.words(value) if value else value)}"


@dataclass(frozen=True)
class Phrase:
    """One reason's value, and the words a template says it with."""

    value: float
    spec: FeatureSpec
    facts: Facts

    def count(self, one: str, many: str | None = None) -> str:
        return wording.counted(self.value, one, many)

    @property
    def within(self) -> str:
        """"in the last three months" for the feature's window; "" without one."""
        days = self.spec.window_days
        return f" in the last {wording.period(days)}" if days else ""

    def days(self, value: float | None = None) -> str:
        return wording.plural(round(self.value if value is None else value), "day")

    @property
    def amount(self) -> str:
        return _amount(abs(self.value), self.spec, self.facts)

    @property
    def change(self) -> str:
        return "down" if self.value < 0 else "up"

    @property
    def points(self) -> str:
        """"1.6 points below" (or above)."""
        return (f"{wording.number(abs(self.value))} points "
                f"{'below' if self.value < 0 else 'above'}")

    @property
    def score(self) -> str:
        top = self.spec.bounds[1]
        return wording.number(self.value) + (f" out of {wording.number(top)}"
                                               if top is not None else "")


def _amount(value: float, spec: FeatureSpec, facts: Facts) -> str:
    """A share as a percentage, money with its currency, anything else as a number."""
    if spec.is_share:
        return wording.feature_value(value, share=True)
    if spec.is_money:
        return f"{'-' if value < 0 else ''}{facts.currency}{wording.number(abs(value))}"
    return wording.number(value)


def _open_tickets(p: Phrase) -> str:
    oldest = p.facts.oldest_open_days
    return p.count("open ticket") + (f", the oldest {p.days(oldest)} old"
                                     if oldest is not None and p.value > 0 else "")


def _survey_driver(p: Phrase) -> str:
    driver = p.spec.name.removeprefix("survey_").removesuffix("_last")
    return f"{wording.human(driver)} rated {p.score} in the last survey"


#: Sentence templates by feature `stem`; other features say their label and value.
PHRASES: dict[str, Callable[[Phrase], str]] = {
    "late_deliveries": lambda p: p.count("late delivery", "late deliveries") + p.within,
    "damaged_deliveries": lambda p: p.count("damaged delivery", "damaged deliveries")
    + p.within,
    "deliveries_overdue": lambda p: p.count("delivery", "deliveries")
    + " overdue and not arrived yet",
    "late_share": lambda p: f"{p.amount} of deliveries late{p.within}",
    "lateness_days": lambda p: f"deliveries {p.days()} late on average{p.within}",
    "tickets_open": _open_tickets,
    "tickets": lambda p: p.count("ticket") + " opened" + p.within,
    "tickets_closed_unresolved": lambda p: p.count("ticket")
    + " closed without a solution" + p.within,
    "repeat_tickets": lambda p: p.count("problem") + " came back again" + p.within,
    "resolution_days": lambda p: f"tickets took {p.days()} on average to close{p.within}",
    "distinct_agents": lambda p: p.count("different agent")
    + " dealt with the customer" + p.within,
    "outsourced_share": lambda p: f"{p.amount} of contacts handled by outsourced "
                                  f"support{p.within}",
    "satisfaction_last": lambda p: f"satisfaction rated {p.score} in the last survey",
    "nps_last": lambda p: f"likelihood to recommend rated {p.score} in the last survey",
    "satisfaction_trend": lambda p: f"satisfaction {p.points} its average{p.within}",
    "nps_trend": lambda p: f"likelihood to recommend {p.points} its average{p.within}",
    "days_since_last_survey": lambda p: f"last survey answer {p.days()} ago",
    "days_since_last_contact": lambda p: f"last contact {p.days()} ago",
    "days_since_last_purchase": lambda p: f"last purchase {p.days()} ago",
    "purchases": lambda p: p.count("purchase") + p.within,
    "purchases_trend": lambda p: f"purchases {p.change} by {wording.spelled(abs(p.value))}"
                                 f"{p.within} against the period before",
    "spend": lambda p: f"{p.amount} spent{p.within}",
    "spend_trend": lambda p: f"spending {p.change} {p.amount}{p.within} against the period "
                             "before",
    "avg_order_value": lambda p: f"purchases of {p.amount} on average{p.within}",
    "return_share": lambda p: f"{p.amount} of purchases returned{p.within}",
    "products_held": lambda p: p.count("product") + " held",
    "products_added": lambda p: p.count("product") + " added" + p.within,
    "products_dropped": lambda p: p.count("product") + " dropped" + p.within,
    "contacts": lambda p: p.count("contact") + p.within,
    "campaigns": lambda p: p.count("campaign") + " received" + p.within,
    "retention_offers": lambda p: p.count("retention offer") + " received" + p.within,
    "days_to_anniversary": lambda p: f"the yearly anniversary is in {p.days()}",
    "tenure_days": lambda p: f"a customer for {wording.tenure(p.value)}",
}


#: What a feature without a value means, by the table it reads: the customer has no such record
#: (in the period the feature reads).
NOTHING_ON_RECORD = {"transactions": "purchase", "subscriptions": "product",
                     "tickets": "ticket", "deliveries": "delivery", "interactions": "contact",
                     "surveys": "survey answer", "campaigns": "campaign"}


def sentences(reasons: list[dict], state: ScoringState, customer_id, action: dict | None,
              channel: str = "contact_center") -> list[str]:
    """`sentence` of each reason of a customer of `state`."""
    opened = [pd.Timestamp(t["opened_at"])
              for t in state.history.open_tickets.get(str(customer_id), [])
              if t.get("opened_at")]
    facts = Facts(state.bundle.policy.value.currency,
                  (state.as_of - min(opened)).days if opened else None)
    return [sentence(r, state.bundle.spec(r["feature"]), facts, action, channel)
            for r in reasons]


def records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    """Rows as JSON-ready dicts: dates as YYYY-MM-DD, missing values as None."""
    present = [c for c in columns if c in frame]
    return [
        {column: plain(value) for column, value in zip(present, row, strict=True)}
        for row in frame[present].itertuples(index=False)
    ]


#: Columns that record a later state of a record, and the columns that only mean something once
#: that state is reached.
LATER_STATES = {"closed_at": ("resolved",), "delivered_date": ("damaged",)}


def as_known_at(frame: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The records as they stood at `as_of`: a ticket closed later was still open, a delivery
    arriving later had not arrived (and its damage was unknown)."""
    frame = frame.copy()
    for column, dependents in LATER_STATES.items():
        if column in frame:
            later = (frame[column] >= as_of).to_numpy()
            frame.loc[later, column] = pd.NaT
            for dependent in dependents:
                if dependent in frame:
                    frame.loc[later, dependent] = pd.NA
    return frame


def contacts_by_month(contacts: pd.DataFrame) -> list[dict]:
    if not len(contacts):
        return []
    month = contacts["timestamp"].dt.strftime("%Y-%m")
    table = pd.crosstab(month, contacts["channel"]).reindex(columns=list(CHANNELS), fill_value=0)
    return [{"month": m, **{c: int(table.loc[m, c]) for c in CHANNELS}} for m in table.index]


def open_ticket_rows(tickets: pd.DataFrame | None, as_of: pd.Timestamp
                     ) -> tuple[pd.Series, list[dict]] | None:
    """(customer ids, rows) of the tickets still open at `as_of`, for every customer at once."""
    if tickets is None or not len(tickets):
        return None
    tickets = as_known_at(tickets, as_of)
    if "closed_at" in tickets:  # without it, every ticket is open as far as anyone knows
        tickets = tickets.loc[tickets["closed_at"].isna().to_numpy()]
    return tickets["customer_id"], records(tickets, ["opened_at", "category"])


def delivery_issue_rows(deliveries: pd.DataFrame | None, as_of: pd.Timestamp
                        ) -> tuple[pd.Series, list[dict]] | None:
    """(customer ids, rows) of the late or damaged deliveries as known at `as_of`."""
    if deliveries is None or not len(deliveries):
        return None
    deliveries = as_known_at(deliveries, as_of)
    late, arrived = delivery_lateness(deliveries, as_of.to_datetime64())
    damaged = (deliveries["damaged"].fillna(False).astype(bool).to_numpy()
               if "damaged" in deliveries else np.zeros(len(deliveries), dtype=bool))
    issues = deliveries.assign(days_late=late, arrived=arrived, damaged=damaged)
    issues = issues.loc[(late > 0) | damaged]
    return issues["customer_id"], records(issues, ["promised_date", "delivered_date",
                                                   "days_late", "damaged", "arrived"])


def channel_view(channel: str, result: dict, state: ScoringState, customer_id) -> dict:
    action = result.get("recommended_action")
    view = _channel_fields(channel, result, state, customer_id)
    view["recommended_action"] = action if carries_out(action, channel) else None
    view["action_owner"] = action["channel"] if action else None
    return view


def _channel_fields(channel: str, result: dict, state: ScoringState, customer_id) -> dict:
    reasons = result["top_reasons"]
    products = result["next_products"]
    action = result.get("recommended_action")
    high_risk = result["risk_band"] in HIGH_RISK_BANDS
    key = str(customer_id)
    history = state.history
    if channel == "contact_center":
        raising = [r for r in reasons if r["direction"] == "raises_risk"]
        return {
            "say": sentences(raising, state, customer_id, action, channel),
            "open_tickets": history.open_tickets.get(key, []),
            "delivery_issues": history.delivery_issues.get(key, []),
        }
    if channel == "sales":
        return {"next_products": products,
                "retention_first": high_risk}
    if channel == "service":
        return {"open_tickets": history.open_tickets.get(key, []),
                "delivery_issues": history.delivery_issues.get(key, [])}
    if channel == "web":
        groups = {r["driver_group"] for r in reasons if r["direction"] == "raises_risk"}
        offer = action if action and action["kind"] == "retention" else None
        return {
            "show_retention_offer": offer is not None,
            "retention_offer": offer,
            "show_support_shortcut": bool({"service", "delivery"} & groups),
            "suggest_families": [p["family"] for p in products
                                 if p["propensity"] >= CROSS_SELL_MIN_PROPENSITY],
        }
    if channel == "campaign":
        recent = key in history.recently_campaigned
        return {
            "retention_eligible": high_risk and not recent,
            "cross_sell_eligible": (not high_risk) and not recent and any(
                p["propensity"] >= CROSS_SELL_MIN_PROPENSITY for p in products),
            "contacted_in_last_days": CAMPAIGN_REST_DAYS if recent else None,
        }
    raise ValueError(f"unknown channel {channel!r}")
