"""Who is a customer at an as-of date, and the training labels observed after it.

Both follow the model's `Target` (`target.py`):

- Population (who is scored): customers signed up before `as_of` who have not already left.
  With the `labels` target at a date the labels table covers, exactly the labelled customers
  (the company's own definition of its customers, never thinned by our rules). Otherwise, for
  `subscription_end` (and `labels` with subscription data) a customer holds an active
  subscription; for `no_purchase` (and `labels` with purchases only) a customer has bought within
  the last `lapsed_after_days`, or signed up more recently than that.
- Churn label: `labels`: the company's `churned` at `as_of` (NaN for customers it does not
  label); `subscription_end`: no active subscription at `as_of + horizon_days`; `no_purchase`:
  no purchase in `[as_of, as_of + horizon_days)`. A derived label is NaN when the data do not
  cover the whole horizon.
- Horizon spend: what the customer pays in `[as_of, as_of + horizon_days)`, the target of the
  value model: net transactions (purchases minus returns) plus, unless the transactions already
  hold the invoices (`FeatureConfig.invoices_in_transactions`), the subscriptions'
  `recurring_amount` (per month) for the days each is active in the horizon. NaN without
  either source or when the horizon is incomplete.
- Adoption label per product family: the customer starts or buys a product of the family within
  the horizon; NaN (not eligible) when they held it at `as_of` or bought it during the lookback.

Labels deliberately read data at and after `as_of`; features never do (see `lifecycle.py`).

What the choice of a target, of snapshot dates and of a scoring date reads of a data set (the
tables present, where the data begin and end, the label dates, the first signup, the gaps between
purchases) is small: `DataFacts`. `resolve_target`, `scoring_as_of`, `check_scoring_date`,
`data_end`, `label_dates` (and `snapshots.training_as_ofs`) take either the prepared data or their
facts, so the Dask engine decides them from facts added up on its workers
(`DataFacts.combine`) without the data ever being on the driver.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn_risk.errors import UsageError
from churn_risk.features.config import FeatureConfig
from churn_risk.features.contract import TABLES
from churn_risk.features.lifecycle import (
    DAY,
    PreparedData,
    _optional_times,
    _times,
    signed_up_before,
)
from churn_risk.features.target import REQUIRED_TABLE, Target, TargetKind

DAYS_PER_MONTH = 365.25 / 12
#: The lapse rule chosen from the data: this quantile of the gaps between a customer's
#: consecutive purchases (a customer quieter than 95% of the gaps returning customers leave).
LAPSE_QUANTILE = 0.95
#: Bounds of the chosen lapse rule (days); without repeat purchases, the upper one.
LAPSE_BOUNDS = (30, 730)


class TargetError(UsageError):
    """A target the data cannot support (missing table, unknown kind, unstated period)."""


@dataclass(frozen=True)
class DataFacts:
    """What the driver needs to know about a data set to choose a target, snapshot dates and a
    scoring date, without its rows: a few numbers per table.

    `tables`: the validated tables present (as `CrmData.tables`); `rows`: rows per event table
    (as `PreparedData.events`, whose `has` it answers); `first` / `last`: the earliest / latest
    event time of each event table with rows; `label_dates`: the `as_of` dates of the labels
    table; `first_signup`: the earliest signup; `purchase_gaps`: how many gaps of each length
    (days) there are between a customer's consecutive purchases (`purchase_gaps`).

    Every fact is a count, a minimum, a maximum or a set over rows, and no customer's rows are
    split between customer partitions, so the facts of partitions add up to those of the whole
    data set exactly (`combine`)."""

    tables: tuple[str, ...]
    rows: dict[str, int]
    first: dict[str, np.datetime64]
    last: dict[str, np.datetime64]
    label_dates: tuple[pd.Timestamp, ...]
    first_signup: pd.Timestamp
    purchase_gaps: dict[float, int]

    @classmethod
    def of(cls, prep: PreparedData) -> DataFacts:
        times = {name: _times(frame[TABLES[name].event_time])
                 for name, frame in prep.events.items() if len(frame)}
        signups = _times(prep.customers["signup_date"])
        return cls(
            tables=tuple(prep.data.tables),
            rows={name: len(frame) for name, frame in prep.events.items()},
            first={name: t.min() for name, t in times.items()},
            last={name: t.max() for name, t in times.items()},
            label_dates=tuple(label_dates(prep)),
            first_signup=pd.Timestamp(signups.min()) if len(signups) else pd.NaT,
            purchase_gaps=dict(sorted(Counter(purchase_gaps(prep).tolist()).items())),
        )

    @classmethod
    def combine(cls, parts: Sequence[DataFacts]) -> DataFacts:
        """The facts of the data set whose customer partitions have the facts `parts`."""
        order = {name: i for i, name in enumerate(TABLES)}

        def ordered(names) -> list[str]:
            return sorted(set(names), key=order.__getitem__)

        def extreme(attr: str, pick) -> dict[str, np.datetime64]:
            names = ordered(n for p in parts for n in getattr(p, attr))
            return {n: pick([getattr(p, attr)[n] for p in parts if n in getattr(p, attr)])
                    for n in names}

        gaps: Counter = Counter()
        for p in parts:
            gaps.update(p.purchase_gaps)
        signups = [p.first_signup for p in parts if not pd.isna(p.first_signup)]
        return cls(
            tables=tuple(ordered(n for p in parts for n in p.tables)),
            rows={n: sum(p.rows.get(n, 0) for p in parts)
                  for n in ordered(n for p in parts for n in p.rows)},
            first=extreme("first", np.min),
            last=extreme("last", np.max),
            label_dates=tuple(sorted({d for p in parts for d in p.label_dates})),
            first_signup=min(signups) if signups else pd.NaT,
            purchase_gaps=dict(sorted(gaps.items())),
        )

    def has(self, name: str) -> bool:
        """Whether the data hold the event table `name` (as `PreparedData.has`)."""
        return name in self.rows

    def has_table(self, name: str) -> bool:
        """Whether the data hold the table `name`, event table or not (as `CrmData.has`)."""
        return name in self.tables

    @property
    def end(self) -> np.datetime64:
        """`data_end`: the latest event time of any event table."""
        latest = list(self.last.values())
        return np.max(latest) if latest else np.datetime64("NaT")

    @property
    def begin(self) -> pd.Timestamp:
        """`snapshots.data_begin`: the first event time of the largest event table."""
        densest = max(self.rows, key=self.rows.__getitem__)
        return pd.Timestamp(self.first.get(densest, np.datetime64("NaT")))

    def gaps(self) -> np.ndarray:
        """`purchase_gaps` (in another order: what is read of them is their quantiles)."""
        days = np.array(list(self.purchase_gaps), dtype=float)
        return np.repeat(days, list(self.purchase_gaps.values()))


#: What the functions deciding targets and dates read: the prepared data or their facts.
DataLike = PreparedData | DataFacts


def _has_table(data: DataLike, name: str) -> bool:
    return data.has_table(name) if isinstance(data, DataFacts) else data.data.has(name)


def resolve_target(prep: DataLike, kind: str | TargetKind | None = None,
                   horizon_days: int | None = None, lapsed_after_days: int | None = None,
                   horizon_given: bool | None = None) -> Target:
    """The target to train: `kind` (default: `labels` when the data hold a labels table, else
    `subscription_end` with subscriptions, else `no_purchase`), checked against the data, with
    `lapsed_after_days` chosen from the data when the population needs the lapse rule and none
    is given. The `labels` target needs its period stated (`horizon_given`): the labels table
    does not say which period its `churned` flag covers."""
    if kind is None:
        kind = (TargetKind.labels if _has_table(prep, "labels") else
                TargetKind.subscription_end if prep.has("subscriptions") else
                TargetKind.no_purchase)
    try:
        kind = TargetKind(kind)
    except ValueError:
        raise TargetError(f"target {kind!r} is not a target: use one of "
                          f"{', '.join(k.value for k in TargetKind)}") from None
    needed = REQUIRED_TABLE[kind]
    present = _has_table(prep, needed) if kind is TargetKind.labels else prep.has(needed)
    if not present:
        tables = ", ".join(prep.tables if isinstance(prep, DataFacts) else prep.data.tables)
        raise TargetError(f"target {kind.value} needs a {needed} table; the data hold {tables}")
    if kind is TargetKind.labels and not (horizon_given if horizon_given is not None
                                          else horizon_days is not None):
        raise TargetError(
            "target labels: say which period the company's churned flag covers, e.g. "
            "--horizon-days 30 for 'left within a month' (or [target] horizon_days in the "
            "config): every probability states it")
    horizon = horizon_days if horizon_days is not None else 90
    target = Target(kind=kind, horizon_days=horizon, lapsed_after_days=lapsed_after_days)
    if lapsed_after_days is None and uses_lapse_rule(prep, target):
        target = target.model_copy(update={"lapsed_after_days": suggest_lapsed_after_days(prep)})
    return target


def uses_lapse_rule(prep: DataLike, target: Target) -> bool:
    """Whether the population outside labelled dates is decided by recent purchases."""
    return target.kind is TargetKind.no_purchase or (
        target.kind is TargetKind.labels and not prep.has("subscriptions"))


def purchase_gaps(prep: PreparedData) -> np.ndarray:
    """Days between each customer's consecutive purchases (returns left out)."""
    if not prep.has("transactions"):
        return np.array([])
    tx = prep.events["transactions"]
    if "is_return" in tx:
        tx = tx.loc[~tx["is_return"].fillna(False).astype(bool).to_numpy()]
    pos = tx["_pos"].to_numpy()
    days = _times(tx["timestamp"]).astype("datetime64[D]").astype(np.int64)
    order = np.lexsort((days, pos))
    pos, days = pos[order], days[order]
    same = pos[1:] == pos[:-1]
    gaps = (days[1:] - days[:-1])[same]
    return gaps[gaps > 0].astype(float)  # purchases on the same day are one visit


def suggest_lapsed_after_days(prep: DataLike) -> int:
    """The lapse rule chosen from the data: the `LAPSE_QUANTILE` of the gaps between
    consecutive purchases, rounded up to whole weeks and kept within `LAPSE_BOUNDS`. A customer
    silent longer than 95% of the gaps after which customers did come back has most likely
    gone; anyone quieter is scored (and is often exactly whom a retention team wants to see)."""
    gaps = prep.gaps() if isinstance(prep, DataFacts) else purchase_gaps(prep)
    low, high = LAPSE_BOUNDS
    if len(gaps) < 20:
        return high
    days = 7 * math.ceil(float(np.quantile(gaps, LAPSE_QUANTILE)) / 7)
    return int(min(max(days, low), high))


def data_end(prep: DataLike) -> np.datetime64:
    """The last moment the data cover: the latest event time of any event table."""
    if isinstance(prep, DataFacts):
        return prep.end
    latest = [
        _times(frame[TABLES[name].event_time]).max()
        for name, frame in prep.events.items()
        if len(frame)
    ]
    return np.max(latest) if latest else np.datetime64("NaT")


def label_dates(prep: DataLike) -> list[pd.Timestamp]:
    """The `as_of` dates of the company's labels table, oldest first (empty without one)."""
    if isinstance(prep, DataFacts):
        return list(prep.label_dates)
    if not prep.data.has("labels"):
        return []
    return [pd.Timestamp(t) for t in np.unique(_times(prep.data["labels"]["as_of"]))]


def scoring_as_of(prep: DataLike) -> pd.Timestamp:
    """The default as-of date of scoring: the day after the data end (see `data_end`), so every
    recorded event is known, or the company's latest labels date when that is later (the labels
    say the data are complete up to it). The service, batch scoring and explain-change use it."""
    day_after = pd.Timestamp(data_end(prep)).normalize() + pd.Timedelta(days=1)
    dates = label_dates(prep)
    return max(day_after, dates[-1]) if dates else day_after


def check_scoring_date(prep: DataLike, as_of: pd.Timestamp, what: str = "--as-of") -> None:
    """Refuse a scoring date outside the data: before the first signup, or after the default
    scoring date (features of a later date would silently miss the events not yet recorded)."""
    latest = scoring_as_of(prep)
    first = (prep.first_signup if isinstance(prep, DataFacts)
             else pd.Timestamp(_times(prep.customers["signup_date"]).min()))
    if as_of > latest:
        raise UsageError(f"{what} {as_of:%Y-%m-%d} is after the end of the data: the latest "
                         f"date that can be scored is {latest:%Y-%m-%d} (the day after the last "
                         "recorded event)")
    if as_of <= first:
        raise UsageError(f"{what} {as_of:%Y-%m-%d} is before the data begin: the first customer "
                         f"signed up on {first:%Y-%m-%d}")


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


def _labels_at(prep: PreparedData, as_of: np.datetime64) -> pd.Series | None:
    """`churned` (0.0/1.0) by customer_id of the labels dated `as_of`; None when there are
    none at that date."""
    if not prep.data.has("labels"):
        return None
    labels = prep.data["labels"]
    at = labels.loc[_times(labels["as_of"]) == as_of]
    if not len(at):
        return None
    return pd.Series(at["churned"].astype(float).to_numpy(), index=pd.Index(at["customer_id"]))


def population(prep: PreparedData, as_of: np.datetime64, target: Target) -> pd.DataFrame:
    """Customers to score at `as_of` (rows of `prep.customers` with `_pos`): signed up before
    it and not already gone, by the target's rule (see the module doc). Reads only data dated
    before `as_of`, and for the `labels` target which customers the company labelled then."""
    customers = signed_up_before(prep, as_of)
    if target.kind is TargetKind.labels:
        labelled = _labels_at(prep, as_of)
        if labelled is not None:
            return customers.loc[customers["customer_id"].isin(labelled.index).to_numpy()]
    pos = customers["_pos"].to_numpy()
    if target.kind is not TargetKind.no_purchase and prep.has("subscriptions"):
        keep = _active_subscription(prep, as_of)[pos]
    elif prep.has("transactions"):
        lapse = (target.lapsed_after_days or LAPSE_BOUNDS[1]) * DAY
        recent_buyer = _purchased(prep, as_of - lapse, as_of)[pos]
        too_new_to_judge = _times(customers["signup_date"]) > as_of - lapse
        keep = recent_buyer | too_new_to_judge
    else:  # validation requires an activity table; keep everyone rather than guess
        keep = np.ones(len(customers), dtype=bool)
    return customers.loc[keep]


def left_on(prep: PreparedData, as_of: np.datetime64, target: Target, customer_id
            ) -> np.datetime64 | None:
    """When a customer of the data who is no longer scored at `as_of` (not in `population`)
    left: the end of their last subscription, else their last purchase; None for a current
    customer or an id the data do not know."""
    customers = signed_up_before(prep, as_of)
    mine = customers.loc[customers["customer_id"].astype(str).to_numpy() == str(customer_id)]
    if not len(mine) or mine["_pos"].iloc[0] in set(population(prep, as_of, target)["_pos"]):
        return None
    pos = mine["_pos"].iloc[0]
    for table, column in (("subscriptions", "end_date"), ("transactions", "timestamp")):
        if prep.has(table) and column in prep.events[table]:
            events = prep.events[table]
            times = _optional_times(events, column)[events["_pos"].to_numpy() == pos]
            times = times[~np.isnat(times) & (times < as_of)]
            if len(times):
                return times.max()
    return None


def horizon_complete(prep: PreparedData, as_of: np.datetime64, target: Target,
                     end: np.datetime64 | None = None) -> bool:
    """Whether the data cover `[as_of, as_of + horizon_days)`: derived labels, spend and
    adoption need it."""
    end = data_end(prep) if end is None else end
    return bool(as_of + target.horizon_days * DAY <= end)


def churn_labels(
    prep: PreparedData,
    customers: pd.DataFrame,
    as_of: np.datetime64,
    target: Target,
    end: np.datetime64 | None = None,
) -> np.ndarray:
    """1.0 churned / 0.0 stayed / NaN unknown, aligned with `customers`."""
    pos = customers["_pos"].to_numpy()
    if target.kind is TargetKind.labels:
        labelled = _labels_at(prep, as_of)
        if labelled is None:
            return np.full(len(customers), np.nan)
        return labelled.reindex(customers["customer_id"].to_numpy()).to_numpy(dtype=float)
    if not horizon_complete(prep, as_of, target, end):
        return np.full(len(customers), np.nan)
    horizon_end = as_of + target.horizon_days * DAY
    if target.kind is TargetKind.subscription_end:
        stays = _active_subscription(prep, horizon_end)[pos]
    else:
        stays = _purchased(prep, as_of, horizon_end)[pos]
    return (~stays).astype(float)


def outcome_target(prep: DataLike, target: Target) -> Target:
    """The target that measures retention after an arbitrary date (campaign outcomes): the
    model's own, except that the company's labels exist only at their dates, so `labels` is
    measured with the data's own definition over the same horizon."""
    if target.kind is not TargetKind.labels:
        return target
    kind = (TargetKind.subscription_end if prep.has("subscriptions")
            else TargetKind.no_purchase)
    return target.model_copy(update={"kind": kind})


def spend_labels(
    prep: PreparedData,
    customers: pd.DataFrame,
    as_of: np.datetime64,
    cfg: FeatureConfig,
    target: Target,
    end: np.datetime64 | None = None,
) -> np.ndarray:
    """What each customer pays in `[as_of, as_of + horizon_days)` (see the module doc), aligned
    with `customers`; NaN without a spend source or when the data do not cover the horizon."""
    recurring = (prep.has("subscriptions") and not cfg.invoices_in_transactions
                 and "recurring_amount" in prep.events["subscriptions"])
    if (not (prep.has("transactions") or recurring)
            or not horizon_complete(prep, as_of, target, end)):
        return np.full(len(customers), np.nan)
    horizon_end = as_of + target.horizon_days * DAY
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
    cfg: FeatureConfig,
    target: Target,
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
    horizon_end = as_of + target.horizon_days * DAY
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

    complete = horizon_complete(prep, as_of, target, end)
    out: dict[str, np.ndarray] = {}
    for i, f in enumerate(fams):
        label = adopted[pos, i].astype(float)
        label[held[pos, i]] = np.nan
        if not complete:
            label[:] = np.nan
        out[f] = label
    return out
