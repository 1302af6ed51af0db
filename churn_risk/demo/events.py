"""The events of one month: purchases and returns, deliveries, tickets, interactions, surveys.

Everything is vectorised over the customers present in the month (`state.Presence`); each
function draws from the one generator in a fixed order, so a seed gives bit-identical data. The
parameters are in `coefficients` (`Purchases`, `Deliveries`, `Tickets`, `Interactions`,
`Surveys`).

Mess, on purpose: a few unknown regions and seat counts, late and lost deliveries, damage
unknown, tickets still open at the end, closed-unresolved tickets followed by a reopened problem
(a new ticket of the same category shortly after), returns, Nov/Dec seasonality, segments with
different volumes, tenures from new to many years, a monthly pulse survey (answered by about half
the customers in a month, each at their own rate) with missing answers.
"""

from __future__ import annotations

import math

import numpy as np

from churn_risk.demo.catalog import (
    ACCESSORIES,
    ACCESSORY_WEIGHTS,
    ADOPTION_SLOT,
    CHANNEL_SHARE,
    CONTACT_RATE,
    DISCOUNT_SHARE,
    DISCOUNTS,
    EXTRA_QUANTITY,
    KIND_AGENT,
    KIND_CHANNEL,
    KIND_CUM,
    KIND_OUTSOURCABLE,
    PHYSICAL,
    PRICE,
    SEASON,
    kind_index,
)
from churn_risk.demo.coefficients import (
    DELIVERIES,
    INTERACTIONS,
    POPULATION,
    PURCHASES,
    SURVEYS,
    TICKET_CATEGORIES,
    TICKETS,
    SurveyScore,
)
from churn_risk.demo.hazard import routine_rate
from churn_risk.demo.numeric import Chunk, concat, count, days_in, pick, select, sigmoid
from churn_risk.demo.population import hardware_choice, subscribe
from churn_risk.demo.state import NEVER, Agents, Customers, Month, Presence, State

_CARRIER_OFFSET = np.array(POPULATION.carrier_offset)
_TICKET_RATE = np.array(TICKETS.ticket_rate)
_CATEGORY_SHARE = np.array(TICKETS.category_share)
_DELIVERY_CATEGORY = TICKET_CATEGORIES.index("delivery")
_TECHNICAL_CATEGORY = TICKET_CATEGORIES.index("technical")
_COMPLAINT = kind_index("contact_center", "complaint")
_SUPPORT = kind_index("contact_center", "support")
_SERVICE_SUPPORT = kind_index("service", "support")
_HOUR = 3600


# ----------------------------------------------------------------------------------------------
# Purchases and returns


def purchase_rows(
    rng: np.random.Generator,
    cust: Customers,
    c: np.ndarray,
    day: np.ndarray,
    product: np.ndarray,
    amount: np.ndarray | None = None,
) -> Chunk:
    """Purchases of `product` by customers `c`; priced from the catalogue (with a random
    discount) unless `amount` is given."""
    quantity = np.where(
        PHYSICAL[product], 1 + rng.poisson(EXTRA_QUANTITY[cust.segment[c]]), 1
    ).astype(float)
    if amount is None:
        discount = rng.choice(DISCOUNTS, c.size, p=DISCOUNT_SHARE)
        amount = np.round(PRICE[product] * quantity * (1 - discount), 2)
    first, last = PURCHASES.hours
    return {
        "cust": c,
        "day": day,
        "sec": rng.integers(first * _HOUR, last * _HOUR, c.size),
        "product": product,
        "quantity": quantity,
        "amount": amount,
        "is_return": np.zeros(c.size, dtype=bool),
    }


def joiner_devices(
    rng: np.random.Generator, cust: Customers, state: State, c: np.ndarray, day: np.ndarray
) -> Chunk:
    """The device some joiners buy on their signup day."""
    device = hardware_choice(rng, c.size)
    rows = purchase_rows(rng, cust, c, day, device)
    state.hardware_day[c] = day
    return rows


def adoptions(
    rng: np.random.Generator,
    cust: Customers,
    state: State,
    pr: Presence,
    candidates: tuple[np.ndarray, np.ndarray],
    p_adopt: np.ndarray,
) -> list[Chunk]:
    """Adoption of families not held (`candidates`: customer and family index pairs), by the
    customers present this month: a new subscription with its first invoice, or a hardware
    purchase."""
    who, fam = candidates
    adopt = np.flatnonzero(rng.random(who.size) < p_adopt[who, fam])
    adopt = adopt[pr.present[who[adopt]]]
    rows = []
    for f, slot in enumerate(ADOPTION_SLOT):
        c = who[adopt[fam[adopt] == f]]
        day = days_in(rng, c, pr.lo, pr.hi)
        if slot < 0:
            rows.append(purchase_rows(rng, cust, c, day, hardware_choice(rng, c.size)))
            state.hardware_day[c] = day
        else:
            product = subscribe(rng, state, cust, c, slot, day)
            rows.append(
                purchase_rows(rng, cust, c, day, product, state.sub_amount[c, slot].copy())
            )
    return rows


def routine_purchases(
    rng: np.random.Generator, cust: Customers, state: State, mo: Month, pr: Presence
) -> Chunk:
    """Routine purchases (accessories), seasonal, by segment, engagement and satisfaction."""
    pidx = pr.pidx
    rate = routine_rate(
        cust.segment[pidx], state.engagement[pidx], state.satisfaction[pidx]
    )
    rate *= SEASON.get(mo.month_of_year, 1.0) * pr.exposure[pidx]
    c = np.repeat(pidx, rng.poisson(rate))
    product = ACCESSORIES[rng.choice(ACCESSORIES.size, c.size, p=ACCESSORY_WEIGHTS)]
    return purchase_rows(rng, cust, c, days_in(rng, c, pr.lo, pr.hi), product)


def returns(rng: np.random.Generator, tx: Chunk, hi: np.ndarray) -> Chunk:
    """Returns of some purchases, later in the customer's month (amounts stay positive)."""
    room = hi[tx["cust"]] - tx["day"]
    sel = np.flatnonzero(
        (rng.random(tx["day"].size) < PURCHASES.return_share)
        & (room >= PURCHASES.return_min_days)
    )
    day = tx["day"][sel] + 1 + np.floor(rng.random(sel.size) * (room[sel] - 1)).astype(np.int64)
    out = select(tx, sel)
    out["day"] = day
    first, last = PURCHASES.hours
    out["sec"] = rng.integers(first * _HOUR, last * _HOUR, sel.size)
    out["is_return"] = np.ones(sel.size, dtype=bool)
    return out


# ----------------------------------------------------------------------------------------------
# Deliveries


def deliveries(
    rng: np.random.Generator, cust: Customers, state: State, tx: Chunk, worse: float = 0.0
) -> Chunk:
    """Deliveries of physical purchases: lateness from the carrier and the customer's route.
    `worse`: added to every delivery's quality and to the log of its loss rate (a simulated
    delivery drift, `coefficients.Drift`; 0: none, and the draws are exactly those without it).

    Returns the recorded fields (``promised``, ``delivered``, ``damaged`` with -1 = unknown) and
    the truth behind them (``lost``, ``damaged_true``, ``lateness``: days late, 0 when lost)."""
    D = DELIVERIES
    buy = np.flatnonzero(PHYSICAL[tx["product"]] & ~tx["is_return"])
    buy = buy[rng.random(buy.size) < cust.delivery_share[tx["cust"][buy]]]
    c = tx["cust"][buy]
    promised = tx["day"][buy] + rng.integers(*D.promise_days, c.size)
    quality = _CARRIER_OFFSET[cust.carrier[c]] + state.route[c]
    loss = _CARRIER_OFFSET[cust.carrier[c]]
    if worse:  # only then: the arrays (and so the data) without drift stay bit-identical
        quality = quality + worse
        loss = loss + worse
    late = rng.random(c.size) < sigmoid(D.late_intercept + quality)
    days_late = rng.geometric(
        1.0 / (1.0 + D.days_late_scale * np.exp(D.days_late_slope * quality))
    )
    early = ~late & (rng.random(c.size) < D.early)
    lost = rng.random(c.size) < D.lost * np.exp(loss)
    delivered = promised + np.where(late, days_late, 0) - early
    delivered = np.where(lost, NEVER, delivered)
    damaged_true = ~lost & (
        rng.random(c.size) < sigmoid(D.damaged_intercept + D.damaged_slope * quality)
    )
    damaged = damaged_true.astype(np.int8)
    # never delivered, or damage not recorded
    damaged[lost | (rng.random(c.size) < D.damage_unrecorded)] = -1
    return {
        "cust": c,
        "promised": promised,
        "delivered": delivered,
        "damaged": damaged,
        "lost": lost,
        "damaged_true": damaged_true,
        "lateness": np.where(lost, 0, delivered - promised),
    }


# ----------------------------------------------------------------------------------------------
# Tickets


def _resolve_tickets(
    rng: np.random.Generator, state: State, c: np.ndarray, opened: np.ndarray, cat: np.ndarray
) -> Chunk:
    T = TICKETS
    share = sigmoid(state.outsourced[c])
    duration = np.ceil(
        rng.lognormal(math.log(T.median_duration), T.duration_sigma, c.size) * (1 + share)
    )
    duration = np.minimum(duration, T.max_duration).astype(np.int64)
    resolved = rng.random(c.size) < sigmoid(
        T.resolved_intercept + T.resolved_outsourced * share
        + T.resolved_technical * (cat == _TECHNICAL_CATEGORY)
    )
    return {
        "cust": c,
        "opened": opened,
        "closed": opened + duration,
        "category": cat,
        "resolved": resolved.astype(np.int8),
    }


def new_tickets(
    rng: np.random.Generator, cust: Customers, pr: Presence, dl: Chunk
) -> Chunk:
    """The month's new problems: a base rate per segment and proneness, plus tickets triggered by
    lost, damaged and late deliveries (not yet resolved; see `tickets`)."""
    T = TICKETS
    pidx = pr.pidx
    rate = _TICKET_RATE[cust.segment[pidx]] * np.exp(cust.ticket_proneness[pidx])
    c = np.repeat(pidx, rng.poisson(rate * pr.exposure[pidx]))
    fresh = {
        "cust": c,
        "opened": days_in(rng, c, pr.lo, pr.hi),
        "category": rng.choice(len(TICKET_CATEGORIES), c.size, p=_CATEGORY_SHARE),
    }
    late = dl["lateness"] >= T.late_trigger_days
    trigger = rng.random(dl["cust"].size) < np.where(
        dl["lost"],
        T.lost_trigger,
        np.where(dl["damaged_true"], T.damaged_trigger, np.where(late, T.late_trigger, 0.0)),
    )
    opened = np.where(
        dl["lost"],
        dl["promised"] + T.lost_ticket_days,
        dl["delivered"] + rng.integers(0, T.delivery_ticket_days, dl["cust"].size),
    )[trigger]
    triggered = {
        "cust": dl["cust"][trigger],
        "opened": opened,
        "category": np.full(int(trigger.sum()), _DELIVERY_CATEGORY),
    }
    return concat([fresh, triggered])


def no_pending_tickets() -> Chunk:
    none = np.zeros(0, np.int64)
    return {"cust": none, "opened": none.copy(), "category": none.copy()}


def tickets(
    rng: np.random.Generator,
    state: State,
    fresh: Chunk,
    pending: Chunk,
    mo: Month,
    pr: Presence,
) -> tuple[Chunk, Chunk]:
    """Tickets of the month, with reopened problems: an unresolved ticket is often followed by a
    new ticket of the same category a few days after it was closed (possibly next month).
    Returns the month's tickets and those pending for later months."""
    T = TICKETS
    queue = concat([pending, fresh])
    none = np.zeros(0, np.int64)
    done = [_resolve_tickets(rng, state, none, none, none)]
    while queue["cust"].size:
        now = queue["opened"] < mo.end
        later = select(queue, ~now)
        c, opened, cat = queue["cust"][now], queue["opened"][now], queue["category"][now]
        ok = (opened >= pr.lo[c]) & (opened < pr.hi[c])  # the customer is still there that day
        t = _resolve_tickets(rng, state, c[ok], opened[ok], cat[ok])
        done.append(t)
        again = rng.random(t["cust"].size) < np.where(
            t["resolved"] == 1, T.reopen_resolved, T.reopen_unresolved
        )
        follow = {
            "cust": t["cust"][again],
            "opened": t["closed"][again] + 1 + rng.integers(0, T.reopen_days, int(again.sum())),
            "category": t["category"][again],
        }
        queue = concat([later, follow])
        if not (queue["opened"] < mo.end).any():
            break
    return concat(done), queue


# ----------------------------------------------------------------------------------------------
# Interactions


def _interactions(
    rng: np.random.Generator,
    cust: Customers,
    state: State,
    c: np.ndarray,
    day: np.ndarray,
    kind: np.ndarray,
    agents: Agents,
) -> Chunk:
    """Agents: outsourced contacts go to a random outsourced agent; in-house ones to the
    customer's home agent with their consistency propensity, else to a random in-house agent."""
    handled = KIND_AGENT[kind]
    outsourced = handled & KIND_OUTSOURCABLE[kind] & (
        rng.random(c.size) < sigmoid(state.outsourced[c])
    )
    home = rng.random(c.size) < sigmoid(state.consistency[c])
    agent = np.where(
        outsourced,
        agents.home + rng.integers(0, agents.outsourced, c.size),
        np.where(home, cust.home_agent[c], rng.integers(0, agents.home, c.size)),
    )
    first, last = INTERACTIONS.hours
    return {
        "cust": c,
        "day": day,
        "sec": rng.integers(first * _HOUR, last * _HOUR, c.size),
        "channel": KIND_CHANNEL[kind],
        "kind": kind,
        "agent": np.where(handled, agent, -1),
        "outsourced": outsourced,
    }


def _kinds_for(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    u = rng.random(channel.size)
    local = np.minimum((u[:, None] > KIND_CUM[channel]).sum(axis=1), 2)
    return channel * 3 + local


def interactions(
    rng: np.random.Generator,
    cust: Customers,
    state: State,
    pr: Presence,
    tk: Chunk,
    agents: Agents,
) -> Chunk:
    """Everyday contacts (volume from the segment and engagement) plus the contacts of each
    ticket (contact center complaint or support, or service support)."""
    cfg = INTERACTIONS
    pidx = pr.pidx
    rate = CONTACT_RATE[cust.segment[pidx]] * np.exp(cfg.engagement * state.engagement[pidx])
    c = np.repeat(pidx, rng.poisson(rate * pr.exposure[pidx]))
    kind = _kinds_for(rng, pick(rng, CHANNEL_SHARE[cust.segment[c]]))
    tc = np.repeat(
        np.arange(tk["cust"].size), 1 + rng.poisson(cfg.ticket_extra_contacts, tk["cust"].size)
    )
    tkind = np.where(
        rng.random(tc.size) < cfg.ticket_contact_center,
        np.where(rng.random(tc.size) < cfg.ticket_complaint, _COMPLAINT, _SUPPORT),
        _SERVICE_SUPPORT,
    )
    everyday = _interactions(rng, cust, state, c, days_in(rng, c, pr.lo, pr.hi), kind, agents)
    of_tickets = _interactions(
        rng, cust, state, tk["cust"][tc], tk["opened"][tc], tkind, agents
    )
    return concat([everyday, of_tickets])


# ----------------------------------------------------------------------------------------------
# Surveys


def _score(rng: np.random.Generator, centre: np.ndarray, score: SurveyScore) -> np.ndarray:
    low, high = SURVEYS.scale
    noise = score.noise * rng.standard_normal(centre.size)
    value = np.clip(np.round(centre + noise), low, high) + 0.0
    value[rng.random(centre.size) < score.missing] = np.nan
    return value


def surveys(
    rng: np.random.Generator,
    cust: Customers,
    state: State,
    pr: Presence,
    products: np.ndarray,
    tk: Chunk,
    dl: Chunk,
) -> Chunk:
    """The monthly pulse survey: noisy observations of the latent states (dense enough that
    satisfaction and price perception are observable, as the models need). `products`: active
    subscriptions per customer at the month start."""
    S = SURVEYS
    n, pidx = cust.n, pr.pidx
    c = pidx[rng.random(pidx.size) < cust.survey_propensity[pidx] * pr.exposure[pidx]]
    s = state.satisfaction[c]
    late = dl["cust"][dl["lateness"] >= S.problems_late_days]
    problems_now = count(tk["cust"], n)[c] + count(late, n)[c]
    sat = S.satisfaction.intercept + S.satisfaction_slope * s
    return {
        "cust": c,
        "day": days_in(rng, c, pr.lo, pr.hi),
        "satisfaction": _score(rng, sat, S.satisfaction),
        "nps": _score(rng, S.nps_slope * sat + S.nps.intercept, S.nps),
        "price": _score(rng, S.price.intercept + S.price_slope * state.price[c], S.price),
        "benefits": _score(
            rng,
            S.benefits.intercept + S.benefits_products * (products[c] - 1)
            + S.benefits_satisfaction * s,
            S.benefits,
        ),
        "problems": _score(
            rng,
            S.problems.intercept - S.problems_penalty * problems_now
            + S.problems_satisfaction * s,
            S.problems,
        ),
    }
