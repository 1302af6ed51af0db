"""Every parameter and coefficient of the simulated mechanism, in one place.

The other modules of the generator take their numbers from here, and the ground-truth README
(`templates/README.md`) is rendered from these objects, so the documentation cannot drift from
the data. `HazardCoefficients` and `AdoptionCoefficients` can be overridden per `generate` call;
the other groups are fixed module constants (frozen dataclass instances). Values given per
segment are ordered as `SEGMENTS` (consumer, small_business, enterprise).
"""

from __future__ import annotations

from dataclasses import dataclass

from churn_risk.features.contract import DRIVER_GROUPS

# ----------------------------------------------------------------------------------------------
# Vocabularies

SEGMENTS: tuple[str, ...] = ("consumer", "small_business", "enterprise")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
ACQUISITION_CHANNELS: tuple[str, ...] = ("web", "store", "partner", "telesales", "referral")
TICKET_CATEGORIES: tuple[str, ...] = ("billing", "technical", "delivery", "product", "account")
OFFERS: tuple[str, ...] = ("discount_20pct", "free_upgrade", "loyalty_bonus", "free_add_on_3m")

#: Subscription slots per customer: one subscription per family at a time.
SUBSCRIPTION_FAMILIES: tuple[str, ...] = ("core_plan", "add_on", "insurance", "premium_support")
#: Families the adoption truth covers (hardware: "held" = bought within the last 365 days).
ADOPTION_FAMILIES: tuple[str, ...] = ("add_on", "hardware", "insurance", "premium_support")
#: Driver groups the truth's `dominant_driver` is chosen from (one `term_<group>` column each).
DOMINANT_DRIVERS: tuple[str, ...] = tuple(g for g in DRIVER_GROUPS if g != "profile")

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

#: Interactions: (channel, kind, handled by an agent, can be outsourced, share within channel);
#: three kinds per channel, in the order of `features.contract.CHANNELS`.
INTERACTION_KINDS: tuple[tuple[str, str, bool, bool, float], ...] = (
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

#: Days per month when a span of days is expressed in months (tenure, observed window).
MONTH_DAYS = 30.44


# ----------------------------------------------------------------------------------------------
# The churn hazard


@dataclass(frozen=True)
class HazardCoefficients:
    """Coefficients of the monthly churn hazard (log-odds scale); see `churn_risk.demo.hazard`."""

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
class Inputs:
    """How the hazard's and the adoption model's inputs are measured: window, caps, thresholds."""

    window_months: int = 3  # the trailing window: calendar months before as_of
    late_deliveries_cap: int = 4
    lateness_days_cap: int = 15
    damaged_cap: int = 3
    open_tickets_cap: int = 3
    unresolved_cap: int = 3
    repeated_cap: int = 3
    free_agents: int = 2  # distinct agents that cost nothing
    extra_agents_cap: int = 8
    renewal_month: int = 11  # tenure month of the contract year in which the renewal term applies
    min_observed_months: float = 0.5  # less observed: the segment-typical purchase rate
    trend_months: int = 6  # months of history the spend trend needs
    spend_smoothing: float = 25.0
    spend_trend_cap: float = 2.0  # the log spend ratio is clipped to +-cap
    fall_months: int = 3  # satisfaction fall: against the latent satisfaction this long ago
    hardware_held_days: int = 365  # hardware counts as held this long after its purchase
    horizon_months: int = 3  # the truth's 90-day probabilities: 1 - (1 - monthly)**horizon


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


# ----------------------------------------------------------------------------------------------
# Customers and their latent states


@dataclass(frozen=True)
class Seats:
    """Business seat counts: round(lognormal(log(median), sigma)) clipped to [low, high]."""

    median: int
    sigma: float
    low: int
    high: int


@dataclass(frozen=True)
class Population:
    """Fixed customer attributes and the per-customer means of the latent states."""

    new_share: float = 0.30  # customers who sign up during the simulated months
    mean_tenure_years: float = 3.5  # existing base: exponential tenure ...
    max_tenure_years: int = 10  # ... redrawn uniformly below this when longer
    segment_share: tuple[float, ...] = (0.68, 0.24, 0.08)
    region_share: tuple[float, ...] = (0.22, 0.20, 0.20, 0.20, 0.18)
    unknown_region: float = 0.02
    acquisition_share: tuple[float, ...] = (0.35, 0.25, 0.15, 0.10, 0.15)
    consumer_extra_seats: float = 1.2  # consumer seats: 1 + min(Poisson(extra), cap)
    consumer_extra_seats_cap: int = 5
    small_business_seats: Seats = Seats(median=8, sigma=0.7, low=2, high=200)
    enterprise_seats: Seats = Seats(median=250, sigma=1.0, low=50, high=20_000)
    unknown_seats: float = 0.04
    seat_exponent: float = 0.6  # business subscription prices scale with seats**exponent
    carrier_share: tuple[float, ...] = (0.35, 0.30, 0.20, 0.15)
    carrier_offset: tuple[float, ...] = (-0.6, 0.0, 0.3, 0.9)  # route quality: higher is worse
    ticket_proneness_sd: float = 0.6
    survey_propensity: tuple[float, float] = (5.0, 6.0)  # Beta(a, b)
    delivery_share: tuple[float, ...] = (0.45, 0.75, 0.75)  # physical purchases delivered
    satisfaction_sd: float = 0.8
    enterprise_satisfaction: float = 0.1
    price_sd: float = 0.8
    engagement_sd: float = 0.4
    route_sd: float = 0.5
    outsourced_share: float = 0.25  # typical outsourced share of support (logit-normal)
    outsourced_sd: float = 1.0
    consistent_share: float = 0.75  # customers usually served by their home agent
    consistent: tuple[float, float] = (2.0, 0.7)  # logit propensity: normal(mean, sd)
    inconsistent: tuple[float, float] = (-1.0, 0.7)
    customers_per_home_agent: int = 250
    customers_per_outsourced_agent: int = 200
    min_agents: int = 20  # in-house and outsourced, each


@dataclass(frozen=True)
class AR1:
    """x' = mean + rho * (x - mean) + sd * N(0, 1)."""

    rho: float
    sd: float


@dataclass(frozen=True)
class LatentStates:
    """AR(1) dynamics of the latent states and the satisfaction hits of bad experiences."""

    satisfaction: AR1 = AR1(0.80, 0.30)
    price: AR1 = AR1(0.90, 0.20)
    engagement: AR1 = AR1(0.85, 0.20)
    route: AR1 = AR1(0.80, 0.30)
    outsourced: AR1 = AR1(0.90, 0.15)
    consistency: AR1 = AR1(0.95, 0.1)
    late_days: int = 2  # a delivery at least this late hits satisfaction
    late_hit: float = 0.20
    damaged_hit: float = 0.45
    lost_hit: float = 0.60
    ticket_hit: float = 0.10
    unresolved_hit: float = 0.35
    agent_hit: float = 0.05  # per distinct agent beyond one in the month


# ----------------------------------------------------------------------------------------------
# Products, purchases and returns


@dataclass(frozen=True)
class Holdings:
    """Product mixes, the products held at the start and by joiners, drops and switches."""

    # product weights per subscription slot (rows: segments; columns: the family's products)
    slot_weights: tuple[tuple[tuple[float, ...], ...], ...] = (
        ((0.45, 0.40, 0.15, 0.0), (0.0, 0.25, 0.30, 0.45), (0.0, 0.0, 0.25, 0.75)),
        ((0.2, 0.25, 0.25, 0.15, 0.15), (0.35, 0.35, 0.0, 0.3, 0.0), (0.4, 0.4, 0.0, 0.2, 0.0)),
        ((0.5, 0.3, 0.2), (0.6, 0.2, 0.2), (0.6, 0.1, 0.3)),
        ((0.95, 0.05), (0.7, 0.3), (0.3, 0.7)),
    )
    hardware_weights: tuple[float, ...] = (0.25, 0.35, 0.2, 0.1, 0.1)
    accessory_weights: tuple[float, ...] = (0.25, 0.25, 0.15, 0.2, 0.15)
    # existing base: share per segment holding each non-core slot (add_on, insurance, support)
    initial_share: tuple[tuple[float, ...], ...] = (
        (0.35, 0.30, 0.25),
        (0.20, 0.15, 0.10),
        (0.04, 0.20, 0.50),
    )
    initial_hardware_share: tuple[float, ...] = (0.35, 0.45, 0.60)
    # joiners: share per segment taking each non-core slot at signup, and a device
    joiner_share: tuple[tuple[float, ...], ...] = (
        (0.25, 0.2, 0.2),
        (0.10, 0.08, 0.05),
        (0.0, 0.1, 0.3),
    )
    joiner_device_share: float = 0.3
    # monthly drop of a non-core subscription: sigmoid(intercept + s * satisfaction + p * price)
    drop_intercept: float = -4.2
    drop_satisfaction: float = -0.3
    drop_price: float = -0.2
    core_switch: float = 0.008  # monthly probability of switching core plans


@dataclass(frozen=True)
class Purchases:
    """Routine purchase volumes, quantities, discounts and returns."""

    purchase_rate: tuple[float, ...] = (0.75, 1.5, 2.8)  # routine purchases per month
    satisfaction: float = 0.25  # rate x exp(engagement + satisfaction weight x satisfaction)
    season: tuple[tuple[int, float], ...] = ((1, 0.85), (7, 0.9), (8, 0.9), (11, 1.35), (12, 1.7))
    extra_quantity: tuple[float, ...] = (0.2, 1.0, 3.0)  # physical products: 1 + Poisson(extra)
    discounts: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)  # on purchases priced from the catalog
    discount_share: tuple[float, ...] = (0.7, 0.15, 0.1, 0.05)
    return_share: float = 0.035
    return_min_days: int = 2  # a return needs this many days of the month left after a purchase
    hours: tuple[int, int] = (8, 22)  # time of day


# ----------------------------------------------------------------------------------------------
# Deliveries, tickets, interactions, surveys


@dataclass(frozen=True)
class Deliveries:
    """Delivery promises, lateness, losses and damage (quality = carrier offset + route)."""

    promise_days: tuple[int, int] = (2, 6)  # promised after [lo, hi) days
    late_intercept: float = -1.9  # P(late) = sigmoid(intercept + quality)
    days_late_scale: float = 2.0  # days late ~ Geometric(1 / (1 + scale x exp(slope x quality)))
    days_late_slope: float = 0.5
    early: float = 0.10  # on-time deliveries one day early
    lost: float = 0.008  # x exp(carrier offset)
    damaged_intercept: float = -3.5  # P(damaged) = sigmoid(intercept + slope x quality)
    damaged_slope: float = 0.6
    damage_unrecorded: float = 0.03


@dataclass(frozen=True)
class Tickets:
    """Ticket volumes, delivery-triggered tickets, resolution and reopened problems."""

    ticket_rate: tuple[float, ...] = (0.07, 0.10, 0.16)  # per month, x exp(proneness)
    category_share: tuple[float, ...] = (0.30, 0.35, 0.04, 0.19, 0.12)
    lost_trigger: float = 0.6
    damaged_trigger: float = 0.5
    late_trigger: float = 0.2
    late_trigger_days: int = 3
    lost_ticket_days: int = 5  # a lost delivery's ticket: this long after the promised date
    delivery_ticket_days: int = 3  # other triggered tickets: within [0, days) of the delivery
    median_duration: float = 3.0  # lognormal, x (1 + outsourced share)
    duration_sigma: float = 1.1
    max_duration: int = 180
    resolved_intercept: float = 2.0  # P(resolved) = sigmoid(intercept + ...)
    resolved_outsourced: float = -1.5
    resolved_technical: float = -0.5
    reopen_resolved: float = 0.05  # a new ticket of the same category after closing
    reopen_unresolved: float = 0.55
    reopen_days: int = 10  # ... 1 + [0, days) days after the close


@dataclass(frozen=True)
class Interactions:
    """Everyday contact volumes and channels, and the contacts of each ticket."""

    contact_rate: tuple[float, ...] = (0.7, 1.0, 1.6)  # per month, x exp(engagement x e)
    engagement: float = 0.3
    # channel shares per segment, in the order of `features.contract.CHANNELS`
    channel_share: tuple[tuple[float, ...], ...] = (
        (0.06, 0.28, 0.40, 0.10, 0.16),
        (0.15, 0.28, 0.30, 0.12, 0.15),
        (0.30, 0.25, 0.20, 0.15, 0.10),
    )
    ticket_extra_contacts: float = 0.4  # contacts per ticket: 1 + Poisson(extra)
    ticket_contact_center: float = 0.7  # else service support
    ticket_complaint: float = 0.6  # of the contact-center ones, else support
    hours: tuple[int, int] = (7, 23)


@dataclass(frozen=True)
class SurveyScore:
    """A 0-10 score: round(intercept + slopes... + noise x N(0, 1)), missing with a probability."""

    intercept: float
    noise: float
    missing: float


@dataclass(frozen=True)
class Surveys:
    """The monthly pulse survey: noisy 0-10 observations of the latent states."""

    satisfaction: SurveyScore = SurveyScore(7.0, 0.5, 0.03)
    satisfaction_slope: float = 1.5  # x latent satisfaction
    nps: SurveyScore = SurveyScore(1.0, 1.2, 0.08)
    nps_slope: float = 0.85  # x the satisfaction score's centre
    price: SurveyScore = SurveyScore(5.5, 0.6, 0.10)
    price_slope: float = 1.6  # x latent price perception
    benefits: SurveyScore = SurveyScore(5.5, 1.2, 0.10)
    benefits_products: float = 0.6  # x (subscriptions - 1)
    benefits_satisfaction: float = 0.6
    problems: SurveyScore = SurveyScore(8.0, 1.0, 0.10)
    problems_penalty: float = 1.2  # per ticket or delivery >= late_days late this month
    problems_late_days: int = 2
    problems_satisfaction: float = 0.5
    scale: tuple[int, int] = (0, 10)


# ----------------------------------------------------------------------------------------------
# Retention campaigns


@dataclass(frozen=True)
class Campaigns:
    """Retention campaigns: schedule, targeting, randomisation, effect and responses."""

    months_per_campaign: int = 9
    min_months: int = 3  # no campaign in shorter simulations
    reduction: tuple[float, float] = (0.15, 0.35)  # relative hazard reduction: uniform
    effect_months: tuple[int, int] = (2, 5)  # integers in [lo, hi)
    target_share: tuple[float, float] = (0.08, 0.15)  # uniform
    send_days: tuple[int, int] = (1, 6)  # sent [lo, hi) days before the month end
    max_selection: float = 0.95
    treatment_share: float = 0.8
    response_intercept: float = -1.3  # treatment: sigmoid(intercept + slope x satisfaction)
    response_satisfaction: float = 0.4
    control_response: float = 0.02


# ----------------------------------------------------------------------------------------------
# Simulated drift (`generate(drifts=...)`, `churn generate-data --drift KIND:YYYY-MM`)


@dataclass(frozen=True)
class Drift:
    """What each kind of simulated drift changes from its first month on (none by default).

    - delivery: a worsening delivery partner: ``quality_shift`` is added to the quality (carrier
      offset + route; higher is worse) of every delivery of a purchase made from that month on,
      so late, very late, lost and damaged deliveries become much more frequent; through the
      hazard's delivery term (and the satisfaction hits of bad deliveries) churn rises.
    - price: a new competitor's price pressure: ``price_shift`` is added to every customer's
      latent price perception and to its mean at the start of that month, so the surveys'
      price scores fall and the hazard's price term (``price`` x p) rises, and for good.
    - competitor: a competitor enters one market: from that month on every customer of
      ``competitor_region`` is also won over with probability ``competitor_hazard`` a month,
      whatever their drivers: their hazard becomes ``1 - (1 - h) * (1 - competitor_hazard)``
      (the truth's ``hazard`` includes it; ``log_odds`` and the terms are those of ``h``).
      Unlike the other kinds this changes the mechanism, not its inputs: no event or survey
      shows it, and before it the region carried no churn risk, so a model trained before cannot
      have learned it; churn rises among customers it scores as safe, and its ranking (the
      realised ROC-AUC) gets worse. Customers whose region is unknown are not affected, and
      the campaigns' true uplift is computed without it.
    """

    quality_shift: float = 1.5
    price_shift: float = -1.2
    competitor_region: str = "north"
    competitor_hazard: float = 0.06


#: The kinds of drift the generator can simulate, in the order they are documented.
DRIFT_KINDS: tuple[str, ...] = ("delivery", "price", "competitor")

INPUTS = Inputs()
POPULATION = Population()
LATENT = LatentStates()
HOLDINGS = Holdings()
PURCHASES = Purchases()
DELIVERIES = Deliveries()
TICKETS = Tickets()
INTERACTIONS = Interactions()
SURVEYS = Surveys()
CAMPAIGNS = Campaigns()
DRIFT = Drift()
