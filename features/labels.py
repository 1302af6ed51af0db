"""Who is a customer at an as-of date, and the training labels observed after it.

- Population: customers signed up before `as_of` who have not already left. With subscription
  data a customer is a customer while they hold an active subscription; with transactions only,
  a customer who bought nothing during the last `horizon_days` (and has been a customer that
  long) has already left.
- Churn label (the first that applies): the company's own `labels` table; else, with
  subscriptions, no active subscription at `as_of + horizon_days`; else no purchase in
  `[as_of, as_of + horizon_days)`. A label is NaN when the data do not cover the whole horizon.
- Horizon spend: what the customer pays in `[as_of, as_of + horizon_days)`, the target of the
  value model: net transactions (purchases minus returns) plus, unless the transactions already
  hold the invoices (`FeatureConfig.invoices_in_transactions`), the subscriptions'
  `recurring_amount` (per month) for the days each is active in the horizon. NaN without
  either source or when the horizon is incomplete.
- Adoption label per product family: the customer starts or buys a product of the family within
  the horizon; NaN (not eligible) when they held it at `as_of` or bought it during the lookback.

Labels deliberately read data at and after `as_of`; features never do (see `lifecycle.py`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from churn_risk.features.config import FeatureConfig
from churn_risk.features.contract import TABLES
from churn_risk.features.lifecycle import (
    DAY,
    PreparedData,
    _optional_times,
    _times,
    signed_up_before,
)

DAYS_PER_MONTH = 365.25 / 12

ChurnDefinition = Literal["labels", "subscriptions", "transactions"]


def churn_definition(prep: PreparedData) -> ChurnDefinition:
    if prep.data.has("labels"):
        return "labels"
    if prep.has("subscriptions"):
        return "subscriptions"
    return "transactions"


def data_end(prep: PreparedData) -> np.datetime64:
    """The last moment the data cover: the latest event time of any event table."""
    latest = [
        _times(frame[TABLES[name].event_time]).max()
        for name, frame in prep.events.items()
        if len(frame)
    ]
    return np.max(latest) if latest else np.datetime64("NaT")


def scoring_as_of(end: np.datetime64) -> pd.Timestamp:
    """The default as-of date of scoring: the day after the data end `end` (see `data_end`),
    so every recorded event is known. The service, batch scoring and explain-change use it."""
    return pd.Timestamp(end).normalize() + pd.Timedelta(days=1)


def _active_subscription(prep: PreparedData, at: np.datetime64) -> np.ndarray:
    """Per customer position: holds a subscription active at `at`."""
    subs = prep.events["subscriptions"]
    start = _times(subs["start_date"])
    end = _optional_times(subs, "end_date")
    active = (start < at) & (np.isnat(end) | (end >= at))
    out = np.zeros(len(prep.customers), dtype=bool)
    out[subs["_pos"].to_numpy()[active]] = True
    return out


def _transactions_in(prep: PreparedData, start: np.datetime64, end: np.datetime64
                     ) -> tuple[pd.DataFrame, np.ndarray]:
    """The transactions in [start, end) (they are sorted by time) and which are returns."""
    tx = prep.events["transactions"]
    lo, hi = np.searchsorted(_times(tx["timestamp"]), [start, end], side="left")
    window = tx.iloc[lo:hi]
    returns = (window["is_return"].fillna(False).astype(bool).to_numpy() if "is_return" in window
               else np.zeros(len(window), dtype=bool))
    return window, returns


def _purchased(prep: PreparedData, start: np.datetime64, end: np.datetime64) -> np.ndarray:
    """Per customer position: made a purchase (not a return) in [start, end)."""
    window, returns = _transactions_in(prep, start, end)
    out = np.zeros(len(prep.customers), dtype=bool)
    out[window["_pos"].to_numpy()[~returns]] = True
    return out


def population(
    prep: PreparedData, as_of: np.datetime64, cfg: FeatureConfig = FeatureConfig()
) -> pd.DataFrame:
    """Customers to score at `as_of` (rows of `prep.customers` with `_pos`): signed up before
    it and not already gone. Reads only data dated before `as_of`."""
    customers = signed_up_before(prep, as_of)
    pos = customers["_pos"].to_numpy()
    if prep.has("subscriptions"):
        keep = _active_subscription(prep, as_of)[pos]
    elif prep.has("transactions"):
        horizon = cfg.horizon_days * DAY
        recent_buyer = _purchased(prep, as_of - horizon, as_of)[pos]
        too_new_to_judge = _times(customers["signup_date"]) > as_of - horizon
        keep = recent_buyer | too_new_to_judge
    else:  # validation requires an activity table; keep everyone rather than guess
        keep = np.ones(len(customers), dtype=bool)
    return customers.loc[keep]


def horizon_complete(prep: PreparedData, as_of: np.datetime64, cfg: FeatureConfig,
                     end: np.datetime64 | None = None) -> bool:
    end = data_end(prep) if end is None else end
    return bool(as_of + cfg.horizon_days * DAY <= end)


def churn_labels(
    prep: PreparedData,
    customers: pd.DataFrame,
    as_of: np.datetime64,
    cfg: FeatureConfig = FeatureConfig(),
    end: np.datetime64 | None = None,
) -> np.ndarray:
    """1.0 churned / 0.0 stayed / NaN unknown, aligned with `customers`."""
    pos = customers["_pos"].to_numpy()
    definition = churn_definition(prep)
    if definition == "labels":
        labels = prep.data["labels"]
        at = labels.loc[_times(labels["as_of"]) == as_of]
        lookup = pd.Series(
            at["churned"].astype(float).to_numpy(), index=pd.Index(at["customer_id"])
        )
        return lookup.reindex(customers["customer_id"].to_numpy()).to_numpy(dtype=float)
    if not horizon_complete(prep, as_of, cfg, end):
        return np.full(len(customers), np.nan)
    horizon_end = as_of + cfg.horizon_days * DAY
    if definition == "subscriptions":
        stays = _active_subscription(prep, horizon_end)[pos]
    else:
        stays = _purchased(prep, as_of, horizon_end)[pos]
    return (~stays).astype(float)


def spend_labels(
    prep: PreparedData,
    customers: pd.DataFrame,
    as_of: np.datetime64,
    cfg: FeatureConfig = FeatureConfig(),
    end: np.datetime64 | None = None,
) -> np.ndarray:
    """What each customer pays in `[as_of, as_of + horizon_days)` (see the module doc), aligned
    with `customers`; NaN without a spend source or when the data do not cover the horizon."""
    recurring = (prep.has("subscriptions") and not cfg.invoices_in_transactions
                 and "recurring_amount" in prep.events["subscriptions"])
    if (not (prep.has("transactions") or recurring)
            or not horizon_complete(prep, as_of, cfg, end)):
        return np.full(len(customers), np.nan)
    horizon_end = as_of + cfg.horizon_days * DAY
    total = np.zeros(len(prep.customers))
    if prep.has("transactions"):
        window, returns = _transactions_in(prep, as_of, horizon_end)
        amount = pd.to_numeric(window["amount"], errors="coerce").fillna(0.0).to_numpy(float)
        amount = np.where(returns, -amount, amount)
        total += np.bincount(window["_pos"].to_numpy(), weights=amount,
                             minlength=len(prep.customers))
    if recurring:
        subs = prep.events["subscriptions"]
        start = np.maximum(_times(subs["start_date"]), as_of)
        stop = _optional_times(subs, "end_date")
        stop = np.where(np.isnat(stop) | (stop > horizon_end), horizon_end, stop)
        days = np.clip((stop - start) / DAY, 0, None)
        monthly = pd.to_numeric(subs["recurring_amount"], errors="coerce").fillna(0.0)
        total += np.bincount(subs["_pos"].to_numpy(),
                             weights=monthly.to_numpy(float) * days / DAYS_PER_MONTH,
                             minlength=len(prep.customers))
    return total[customers["_pos"].to_numpy()]


def adoption_labels(
    prep: PreparedData,
    customers: pd.DataFrame,
    as_of: np.datetime64,
    cfg: FeatureConfig = FeatureConfig(),
    end: np.datetime64 | None = None,
) -> dict[str, np.ndarray]:
    """Per product family: 1.0 adopted within the horizon / 0.0 did not / NaN not eligible or
    horizon incomplete. Empty without a products table."""
    fams = prep.families
    if not fams:
        return {}
    pos = customers["_pos"].to_numpy()
    n_all = len(prep.customers)
    held = np.zeros((n_all, len(fams)), dtype=bool)
    adopted = np.zeros((n_all, len(fams)), dtype=bool)
    horizon_end = as_of + cfg.horizon_days * DAY
    lookback_start = as_of - cfg.lookback_days * DAY

    if prep.has("subscriptions"):
        subs = prep.events["subscriptions"]
        start = _times(subs["start_date"])
        end_date = _optional_times(subs, "end_date")
        fam = subs["_family"].to_numpy()
        spos = subs["_pos"].to_numpy()
        ok = fam >= 0
        active = ok & (start < as_of) & (np.isnat(end_date) | (end_date >= as_of))
        held[spos[active], fam[active]] = True
        new = ok & (start >= as_of) & (start < horizon_end)
        adopted[spos[new], fam[new]] = True
    if prep.has("transactions") and "_family" in prep.events["transactions"]:
        tx = prep.events["transactions"]
        times = _times(tx["timestamp"])
        fam = tx["_family"].to_numpy()
        tpos = tx["_pos"].to_numpy()
        ok = fam >= 0
        if "is_return" in tx:
            ok &= ~tx["is_return"].fillna(False).astype(bool).to_numpy()
        bought_before = ok & (times >= lookback_start) & (times < as_of)
        held[tpos[bought_before], fam[bought_before]] = True
        bought_after = ok & (times >= as_of) & (times < horizon_end)
        adopted[tpos[bought_after], fam[bought_after]] = True

    complete = horizon_complete(prep, as_of, cfg, end)
    out: dict[str, np.ndarray] = {}
    for i, f in enumerate(fams):
        label = adopted[pos, i].astype(float)
        label[held[pos, i]] = np.nan
        if not complete:
            label[:] = np.nan
        out[f] = label
    return out
