"""Demo CRM data with a known, documented churn mechanism (the `churn demo` data set).

`generate` simulates a subscription business month by month and returns the nine CRM tables of
the data contract (`features/contract.py`) plus the *ground truth* a real CRM never has: every
customer's true monthly churn hazard, its 90-day churn probability, the log-odds contribution of
each driver group, true next-product adoption probabilities and the true effect of each retention
campaign. The truth lets the models be checked against the mechanism that made the data, not only
against realised labels.

Simulation
----------
Time is counted in days from `start`; month ``m`` is ``[start + m months, start + m + 1 months)``
and every event of the tables falls in ``[start, start + months)``. The loop runs over months only;
everything inside a month is vectorised over customers with numpy, and a single
``np.random.default_rng(seed)`` is drawn from in a fixed order, so a seed gives bit-identical data.

At the start ``as_of`` of month ``m``, for every customer active then (signed up before ``as_of``,
not churned), the generator computes the *observable* history of the trailing window (the three
calendar months before ``as_of``, ~90 days) from the very event arrays that become the tables,
using only what a point-in-time feature could see (a delivery is "late" when it arrived after its
promised date, or had not arrived by ``as_of`` although promised before it; a ticket is "open" when
it has no ``closed_at`` before ``as_of``), and turns it into a monthly churn hazard::

    h = sigmoid(base + profile + sum_g term_g) * (1 - r)

``base`` is -4.7 (monthly hazard ~2%, 90-day churn ~6%); ``profile`` is a segment offset plus
an acquisition-channel offset; ``r`` is the relative hazard reduction of a retention campaign
whose treatment group the customer is in, during that campaign's effect months (0 otherwise). The
driver-group terms (coefficients in `HazardCoefficients`) are:

- delivery: ``0.35 * min(late deliveries, 4) + 0.04 * min(mean days late of those, 15)
  + 0.60 * min(damaged deliveries, 3)``
- service: ``0.60 * min(tickets open at as_of, 3) + 0.45 * min(tickets closed unresolved, 3)
  + 0.35 * min(repeated tickets, 3)`` (repeated = tickets in the window minus distinct categories)
- communication: ``0.15 * clip(distinct agents - 2, 0, 8) + 1.0 * outsourced share`` of the
  agent-handled contacts in the window
- satisfaction: ``-0.60 * s + 0.70 * max(0, s[3 months ago] - s)`` with ``s`` the latent
  satisfaction (standardised, AR(1)); surveys observe it with noise when answered
- price: ``-0.55 * p`` with ``p`` the latent price perception (AR(1)), observed through the survey
  ``price`` driver score
- products: ``-0.35 * (active subscriptions - 1)``
- tenure: ``1.4 * exp(-tenure_months / 6) + 0.35 * [month before a contract anniversary]``
- engagement: ``-0.60 * log1p(purchases per month in the window)`` (segment-typical rate when
  less than half a month of the window is observed, e.g. right after signup or at `start`)
- value: ``-0.45 * clip(log((net spend last 3 months + 25) / (net spend the 3 months before + 25)),
  -2, 2)`` (0 until six months of history exist)

The customer churns in month ``m`` with probability ``h`` on a uniformly drawn day; all their
subscriptions end that day and they produce no later event. The truth's 90-day probability is
``1 - (1 - h)**3``: it holds the hazard of ``as_of`` constant for three months, an approximation
(states drift and campaigns start or stop within the horizon).

Latent states evolve slowly (AR(1) around a per-customer mean) and drive the events: latent
satisfaction ``s`` (hit by late, damaged or lost deliveries, tickets and unresolved tickets, many
distinct agents), price perception ``p``, engagement ``e`` (purchase and contact volume), a
route/carrier quality ``q`` (lateness), the outsourced share of support and the propensity to be
served by one's "home" agent (communication consistency).

Next-product adoption: each month, for each adoption family a customer does not hold
(add_on, insurance, premium_support subscriptions; hardware bought within the last 365 days),
``p = sigmoid(intercept_family + segment_family + 0.30 * (subscriptions - 1)
+ 0.50 * log1p(purchases + contacts per month) + 0.90 * [insurance and hardware held])``;
an adoption starts a subscription (with a first invoice) or is a hardware purchase (with a
delivery). Accessories are routine purchases, not an adoption family.

Retention campaigns (about one per nine months): sent in the last days of a month to at-risk
customers (selection probability proportional to the hazard), randomised 80/20 into treatment and
control; from the next month on, the treatment multiplies the hazard by ``1 - r`` for 2-4 months
(``r`` between 0.15 and 0.35, per campaign), whether or not the customer responded.

Ground truth (`DemoData.truth`, written to ``<out>/ground_truth/`` by `write_demo` with a README):
``churn`` has one row per customer active at a month start with ``hazard``,
``churn_probability_90d``, every ``term_<group>``, ``dominant_driver`` (the group whose term is
furthest above its mean over the whole panel) and ``expected_monthly_spend``; ``adoption`` the
90-day adoption probability (``1 - (1 - p)**3``) of each family not held; ``campaign_effects``
each campaign's true relative hazard reduction, effect months and expected and realised 90-day
retention uplift.

``expected_monthly_spend`` is the expectation, given the state at ``as_of`` and for a customer who
stays the whole month, of their net ``transactions.amount`` in the month (returns negative)::

    (routine + adoption) * (1 - 0.035 * (L - 1) / L)

- routine (accessory) purchases:
  ``rate * E[price] * (1 + extra_quantity[segment]) * E[1 - discount]`` with
  ``rate = purchase_rate[segment] * exp(e + 0.25 s) * season[calendar month]`` (the Poisson rate
  the month's purchases are drawn with, from the latent engagement ``e`` and satisfaction ``s``
  at ``as_of``), ``E[price]`` the accessory mix's mean catalogue price and ``E[1 - discount]`` =
  0.9725;
- adoption purchases, as expected values: for each adoption family not held, its monthly adoption
  probability ``p`` times the expected amount, a subscription's first invoice (catalogue price x
  seat factor, ``seats**0.6`` for business segments, over the segment's product mix; no discount)
  or a hardware purchase (mean price x mean quantity x ``E[1 - discount]``);
- returns: each purchase is returned in full with probability 0.035 when at least two days of the
  month remain after it (``L`` days in the month).

The generator writes no recurring subscription invoices to ``transactions`` (a subscription's
``recurring_amount`` is only in ``subscriptions``; its sole transaction is the first invoice of an
adoption), so the expectation has no recurring term. Rounding to cents is ignored.

Mess, on purpose: ~2% unknown regions, unknown seat counts, late and lost deliveries, damage
unknown, tickets still open at the end, closed-unresolved tickets followed by a reopened problem
(a new ticket of the same category shortly after), returns (~3% of transactions), Nov/Dec
seasonality, segments with different volumes, tenures from 0 to 10 years, a monthly pulse survey
(answered by about half the customers in a month, each at their own rate) with
missing answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from churn_risk.features.contract import CHANNELS, DRIVER_GROUPS
from churn_risk.features.io import write_frame, write_tables

__all__ = [
    "ADOPTION_FAMILIES",
    "DOMINANT_DRIVERS",
    "AdoptionCoefficients",
    "DemoData",
    "HazardCoefficients",
    "generate",
    "truth_readme",
    "write_demo",
]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DemoData:
    """The nine CRM tables (`tables`) and the simulation's ground truth (`truth`)."""

    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]


@dataclass(frozen=True)
class HazardCoefficients:
    """Coefficients of the monthly churn hazard (log-odds scale); see the module docstring."""

    base: float = -4.7
    segment: tuple[float, ...] = (0.0, -0.25, -0.6)  # consumer, small_business, enterprise
    acquisition: tuple[float, ...] = (0.0, -0.1, 0.3, 0.2, -0.25)  # see ACQUISITION_CHANNELS
    late_delivery: float = 0.35
    lateness_day: float = 0.04
    damaged_delivery: float = 0.60
    open_ticket: float = 0.60
    unresolved_ticket: float = 0.45
    repeat_ticket: float = 0.35
    distinct_agent: float = 0.15
    outsourced_share: float = 1.0
    satisfaction: float = -0.60
    satisfaction_fall: float = 0.70
    price: float = -0.55
    product: float = -0.35
    new_customer: float = 1.4
    new_customer_months: float = 6.0
    renewal: float = 0.35
    purchase_rate: float = -0.60
    spend_trend: float = -0.45


@dataclass(frozen=True)
class AdoptionCoefficients:
    """Monthly next-product adoption model (log-odds); families in `ADOPTION_FAMILIES` order."""

    intercept: tuple[float, ...] = (-5.0, -5.2, -5.6, -6.0)
    # rows: consumer, small_business, enterprise
    segment: tuple[tuple[float, ...], ...] = (
        (0.3, 0.0, 0.0, -0.6),
        (0.0, 0.3, 0.0, 0.6),
        (-0.2, 0.5, -0.2, 1.3),
    )
    product: float = 0.30
    engagement: float = 0.50
    hardware_insurance: float = 0.90


#: Driver groups the truth's `dominant_driver` is chosen from (one `term_<group>` column each).
DOMINANT_DRIVERS: tuple[str, ...] = tuple(g for g in DRIVER_GROUPS if g != "profile")

SEGMENTS: tuple[str, ...] = ("consumer", "small_business", "enterprise")
_SEGMENT_SHARE = np.array([0.68, 0.24, 0.08])
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
_REGION_SHARE = np.array([0.22, 0.20, 0.20, 0.20, 0.18])
ACQUISITION_CHANNELS: tuple[str, ...] = ("web", "store", "partner", "telesales", "referral")
_ACQUISITION_SHARE = np.array([0.35, 0.25, 0.15, 0.10, 0.15])

#: (product_id, name, family, price)
CATALOG: tuple[tuple[str, str, str, float], ...] = (
    ("P001", "Basic plan", "core_plan", 19.0),
    ("P002", "Standard plan", "core_plan", 29.0),
    ("P003", "Premium plan", "core_plan", 45.0),
    ("P004", "Business plan", "core_plan", 59.0),
    ("P005", "Cloud backup", "add_on", 4.99),
    ("P006", "Security suite", "add_on", 6.99),
    ("P007", "Streaming pack", "add_on", 9.99),
    ("P008", "Extra data", "add_on", 7.50),
    ("P009", "Family sharing", "add_on", 5.00),
    ("P010", "Router", "hardware", 129.0),
    ("P011", "Smartphone", "hardware", 549.0),
    ("P012", "Tablet", "hardware", 399.0),
    ("P013", "Smart hub", "hardware", 89.0),
    ("P014", "Laptop", "hardware", 899.0),
    ("P015", "Device insurance", "insurance", 8.99),
    ("P016", "Travel cover", "insurance", 5.99),
    ("P017", "Premium insurance", "insurance", 14.99),
    ("P018", "Priority support", "premium_support", 9.99),
    ("P019", "Dedicated manager", "premium_support", 49.0),
    ("P020", "Charger", "accessories", 19.90),
    ("P021", "Case", "accessories", 14.90),
    ("P022", "Headphones", "accessories", 59.00),
    ("P023", "Cable", "accessories", 9.90),
    ("P024", "Screen protector", "accessories", 12.90),
)
_PRODUCT_IDS = np.array([p[0] for p in CATALOG], dtype=object)
_PRODUCT_FAMILY = np.array([p[2] for p in CATALOG], dtype=object)
_PRICE = np.array([p[3] for p in CATALOG])
_PHYSICAL = np.isin(_PRODUCT_FAMILY, ("hardware", "accessories"))


def _family_products(family: str) -> np.ndarray:
    return np.array([i for i, p in enumerate(CATALOG) if p[2] == family], dtype=np.int64)


#: Subscription slots per customer: one subscription per family at a time.
SUBSCRIPTION_FAMILIES: tuple[str, ...] = ("core_plan", "add_on", "insurance", "premium_support")
#: Families the adoption truth covers (hardware: "held" = bought within the last 365 days).
ADOPTION_FAMILIES: tuple[str, ...] = ("add_on", "hardware", "insurance", "premium_support")
_ADOPTION_SLOT = (1, -1, 2, 3)  # subscription slot per adoption family (-1: hardware)
_SLOT_PRODUCTS = tuple(_family_products(f) for f in SUBSCRIPTION_FAMILIES)
# product weights per slot and segment (consumer, small_business, enterprise)
_SLOT_WEIGHTS = (
    np.array([[0.45, 0.40, 0.15, 0.0], [0.0, 0.25, 0.30, 0.45], [0.0, 0.0, 0.25, 0.75]]),
    np.array(
        [[0.2, 0.25, 0.25, 0.15, 0.15], [0.35, 0.35, 0.0, 0.3, 0.0], [0.4, 0.4, 0.0, 0.2, 0.0]]
    ),
    np.array([[0.5, 0.3, 0.2], [0.6, 0.2, 0.2], [0.6, 0.1, 0.3]]),
    np.array([[0.95, 0.05], [0.7, 0.3], [0.3, 0.7]]),
)
_HARDWARE = _family_products("hardware")
_HARDWARE_WEIGHTS = np.array([0.25, 0.35, 0.2, 0.1, 0.1])
_ACCESSORIES = _family_products("accessories")
_ACCESSORY_WEIGHTS = np.array([0.25, 0.25, 0.15, 0.2, 0.15])

# Per-segment volumes (consumer, small_business, enterprise), per month.
_PURCHASE_RATE = np.array([0.75, 1.5, 2.8])
_CONTACT_RATE = np.array([0.7, 1.0, 1.6])
_TICKET_RATE = np.array([0.07, 0.10, 0.16])
_EXTRA_QUANTITY = np.array([0.2, 1.0, 3.0])
_RETURN_SHARE = 0.035
_DISCOUNTS = np.array([0.0, 0.05, 0.1, 0.2])  # on purchases priced from the catalog
_DISCOUNT_SHARE = np.array([0.7, 0.15, 0.1, 0.05])
_SEASON = {1: 0.85, 7: 0.9, 8: 0.9, 11: 1.35, 12: 1.7}

# Interactions: (channel, kind, handled by an agent, can be outsourced, share within channel)
_KINDS: tuple[tuple[str, str, bool, bool, float], ...] = (
    ("sales", "offer", True, False, 0.40),
    ("sales", "order", True, False, 0.35),
    ("sales", "account_review", True, False, 0.25),
    ("contact_center", "inquiry", True, True, 0.50),
    ("contact_center", "complaint", True, True, 0.20),
    ("contact_center", "support", True, True, 0.30),
    ("web", "login", False, False, 0.55),
    ("web", "order", False, False, 0.30),
    ("web", "chat", True, True, 0.15),
    ("service", "repair", True, True, 0.40),
    ("service", "installation", True, True, 0.30),
    ("service", "support", True, True, 0.30),
    ("campaign", "newsletter", False, False, 0.60),
    ("campaign", "offer", False, False, 0.30),
    ("campaign", "survey_invite", False, False, 0.10),
)
_KIND_CHANNEL = np.repeat(np.arange(len(CHANNELS)), 3)
_KIND_NAMES = np.array([k[1] for k in _KINDS], dtype=object)
_KIND_AGENT = np.array([k[2] for k in _KINDS])
_KIND_OUTSOURCABLE = np.array([k[3] for k in _KINDS])
_KIND_CUM = np.cumsum(np.array([k[4] for k in _KINDS]).reshape(len(CHANNELS), 3), axis=1)
_CHANNEL_SHARE = np.array(
    [
        [0.06, 0.28, 0.40, 0.10, 0.16],
        [0.15, 0.28, 0.30, 0.12, 0.15],
        [0.30, 0.25, 0.20, 0.15, 0.10],
    ]
)
_CAMPAIGN_CHANNEL = CHANNELS.index("campaign")

TICKET_CATEGORIES: tuple[str, ...] = ("billing", "technical", "delivery", "product", "account")
_CATEGORY_SHARE = np.array([0.30, 0.35, 0.04, 0.19, 0.12])
_DELIVERY_CATEGORY = TICKET_CATEGORIES.index("delivery")
_TECHNICAL_CATEGORY = TICKET_CATEGORIES.index("technical")

_CARRIER_OFFSET = np.array([-0.6, 0.0, 0.3, 0.9])
_CARRIER_SHARE = np.array([0.35, 0.30, 0.20, 0.15])

_OFFERS: tuple[str, ...] = ("discount_20pct", "free_upgrade", "loyalty_bonus", "free_add_on_3m")

_PRE = 6  # months of calendar kept before `start` (trailing windows reach back six months)
_NEVER = 10**9  # sentinel day: never delivered / never closed / never churned
_DAY_NS = 86_400 * 10**9
_MONTH_DAYS = 30.44
_SPEND_SMOOTHING = 25.0


# ----------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True)
class _Calendar:
    """Month starts as day offsets from `start`, for months -_PRE .. months."""

    start: pd.Timestamp
    days: np.ndarray
    month_of_year: np.ndarray  # calendar month (1..12) of months 0 .. months-1

    def at(self, m: int) -> int:
        return int(self.days[max(m, -_PRE) + _PRE])


@dataclass
class _Customers:
    """Fixed customer attributes and the per-customer means of the latent states."""

    n: int
    signup_day: np.ndarray
    segment: np.ndarray
    region: np.ndarray  # -1 = unknown
    acquisition: np.ndarray
    seats: np.ndarray  # true seat count
    seats_known: np.ndarray
    carrier: np.ndarray
    ticket_proneness: np.ndarray
    survey_propensity: np.ndarray
    delivery_share: np.ndarray
    home_agent: np.ndarray
    satisfaction_mean: np.ndarray
    price_mean: np.ndarray
    engagement_mean: np.ndarray
    route_mean: np.ndarray
    outsourced_mean: np.ndarray  # logit
    consistency_mean: np.ndarray  # logit


@dataclass
class _State:
    """What changes month to month."""

    alive: np.ndarray
    churn_day: np.ndarray
    satisfaction: np.ndarray
    satisfaction_history: list[np.ndarray]  # latent satisfaction at the last three month starts
    price: np.ndarray
    engagement: np.ndarray
    route: np.ndarray
    outsourced: np.ndarray  # logit of the outsourced share
    consistency: np.ndarray  # logit of the probability to get one's home agent
    sub_product: np.ndarray  # (n, slots) product index, -1 = none
    sub_start: np.ndarray
    sub_amount: np.ndarray
    hardware_day: np.ndarray  # day of the last hardware purchase
    effect_reduction: np.ndarray  # campaign treatment: relative hazard reduction
    effect_first: np.ndarray  # ... from this month
    effect_stop: np.ndarray  # ... until before this month
    ended_subscriptions: list[dict[str, np.ndarray]] = field(default_factory=list)


@dataclass(frozen=True)
class _CampaignPlan:
    campaign_id: str
    offer: str
    send_month: int
    effect_month: int
    relative_hazard_reduction: float
    effect_months: int
    target_share: float


@dataclass
class _CampaignRun:
    plan: _CampaignPlan
    sent_at: int = -1
    targeted: np.ndarray | None = None
    treatment: np.ndarray | None = None
    true_uplift: float = float("nan")


@dataclass(frozen=True)
class _Trailing:
    """Observable history of the trailing window (three months before as_of), per customer."""

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


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _calendar(start: pd.Timestamp, months: int) -> _Calendar:
    stamps = [start + pd.DateOffset(months=k) for k in range(-_PRE, months + 1)]
    days = np.array([(s - start).days for s in stamps], dtype=np.int64)
    moy = np.array([s.month for s in stamps[_PRE : _PRE + months]], dtype=np.int64)
    return _Calendar(start, days, moy)


def _ar1(rng: np.random.Generator, x: np.ndarray, mean: np.ndarray, rho: float, sd: float):
    return mean + rho * (x - mean) + sd * rng.standard_normal(x.size)


def _stationary(rng: np.random.Generator, mean: np.ndarray, rho: float, sd: float) -> np.ndarray:
    return mean + sd / math.sqrt(1.0 - rho**2) * rng.standard_normal(mean.size)


_RHO_S, _SD_S = 0.80, 0.30
_RHO_P, _SD_P = 0.90, 0.20
_RHO_E, _SD_E = 0.85, 0.20
_RHO_Q, _SD_Q = 0.80, 0.30
_RHO_O, _SD_O = 0.90, 0.15


def _init_customers(rng: np.random.Generator, n: int, end_day: int, n_home: int) -> _Customers:
    n_new = int(round(0.30 * n))
    tenure = rng.exponential(3.5 * 365.0, n - n_new)
    too_old = tenure >= 10 * 365
    tenure[too_old] = rng.uniform(0, 10 * 365, int(too_old.sum()))
    existing = -1 - np.floor(tenure).astype(np.int64)
    joiners = np.floor(rng.random(n_new) * end_day).astype(np.int64)
    signup = np.sort(np.concatenate([existing, joiners]), kind="stable")

    segment = rng.choice(3, n, p=_SEGMENT_SHARE).astype(np.int64)
    region = rng.choice(len(REGIONS), n, p=_REGION_SHARE).astype(np.int64)
    region[rng.random(n) < 0.02] = -1
    acquisition = rng.choice(len(ACQUISITION_CHANNELS), n, p=_ACQUISITION_SHARE).astype(np.int64)
    seats = np.where(
        segment == 0,
        1 + np.minimum(rng.poisson(1.2, n), 5),
        np.where(
            segment == 1,
            np.clip(np.round(rng.lognormal(math.log(8), 0.7, n)), 2, 200),
            np.clip(np.round(rng.lognormal(math.log(250), 1.0, n)), 50, 20_000),
        ),
    ).astype(float)
    seats_known = rng.random(n) >= 0.04
    consistent = rng.random(n) < 0.75
    consistency_mean = np.where(
        consistent, rng.normal(2.0, 0.7, n), rng.normal(-1.0, 0.7, n)
    )
    return _Customers(
        n=n,
        signup_day=signup,
        segment=segment,
        region=region,
        acquisition=acquisition,
        seats=seats,
        seats_known=seats_known,
        carrier=rng.choice(len(_CARRIER_OFFSET), n, p=_CARRIER_SHARE).astype(np.int64),
        ticket_proneness=rng.normal(0.0, 0.6, n),
        survey_propensity=rng.beta(5.0, 6.0, n),
        delivery_share=np.where(segment == 0, 0.45, 0.75),
        home_agent=rng.integers(0, n_home, n),
        satisfaction_mean=rng.normal(0.0, 0.8, n) + 0.1 * (segment == 2),
        price_mean=rng.normal(0.0, 0.8, n),
        engagement_mean=rng.normal(0.0, 0.4, n),
        route_mean=rng.normal(0.0, 0.5, n),
        outsourced_mean=rng.normal(_logit(0.25), 1.0, n),
        consistency_mean=consistency_mean,
    )


def _init_state(rng: np.random.Generator, cust: _Customers) -> _State:
    n = cust.n
    s = _stationary(rng, cust.satisfaction_mean, _RHO_S, _SD_S)
    history = []
    for _ in range(3):  # three latent-only months before `start`, for the satisfaction trend
        history.append(s)
        s = _ar1(rng, s, cust.satisfaction_mean, _RHO_S, _SD_S)
    slots = len(SUBSCRIPTION_FAMILIES)
    state = _State(
        alive=np.ones(n, dtype=bool),
        churn_day=np.full(n, _NEVER, dtype=np.int64),
        satisfaction=s,
        satisfaction_history=history,
        price=_stationary(rng, cust.price_mean, _RHO_P, _SD_P),
        engagement=_stationary(rng, cust.engagement_mean, _RHO_E, _SD_E),
        route=_stationary(rng, cust.route_mean, _RHO_Q, _SD_Q),
        outsourced=_stationary(rng, cust.outsourced_mean, _RHO_O, _SD_O),
        consistency=cust.consistency_mean.copy(),
        sub_product=np.full((n, slots), -1, dtype=np.int64),
        sub_start=np.zeros((n, slots), dtype=np.int64),
        sub_amount=np.zeros((n, slots)),
        hardware_day=np.full(n, -_NEVER, dtype=np.int64),
        effect_reduction=np.zeros(n),
        effect_first=np.zeros(n, dtype=np.int64),
        effect_stop=np.zeros(n, dtype=np.int64),
    )
    # The existing base: a core plan since signup, some other products since a later day.
    base = np.flatnonzero(cust.signup_day < 0)
    _subscribe(rng, state, cust, base, 0, cust.signup_day[base])
    holding = {1: (0.35, 0.30, 0.25), 2: (0.20, 0.15, 0.10), 3: (0.04, 0.20, 0.50)}
    for slot, share in holding.items():
        who = base[rng.random(base.size) < np.asarray(share)[cust.segment[base]]]
        first = cust.signup_day[who]
        day = first + np.floor(rng.random(who.size) * (-first)).astype(np.int64)
        _subscribe(rng, state, cust, who, slot, day)
    who = base[rng.random(base.size) < np.array([0.35, 0.45, 0.60])[cust.segment[base]]]
    first = np.maximum(cust.signup_day[who], -365)
    state.hardware_day[who] = first + np.floor(rng.random(who.size) * (-first)).astype(np.int64)
    return state


def _seat_factor(cust: _Customers, idx: np.ndarray) -> np.ndarray:
    return np.where(cust.segment[idx] == 0, 1.0, cust.seats[idx] ** 0.6)


def _subscribe(
    rng: np.random.Generator,
    state: _State,
    cust: _Customers,
    idx: np.ndarray,
    slot: int,
    day: np.ndarray,
) -> np.ndarray:
    """Start a subscription of family `slot` for customers `idx` on `day`; returns products."""
    weights = _SLOT_WEIGHTS[slot][cust.segment[idx]]
    choice = (rng.random(idx.size)[:, None] > np.cumsum(weights, axis=1)).sum(axis=1)
    choice = np.minimum(choice, weights.shape[1] - 1)
    product = _SLOT_PRODUCTS[slot][choice]
    state.sub_product[idx, slot] = product
    state.sub_start[idx, slot] = day
    state.sub_amount[idx, slot] = np.round(_PRICE[product] * _seat_factor(cust, idx), 2)
    return product


def _end_subscriptions(state: _State, idx: np.ndarray, slot: int, day: np.ndarray) -> None:
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


# ----------------------------------------------------------------------------------------------
# Trailing history and the hazard


def _window(chunks: list[dict[str, np.ndarray]], first: int, stop: int):
    parts = chunks[max(first, 0) : max(stop, 0)]
    if not parts:
        return None
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _count(idx: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(idx, weights=weights, minlength=n).astype(float)


def _trailing(
    m: int,
    cal: _Calendar,
    cust: _Customers,
    state: _State,
    events: dict[str, list[dict[str, np.ndarray]]],
    n_agents: int,
) -> _Trailing:
    n = cust.n
    as_of, since, since6 = cal.at(m), cal.at(m - 3), cal.at(m - 6)
    zeros = np.zeros(n)

    late = mean_lateness = damaged = zeros
    d = _window(events["deliveries"], m - 4, m)
    if d is not None:
        sel = (d["promised"] >= since) & (d["promised"] < as_of)
        c, promised = d["cust"][sel], d["promised"][sel]
        seen = d["delivered"][sel] < as_of
        lateness = np.where(seen, d["delivered"][sel], as_of) - promised
        is_late = lateness > 0
        late = _count(c[is_late], n)
        total = _count(c[is_late], n, lateness[is_late].astype(float))
        mean_lateness = np.divide(total, late, out=np.zeros(n), where=late > 0)
        damaged = _count(c[seen & (d["damaged"][sel] == 1)], n)

    open_tickets = unresolved = repeated = zeros
    t = _window(events["tickets"], 0, m)
    if t is not None:
        c, closed = t["cust"], t["closed"]
        open_tickets = _count(c[closed >= as_of], n)
        unres = (closed >= since) & (closed < as_of) & (t["resolved"] == 0)
        unresolved = _count(c[unres], n)
        recent = t["opened"] >= since
        k = len(TICKET_CATEGORIES)
        keys = np.unique(c[recent] * k + t["category"][recent])
        repeated = _count(c[recent], n) - _count(keys // k, n)

    agents = share = contacts = zeros
    i = _window(events["interactions"], m - 3, m)
    if i is not None:
        c, agent = i["cust"], i["agent"]
        handled = agent >= 0
        agents = _count(np.unique(c[handled] * n_agents + agent[handled]) // n_agents, n)
        n_handled = _count(c[handled], n)
        n_out = _count(c[handled & i["outsourced"]], n)
        share = np.divide(n_out, n_handled, out=np.zeros(n), where=n_handled > 0)
        contacts = _count(c[i["channel"] != _CAMPAIGN_CHANNEL], n)

    purchases = spend = spend_before = zeros
    x = _window(events["transactions"], m - 6, m)
    if x is not None:
        c, day, ret = x["cust"], x["day"], x["is_return"]
        recent = day >= since
        purchases = _count(c[recent & ~ret], n)
        signed = np.where(ret, -x["amount"], x["amount"])
        spend = _count(c[recent], n, signed[recent])
        spend_before = _count(c[~recent & (day >= since6)], n, signed[~recent & (day >= since6)])

    observed = (as_of - np.maximum(np.maximum(since, 0), cust.signup_day)) / _MONTH_DAYS
    enough = observed >= 0.5
    safe = np.where(enough, observed, 1.0)
    purchase_rate = np.where(enough, purchases / safe, _PURCHASE_RATE[cust.segment])
    contact_rate = np.where(enough, contacts / safe, _CONTACT_RATE[cust.segment])
    has_trend = (m >= 6) & (cust.signup_day <= since6)
    trend = np.log(
        (np.maximum(spend, 0) + _SPEND_SMOOTHING) / (np.maximum(spend_before, 0) + _SPEND_SMOOTHING)
    )
    return _Trailing(
        late=late,
        mean_lateness=mean_lateness,
        damaged=damaged,
        open_tickets=open_tickets,
        unresolved=unresolved,
        repeated=repeated,
        agents=agents,
        outsourced_share=share,
        purchase_rate=purchase_rate,
        contact_rate=contact_rate,
        spend_trend=np.where(has_trend, trend, 0.0),
        products=(state.sub_product >= 0).sum(axis=1).astype(float),
        hardware_held=state.hardware_day >= as_of - 365,
        tenure_months=(as_of - cust.signup_day) / _MONTH_DAYS,
    )


def _hazard_terms(
    tr: _Trailing, state: _State, coef: HazardCoefficients
) -> dict[str, np.ndarray]:
    """Log-odds contribution of each driver group (see the module docstring)."""
    s, s_before = state.satisfaction, state.satisfaction_history[0]
    tenure = np.maximum(tr.tenure_months, 0.0)
    renewal = (tenure >= 11) & (np.mod(tenure, 12.0) >= 11)
    return {
        "delivery": coef.late_delivery * np.minimum(tr.late, 4)
        + coef.lateness_day * np.minimum(tr.mean_lateness, 15)
        + coef.damaged_delivery * np.minimum(tr.damaged, 3),
        "service": coef.open_ticket * np.minimum(tr.open_tickets, 3)
        + coef.unresolved_ticket * np.minimum(tr.unresolved, 3)
        + coef.repeat_ticket * np.minimum(tr.repeated, 3),
        "communication": coef.distinct_agent * np.clip(tr.agents - 2, 0, 8)
        + coef.outsourced_share * tr.outsourced_share,
        "satisfaction": coef.satisfaction * s
        + coef.satisfaction_fall * np.maximum(s_before - s, 0.0),
        "price": coef.price * state.price,
        "engagement": coef.purchase_rate * np.log1p(tr.purchase_rate),
        "products": coef.product * (tr.products - 1),
        "tenure": coef.new_customer * np.exp(-tenure / coef.new_customer_months)
        + coef.renewal * renewal,
        "value": coef.spend_trend * np.clip(tr.spend_trend, -2, 2),
    }


def _adoption_probabilities(
    tr: _Trailing, cust: _Customers, coef: AdoptionCoefficients
) -> np.ndarray:
    """Monthly adoption probability per customer (rows) and adoption family (columns)."""
    score = (
        np.asarray(coef.intercept)[None, :]
        + np.asarray(coef.segment)[cust.segment]
        + coef.product * (tr.products - 1)[:, None]
        + coef.engagement * np.log1p(tr.purchase_rate + tr.contact_rate)[:, None]
    )
    score[:, ADOPTION_FAMILIES.index("insurance")] += coef.hardware_insurance * tr.hardware_held
    return _sigmoid(score)


def _expected_spend(
    cust: _Customers,
    state: _State,
    p_adopt: np.ndarray,
    not_held: np.ndarray,
    month_of_year: int,
    length: int,
) -> np.ndarray:
    """Expected net transaction amount of the month per customer, from the month-start state, for
    a customer present the whole month (see `expected_monthly_spend` in the module docstring).

    Mirrors the month's draws without making any: routine accessory purchases, adoption purchases
    (a subscription's first invoice or a hardware purchase) and returns. Subscriptions have no
    other invoice transactions."""
    seg = cust.segment
    quantity = 1.0 + _EXTRA_QUANTITY[seg]  # physical products: 1 + Poisson(extra)
    kept = 1.0 - float(_DISCOUNTS @ _DISCOUNT_SHARE)  # expected 1 - discount
    rate = _PURCHASE_RATE[seg] * np.exp(state.engagement + 0.25 * state.satisfaction)
    rate = rate * _SEASON.get(month_of_year, 1.0)
    accessory = float(_ACCESSORY_WEIGHTS @ _PRICE[_ACCESSORIES])
    spend = rate * accessory * quantity * kept
    factor = _seat_factor(cust, np.arange(cust.n))
    for f, slot in enumerate(_ADOPTION_SLOT):
        if slot < 0:
            value = float(_HARDWARE_WEIGHTS @ _PRICE[_HARDWARE]) * quantity * kept
        else:  # first invoice: the chosen product's recurring amount, no discount
            amounts = np.round(_PRICE[_SLOT_PRODUCTS[slot]][None, :] * factor[:, None], 2)
            value = (_SLOT_WEIGHTS[slot][seg] * amounts).sum(axis=1)
        spend = spend + np.where(not_held[:, f], p_adopt[:, f] * value, 0.0)
    # a purchase is returned (full amount) with _RETURN_SHARE when >= 2 days of the month remain
    return spend * (1.0 - _RETURN_SHARE * (length - 1) / length)


def _held(state: _State, tr: _Trailing) -> np.ndarray:
    cols = [
        tr.hardware_held if slot < 0 else state.sub_product[:, slot] >= 0
        for slot in _ADOPTION_SLOT
    ]
    return np.column_stack(cols)


# ----------------------------------------------------------------------------------------------
# Events of one month


def _days_in(rng: np.random.Generator, c: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    return lo[c] + np.floor(rng.random(c.size) * (hi[c] - lo[c])).astype(np.int64)


def _purchase_rows(
    rng: np.random.Generator,
    cust: _Customers,
    c: np.ndarray,
    day: np.ndarray,
    product: np.ndarray,
    amount: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    quantity = np.where(
        _PHYSICAL[product], 1 + rng.poisson(_EXTRA_QUANTITY[cust.segment[c]]), 1
    ).astype(float)
    if amount is None:
        discount = rng.choice(_DISCOUNTS, c.size, p=_DISCOUNT_SHARE)
        amount = np.round(_PRICE[product] * quantity * (1 - discount), 2)
    return {
        "cust": c,
        "day": day,
        "sec": rng.integers(8 * 3600, 22 * 3600, c.size),
        "product": product,
        "quantity": quantity,
        "amount": amount,
        "is_return": np.zeros(c.size, dtype=bool),
    }


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _returns(
    rng: np.random.Generator, tx: dict[str, np.ndarray], hi: np.ndarray
) -> dict[str, np.ndarray]:
    """Returns of some purchases, later in the customer's month (amounts stay positive)."""
    room = hi[tx["cust"]] - tx["day"]
    sel = np.flatnonzero((rng.random(tx["day"].size) < _RETURN_SHARE) & (room >= 2))
    day = tx["day"][sel] + 1 + np.floor(rng.random(sel.size) * (room[sel] - 1)).astype(np.int64)
    out = {k: v[sel] for k, v in tx.items()}
    out["day"] = day
    out["sec"] = rng.integers(8 * 3600, 22 * 3600, sel.size)
    out["is_return"] = np.ones(sel.size, dtype=bool)
    return out


def _deliveries(
    rng: np.random.Generator, cust: _Customers, state: _State, tx: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Deliveries of physical purchases: lateness from the carrier and the customer's route."""
    buy = np.flatnonzero(_PHYSICAL[tx["product"]] & ~tx["is_return"])
    buy = buy[rng.random(buy.size) < cust.delivery_share[tx["cust"][buy]]]
    c = tx["cust"][buy]
    promised = tx["day"][buy] + rng.integers(2, 6, c.size)
    quality = _CARRIER_OFFSET[cust.carrier[c]] + state.route[c]
    late = rng.random(c.size) < _sigmoid(-1.9 + quality)
    days_late = rng.geometric(1.0 / (1.0 + 2.0 * np.exp(0.5 * quality)))
    early = ~late & (rng.random(c.size) < 0.10)
    lost = rng.random(c.size) < 0.008 * np.exp(_CARRIER_OFFSET[cust.carrier[c]])
    delivered = promised + np.where(late, days_late, 0) - early
    delivered = np.where(lost, _NEVER, delivered)
    damaged_true = ~lost & (rng.random(c.size) < _sigmoid(-3.5 + 0.6 * quality))
    damaged = damaged_true.astype(np.int8)
    damaged[lost | (rng.random(c.size) < 0.03)] = -1  # never delivered, or damage not recorded
    return {
        "cust": c,
        "promised": promised,
        "delivered": delivered,
        "damaged": damaged,
        "lost": lost,
        "damaged_true": damaged_true,
    }


def _resolve_tickets(
    rng: np.random.Generator, state: _State, c: np.ndarray, opened: np.ndarray, cat: np.ndarray
) -> dict[str, np.ndarray]:
    share = _sigmoid(state.outsourced[c])
    duration = np.ceil(rng.lognormal(math.log(3.0), 1.1, c.size) * (1 + share))
    duration = np.minimum(duration, 180).astype(np.int64)
    resolved = rng.random(c.size) < _sigmoid(
        2.0 - 1.5 * share - 0.5 * (cat == _TECHNICAL_CATEGORY)
    )
    return {
        "cust": c,
        "opened": opened,
        "closed": opened + duration,
        "category": cat,
        "resolved": resolved.astype(np.int8),
    }


def _tickets(
    rng: np.random.Generator,
    state: _State,
    fresh: dict[str, np.ndarray],
    pending: dict[str, np.ndarray],
    month_end: int,
    lo: np.ndarray,
    hi: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Tickets of the month, with reopened problems: an unresolved ticket is often followed by a
    new ticket of the same category a few days after it was closed (possibly next month)."""
    queue = _concat([pending, fresh])
    none = np.zeros(0, np.int64)
    done = [_resolve_tickets(rng, state, none, none, none)]
    while queue["cust"].size:
        now = queue["opened"] < month_end
        later = {k: v[~now] for k, v in queue.items()}
        c, opened, cat = queue["cust"][now], queue["opened"][now], queue["category"][now]
        ok = (opened >= lo[c]) & (opened < hi[c])  # the customer is still there that day
        t = _resolve_tickets(rng, state, c[ok], opened[ok], cat[ok])
        done.append(t)
        again = rng.random(t["cust"].size) < np.where(t["resolved"] == 1, 0.05, 0.55)
        follow = {
            "cust": t["cust"][again],
            "opened": t["closed"][again] + 1 + rng.integers(0, 10, int(again.sum())),
            "category": t["category"][again],
        }
        queue = _concat([later, follow])
        if not (queue["opened"] < month_end).any():
            break
    return _concat(done), queue


def _interactions(
    rng: np.random.Generator,
    cust: _Customers,
    state: _State,
    c: np.ndarray,
    day: np.ndarray,
    kind: np.ndarray,
    n_home: int,
    n_outsourced: int,
) -> dict[str, np.ndarray]:
    """Agents: outsourced contacts go to a random outsourced agent; in-house ones to the
    customer's home agent with their consistency propensity, else to a random in-house agent."""
    handled = _KIND_AGENT[kind]
    outsourced = handled & _KIND_OUTSOURCABLE[kind] & (
        rng.random(c.size) < _sigmoid(state.outsourced[c])
    )
    home = rng.random(c.size) < _sigmoid(state.consistency[c])
    agent = np.where(
        outsourced,
        n_home + rng.integers(0, n_outsourced, c.size),
        np.where(home, cust.home_agent[c], rng.integers(0, n_home, c.size)),
    )
    return {
        "cust": c,
        "day": day,
        "sec": rng.integers(7 * 3600, 23 * 3600, c.size),
        "channel": _KIND_CHANNEL[kind],
        "kind": kind,
        "agent": np.where(handled, agent, -1),
        "outsourced": outsourced,
    }


def _kinds_for(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    u = rng.random(channel.size)
    local = np.minimum((u[:, None] > _KIND_CUM[channel]).sum(axis=1), 2)
    return channel * 3 + local


def _score(rng: np.random.Generator, centre: np.ndarray, noise: float, missing: float):
    value = np.clip(np.round(centre + noise * rng.standard_normal(centre.size)), 0, 10) + 0.0
    value[rng.random(centre.size) < missing] = np.nan
    return value


def _plan_campaigns(rng: np.random.Generator, cal: _Calendar, months: int) -> list[_CampaignRun]:
    count = 0 if months < 3 else max(1, round(months / 9))
    runs: list[_CampaignRun] = []
    for c in range(count):
        effect = int(np.clip(round((c + 1) * months / (count + 1)), 1, months - 1))
        month = cal.start + pd.DateOffset(months=effect)
        plan = _CampaignPlan(
            campaign_id=f"RET-{month:%Y-%m}",
            offer=_OFFERS[c % len(_OFFERS)],
            send_month=effect - 1,
            effect_month=effect,
            relative_hazard_reduction=round(float(rng.uniform(0.15, 0.35)), 2),
            effect_months=int(rng.integers(2, 5)),
            target_share=float(rng.uniform(0.08, 0.15)),
        )
        runs.append(_CampaignRun(plan))
    return runs


# ----------------------------------------------------------------------------------------------
# The simulation


def generate(
    customers: int = 20_000,
    months: int = 36,
    seed: int = 42,
    start: str = "2023-01-01",
    *,
    progress: Progress | None = None,
    hazard: HazardCoefficients | None = None,
    adoption: AdoptionCoefficients | None = None,
) -> DemoData:
    """Simulate `customers` customers over `months` months from `start` (see the module doc).

    `progress(month_index, months)` is called once per simulated month. `hazard` and `adoption`
    override the mechanism's coefficients (defaults: the documented ones).
    """
    if customers < 1 or months < 1:
        raise ValueError("customers and months must be at least 1")
    coef = hazard or HazardCoefficients()
    acoef = adoption or AdoptionCoefficients()
    rng = np.random.default_rng(seed)
    start_ts = pd.Timestamp(start)
    if start_ts.tzinfo is not None:
        start_ts = start_ts.tz_localize(None)
    start_ts = start_ts.normalize()
    cal = _calendar(start_ts, months)
    end_day = cal.at(months)
    n = customers
    n_home, n_outsourced = max(20, n // 250), max(20, n // 200)
    n_agents = n_home + n_outsourced

    cust = _init_customers(rng, n, end_day, n_home)
    state = _init_state(rng, cust)
    campaigns = _plan_campaigns(rng, cal, months)
    profile = (
        np.asarray(coef.segment)[cust.segment] + np.asarray(coef.acquisition)[cust.acquisition]
    )
    events: dict[str, list[dict[str, np.ndarray]]] = {
        k: [] for k in ("transactions", "deliveries", "tickets", "interactions", "surveys")
    }
    campaign_rows: list[dict[str, np.ndarray]] = []
    pending = {
        "cust": np.zeros(0, np.int64),
        "opened": np.zeros(0, np.int64),
        "category": np.zeros(0, np.int64),
    }
    churn_truth: list[dict[str, np.ndarray]] = []
    adoption_truth: list[dict[str, np.ndarray]] = []

    for m in range(months):
        month_start, month_end = cal.at(m), cal.at(m + 1)
        length = month_end - month_start
        at_start = state.alive & (cust.signup_day < month_start)
        idx = np.flatnonzero(at_start)

        # -- the hazard from the state at the month start
        tr = _trailing(m, cal, cust, state, events, n_agents)
        terms = _hazard_terms(tr, state, coef)
        log_odds = coef.base + profile + np.sum(list(terms.values()), axis=0)
        untreated = _sigmoid(log_odds)
        in_effect = (state.effect_first <= m) & (m < state.effect_stop)
        reduction = np.where(in_effect, state.effect_reduction, 0.0)
        h = untreated * (1.0 - reduction)
        for run in campaigns:
            if run.plan.effect_month == m and run.targeted is not None:
                _campaign_true_uplift(run, untreated, at_start)

        churned = rng.random(idx.size) < h[idx]
        churners = idx[churned]
        churn_day = month_start + np.floor(rng.random(churners.size) * length).astype(np.int64)
        state.churn_day[churners] = churn_day
        churn_truth.append(
            {
                "cust": idx,
                "month": np.full(idx.size, m),
                "hazard": h[idx],
                "log_odds": log_odds[idx],
                "profile": profile[idx],
                "reduction": reduction[idx],
                "churned": churned,
                **{f"term_{g}": terms[g][idx] for g in DOMINANT_DRIVERS},
            }
        )

        # -- adoption probabilities (truth) from the same state
        p_adopt = _adoption_probabilities(tr, cust, acoef)
        not_held = ~_held(state, tr) & at_start[:, None]
        who, fam = np.nonzero(not_held)
        adoption_truth.append(
            {"cust": who, "month": np.full(who.size, m), "family": fam, "p": p_adopt[who, fam]}
        )
        # -- expected net spend of the month (truth, on the churn rows), from the same state
        spend = _expected_spend(cust, state, p_adopt, not_held, int(cal.month_of_year[m]), length)
        churn_truth[-1]["spend"] = spend[idx]

        # -- who is there this month, from when until when
        lo = np.maximum(month_start, cust.signup_day)
        hi = np.full(n, month_end, dtype=np.int64)
        hi[churners] = churn_day
        present = state.alive & (cust.signup_day < month_end) & (hi > lo)
        pidx = np.flatnonzero(present)
        exposure = np.zeros(n)
        exposure[pidx] = (hi[pidx] - lo[pidx]) / length
        s, e = state.satisfaction, state.engagement
        seg = cust.segment
        purchases: list[dict[str, np.ndarray]] = []

        # new joiners: a core plan at signup, sometimes a bundle and a device
        joiners = np.flatnonzero((cust.signup_day >= month_start) & (cust.signup_day < month_end))
        jday = cust.signup_day[joiners]
        _subscribe(rng, state, cust, joiners, 0, jday)
        for slot, share in ((1, (0.25, 0.2, 0.2)), (2, (0.10, 0.08, 0.05)), (3, (0.0, 0.1, 0.3))):
            take = rng.random(joiners.size) < np.asarray(share)[seg[joiners]]
            _subscribe(rng, state, cust, joiners[take], slot, jday[take])
        take = rng.random(joiners.size) < 0.3
        device = _HARDWARE[rng.choice(_HARDWARE.size, int(take.sum()), p=_HARDWARE_WEIGHTS)]
        purchases.append(_purchase_rows(rng, cust, joiners[take], jday[take], device))
        state.hardware_day[joiners[take]] = jday[take]

        # adoption of families not held (customers present this month)
        adopt = np.flatnonzero(rng.random(who.size) < p_adopt[who, fam])
        adopt = adopt[present[who[adopt]]]
        for f, slot in enumerate(_ADOPTION_SLOT):
            c = who[adopt[fam[adopt] == f]]
            day = _days_in(rng, c, lo, hi)
            if slot < 0:
                device = _HARDWARE[rng.choice(_HARDWARE.size, c.size, p=_HARDWARE_WEIGHTS)]
                purchases.append(_purchase_rows(rng, cust, c, day, device))
                state.hardware_day[c] = day
            else:
                product = _subscribe(rng, state, cust, c, slot, day)
                purchases.append(
                    _purchase_rows(rng, cust, c, day, product, state.sub_amount[c, slot].copy())
                )

        # drops of non-core subscriptions held at the month start; core plan switches
        stay = idx[hi[idx] > lo[idx]]
        for slot in (1, 2, 3):
            c = stay[state.sub_product[stay, slot] >= 0]
            c = c[state.sub_start[c, slot] < month_start]
            drop = rng.random(c.size) < _sigmoid(-4.2 - 0.3 * s[c] - 0.2 * state.price[c])
            c = c[drop]
            _end_subscriptions(state, c, slot, _days_in(rng, c, lo, hi))
        c = stay[rng.random(stay.size) < 0.008]
        day = _days_in(rng, c, lo, hi)
        _end_subscriptions(state, c, 0, day)
        _subscribe(rng, state, cust, c, 0, day)

        # routine purchases (accessories), seasonal, by segment and engagement
        rate = _PURCHASE_RATE[seg[pidx]] * np.exp(e[pidx] + 0.25 * s[pidx])
        rate *= _SEASON.get(int(cal.month_of_year[m]), 1.0) * exposure[pidx]
        c = np.repeat(pidx, rng.poisson(rate))
        product = _ACCESSORIES[rng.choice(_ACCESSORIES.size, c.size, p=_ACCESSORY_WEIGHTS)]
        purchases.append(_purchase_rows(rng, cust, c, _days_in(rng, c, lo, hi), product))
        tx = _concat(purchases)
        tx = _concat([tx, _returns(rng, tx, hi)])
        events["transactions"].append(tx)

        # deliveries of physical purchases
        dl = _deliveries(rng, cust, state, tx)
        events["deliveries"].append(
            {k: dl[k] for k in ("cust", "promised", "delivered", "damaged")}
        )
        true_late = np.where(dl["lost"], 0, dl["delivered"] - dl["promised"])

        # tickets: base rate, triggered by bad deliveries, reopened problems
        rate = _TICKET_RATE[seg[pidx]] * np.exp(cust.ticket_proneness[pidx]) * exposure[pidx]
        c = np.repeat(pidx, rng.poisson(rate))
        fresh = {
            "cust": c,
            "opened": _days_in(rng, c, lo, hi),
            "category": rng.choice(len(TICKET_CATEGORIES), c.size, p=_CATEGORY_SHARE),
        }
        trigger = rng.random(dl["cust"].size) < np.where(
            dl["lost"], 0.6, np.where(dl["damaged_true"], 0.5, np.where(true_late >= 3, 0.2, 0.0))
        )
        opened = np.where(
            dl["lost"], dl["promised"] + 5, dl["delivered"] + rng.integers(0, 3, dl["cust"].size)
        )[trigger]
        triggered = {
            "cust": dl["cust"][trigger],
            "opened": opened,
            "category": np.full(int(trigger.sum()), _DELIVERY_CATEGORY),
        }
        tk, pending = _tickets(
            rng, state, _concat([fresh, triggered]), pending, month_end, lo, hi
        )
        events["tickets"].append(tk)

        # interactions: everyday contacts plus the contacts of each ticket
        rate = _CONTACT_RATE[seg[pidx]] * np.exp(0.3 * e[pidx]) * exposure[pidx]
        c = np.repeat(pidx, rng.poisson(rate))
        channel = (rng.random(c.size)[:, None] > np.cumsum(_CHANNEL_SHARE, 1)[seg[c]]).sum(1)
        kind = _kinds_for(rng, np.minimum(channel, len(CHANNELS) - 1))
        tc = np.repeat(np.arange(tk["cust"].size), 1 + rng.poisson(0.4, tk["cust"].size))
        tkind = np.where(
            rng.random(tc.size) < 0.7,
            np.where(rng.random(tc.size) < 0.6, 4, 5),  # contact_center complaint / support
            11,  # service support
        )
        ia = _concat(
            [
                _interactions(rng, cust, state, c, _days_in(rng, c, lo, hi), kind, n_home,
                              n_outsourced),
                _interactions(rng, cust, state, tk["cust"][tc], tk["opened"][tc], tkind, n_home,
                              n_outsourced),
            ]
        )
        events["interactions"].append(ia)

        # surveys: noisy observations of the latent states by a monthly pulse survey (dense
        # enough that satisfaction and price perception are observable, as the models need)
        answered = pidx[rng.random(pidx.size) < cust.survey_propensity[pidx] * exposure[pidx]]
        c = answered
        problems_now = _count(tk["cust"], n)[c] + _count(dl["cust"][true_late >= 2], n)[c]
        sat = 7.0 + 1.5 * s[c]
        events["surveys"].append(
            {
                "cust": c,
                "day": _days_in(rng, c, lo, hi),
                "satisfaction": _score(rng, sat, 0.5, 0.03),
                "nps": _score(rng, 0.85 * sat + 1.0, 1.2, 0.08),
                "price": _score(rng, 5.5 + 1.6 * state.price[c], 0.6, 0.10),
                "benefits": _score(
                    rng, 5.5 + 0.6 * (tr.products[c] - 1) + 0.6 * s[c], 1.2, 0.10
                ),
                "problems": _score(rng, 8.0 - 1.2 * problems_now + 0.5 * s[c], 1.0, 0.10),
            }
        )

        # retention campaigns sent at the end of this month, effective from the next
        for run in campaigns:
            if run.plan.send_month == m:
                campaign_rows.append(
                    _send_campaign(rng, run, untreated, at_start, lo, hi, state, month_end)
                )

        # churners leave: every subscription ends on the churn day
        for slot in range(len(SUBSCRIPTION_FAMILIES)):
            _end_subscriptions(state, churners, slot, churn_day)
        state.alive[churners] = False

        # latent states move on; bad experiences lower satisfaction
        impact = (
            0.20 * _count(dl["cust"][true_late >= 2], n)
            + 0.45 * _count(dl["cust"][dl["damaged_true"]], n)
            + 0.60 * _count(dl["cust"][dl["lost"]], n)
            + 0.10 * _count(tk["cust"], n)
            + 0.35 * _count(tk["cust"][tk["resolved"] == 0], n)
        )
        handled = ia["agent"] >= 0
        month_agents = _count(
            np.unique(ia["cust"][handled] * n_agents + ia["agent"][handled]) // n_agents, n
        )
        impact += 0.05 * np.maximum(month_agents - 1, 0)
        state.satisfaction_history = [*state.satisfaction_history[1:], state.satisfaction]
        state.satisfaction = (
            _ar1(rng, state.satisfaction, cust.satisfaction_mean, _RHO_S, _SD_S) - impact
        )
        state.price = _ar1(rng, state.price, cust.price_mean, _RHO_P, _SD_P)
        state.engagement = _ar1(rng, state.engagement, cust.engagement_mean, _RHO_E, _SD_E)
        state.route = _ar1(rng, state.route, cust.route_mean, _RHO_Q, _SD_Q)
        state.outsourced = _ar1(rng, state.outsourced, cust.outsourced_mean, _RHO_O, _SD_O)
        state.consistency = _ar1(rng, state.consistency, cust.consistency_mean, 0.95, 0.1)
        if progress is not None:
            progress(m, months)

    tables = _tables(cal, cust, state, events, campaign_rows, n_agents)
    truth = {
        "churn": _churn_truth(cal, churn_truth),
        "adoption": _adoption_truth(cal, adoption_truth),
        "campaign_effects": _campaign_effects(cal, campaigns, state, months),
    }
    return DemoData(tables=tables, truth=truth)


def _send_campaign(
    rng: np.random.Generator,
    run: _CampaignRun,
    untreated: np.ndarray,
    at_start: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    state: _State,
    month_end: int,
) -> dict[str, np.ndarray]:
    """Target at-risk customers (selection probability grows with the hazard), randomise them
    80/20 into treatment and control, and give the treatment its hazard reduction."""
    plan = run.plan
    sent = month_end - int(rng.integers(1, 6))
    eligible = np.flatnonzero(at_start & (lo <= sent) & (hi > sent))
    risk = untreated[eligible]
    p = np.minimum(0.95, plan.target_share * risk / max(float(risk.mean()), 1e-12))
    targeted = eligible[rng.random(eligible.size) < p]
    treatment = rng.random(targeted.size) < 0.8
    treated = targeted[treatment]
    state.effect_reduction[treated] = plan.relative_hazard_reduction
    state.effect_first[treated] = plan.effect_month
    state.effect_stop[treated] = plan.effect_month + plan.effect_months
    responded = np.where(
        treatment,
        rng.random(targeted.size) < _sigmoid(-1.3 + 0.4 * state.satisfaction[targeted]),
        rng.random(targeted.size) < 0.02,
    )
    run.sent_at, run.targeted, run.treatment = sent, targeted, treatment
    return {
        "cust": targeted,
        "campaign": np.full(targeted.size, plan.campaign_id, dtype=object),
        "day": np.full(targeted.size, sent, dtype=np.int64),
        "treatment": treatment,
        "offer": np.full(targeted.size, plan.offer, dtype=object),
        "responded": responded,
    }


def _campaign_true_uplift(run: _CampaignRun, untreated: np.ndarray, at_start: np.ndarray) -> None:
    """Expected 90-day retention gain from the treatment for the targeted customers still active
    at the effect start, holding each one's untreated hazard of that month for three months."""
    assert run.targeted is not None
    c = run.targeted[at_start[run.targeted]]
    if c.size == 0:
        return
    h = untreated[c]
    r = run.plan.relative_hazard_reduction
    k = min(run.plan.effect_months, 3)
    treated = (1 - h * (1 - r)) ** k * (1 - h) ** (3 - k)
    run.true_uplift = float(np.mean(treated - (1 - h) ** 3))


# ----------------------------------------------------------------------------------------------
# Tables and truth


def _stamp(cal: _Calendar, day: np.ndarray, sec: np.ndarray | None = None) -> np.ndarray:
    """Day offsets (and seconds into the day) to datetime64[ns]; days >= _NEVER become NaT."""
    base = cal.start.value
    ns = base + day.astype(np.int64) * _DAY_NS
    if sec is not None:
        ns = ns + sec.astype(np.int64) * 10**9
    ns = np.where(day >= _NEVER, np.iinfo(np.int64).min, ns)
    return ns.astype("datetime64[ns]")


def _labels(codes: np.ndarray, names) -> np.ndarray:
    table = np.array([*names, None], dtype=object)
    return table[np.where(codes < 0, len(names), codes)]


def _bool_array(codes: np.ndarray) -> pd.arrays.BooleanArray:
    values = codes == 1
    return pd.arrays.BooleanArray(values, codes < 0)


def _tables(
    cal: _Calendar,
    cust: _Customers,
    state: _State,
    events: dict[str, list[dict[str, np.ndarray]]],
    campaign_rows: list[dict[str, np.ndarray]],
    n_agents: int,
) -> dict[str, pd.DataFrame]:
    end_day = cal.at(len(cal.month_of_year))
    ids = 100_000 + np.arange(cust.n, dtype=np.int64)

    def keep(c: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Events of the window and before each customer's churn day."""
        return (day < end_day) & (day < state.churn_day[c])

    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": _stamp(cal, cust.signup_day),
            "segment": _labels(cust.segment, SEGMENTS),
            "region": _labels(cust.region, REGIONS),
            "acquisition_channel": _labels(cust.acquisition, ACQUISITION_CHANNELS),
            "seats": np.where(cust.seats_known, cust.seats, np.nan),
        }
    )
    products = pd.DataFrame(
        {
            "product_id": _PRODUCT_IDS,
            "family": _PRODUCT_FAMILY,
            "price": _PRICE,
            "name": np.array([p[1] for p in CATALOG], dtype=object),
        }
    )

    # subscriptions: ended ones as recorded, the still active ones with a null end date
    active = np.nonzero(state.sub_product >= 0)
    subs = _concat(
        [
            *state.ended_subscriptions,
            {
                "cust": active[0],
                "product": state.sub_product[active],
                "start": state.sub_start[active],
                "end": np.full(active[0].size, _NEVER, dtype=np.int64),
                "amount": state.sub_amount[active],
            },
        ]
    )
    order = np.lexsort((subs["product"], subs["start"], subs["cust"]))
    subs = {k: v[order] for k, v in subs.items()}
    subscriptions = pd.DataFrame(
        {
            "customer_id": ids[subs["cust"]],
            "product_id": _PRODUCT_IDS[subs["product"]],
            "start_date": _stamp(cal, subs["start"]),
            "end_date": _stamp(cal, subs["end"]),
            "recurring_amount": subs["amount"],
        }
    )

    tx = _concat(events["transactions"])
    tx = {k: v[keep(tx["cust"], tx["day"])] for k, v in tx.items()}
    order = np.lexsort((tx["cust"], tx["day"] * 86_400 + tx["sec"]))
    tx = {k: v[order] for k, v in tx.items()}
    transactions = pd.DataFrame(
        {
            "customer_id": ids[tx["cust"]],
            "timestamp": _stamp(cal, tx["day"], tx["sec"]),
            "amount": tx["amount"],
            "transaction_id": 1 + np.arange(tx["cust"].size, dtype=np.int64),
            "product_id": _PRODUCT_IDS[tx["product"]],
            "quantity": tx["quantity"],
            "is_return": tx["is_return"],
        }
    )

    ia = _concat(events["interactions"])
    ia = {k: v[keep(ia["cust"], ia["day"])] for k, v in ia.items()}
    order = np.lexsort((ia["cust"], ia["day"] * 86_400 + ia["sec"]))
    ia = {k: v[order] for k, v in ia.items()}
    width = max(4, len(str(n_agents)))
    agent_names = np.array([f"A{a + 1:0{width}d}" for a in range(n_agents)], dtype=object)
    interactions = pd.DataFrame(
        {
            "customer_id": ids[ia["cust"]],
            "timestamp": _stamp(cal, ia["day"], ia["sec"]),
            "channel": _labels(ia["channel"], CHANNELS),
            "kind": _KIND_NAMES[ia["kind"]],
            "agent_id": _labels(ia["agent"], agent_names),
            "outsourced": ia["outsourced"],
        }
    )

    tk = _concat(events["tickets"])
    tk = {k: v[keep(tk["cust"], tk["opened"])] for k, v in tk.items()}
    order = np.lexsort((tk["cust"], tk["opened"]))
    tk = {k: v[order] for k, v in tk.items()}
    still_open = tk["closed"] >= end_day
    tickets = pd.DataFrame(
        {
            "customer_id": ids[tk["cust"]],
            "opened_at": _stamp(cal, tk["opened"]),
            "closed_at": _stamp(cal, np.where(still_open, _NEVER, tk["closed"])),
            "category": _labels(tk["category"], TICKET_CATEGORIES),
            "resolved": _bool_array(np.where(still_open, -1, tk["resolved"])),
        }
    )

    dl = _concat(events["deliveries"])
    dl = {k: v[keep(dl["cust"], dl["promised"])] for k, v in dl.items()}
    order = np.lexsort((dl["cust"], dl["promised"]))
    dl = {k: v[order] for k, v in dl.items()}
    not_yet = dl["delivered"] >= end_day
    deliveries = pd.DataFrame(
        {
            "customer_id": ids[dl["cust"]],
            "promised_date": _stamp(cal, dl["promised"]),
            "delivered_date": _stamp(cal, np.where(not_yet, _NEVER, dl["delivered"])),
            "damaged": _bool_array(np.where(not_yet, -1, dl["damaged"])),
        }
    )

    sv = _concat(events["surveys"])
    sv = {k: v[keep(sv["cust"], sv["day"])] for k, v in sv.items()}
    order = np.lexsort((sv["cust"], sv["day"]))
    sv = {k: v[order] for k, v in sv.items()}
    surveys = pd.DataFrame(
        {
            "customer_id": ids[sv["cust"]],
            "timestamp": _stamp(cal, sv["day"]),
            **{k: sv[k] for k in ("satisfaction", "nps", "price", "benefits", "problems")},
        }
    )

    if campaign_rows:
        cp = _concat(campaign_rows)
    else:
        cp = {
            "cust": np.zeros(0, np.int64),
            "campaign": np.zeros(0, object),
            "day": np.zeros(0, np.int64),
            "treatment": np.zeros(0, bool),
            "offer": np.zeros(0, object),
            "responded": np.zeros(0, bool),
        }
    campaign_table = pd.DataFrame(
        {
            "customer_id": ids[cp["cust"]],
            "campaign_id": cp["campaign"],
            "timestamp": _stamp(cal, cp["day"]),
            "group": np.where(cp["treatment"], "treatment", "control").astype(object),
            "offer": cp["offer"],
            "responded": cp["responded"],
        }
    )
    return {
        "customers": customers,
        "transactions": transactions,
        "subscriptions": subscriptions,
        "products": products,
        "interactions": interactions,
        "tickets": tickets,
        "deliveries": deliveries,
        "surveys": surveys,
        "campaigns": campaign_table,
    }


def _churn_truth(cal: _Calendar, rows: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    r = _concat(rows)
    terms = np.column_stack([r[f"term_{g}"] for g in DOMINANT_DRIVERS])
    # the driver raising the log-odds most above its population-typical value (panel mean)
    above = terms - terms.mean(axis=0, keepdims=True) if terms.size else terms
    dominant = np.array(DOMINANT_DRIVERS, dtype=object)[above.argmax(axis=1)] if terms.size else []
    frame = pd.DataFrame(
        {
            "customer_id": 100_000 + r["cust"].astype(np.int64),
            "as_of": _stamp(cal, cal.days[_PRE + r["month"]]),
            "hazard": r["hazard"],
            "churn_probability_90d": 1.0 - (1.0 - r["hazard"]) ** 3,
            "dominant_driver": dominant,
            **{f"term_{g}": r[f"term_{g}"] for g in DOMINANT_DRIVERS},
            "term_profile": r["profile"],
            "log_odds": r["log_odds"],
            "campaign_reduction": r["reduction"],
            "churned_in_month": r["churned"].astype(bool),
            "expected_monthly_spend": r["spend"],
        }
    )
    return frame


def _adoption_truth(cal: _Calendar, rows: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    r = _concat(rows)
    return pd.DataFrame(
        {
            "customer_id": 100_000 + r["cust"].astype(np.int64),
            "as_of": _stamp(cal, cal.days[_PRE + r["month"]]),
            "family": np.array(ADOPTION_FAMILIES, dtype=object)[r["family"]],
            "adoption_probability_90d": 1.0 - (1.0 - r["p"]) ** 3,
        }
    )


def _campaign_effects(
    cal: _Calendar, campaigns: list[_CampaignRun], state: _State, months: int
) -> pd.DataFrame:
    rows = []
    for run in campaigns:
        plan = run.plan
        targeted = run.targeted if run.targeted is not None else np.zeros(0, np.int64)
        treatment = run.treatment if run.treatment is not None else np.zeros(0, bool)
        begin = cal.at(plan.effect_month)
        observed = float("nan")
        if plan.effect_month + 3 <= months:
            horizon = cal.at(plan.effect_month + 3)
            there = state.churn_day[targeted] >= begin
            kept = state.churn_day[targeted] >= horizon
            t, c = there & treatment, there & ~treatment
            if t.any() and c.any():
                observed = float(kept[t].mean() - kept[c].mean())
        rows.append(
            {
                "campaign_id": plan.campaign_id,
                "offer": plan.offer,
                "sent_at": _stamp(cal, np.array([run.sent_at]))[0],
                "effect_start": _stamp(cal, np.array([begin]))[0],
                "relative_hazard_reduction": plan.relative_hazard_reduction,
                "effect_months": plan.effect_months,
                "targeted": int(targeted.size),
                "treatment": int(treatment.sum()),
                "control": int((~treatment).sum()),
                "true_retention_uplift_90d": run.true_uplift,
                "observed_retention_uplift_90d": observed,
            }
        )
    columns = [
        "campaign_id", "offer", "sent_at", "effect_start", "relative_hazard_reduction",
        "effect_months", "targeted", "treatment", "control", "true_retention_uplift_90d",
        "observed_retention_uplift_90d",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("sent_at", "effect_start"):
        frame[col] = pd.to_datetime(frame[col]).astype("datetime64[ns]")
    return frame


# ----------------------------------------------------------------------------------------------
# Writing


def write_demo(
    out: str | Path,
    customers: int,
    months: int,
    seed: int,
    fmt: str = "parquet",
    start: str = "2023-01-01",
    *,
    progress: Progress | None = None,
) -> DemoData:
    """Generate the demo data and write it: the nine tables to `out/<table>.<fmt>` and the ground
    truth to `out/ground_truth/` (Parquet, plus a README explaining the mechanism)."""
    data = generate(customers, months, seed, start, progress=progress)
    out = Path(out)
    write_tables(data.tables, out, fmt)
    truth_dir = out / "ground_truth"
    for name, frame in data.truth.items():
        write_frame(frame, truth_dir / f"{name}.parquet")
    readme = truth_readme(data, customers=customers, months=months, seed=seed, start=start)
    tmp = truth_dir / ".README.md.tmp"
    tmp.write_text(readme, encoding="utf-8")
    tmp.replace(truth_dir / "README.md")
    return data


def truth_readme(
    data: DemoData,
    *,
    customers: int,
    months: int,
    seed: int,
    start: str,
    hazard: HazardCoefficients | None = None,
    adoption: AdoptionCoefficients | None = None,
) -> str:
    """The ground-truth README: the mechanism with its coefficients and what each column means."""
    c = hazard or HazardCoefficients()
    a = adoption or AdoptionCoefficients()
    churn = data.truth["churn"]
    monthly = float(churn["churned_in_month"].mean()) if len(churn) else float("nan")
    mean_h = float(churn["hazard"].mean()) if len(churn) else float("nan")
    seg = ", ".join(f"{s} {v:+.2f}" for s, v in zip(SEGMENTS, c.segment, strict=True))
    acq = ", ".join(f"{s} {v:+.2f}" for s, v in zip(ACQUISITION_CHANNELS, c.acquisition,
                                                   strict=True))
    fam = ", ".join(f"{f} {v:+.2f}" for f, v in zip(ADOPTION_FAMILIES, a.intercept, strict=True))
    segfam = "; ".join(
        f"{s}: " + ", ".join(f"{f} {v:+.2f}" for f, v in zip(ADOPTION_FAMILIES, row, strict=True))
        for s, row in zip(SEGMENTS, a.segment, strict=True)
    )
    effects = data.truth["campaign_effects"]
    campaign_lines = "\n".join(
        f"| {r.campaign_id} | {r.offer} | {r.relative_hazard_reduction:.2f} "
        f"| {r.effect_months} | {r.targeted} | {r.true_retention_uplift_90d:.4f} "
        f"| {r.observed_retention_uplift_90d:.4f} |"
        for r in effects.itertuples()
    )
    terms = [
        ("profile", f"segment ({seg}) + acquisition channel ({acq})"),
        (
            "delivery",
            f"{c.late_delivery} x min(late deliveries, 4) + {c.lateness_day} x min(mean days "
            f"late of the late ones, 15) + {c.damaged_delivery} x min(damaged deliveries, 3); a "
            "delivery is late when delivered after its promised date, or not delivered by "
            "`as_of` although promised before it; damage counts once delivered before `as_of`",
        ),
        (
            "service",
            f"{c.open_ticket} x min(tickets open at `as_of`, 3) + {c.unresolved_ticket} x "
            f"min(tickets closed unresolved in the window, 3) + {c.repeat_ticket} x "
            "min(repeated tickets, 3); repeated = tickets opened in the window minus their "
            "distinct categories",
        ),
        (
            "communication",
            f"{c.distinct_agent} x clip(distinct agents - 2, 0, 8) + {c.outsourced_share} x "
            "outsourced share of the agent-handled contacts in the window",
        ),
        (
            "satisfaction",
            f"{c.satisfaction} x s + {c.satisfaction_fall} x max(0, s 3 months ago - s); s = "
            "latent satisfaction (about standard normal), seen through the surveys' "
            "`satisfaction` (~7 + 1.5 s + noise) and `nps`",
        ),
        (
            "price",
            f"{c.price} x p; p = latent price perception, seen through the surveys' `price` "
            "score (~5.5 + 1.6 p + noise)",
        ),
        ("products", f"{c.product} x (active subscriptions - 1)"),
        (
            "tenure",
            f"{c.new_customer} x exp(-tenure months / {c.new_customer_months:g}) + "
            f"{c.renewal} in the month before each contract anniversary",
        ),
        (
            "engagement",
            f"{c.purchase_rate} x log1p(purchases per month in the window); the "
            "segment-typical rate when less than half a month of the window is observed "
            "(just after signup, first weeks of the data)",
        ),
        (
            "value",
            f"{c.spend_trend} x clip(log((net spend in the window + 25) / (net spend in the 3 "
            "months before + 25)), -2, 2); 0 until six months of history exist",
        ),
    ]
    term_lines = "\n".join(f"| {name} | {text} |" for name, text in terms)
    rates = "/".join(f"{v:g}" for v in _PURCHASE_RATE)
    extra = "/".join(f"{v:g}" for v in _EXTRA_QUANTITY)
    season = ", ".join(f"{pd.Timestamp(2000, k, 1):%b} {v:g}" for k, v in _SEASON.items())
    accessory = float(_ACCESSORY_WEIGHTS @ _PRICE[_ACCESSORIES])
    hardware = float(_HARDWARE_WEIGHTS @ _PRICE[_HARDWARE])
    kept = 1.0 - float(_DISCOUNTS @ _DISCOUNT_SHARE)
    campaign_header = (
        "| campaign | offer | relative hazard reduction | effect months | targeted "
        "| true uplift 90d | observed uplift 90d |\n|---|---|---|---|---|---|---|"
    )
    return f"""# Ground truth of the demo data

Generated by `churn_risk.demo.generate(customers={customers}, months={months}, seed={seed},
start="{start}")`. The feature pipeline never reads this folder: it holds what a real CRM never
has, to check models against the mechanism that produced the tables.

Realised here: mean monthly hazard {mean_h:.4f}, monthly churn rate {monthly:.4f}.

## The churn mechanism

Every month start `as_of`, every active customer (signed up before `as_of`, not churned) has the
monthly churn hazard

    h = sigmoid(base + profile + term_delivery + term_service + term_communication
                + term_satisfaction + term_price + term_engagement + term_products
                + term_tenure + term_value) * (1 - campaign_reduction)

with `base` = {c.base:+.2f} and, computed from the *trailing window* (the three calendar months
before `as_of`, ~90 days) of the very events in the tables, as a point-in-time feature would see
them:

| term | formula |
|---|---|
{term_lines}

`campaign_reduction` is the campaign's relative hazard reduction for customers in its treatment
group, during its effect months, else 0. A customer churns in the month with probability `h`, on a
uniform day; all subscriptions end that day and no event follows.

Latent states follow AR(1) processes around per-customer means: satisfaction (rho {_RHO_S}),
price perception (rho {_RHO_P}), engagement (purchase and contact volume), route/carrier quality
(delivery lateness), outsourced share of support and agent consistency (the propensity to be
served by one's own agent). Bad experiences lower satisfaction for the next months: 0.20 per
delivery at least 2 days late, 0.45 per damaged, 0.60 per lost delivery, 0.10 per ticket, 0.35 per
unresolved ticket, 0.05 per distinct agent beyond one in the month.

## Next-product adoption

Each month, for each family in {", ".join(ADOPTION_FAMILIES)} that a customer does not hold
(subscription families: no active subscription; hardware: no hardware bought in the last 365
days), the monthly adoption probability is

    p = sigmoid(intercept[family] + segment[segment, family] + {a.product} x (subscriptions - 1)
                + {a.engagement} x log1p(purchases + contacts per month in the window)
                + {a.hardware_insurance} x [family is insurance and hardware held])

with intercepts {fam} and segment offsets {segfam}. Adopting starts a subscription (and a
first-invoice transaction) or is a hardware purchase (with a delivery). Accessories are routine
purchases, not an adoption family.

## Files

`churn.parquet`: one row per customer active at a month start.

- `customer_id`, `as_of` (the month start)
- `hazard`: the monthly hazard h above (campaign effect included)
- `churn_probability_90d`: 1 - (1 - h)^3, an approximation holding the hazard of `as_of` for
  three months (states drift, campaigns start and stop within the horizon)
- `term_<group>`: that group's log-odds contribution; `term_profile` the segment and acquisition
  offsets; `log_odds` = base + profile + all terms (before the campaign effect)
- `dominant_driver`: among the nine groups, the one whose term is furthest above its mean over all
  rows of this file (the population-typical value): the main reason this customer is riskier
  than a typical one (for a low-risk customer, the least favourable group)
- `campaign_reduction`: the relative hazard reduction applied this month (0 if none)
- `churned_in_month`: whether the customer churned before the next month start. The realised
  90-day label at `as_of` is `churned_in_month` of this or the next two months.
- `expected_monthly_spend`: the expected net spend of the month in the currency of
  `transactions.amount` (purchases minus returns, the customer's transactions from `as_of` to the
  next month start), given the state at `as_of` and if the customer stays the whole month:
  (routine + adoption) x (1 - {_RETURN_SHARE} x (days in month - 1) / days in month).
  *Routine* accessory purchases: a Poisson rate of {rates} per month (consumer,
  small_business, enterprise) x exp(e + 0.25 s) (latent engagement and satisfaction at `as_of`)
  x the seasonal factor of the month ({season}; else 1), times the mean amount of a
  purchase: {accessory:.3f} (mean accessory price) x (1 + {extra} extra items) x {kept:.4f}
  (mean 1 - discount). *Adoption* purchases, as expected values: for each family not held, its
  monthly adoption probability times the expected amount, a subscription's first invoice
  (catalogue price x seat factor, seats^0.6 outside consumer, over the segment's product mix;
  no discount) or a hardware purchase ({hardware:.2f} mean price x (1 + extra items) x
  {kept:.4f}). *Returns*: a purchase is returned in full with probability {_RETURN_SHARE} when
  at least two days of the month remain. The generator writes no recurring subscription invoices
  to the transactions (`recurring_amount` is in `subscriptions`; a subscription's only
  transaction is its first invoice at an adoption), so there is no recurring term.

`adoption.parquet`: customer_id, as_of, family, `adoption_probability_90d` = 1 - (1 - p)^3 (same
approximation), only for families not held at `as_of`.

`campaign_effects.parquet`: one row per retention campaign. Customers are targeted with a
probability growing with their hazard, then randomised 80/20 into treatment and control; the
treatment multiplies the hazard by (1 - relative_hazard_reduction) for `effect_months` months
from `effect_start` (whatever the customer's `responded`). `true_retention_uplift_90d` is the
expected gain in 90-day retention from the treatment for the targeted customers active at
`effect_start`, each at their untreated hazard of that month held for three months;
`observed_retention_uplift_90d` is the realised treatment-minus-control 90-day retention (noisy;
empty when the data ends before the 90 days).

{campaign_header}
{campaign_lines}
"""
