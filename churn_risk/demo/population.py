"""The customers, what they hold, and how their latent states move.

Latent states evolve slowly (AR(1) around a per-customer mean) and drive the events: latent
satisfaction ``s`` (hit by late, damaged or lost deliveries, tickets and unresolved tickets, many
distinct agents), price perception ``p``, engagement ``e`` (purchase and contact volume), a
route/carrier quality ``q`` (lateness), the outsourced share of support and the propensity to be
served by one's "home" agent (communication consistency). Parameters: `coefficients.Population`,
`coefficients.LatentStates` and `coefficients.Holdings`.

Each customer holds at most one subscription per family of `SUBSCRIPTION_FAMILIES` (a core plan
always, until they churn); the existing base starts with a core plan since signup and some other
products, joiners take a core plan at signup and sometimes a bundle and a device.
"""

from __future__ import annotations

import math

import numpy as np

from churn_risk.demo.catalog import (
    CORE_SLOT,
    HARDWARE,
    HARDWARE_WEIGHTS,
    PRICE,
    SLOT_PRODUCTS,
    SLOT_WEIGHTS,
)
from churn_risk.demo.coefficients import (
    ACQUISITION_CHANNELS,
    HOLDINGS,
    INPUTS,
    LATENT,
    POPULATION,
    REGIONS,
    SUBSCRIPTION_FAMILIES,
    Seats,
)
from churn_risk.demo.numeric import Chunk, ar1, count, days_in, logit, pick, sigmoid, stationary
from churn_risk.demo.state import NEVER, Agents, Customers, Month, Presence, State

P = POPULATION


def agents_for(n: int) -> Agents:
    return Agents(
        home=max(P.min_agents, n // P.customers_per_home_agent),
        outsourced=max(P.min_agents, n // P.customers_per_outsourced_agent),
    )


def _signup_days(rng: np.random.Generator, n: int, end_day: int) -> np.ndarray:
    """The existing base (tenure up to max_tenure_years before `start`) and the joiners."""
    n_new = int(round(P.new_share * n))
    tenure = rng.exponential(P.mean_tenure_years * 365.0, n - n_new)
    too_old = tenure >= P.max_tenure_years * 365
    tenure[too_old] = rng.uniform(0, P.max_tenure_years * 365, int(too_old.sum()))
    existing = -1 - np.floor(tenure).astype(np.int64)
    joiners = np.floor(rng.random(n_new) * end_day).astype(np.int64)
    return np.sort(np.concatenate([existing, joiners]), kind="stable")


def _business_seats(rng: np.random.Generator, seats: Seats, n: int) -> np.ndarray:
    return np.clip(
        np.round(rng.lognormal(math.log(seats.median), seats.sigma, n)), seats.low, seats.high
    )


def init_customers(rng: np.random.Generator, n: int, end_day: int, agents: Agents) -> Customers:
    signup = _signup_days(rng, n, end_day)
    segment = rng.choice(3, n, p=np.array(P.segment_share)).astype(np.int64)
    region = rng.choice(len(REGIONS), n, p=np.array(P.region_share)).astype(np.int64)
    region[rng.random(n) < P.unknown_region] = -1
    acquisition = rng.choice(
        len(ACQUISITION_CHANNELS), n, p=np.array(P.acquisition_share)
    ).astype(np.int64)
    seats = np.where(
        segment == 0,
        1 + np.minimum(rng.poisson(P.consumer_extra_seats, n), P.consumer_extra_seats_cap),
        np.where(
            segment == 1,
            _business_seats(rng, P.small_business_seats, n),
            _business_seats(rng, P.enterprise_seats, n),
        ),
    ).astype(float)
    seats_known = rng.random(n) >= P.unknown_seats
    consistent = rng.random(n) < P.consistent_share
    consistency_mean = np.where(
        consistent, rng.normal(*P.consistent, n), rng.normal(*P.inconsistent, n)
    )
    # keyword order = draw order
    return Customers(
        n=n,
        signup_day=signup,
        segment=segment,
        region=region,
        acquisition=acquisition,
        seats=seats,
        seats_known=seats_known,
        carrier=rng.choice(len(P.carrier_share), n, p=np.array(P.carrier_share)).astype(np.int64),
        ticket_proneness=rng.normal(0.0, P.ticket_proneness_sd, n),
        survey_propensity=rng.beta(*P.survey_propensity, n),
        delivery_share=np.asarray(P.delivery_share)[segment],
        home_agent=rng.integers(0, agents.home, n),
        satisfaction_mean=rng.normal(0.0, P.satisfaction_sd, n)
        + P.enterprise_satisfaction * (segment == 2),
        price_mean=rng.normal(0.0, P.price_sd, n),
        engagement_mean=rng.normal(0.0, P.engagement_sd, n),
        route_mean=rng.normal(0.0, P.route_sd, n),
        outsourced_mean=rng.normal(logit(P.outsourced_share), P.outsourced_sd, n),
        consistency_mean=consistency_mean,
    )


def init_state(rng: np.random.Generator, cust: Customers) -> State:
    n = cust.n
    s = stationary(rng, cust.satisfaction_mean, LATENT.satisfaction)
    history = []
    for _ in range(INPUTS.fall_months):  # latent-only months before `start`
        history.append(s)
        s = ar1(rng, s, cust.satisfaction_mean, LATENT.satisfaction)
    slots = len(SUBSCRIPTION_FAMILIES)
    state = State(
        alive=np.ones(n, dtype=bool),
        churn_day=np.full(n, NEVER, dtype=np.int64),
        satisfaction=s,
        satisfaction_history=history,
        price=stationary(rng, cust.price_mean, LATENT.price),
        engagement=stationary(rng, cust.engagement_mean, LATENT.engagement),
        route=stationary(rng, cust.route_mean, LATENT.route),
        outsourced=stationary(rng, cust.outsourced_mean, LATENT.outsourced),
        consistency=cust.consistency_mean.copy(),
        sub_product=np.full((n, slots), -1, dtype=np.int64),
        sub_start=np.zeros((n, slots), dtype=np.int64),
        sub_amount=np.zeros((n, slots)),
        hardware_day=np.full(n, -NEVER, dtype=np.int64),
        effect_reduction=np.zeros(n),
        effect_first=np.zeros(n, dtype=np.int64),
        effect_stop=np.zeros(n, dtype=np.int64),
    )
    _initial_holdings(rng, cust, state)
    return state


def _initial_holdings(rng: np.random.Generator, cust: Customers, state: State) -> None:
    """The existing base: a core plan since signup, some other products since a later day."""
    base = np.flatnonzero(cust.signup_day < 0)
    subscribe(rng, state, cust, base, CORE_SLOT, cust.signup_day[base])
    for slot, share in enumerate(HOLDINGS.initial_share, start=1):
        who = base[rng.random(base.size) < np.asarray(share)[cust.segment[base]]]
        first = cust.signup_day[who]
        day = first + np.floor(rng.random(who.size) * (-first)).astype(np.int64)
        subscribe(rng, state, cust, who, slot, day)
    share = np.array(HOLDINGS.initial_hardware_share)[cust.segment[base]]
    who = base[rng.random(base.size) < share]
    first = np.maximum(cust.signup_day[who], -INPUTS.hardware_held_days)
    state.hardware_day[who] = first + np.floor(rng.random(who.size) * (-first)).astype(np.int64)


def seat_factor(cust: Customers, idx: np.ndarray) -> np.ndarray:
    """Price multiplier of a subscription: seats**seat_exponent for business segments."""
    return np.where(cust.segment[idx] == 0, 1.0, cust.seats[idx] ** P.seat_exponent)


def subscribe(
    rng: np.random.Generator,
    state: State,
    cust: Customers,
    idx: np.ndarray,
    slot: int,
    day: np.ndarray,
) -> np.ndarray:
    """Start a subscription of family `slot` for customers `idx` on `day`; returns products."""
    product = SLOT_PRODUCTS[slot][pick(rng, SLOT_WEIGHTS[slot][cust.segment[idx]])]
    state.sub_product[idx, slot] = product
    state.sub_start[idx, slot] = day
    state.sub_amount[idx, slot] = np.round(PRICE[product] * seat_factor(cust, idx), 2)
    return product


def end_subscriptions(state: State, idx: np.ndarray, slot: int, day: np.ndarray) -> None:
    held = state.sub_product[idx, slot] >= 0
    idx, day = idx[held], day[held]
    state.ended_subscriptions.append(
        {
            "cust": idx,
            "product": state.sub_product[idx, slot].copy(),
            "start": state.sub_start[idx, slot].copy(),
            "end": day.astype(np.int64),
            "amount": state.sub_amount[idx, slot].copy(),
        }
    )
    state.sub_product[idx, slot] = -1


def hardware_choice(rng: np.random.Generator, size: int) -> np.ndarray:
    return HARDWARE[rng.choice(HARDWARE.size, size, p=HARDWARE_WEIGHTS)]


def leave(state: State, churners: np.ndarray, churn_day: np.ndarray) -> None:
    """Churners leave: every subscription ends on the churn day."""
    for slot in range(len(SUBSCRIPTION_FAMILIES)):
        end_subscriptions(state, churners, slot, churn_day)
    state.alive[churners] = False


def experience_impact(
    n: int, deliveries: Chunk, tickets: Chunk, interactions: Chunk, agents: Agents
) -> np.ndarray:
    """How much the month's bad experiences lower each customer's latent satisfaction."""
    dl, tk, ia = deliveries, tickets, interactions
    late = dl["lateness"] >= LATENT.late_days
    impact = (
        LATENT.late_hit * count(dl["cust"][late], n)
        + LATENT.damaged_hit * count(dl["cust"][dl["damaged_true"]], n)
        + LATENT.lost_hit * count(dl["cust"][dl["lost"]], n)
        + LATENT.ticket_hit * count(tk["cust"], n)
        + LATENT.unresolved_hit * count(tk["cust"][tk["resolved"] == 0], n)
    )
    handled = ia["agent"] >= 0
    month_agents = count(
        np.unique(ia["cust"][handled] * agents.total + ia["agent"][handled]) // agents.total, n
    )
    return impact + LATENT.agent_hit * np.maximum(month_agents - 1, 0)


def evolve(rng: np.random.Generator, cust: Customers, state: State, impact: np.ndarray) -> None:
    """Latent states move on to the next month start; bad experiences lower satisfaction."""
    state.satisfaction_history = [*state.satisfaction_history[1:], state.satisfaction]
    state.satisfaction = (
        ar1(rng, state.satisfaction, cust.satisfaction_mean, LATENT.satisfaction) - impact
    )
    state.price = ar1(rng, state.price, cust.price_mean, LATENT.price)
    state.engagement = ar1(rng, state.engagement, cust.engagement_mean, LATENT.engagement)
    state.route = ar1(rng, state.route, cust.route_mean, LATENT.route)
    state.outsourced = ar1(rng, state.outsourced, cust.outsourced_mean, LATENT.outsourced)
    state.consistency = ar1(rng, state.consistency, cust.consistency_mean, LATENT.consistency)


# ----------------------------------------------------------------------------------------------
# What customers take up and give up in a month


def joiners(
    rng: np.random.Generator, cust: Customers, state: State, mo: Month
) -> tuple[np.ndarray, np.ndarray]:
    """New joiners of the month: a core plan at signup, sometimes a bundle. Returns the joiners
    who also buy a device, and their signup days (the device purchase is the caller's)."""
    joined = np.flatnonzero((cust.signup_day >= mo.start) & (cust.signup_day < mo.end))
    jday = cust.signup_day[joined]
    subscribe(rng, state, cust, joined, CORE_SLOT, jday)
    for slot, share in enumerate(HOLDINGS.joiner_share, start=1):
        take = rng.random(joined.size) < np.asarray(share)[cust.segment[joined]]
        subscribe(rng, state, cust, joined[take], slot, jday[take])
    take = rng.random(joined.size) < HOLDINGS.joiner_device_share
    return joined[take], jday[take]


def drops_and_switches(
    rng: np.random.Generator, cust: Customers, state: State, mo: Month, pr: Presence
) -> None:
    """Drops of non-core subscriptions held at the month start; core plan switches."""
    s = state.satisfaction
    stay = mo.idx[pr.hi[mo.idx] > pr.lo[mo.idx]]
    for slot in range(CORE_SLOT + 1, len(SUBSCRIPTION_FAMILIES)):
        c = stay[state.sub_product[stay, slot] >= 0]
        c = c[state.sub_start[c, slot] < mo.start]
        drop = rng.random(c.size) < sigmoid(
            HOLDINGS.drop_intercept + HOLDINGS.drop_satisfaction * s[c]
            + HOLDINGS.drop_price * state.price[c]
        )
        c = c[drop]
        end_subscriptions(state, c, slot, days_in(rng, c, pr.lo, pr.hi))
    c = stay[rng.random(stay.size) < HOLDINGS.core_switch]
    day = days_in(rng, c, pr.lo, pr.hi)
    end_subscriptions(state, c, CORE_SLOT, day)
    subscribe(rng, state, cust, c, CORE_SLOT, day)
