"""`generate`: the month-by-month simulation that ties the mechanism's parts together.

The loop runs over months only; everything inside a month is vectorised over customers with
numpy, and a single ``np.random.default_rng(seed)`` is drawn from in a fixed order, so a seed gives
bit-identical data. Each month: the truth at its start (hazard, adoption probabilities, expected
spend, from the trailing window of the very events that become the tables), the churn draw, the
month's events (holdings, purchases and returns, deliveries, tickets, interactions, surveys,
campaign sends), churners leaving and the latent states moving on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from churn_risk.demo import events as ev
from churn_risk.demo.campaigns import CampaignRun, plan_campaigns, send_campaign, true_uplift
from churn_risk.demo.coefficients import AdoptionCoefficients, HazardCoefficients
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
) -> DemoData:
    """Simulate `customers` customers over `months` months from `start` (see `churn_risk.demo`),
    or, with `end`, over the `months` months up to the one holding `end`, the data cut at `end`
    as a CRM would hold them then (`known_at`): "now" for live data.

    `progress(month_index, months)` is called once per simulated month. `hazard` and `adoption`
    override the mechanism's coefficients (defaults: the documented ones).
    """
    if customers < 1 or months < 1:
        raise ValueError("customers and months must be at least 1")
    start = first_month(months, start, end)
    rng = np.random.default_rng(seed)
    sim = _setup(rng, customers, months, start, hazard or HazardCoefficients(),
                 adoption or AdoptionCoefficients())
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
    tr = trailing(m, sim.cal, cust, state, sim.events, sim.agents)
    risk = month_risk(tr, state, mo, sim.profile, sim.coef)
    for run in sim.campaigns:
        if run.plan.effect_month == m and run.targeted is not None:
            true_uplift(run, risk.untreated, mo.at_start)
    churned, churn_day = _draw_churn(rng, state, mo, risk.hazard)
    churners = mo.idx[churned]
    p_adopt, candidates = _record_truth(sim, mo, tr, risk, churned)

    pr = presence(cust, state, mo, churners, churn_day)
    tx = _purchases(rng, sim, mo, pr, candidates, p_adopt)
    dl = ev.deliveries(rng, cust, state, tx)
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
