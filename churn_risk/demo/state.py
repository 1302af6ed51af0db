"""The simulation's state: the calendar, the customers, what changes month to month, and the
per-month context (who is active at the month start, who is present until when).

Time is counted in days from `start`; month ``m`` is ``[start + m months, start + m + 1 months)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from churn_risk.demo.coefficients import INPUTS
from churn_risk.demo.numeric import Chunk

#: Months of calendar kept before `start` (trailing windows reach back this far).
PRE_MONTHS = INPUTS.trend_months
NEVER = 10**9  # sentinel day: never delivered / never closed / never churned
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class Calendar:
    """Month starts as day offsets from `start`, for months -PRE_MONTHS .. months."""

    start: pd.Timestamp
    days: np.ndarray
    month_of_year: np.ndarray  # calendar month (1..12) of months 0 .. months-1

    def at(self, m: int) -> int:
        return int(self.days[max(m, -PRE_MONTHS) + PRE_MONTHS])

    @property
    def months(self) -> int:
        return len(self.month_of_year)


def calendar(start: pd.Timestamp, months: int) -> Calendar:
    stamps = [start + pd.DateOffset(months=k) for k in range(-PRE_MONTHS, months + 1)]
    days = np.array([(s - start).days for s in stamps], dtype=np.int64)
    moy = np.array([s.month for s in stamps[PRE_MONTHS : PRE_MONTHS + months]], dtype=np.int64)
    return Calendar(start, days, moy)


@dataclass
class Customers:
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


@dataclass(frozen=True)
class Agents:
    """Agent ids: in-house ``0 .. home - 1``, outsourced ``home .. home + outsourced - 1``."""

    home: int
    outsourced: int

    @property
    def total(self) -> int:
        return self.home + self.outsourced


@dataclass
class State:
    """What changes month to month."""

    alive: np.ndarray
    churn_day: np.ndarray
    satisfaction: np.ndarray
    satisfaction_history: list[np.ndarray]  # latent satisfaction at the last month starts
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
    ended_subscriptions: list[Chunk] = field(default_factory=list)


@dataclass(frozen=True)
class Month:
    """Month `m` and the customers active at its start (signed up before it, not churned)."""

    m: int
    start: int
    end: int
    month_of_year: int
    at_start: np.ndarray  # bool per customer
    idx: np.ndarray  # indices of at_start

    @property
    def length(self) -> int:
        return self.end - self.start


def month(cal: Calendar, cust: Customers, state: State, m: int) -> Month:
    start, end = cal.at(m), cal.at(m + 1)
    at_start = state.alive & (cust.signup_day < start)
    return Month(m, start, end, int(cal.month_of_year[m]), at_start, np.flatnonzero(at_start))


@dataclass(frozen=True)
class Presence:
    """Who is there in the month, from day `lo` until before day `hi` (churn day or month end)."""

    lo: np.ndarray
    hi: np.ndarray
    present: np.ndarray  # bool per customer
    pidx: np.ndarray  # indices of present
    exposure: np.ndarray  # share of the month present


def presence(
    cust: Customers, state: State, mo: Month, churners: np.ndarray, churn_day: np.ndarray
) -> Presence:
    lo = np.maximum(mo.start, cust.signup_day)
    hi = np.full(cust.n, mo.end, dtype=np.int64)
    hi[churners] = churn_day
    present = state.alive & (cust.signup_day < mo.end) & (hi > lo)
    pidx = np.flatnonzero(present)
    exposure = np.zeros(cust.n)
    exposure[pidx] = (hi[pidx] - lo[pidx]) / mo.length
    return Presence(lo, hi, present, pidx, exposure)


def stamp(cal: Calendar, day: np.ndarray, sec: np.ndarray | None = None) -> np.ndarray:
    """Day offsets (and seconds into the day) to datetime64[ns]; days >= NEVER become NaT."""
    base = cal.start.value
    ns = base + day.astype(np.int64) * DAY_NS
    if sec is not None:
        ns = ns + sec.astype(np.int64) * 10**9
    ns = np.where(day >= NEVER, np.iinfo(np.int64).min, ns)
    return ns.astype("datetime64[ns]")


def month_stamp(cal: Calendar, month: np.ndarray) -> np.ndarray:
    """The start of each simulated month index, as datetime64[ns]."""
    return stamp(cal, cal.days[PRE_MONTHS + month])
