"""Channel views: one model call, what each channel needs from it.

- contact_center: the reasons as short sentences an agent can read aloud, and open problems;
- sales: next products with propensities;
- service: open tickets and delivery issues;
- web: flags for personalisation;
- campaign: eligibility for retention and cross-sell campaigns.

Every view also carries `recommended_action`: the customer's next-best action when this channel
carries it out (its `channel` is the view's), else null, so each channel sees only what it has
to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn_risk.features.contract import CHANNELS
from churn_risk.features.lifecycle import delivery_lateness
from churn_risk.serving.jsonable import plain

if TYPE_CHECKING:
    from churn_risk.serving.scorer import ScoringState

HIGH_RISK_BANDS = ("high", "very_high")
CROSS_SELL_MIN_PROPENSITY = 0.02
CAMPAIGN_REST_DAYS = 30


def sentence(reason: dict) -> str:
    """A reason an agent can read aloud, e.g. 'Late deliveries in the last 90 days: 3.'"""
    value = reason["value"]
    if value is None:
        shown = "unknown"
    elif isinstance(value, str):
        shown = value.replace("_", " ")
    elif float(value).is_integer():
        shown = f"{value:.0f}"
    else:
        shown = f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}"
    effect = "this raises the risk" if reason["direction"] == "raises_risk" else (
        "this lowers the risk")
    return f"{reason['label']}: {shown} ({effect})."


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
    view = _channel_fields(channel, result, state, customer_id)
    action = result.get("recommended_action")
    view["recommended_action"] = action if action and action["channel"] == channel else None
    return view


def _channel_fields(channel: str, result: dict, state: ScoringState, customer_id) -> dict:
    reasons = result["top_reasons"]
    products = result["next_products"]
    high_risk = result["risk_band"] in HIGH_RISK_BANDS
    key = str(customer_id)
    history = state.history
    if channel == "contact_center":
        return {
            "say": [sentence(r) for r in reasons if r["direction"] == "raises_risk"],
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
        return {
            "show_retention_offer": high_risk,
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
