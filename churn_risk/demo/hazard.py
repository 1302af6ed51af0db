"""The mechanism's truth at each month start: churn hazard, adoption probabilities, expected spend.

Churn hazard
------------
At the start ``as_of`` of month ``m``, for every customer active then (signed up before ``as_of``,
not churned), the generator computes the *observable* history of the trailing window (the
``window_months`` calendar months before ``as_of``, ~90 days) from the very event arrays that
become the tables, using only what a point-in-time feature could see (a delivery is "late" when it
arrived after its promised date, or had not arrived by ``as_of`` although promised before it; a
ticket is "open" when it has no ``closed_at`` before ``as_of``), and turns it into a monthly churn
hazard::

    h = sigmoid(base + profile + sum_g term_g) * (1 - r)

``base`` sets the typical monthly hazard (~2%, 90-day churn ~6%); ``profile`` is a segment offset
plus an acquisition-channel offset; ``r`` is the relative hazard reduction of a retention campaign
whose treatment group the customer is in, during that campaign's effect months (0 otherwise). The
driver-group terms, in the names of `HazardCoefficients` (coefficients) and `Inputs` (caps and
thresholds); their values are in `coefficients.py` and rendered into ``ground_truth/README.md``:

- delivery: ``late_delivery * min(late deliveries, late_deliveries_cap) + lateness_day *
  min(mean days late of those, lateness_days_cap) + damaged_delivery * min(damaged deliveries,
  damaged_cap)``
- service: ``open_ticket * min(tickets open at as_of, open_tickets_cap) + unresolved_ticket *
  min(tickets closed unresolved, unresolved_cap) + repeat_ticket * min(repeated tickets,
  repeated_cap)`` (repeated = tickets in the window minus distinct categories)
- communication: ``distinct_agent * clip(distinct agents - free_agents, 0, extra_agents_cap) +
  outsourced_share * outsourced share`` of the agent-handled contacts in the window
- satisfaction: ``satisfaction * s + satisfaction_fall * max(0, s[fall_months ago] - s)`` with
  ``s`` the latent satisfaction (standardised, AR(1)); surveys observe it with noise when answered
- price: ``price * p`` with ``p`` the latent price perception (AR(1)), observed through the survey
  ``price`` driver score
- products: ``product * (active subscriptions - 1)``
- tenure: ``new_customer * exp(-tenure_months / new_customer_months) + renewal * [month before a
  contract anniversary]``
- engagement: ``purchase_rate * log1p(purchases per month in the window)`` (segment-typical rate
  when less than ``min_observed_months`` of the window is observed, e.g. right after signup or at
  `start`)
- value: ``spend_trend * clip(log((net spend last window + spend_smoothing) / (net spend the
  window before + spend_smoothing)), -spend_trend_cap, spend_trend_cap)`` (0 until
  ``trend_months`` of history exist)

The customer churns in month ``m`` with probability ``h`` on a uniformly drawn day; all their
subscriptions end that day and they produce no later event. The truth's 90-day probability is
``1 - (1 - h)**horizon_months``: it holds the hazard of ``as_of`` constant over the horizon, an
approximation (states drift and campaigns start or stop within the horizon).

Next-product adoption
---------------------
Each month, for each adoption family a customer does not hold (add_on, insurance,
premium_support subscriptions; hardware bought within the last ``hardware_held_days``), with the
names of `AdoptionCoefficients`: ``p = sigmoid(intercept[family] + segment[segment, family]
+ product * (subscriptions - 1) + engagement * log1p(purchases + contacts per month)
+ hardware_insurance * [insurance and hardware held])``; an adoption starts a subscription (with a
first invoice) or is a hardware purchase (with a delivery). Accessories are routine purchases, not
an adoption family.

Expected spend
--------------
``expected_monthly_spend`` is the expectation, given the state at ``as_of`` and for a customer who
stays the whole month, of their net ``transactions.amount`` in the month (returns negative)::

    (routine + adoption) * (1 - return_share * (L - return_min_days + 1) / L)

- routine (accessory) purchases:
  ``rate * E[price] * (1 + extra_quantity[segment]) * E[1 - discount]`` with
  ``rate = purchase_rate[segment] * exp(e + satisfaction * s) * season[calendar month]`` (the
  Poisson rate the month's purchases are drawn with, from the latent engagement ``e`` and
  satisfaction ``s`` at ``as_of``; `coefficients.Purchases`), ``E[price]`` the accessory mix's mean
  catalogue price;
- adoption purchases, as expected values: for each adoption family not held, its monthly adoption
  probability ``p`` times the expected amount, a subscription's first invoice (catalogue price x
  seat factor, ``seats**seat_exponent`` for business segments, over the segment's product mix; no
  discount) or a hardware purchase (mean price x mean quantity x ``E[1 - discount]``);
- returns: each purchase is returned in full with probability ``return_share`` when at least
  ``return_min_days`` days of the month remain after it (``L`` days in the month).

The generator writes no recurring subscription invoices to ``transactions`` (a subscription's
``recurring_amount`` is only in ``subscriptions``; its sole transaction is the first invoice of an
adoption), so the expectation has no recurring term. Rounding to cents is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from churn_risk.demo.catalog import (
    ADOPTION_SLOT,
    CAMPAIGN_CHANNEL,
    CONTACT_RATE,
    EXTRA_QUANTITY,
    PRICE,
    PURCHASE_RATE,
    SEASON,
    SLOT_PRODUCTS,
    SLOT_WEIGHTS,
    mean_accessory_price,
    mean_hardware_price,
    mean_kept_share,
)
from churn_risk.demo.coefficients import (
    ADOPTION_FAMILIES,
    INPUTS,
    MONTH_DAYS,
    PURCHASES,
    TICKET_CATEGORIES,
    AdoptionCoefficients,
    HazardCoefficients,
)
from churn_risk.demo.numeric import Chunk, count, sigmoid, window
from churn_risk.demo.population import seat_factor
from churn_risk.demo.state import Agents, Calendar, Customers, Month, State

Events = dict[str, list[Chunk]]


@dataclass(frozen=True)
class Trailing:
    """Observable history of the trailing window (months before as_of), per customer."""

    late: np.ndarray
    mean_lateness: np.ndarray
    damaged: np.ndarray
    open_tickets: np.ndarray
    unresolved: np.ndarray
    repeated: np.ndarray
    agents: np.ndarray
    outsourced_share: np.ndarray
    purchase_rate: np.ndarray
    contact_rate: np.ndarray
    spend_trend: np.ndarray
    products: np.ndarray
    hardware_held: np.ndarray
    tenure_months: np.ndarray


def _delivery_history(d: Chunk | None, n: int, as_of: int, since: int):
    """Late deliveries, their mean days late and damaged deliveries promised in the window."""
    zeros = np.zeros(n)
    if d is None:
        return zeros, zeros, zeros
    sel = (d["promised"] >= since) & (d["promised"] < as_of)
    c, promised = d["cust"][sel], d["promised"][sel]
    seen = d["delivered"][sel] < as_of
    lateness = np.where(seen, d["delivered"][sel], as_of) - promised
    is_late = lateness > 0
    late = count(c[is_late], n)
    total = count(c[is_late], n, lateness[is_late].astype(float))
    mean_lateness = np.divide(total, late, out=np.zeros(n), where=late > 0)
    damaged = count(c[seen & (d["damaged"][sel] == 1)], n)
    return late, mean_lateness, damaged


def _ticket_history(t: Chunk | None, n: int, as_of: int, since: int):
    """Tickets open at as_of, closed unresolved in the window, and repeated in the window."""
    zeros = np.zeros(n)
    if t is None:
        return zeros, zeros, zeros
    c, closed = t["cust"], t["closed"]
    open_tickets = count(c[closed >= as_of], n)
    unres = (closed >= since) & (closed < as_of) & (t["resolved"] == 0)
    unresolved = count(c[unres], n)
    recent = t["opened"] >= since
    k = len(TICKET_CATEGORIES)
    keys = np.unique(c[recent] * k + t["category"][recent])
    repeated = count(c[recent], n) - count(keys // k, n)
    return open_tickets, unresolved, repeated


def _contact_history(i: Chunk | None, n: int, n_agents: int):
    """Distinct agents, outsourced share of agent-handled contacts, and non-campaign contacts."""
    zeros = np.zeros(n)
    if i is None:
        return zeros, zeros, zeros
    c, agent = i["cust"], i["agent"]
    handled = agent >= 0
    agents = count(np.unique(c[handled] * n_agents + agent[handled]) // n_agents, n)
    n_handled = count(c[handled], n)
    n_out = count(c[handled & i["outsourced"]], n)
    share = np.divide(n_out, n_handled, out=np.zeros(n), where=n_handled > 0)
    contacts = count(c[i["channel"] != CAMPAIGN_CHANNEL], n)
    return agents, share, contacts


def _spend_history(x: Chunk | None, n: int, since: int, since_trend: int):
    """Purchases and net spend in the window, and net spend in the window before it."""
    zeros = np.zeros(n)
    if x is None:
        return zeros, zeros, zeros
    c, day, ret = x["cust"], x["day"], x["is_return"]
    recent = day >= since
    purchases = count(c[recent & ~ret], n)
    signed = np.where(ret, -x["amount"], x["amount"])
    spend = count(c[recent], n, signed[recent])
    before = ~recent & (day >= since_trend)
    return purchases, spend, count(c[before], n, signed[before])


def trailing(
    m: int, cal: Calendar, cust: Customers, state: State, events: Events, agents: Agents
) -> Trailing:
    n, w = cust.n, INPUTS.window_months
    as_of, since, since_trend = cal.at(m), cal.at(m - w), cal.at(m - INPUTS.trend_months)
    # deliveries are filed under their purchase's month: one month more reaches every promise
    late, mean_lateness, damaged = _delivery_history(
        window(events["deliveries"], m - w - 1, m), n, as_of, since
    )
    open_tickets, unresolved, repeated = _ticket_history(
        window(events["tickets"], 0, m), n, as_of, since
    )
    agent_count, share, contacts = _contact_history(
        window(events["interactions"], m - w, m), n, agents.total
    )
    purchases, spend, spend_before = _spend_history(
        window(events["transactions"], m - INPUTS.trend_months, m), n, since, since_trend
    )
    observed = (as_of - np.maximum(np.maximum(since, 0), cust.signup_day)) / MONTH_DAYS
    enough = observed >= INPUTS.min_observed_months
    safe = np.where(enough, observed, 1.0)
    purchase_rate = np.where(enough, purchases / safe, PURCHASE_RATE[cust.segment])
    contact_rate = np.where(enough, contacts / safe, CONTACT_RATE[cust.segment])
    has_trend = (m >= INPUTS.trend_months) & (cust.signup_day <= since_trend)
    trend = np.log(
        (np.maximum(spend, 0) + INPUTS.spend_smoothing)
        / (np.maximum(spend_before, 0) + INPUTS.spend_smoothing)
    )
    return Trailing(
        late=late,
        mean_lateness=mean_lateness,
        damaged=damaged,
        open_tickets=open_tickets,
        unresolved=unresolved,
        repeated=repeated,
        agents=agent_count,
        outsourced_share=share,
        purchase_rate=purchase_rate,
        contact_rate=contact_rate,
        spend_trend=np.where(has_trend, trend, 0.0),
        products=(state.sub_product >= 0).sum(axis=1).astype(float),
        hardware_held=state.hardware_day >= as_of - INPUTS.hardware_held_days,
        tenure_months=(as_of - cust.signup_day) / MONTH_DAYS,
    )


def hazard_terms(tr: Trailing, state: State, coef: HazardCoefficients) -> dict[str, np.ndarray]:
    """Log-odds contribution of each driver group (see the module docstring)."""
    s, s_before = state.satisfaction, state.satisfaction_history[0]
    tenure = np.maximum(tr.tenure_months, 0.0)
    renewal = (tenure >= INPUTS.renewal_month) & (np.mod(tenure, 12.0) >= INPUTS.renewal_month)
    return {
        "delivery": coef.late_delivery * np.minimum(tr.late, INPUTS.late_deliveries_cap)
        + coef.lateness_day * np.minimum(tr.mean_lateness, INPUTS.lateness_days_cap)
        + coef.damaged_delivery * np.minimum(tr.damaged, INPUTS.damaged_cap),
        "service": coef.open_ticket * np.minimum(tr.open_tickets, INPUTS.open_tickets_cap)
        + coef.unresolved_ticket * np.minimum(tr.unresolved, INPUTS.unresolved_cap)
        + coef.repeat_ticket * np.minimum(tr.repeated, INPUTS.repeated_cap),
        "communication": coef.distinct_agent
        * np.clip(tr.agents - INPUTS.free_agents, 0, INPUTS.extra_agents_cap)
        + coef.outsourced_share * tr.outsourced_share,
        "satisfaction": coef.satisfaction * s
        + coef.satisfaction_fall * np.maximum(s_before - s, 0.0),
        "price": coef.price * state.price,
        "engagement": coef.purchase_rate * np.log1p(tr.purchase_rate),
        "products": coef.product * (tr.products - 1),
        "tenure": coef.new_customer * np.exp(-tenure / coef.new_customer_months)
        + coef.renewal * renewal,
        "value": coef.spend_trend
        * np.clip(tr.spend_trend, -INPUTS.spend_trend_cap, INPUTS.spend_trend_cap),
    }


@dataclass(frozen=True)
class Risk:
    """The month's churn risk per customer (all customers; meaningful for the active ones)."""

    terms: dict[str, np.ndarray]
    log_odds: np.ndarray
    untreated: np.ndarray  # hazard without any campaign effect
    reduction: np.ndarray  # campaign effect in force this month
    hazard: np.ndarray


def month_risk(
    tr: Trailing, state: State, mo: Month, profile: np.ndarray, coef: HazardCoefficients
) -> Risk:
    terms = hazard_terms(tr, state, coef)
    log_odds = coef.base + profile + np.sum(list(terms.values()), axis=0)
    untreated = sigmoid(log_odds)
    in_effect = (state.effect_first <= mo.m) & (mo.m < state.effect_stop)
    reduction = np.where(in_effect, state.effect_reduction, 0.0)
    return Risk(terms, log_odds, untreated, reduction, untreated * (1.0 - reduction))


def adoption_probabilities(
    tr: Trailing, cust: Customers, coef: AdoptionCoefficients
) -> np.ndarray:
    """Monthly adoption probability per customer (rows) and adoption family (columns)."""
    score = (
        np.asarray(coef.intercept)[None, :]
        + np.asarray(coef.segment)[cust.segment]
        + coef.product * (tr.products - 1)[:, None]
        + coef.engagement * np.log1p(tr.purchase_rate + tr.contact_rate)[:, None]
    )
    score[:, ADOPTION_FAMILIES.index("insurance")] += coef.hardware_insurance * tr.hardware_held
    return sigmoid(score)


def held(state: State, tr: Trailing) -> np.ndarray:
    """Whether each customer (rows) holds each adoption family (columns)."""
    cols = [
        tr.hardware_held if slot < 0 else state.sub_product[:, slot] >= 0
        for slot in ADOPTION_SLOT
    ]
    return np.column_stack(cols)


def routine_rate(segment: np.ndarray, e: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Poisson rate of routine (accessory) purchases per month, before the seasonal factor, from
    the latent engagement `e` and satisfaction `s`."""
    return PURCHASE_RATE[segment] * np.exp(e + PURCHASES.satisfaction * s)


def expected_spend(
    cust: Customers,
    state: State,
    p_adopt: np.ndarray,
    not_held: np.ndarray,
    month_of_year: int,
    length: int,
) -> np.ndarray:
    """Expected net transaction amount of the month per customer, from the month-start state, for
    a customer present the whole month (see "Expected spend" in the module docstring).

    Mirrors the month's draws without making any: routine accessory purchases, adoption purchases
    (a subscription's first invoice or a hardware purchase) and returns. Subscriptions have no
    other invoice transactions."""
    seg = cust.segment
    quantity = 1.0 + EXTRA_QUANTITY[seg]  # physical products: 1 + Poisson(extra)
    kept = mean_kept_share()  # expected 1 - discount
    rate = routine_rate(seg, state.engagement, state.satisfaction)
    rate = rate * SEASON.get(month_of_year, 1.0)
    spend = rate * mean_accessory_price() * quantity * kept
    factor = seat_factor(cust, np.arange(cust.n))
    for f, slot in enumerate(ADOPTION_SLOT):
        if slot < 0:
            value = mean_hardware_price() * quantity * kept
        else:  # first invoice: the chosen product's recurring amount, no discount
            amounts = np.round(PRICE[SLOT_PRODUCTS[slot]][None, :] * factor[:, None], 2)
            value = (SLOT_WEIGHTS[slot][seg] * amounts).sum(axis=1)
        spend = spend + np.where(not_held[:, f], p_adopt[:, f] * value, 0.0)
    # a purchase is returned (in full) when at least return_min_days days of the month remain
    days = length - PURCHASES.return_min_days + 1
    return spend * (1.0 - PURCHASES.return_share * days / length)
