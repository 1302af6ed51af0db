"""`generate`: the month-by-month simulation that ties the mechanism's parts together.

The loop runs over months only; everything inside a month is vectorised over customers with
numpy, and a single ``np.random.default_rng(seed)`` is drawn from in a fixed order, so a seed gives
bit-identical data. Each month: the truth at its start (hazard, adoption probabilities, expected
spend, from the trailing window of the very events that become the tables), the churn draw, the
month's events (holdings, purchases and returns, deliveries, tickets, interactions, surveys,
campaign sends), churners leaving and the latent states moving on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from churn_risk.demo import events as ev
from churn_risk.demo.campaigns import CampaignRun, plan_campaigns, send_campaign, true_uplift
from churn_risk.demo.coefficients import (
    DRIFT,
    DRIFT_KINDS,
    REGIONS,
    AdoptionCoefficients,
    HazardCoefficients,
)
from churn_risk.demo.hazard import (
    Risk,
    Trailing,
    adoption_probabilities,
    expected_spend,
    held,
    month_risk,
    trailing,
)
from churn_risk.demo.numeric import Chunk, concat
from churn_risk.demo.population import (
    agents_for,
    drops_and_switches,
    evolve,
    experience_impact,
    init_customers,
    init_state,
    joiners,
    leave,
)
from churn_risk.demo.state import (
    Agents,
    Calendar,
    Customers,
    Month,
    Presence,
    State,
    calendar,
    month,
    month_stamp,
    presence,
)
from churn_risk.demo.tables import build_tables
from churn_risk.demo.truth import (
    adoption_rows,
    adoption_truth,
    campaign_effects,
    churn_rows,
    churn_truth,
)

Progress = Callable[[int, int], None]
EVENT_TABLES = ("transactions", "deliveries", "tickets", "interactions", "surveys")


@dataclass(frozen=True)
class DemoData:
    """The nine CRM tables (`tables`) and the simulation's ground truth (`truth`)."""

    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]


@dataclass
class _Simulation:
    """The world being simulated and what has been recorded so far."""

    cal: Calendar
    cust: Customers
    state: State
    agents: Agents
    campaigns: list[CampaignRun]
    coef: HazardCoefficients
    acoef: AdoptionCoefficients
    profile: np.ndarray  # the hazard's segment + acquisition offsets per customer
    events: dict[str, list[Chunk]] = field(default_factory=lambda: {k: [] for k in EVENT_TABLES})
    pending_tickets: Chunk = field(default_factory=ev.no_pending_tickets)
    campaign_rows: list[Chunk] = field(default_factory=list)
    churn_rows: list[Chunk] = field(default_factory=list)
    adoption_rows: list[Chunk] = field(default_factory=list)
    #: Simulated drifts: kind -> first month index (`coefficients.Drift`); empty: none.
    drift_from: dict[str, int] = field(default_factory=dict)


def generate(
    customers: int = 20_000,
    months: int = 36,
    seed: int = 42,
    start: str = "2023-01-01",
    *,
    end: str | pd.Timestamp | None = None,
    progress: Progress | None = None,
    hazard: HazardCoefficients | None = None,
    adoption: AdoptionCoefficients | None = None,
    drifts: Mapping[str, str | pd.Timestamp] | None = None,
) -> DemoData:
    """Simulate `customers` customers over `months` months from `start` (see `churn_risk.demo`),
    or, with `end`, over the `months` months up to the one holding `end`, the data cut at `end`
    as a CRM would hold them then (`known_at`): "now" for live data.

    `progress(month_index, months)` is called once per simulated month. `hazard` and `adoption`
    override the mechanism's coefficients (defaults: the documented ones). `drifts`: simulated
    drift, kind (`coefficients.DRIFT_KINDS`) -> the first month it acts in (a day of that month,
    e.g. "2025-06"; see `coefficients.Drift`), recorded in the truth's ``drifts`` frame; none by
    default (and then no draw differs from a generation without the option).
    """
    if customers < 1 or months < 1:
        raise ValueError("customers and months must be at least 1")
    start = first_month(months, start, end)
    rng = np.random.default_rng(seed)
    sim = _setup(rng, customers, months, start, hazard or HazardCoefficients(),
                 adoption or AdoptionCoefficients())
    sim.drift_from = drift_months(drifts or {}, sim.cal)
    for m in range(months):
        _simulate_month(rng, sim, m)
        if progress is not None:
            progress(m, months)
    tables = build_tables(sim.cal, sim.cust, sim.state, sim.events, sim.campaign_rows, sim.agents)
    truth = {
        "churn": churn_truth(sim.cal, sim.churn_rows),
        "adoption": adoption_truth(sim.cal, sim.adoption_rows),
        "campaign_effects": campaign_effects(sim.cal, sim.campaigns, sim.state, months),
    }
    if sim.drift_from:
        truth["drifts"] = drift_truth(sim.cal, sim.drift_from)
    data = DemoData(tables=tables, truth=truth)
    return data if end is None else known_at(data, pd.Timestamp(end))


def known_at(data: DemoData, moment: pd.Timestamp) -> DemoData:
    """The data as a CRM knows them at `moment`: records dated at or after it are not there
    yet, and a later state of an earlier record (a ticket closed, a subscription ended, a
    delivery made after `moment`) is still open. The truth keeps the months begun before it."""
    from churn_risk.features.contract import TABLES

    tables = {}
    for name, frame in data.tables.items():
        spec = TABLES[name]
        if spec.event_time is not None:
            frame = frame[frame[spec.event_time] < moment]
        later = [c.name for c in spec.columns
                 if c.kind == "datetime" and c.name != spec.event_time and c.name in frame]
        frame = frame.assign(**{c: frame[c].where(frame[c] < moment) for c in later})
        tables[name] = frame.reset_index(drop=True)
    truth = {}
    for name, frame in data.truth.items():
        dated = next(c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c]))
        truth[name] = frame[frame[dated] < moment].reset_index(drop=True)
    return DemoData(tables=tables, truth=truth)


def first_month(months: int, start: str, end: str | pd.Timestamp | None) -> str:
    """The first simulated day: `start`, or with `end` the first day of the month `months - 1`
    months before the one holding `end`."""
    if end is None:
        return start
    month = pd.Timestamp(end).to_period("M").start_time - pd.DateOffset(months=months - 1)
    return f"{month:%Y-%m-%d}"


def parse_drift(text: str) -> tuple[str, pd.Timestamp]:
    """``KIND:YYYY-MM`` (or a day, ``KIND:YYYY-MM-DD``) -> (kind, first day of that month);
    `ValueError` naming what is wrong."""
    kind, sep, when = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in DRIFT_KINDS:
        raise ValueError(f"drift {text!r}: expected KIND:YYYY-MM with KIND one of "
                         f"{', '.join(DRIFT_KINDS)} (e.g. delivery:2025-06)")
    when = when.strip()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", when):
            raise ValueError(when)
        month = pd.Period(when, freq="M")
    except (ValueError, TypeError):
        raise ValueError(f"drift {text!r}: {when!r} is not a month (YYYY-MM)") from None
    return kind, month.start_time


def drift_months(drifts: Mapping[str, str | pd.Timestamp], cal: Calendar) -> dict[str, int]:
    """Each drift's first month as a month index of the simulation; `ValueError` when a kind is
    unknown or the month is not one of the simulated months."""
    first = pd.Period(cal.start, freq="M")
    out = {}
    for kind, when in drifts.items():
        if kind not in DRIFT_KINDS:
            raise ValueError(f"unknown drift {kind!r}: expected one of {', '.join(DRIFT_KINDS)}")
        m = (pd.Period(pd.Timestamp(when), freq="M") - first).n
        if not 0 <= m < cal.months:
            last = first + (cal.months - 1)
            raise ValueError(f"drift {kind}: {pd.Timestamp(when):%Y-%m} is not a simulated "
                             f"month ({first} to {last})")
        out[kind] = m
    return out


def drift_truth(cal: Calendar, drift_from: dict[str, int]) -> pd.DataFrame:
    """One row per simulated drift: kind, first month, what it changes and by how much."""
    what = {"delivery": ("delivery quality (carrier + route; higher is worse)",
                         DRIFT.quality_shift),
            "price": ("latent price perception p and its mean", DRIFT.price_shift),
            "competitor": (f"chance a month that a customer of region "
                           f"{DRIFT.competitor_region} is won over", DRIFT.competitor_hazard)}
    kinds = [k for k in DRIFT_KINDS if k in drift_from]
    return pd.DataFrame({
        "from_month": month_stamp(cal, np.array([drift_from[k] for k in kinds])),
        "drift": kinds,
        "changes": [what[k][0] for k in kinds],
        "shift": [float(what[k][1]) for k in kinds],
    })


def _setup(
    rng: np.random.Generator,
    customers: int,
    months: int,
    start: str,
    coef: HazardCoefficients,
    acoef: AdoptionCoefficients,
) -> _Simulation:
    """The calendar, the customers and their initial state, and the campaign plan."""
    start_ts = pd.Timestamp(start)
    if start_ts.tzinfo is not None:
        start_ts = start_ts.tz_localize(None)
    cal = calendar(start_ts.normalize(), months)
    agents = agents_for(customers)
    cust = init_customers(rng, customers, cal.at(months), agents)
    state = init_state(rng, cust)
    campaigns = plan_campaigns(rng, cal, months)
    profile = (
        np.asarray(coef.segment)[cust.segment] + np.asarray(coef.acquisition)[cust.acquisition]
    )
    return _Simulation(cal, cust, state, agents, campaigns, coef, acoef, profile)


def _simulate_month(rng: np.random.Generator, sim: _Simulation, m: int) -> None:
    """One month: the truth at its start, the churn draw, the events, then the next state."""
    cust, state = sim.cust, sim.state
    mo = month(sim.cal, cust, state, m)
    if sim.drift_from.get("price") == m:  # competitor price pressure, from this month on
        cust.price_mean = cust.price_mean + DRIFT.price_shift
        state.price = state.price + DRIFT.price_shift
    tr = trailing(m, sim.cal, cust, state, sim.events, sim.agents)
    risk = month_risk(tr, state, mo, sim.profile, sim.coef)
    if sim.drift_from.get("competitor", sim.cal.months) <= m:
        risk = _with_competitor(risk, cust)
    for run in sim.campaigns:
        if run.plan.effect_month == m and run.targeted is not None:
            true_uplift(run, risk.untreated, mo.at_start)
    churned, churn_day = _draw_churn(rng, state, mo, risk.hazard)
    churners = mo.idx[churned]
    p_adopt, candidates = _record_truth(sim, mo, tr, risk, churned)

    pr = presence(cust, state, mo, churners, churn_day)
    tx = _purchases(rng, sim, mo, pr, candidates, p_adopt)
    worse = DRIFT.quality_shift if sim.drift_from.get("delivery", sim.cal.months) <= m else 0.0
    dl = ev.deliveries(rng, cust, state, tx, worse)
    fresh = ev.new_tickets(rng, cust, pr, dl)
    tk, sim.pending_tickets = ev.tickets(rng, state, fresh, sim.pending_tickets, mo, pr)
    ia = ev.interactions(rng, cust, state, pr, tk, sim.agents)
    sv = ev.surveys(rng, cust, state, pr, tr.products, tk, dl)
    recorded = {"transactions": tx, "tickets": tk, "interactions": ia, "surveys": sv,
                "deliveries": {k: dl[k] for k in ("cust", "promised", "delivered", "damaged")}}
    for name, chunk in recorded.items():
        sim.events[name].append(chunk)
    # retention campaigns sent at the end of this month, effective from the next
    for run in sim.campaigns:
        if run.plan.send_month == m:
            sim.campaign_rows.append(send_campaign(rng, run, risk.untreated, mo, pr, state))

    leave(state, churners, churn_day)
    evolve(rng, cust, state, experience_impact(cust.n, dl, tk, ia, sim.agents))


def _with_competitor(risk: Risk, cust: Customers) -> Risk:
    """The competitor drift (`coefficients.Drift`): a customer of its region also leaves with
    probability `competitor_hazard` a month, whatever their drivers."""
    won = np.where(cust.region == REGIONS.index(DRIFT.competitor_region),
                   DRIFT.competitor_hazard, 0.0)
    return replace(risk, hazard=1.0 - (1.0 - risk.hazard) * (1.0 - won))


def _draw_churn(
    rng: np.random.Generator, state: State, mo: Month, hazard: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Who of the active customers churns this month (bool over `mo.idx`), and on which day."""
    churned = rng.random(mo.idx.size) < hazard[mo.idx]
    churners = mo.idx[churned]
    churn_day = mo.start + np.floor(rng.random(churners.size) * mo.length).astype(np.int64)
    state.churn_day[churners] = churn_day
    return churned, churn_day


def _record_truth(
    sim: _Simulation, mo: Month, tr: Trailing, risk: Risk, churned: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Record the month's truth (hazard, adoption, expected spend; all from the month-start
    state). Returns the adoption probabilities and the (customer, family) pairs not held."""
    p_adopt = adoption_probabilities(tr, sim.cust, sim.acoef)
    not_held = ~held(sim.state, tr) & mo.at_start[:, None]
    who, fam = np.nonzero(not_held)
    spend = expected_spend(sim.cust, sim.state, p_adopt, not_held, mo.month_of_year, mo.length)
    sim.churn_rows.append(churn_rows(mo, risk, sim.profile, churned, spend))
    sim.adoption_rows.append(adoption_rows(mo, who, fam, p_adopt))
    return p_adopt, (who, fam)


def _purchases(
    rng: np.random.Generator,
    sim: _Simulation,
    mo: Month,
    pr: Presence,
    candidates: tuple[np.ndarray, np.ndarray],
    p_adopt: np.ndarray,
) -> Chunk:
    """What customers take up and give up, and the month's transactions (returns included)."""
    cust, state = sim.cust, sim.state
    device_buyers, signup = joiners(rng, cust, state, mo)
    purchases = [ev.joiner_devices(rng, cust, state, device_buyers, signup)]
    purchases += ev.adoptions(rng, cust, state, pr, candidates, p_adopt)
    drops_and_switches(rng, cust, state, mo, pr)
    purchases.append(ev.routine_purchases(rng, cust, state, mo, pr))
    tx = concat(purchases)
    return concat([tx, ev.returns(rng, tx, pr.hi)])
