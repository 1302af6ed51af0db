"""Retention campaigns: planned, sent to at-risk customers, randomised, and their true effect.

About one campaign per ``months_per_campaign`` months (`coefficients.Campaigns`), sent in the last
days of a month to at-risk customers (selection probability proportional to the hazard),
randomised into treatment and control (``treatment_share``); from the next month on, the
treatment multiplies the hazard by ``1 - r`` for ``effect_months`` months (``r`` drawn per campaign
in ``reduction``), whether or not the customer responded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn_risk.demo.coefficients import CAMPAIGNS, INPUTS, OFFERS
from churn_risk.demo.numeric import Chunk, sigmoid
from churn_risk.demo.state import Calendar, Month, Presence, State

C = CAMPAIGNS


@dataclass(frozen=True)
class CampaignPlan:
    campaign_id: str
    offer: str
    send_month: int
    effect_month: int
    relative_hazard_reduction: float
    effect_months: int
    target_share: float


@dataclass
class CampaignRun:
    plan: CampaignPlan
    sent_at: int = -1
    targeted: np.ndarray | None = None
    treatment: np.ndarray | None = None
    true_uplift: float = float("nan")


def plan_campaigns(rng: np.random.Generator, cal: Calendar, months: int) -> list[CampaignRun]:
    """Campaigns spread evenly over the months, each effective from the month after its send."""
    count = 0 if months < C.min_months else max(1, round(months / C.months_per_campaign))
    runs: list[CampaignRun] = []
    for c in range(count):
        effect = int(np.clip(round((c + 1) * months / (count + 1)), 1, months - 1))
        month = cal.start + pd.DateOffset(months=effect)
        plan = CampaignPlan(
            campaign_id=f"RET-{month:%Y-%m}",
            offer=OFFERS[c % len(OFFERS)],
            send_month=effect - 1,
            effect_month=effect,
            relative_hazard_reduction=round(float(rng.uniform(*C.reduction)), 2),
            effect_months=int(rng.integers(*C.effect_months)),
            target_share=float(rng.uniform(*C.target_share)),
        )
        runs.append(CampaignRun(plan))
    return runs


def send_campaign(
    rng: np.random.Generator,
    run: CampaignRun,
    untreated: np.ndarray,
    mo: Month,
    pr: Presence,
    state: State,
) -> Chunk:
    """Target at-risk customers (selection probability grows with the hazard), randomise them
    into treatment and control, and give the treatment its hazard reduction."""
    plan = run.plan
    sent = mo.end - int(rng.integers(*C.send_days))
    eligible = np.flatnonzero(mo.at_start & (pr.lo <= sent) & (pr.hi > sent))
    risk = untreated[eligible]
    p = np.minimum(C.max_selection, plan.target_share * risk / max(float(risk.mean()), 1e-12))
    targeted = eligible[rng.random(eligible.size) < p]
    treatment = rng.random(targeted.size) < C.treatment_share
    treated = targeted[treatment]
    state.effect_reduction[treated] = plan.relative_hazard_reduction
    state.effect_first[treated] = plan.effect_month
    state.effect_stop[treated] = plan.effect_month + plan.effect_months
    responded = np.where(
        treatment,
        rng.random(targeted.size)
        < sigmoid(C.response_intercept + C.response_satisfaction * state.satisfaction[targeted]),
        rng.random(targeted.size) < C.control_response,
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


def true_uplift(run: CampaignRun, untreated: np.ndarray, at_start: np.ndarray) -> None:
    """Expected 90-day retention gain from the treatment for the targeted customers still active
    at the effect start, holding each one's untreated hazard of that month for the horizon."""
    assert run.targeted is not None
    c = run.targeted[at_start[run.targeted]]
    if c.size == 0:
        return
    h = untreated[c]
    r = run.plan.relative_hazard_reduction
    horizon = INPUTS.horizon_months
    k = min(run.plan.effect_months, horizon)
    treated = (1 - h * (1 - r)) ** k * (1 - h) ** (horizon - k)
    run.true_uplift = float(np.mean(treated - (1 - h) ** horizon))
