"""The ground truth a real CRM never has, as frames (`DemoData.truth`).

Written to ``<out>/ground_truth/`` by `write_demo`, with a README rendered from the coefficients
(`readme.py`). ``churn`` has one row per customer active at a month start with ``hazard``,
``churn_probability_90d``, every ``term_<group>``, ``dominant_driver`` (the group whose term is
furthest above its mean over the whole panel) and ``expected_monthly_spend``; ``adoption`` the
90-day adoption probability (``1 - (1 - p)**horizon_months``) of each family not held;
``campaign_effects`` each campaign's true relative hazard reduction, effect months and expected
and realised 90-day retention uplift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn_risk.demo.campaigns import CampaignRun
from churn_risk.demo.coefficients import ADOPTION_FAMILIES, DOMINANT_DRIVERS, INPUTS
from churn_risk.demo.hazard import Risk
from churn_risk.demo.numeric import Chunk, concat
from churn_risk.demo.state import Calendar, Month, State, month_stamp, stamp

FIRST_ID = 100_000  # customer_id of customer index 0
_HORIZON = INPUTS.horizon_months


def churn_rows(
    mo: Month, risk: Risk, profile: np.ndarray, churned: np.ndarray, spend: np.ndarray
) -> Chunk:
    """The month's truth rows of the customers active at its start."""
    idx = mo.idx
    return {
        "cust": idx,
        "month": np.full(idx.size, mo.m),
        "hazard": risk.hazard[idx],
        "log_odds": risk.log_odds[idx],
        "profile": profile[idx],
        "reduction": risk.reduction[idx],
        "churned": churned,
        **{f"term_{g}": risk.terms[g][idx] for g in DOMINANT_DRIVERS},
        "spend": spend[idx],
    }


def adoption_rows(mo: Month, who: np.ndarray, fam: np.ndarray, p_adopt: np.ndarray) -> Chunk:
    """The month's adoption truth: customer and family index pairs not held, with monthly p."""
    return {"cust": who, "month": np.full(who.size, mo.m), "family": fam, "p": p_adopt[who, fam]}


def churn_truth(cal: Calendar, rows: list[Chunk]) -> pd.DataFrame:
    r = concat(rows)
    terms = np.column_stack([r[f"term_{g}"] for g in DOMINANT_DRIVERS])
    # the driver raising the log-odds most above its population-typical value (panel mean)
    above = terms - terms.mean(axis=0, keepdims=True) if terms.size else terms
    dominant = np.array(DOMINANT_DRIVERS, dtype=object)[above.argmax(axis=1)] if terms.size else []
    return pd.DataFrame(
        {
            "customer_id": FIRST_ID + r["cust"].astype(np.int64),
            "as_of": month_stamp(cal, r["month"]),
            "hazard": r["hazard"],
            "churn_probability_90d": 1.0 - (1.0 - r["hazard"]) ** _HORIZON,
            "dominant_driver": dominant,
            **{f"term_{g}": r[f"term_{g}"] for g in DOMINANT_DRIVERS},
            "term_profile": r["profile"],
            "log_odds": r["log_odds"],
            "campaign_reduction": r["reduction"],
            "churned_in_month": r["churned"].astype(bool),
            "expected_monthly_spend": r["spend"],
        }
    )


def adoption_truth(cal: Calendar, rows: list[Chunk]) -> pd.DataFrame:
    r = concat(rows)
    return pd.DataFrame(
        {
            "customer_id": FIRST_ID + r["cust"].astype(np.int64),
            "as_of": month_stamp(cal, r["month"]),
            "family": np.array(ADOPTION_FAMILIES, dtype=object)[r["family"]],
            "adoption_probability_90d": 1.0 - (1.0 - r["p"]) ** _HORIZON,
        }
    )


_EFFECT_COLUMNS = [
    "campaign_id", "offer", "sent_at", "effect_start", "relative_hazard_reduction",
    "effect_months", "targeted", "treatment", "control", "true_retention_uplift_90d",
    "observed_retention_uplift_90d",
]


def _observed_uplift(
    cal: Calendar, run: CampaignRun, state: State, months: int, targeted, treatment
) -> float:
    """Realised treatment-minus-control 90-day retention (nan before the horizon has passed)."""
    plan = run.plan
    if plan.effect_month + _HORIZON > months:
        return float("nan")
    begin, horizon = cal.at(plan.effect_month), cal.at(plan.effect_month + _HORIZON)
    there = state.churn_day[targeted] >= begin
    kept = state.churn_day[targeted] >= horizon
    t, c = there & treatment, there & ~treatment
    if t.any() and c.any():
        return float(kept[t].mean() - kept[c].mean())
    return float("nan")


def campaign_effects(
    cal: Calendar, campaigns: list[CampaignRun], state: State, months: int
) -> pd.DataFrame:
    rows = []
    for run in campaigns:
        plan = run.plan
        targeted = run.targeted if run.targeted is not None else np.zeros(0, np.int64)
        treatment = run.treatment if run.treatment is not None else np.zeros(0, bool)
        rows.append(
            {
                "campaign_id": plan.campaign_id,
                "offer": plan.offer,
                "sent_at": stamp(cal, np.array([run.sent_at]))[0],
                "effect_start": stamp(cal, np.array([cal.at(plan.effect_month)]))[0],
                "relative_hazard_reduction": plan.relative_hazard_reduction,
                "effect_months": plan.effect_months,
                "targeted": int(targeted.size),
                "treatment": int(treatment.sum()),
                "control": int((~treatment).sum()),
                "true_retention_uplift_90d": run.true_uplift,
                "observed_retention_uplift_90d": _observed_uplift(
                    cal, run, state, months, targeted, treatment
                ),
            }
        )
    frame = pd.DataFrame(rows, columns=_EFFECT_COLUMNS)
    for col in ("sent_at", "effect_start"):
        frame[col] = pd.to_datetime(frame[col]).astype("datetime64[ns]")
    return frame
