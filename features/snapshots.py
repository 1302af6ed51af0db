"""Scoring snapshots and stacked monthly training frames.

A snapshot is one row per customer in the population at `as_of` (see `labels.population`),
keyed on (customer_id, as_of). A training frame stacks monthly snapshots and adds the labels:
`churned`, `horizon_spend` (the value model's target) and one `adopts_<family>` column per
product family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from churn_risk.errors import DataError
from churn_risk.features.config import FeatureConfig
from churn_risk.features.contract import TABLES
from churn_risk.features.dates import parse_day
from churn_risk.features.labels import (
    DataFacts,
    DataLike,
    adoption_labels,
    churn_labels,
    data_end,
    horizon_complete,
    label_dates,
    population,
    spend_labels,
)
from churn_risk.features.lifecycle import PreparedData, _times, build_features, to_timestamp
from churn_risk.features.target import Target, TargetKind

KEY = ("customer_id", "as_of")
CHURN_LABEL = "churned"
SPEND_LABEL = "horizon_spend"
ADOPTION_PREFIX = "adopts_"


class NotEnoughHistory(DataError):
    """No snapshot date has the history and the horizon the target needs."""


def build_snapshot(prep: PreparedData, as_of: str | pd.Timestamp, cfg: FeatureConfig,
                   target: Target) -> pd.DataFrame:
    """Feature rows for every customer to score at `as_of` (already-gone customers excluded,
    by the target's population rule)."""
    t = to_timestamp(as_of)
    return build_features(prep, t, population(prep, t, target), cfg)


def build_labelled_snapshot(
    prep: PreparedData,
    as_of: str | pd.Timestamp,
    cfg: FeatureConfig,
    target: Target,
    end: np.datetime64 | None = None,
) -> pd.DataFrame:
    """`build_snapshot` plus the churn, spend and adoption labels observed after `as_of`."""
    t = to_timestamp(as_of)
    customers = population(prep, t, target)
    frame = build_features(prep, t, customers, cfg)
    frame[CHURN_LABEL] = churn_labels(prep, customers, t, target, end)
    frame[SPEND_LABEL] = spend_labels(prep, customers, t, cfg, target, end)
    for family, label in adoption_labels(prep, customers, t, cfg, target, end).items():
        frame[f"{ADOPTION_PREFIX}{family}"] = label
    return frame


def data_begin(prep: DataLike) -> pd.Timestamp:
    """The data begin with the first record of the largest event table: subscriptions often
    reach far back (a plan signed in 2015) while transactions or contacts are only kept since a
    recent date, and snapshots before that would show every customer as inactive."""
    if isinstance(prep, DataFacts):
        return prep.begin
    densest = max(prep.events, key=lambda name: len(prep.events[name]))
    return pd.Timestamp(_times(prep.events[densest][TABLES[densest].event_time]).min())


def monthly_as_ofs(
    prep: DataLike,
    cfg: FeatureConfig,
    target: Target | None = None,
    first: str | pd.Timestamp | None = None,
    last: str | pd.Timestamp | None = None,
) -> list[pd.Timestamp]:
    """Month starts from `first` (default: one `history_days` after the data begin, so windows
    are full) to `last` (default: the latest month start whose label horizon under `target` is
    complete, or the latest month start of the data without a target)."""
    end = data_end(prep)
    start = parse_day(first, "first_as_of") if first is not None else (
        data_begin(prep) + pd.Timedelta(days=cfg.history_days))
    stop = parse_day(last, "last_as_of") if last is not None else pd.Timestamp(end)
    dates = list(pd.date_range(_month_start_on_or_after(start), stop, freq="MS"))
    if target is not None and last is None:
        dates = [d for d in dates if horizon_complete(prep, to_timestamp(d), target, end)]
    return dates


def training_as_ofs(
    prep: DataLike,
    cfg: FeatureConfig,
    target: Target,
    first: str | pd.Timestamp | None = None,
    last: str | pd.Timestamp | None = None,
) -> list[pd.Timestamp]:
    """The snapshot dates to train on: the company's label dates for the `labels` target (any
    day, any number of them), else month starts with full windows and a complete horizon.
    Raises `NotEnoughHistory`, naming the dates needed and present, when there are none.
    `prep`: the prepared data or their `DataFacts` (the dates depend on nothing else)."""
    if target.kind is TargetKind.labels:
        dates = label_dates(prep)
        if first is not None:
            dates = [d for d in dates if d >= parse_day(first, "first_as_of")]
        if last is not None:
            dates = [d for d in dates if d <= parse_day(last, "last_as_of")]
        if not dates:
            raise NotEnoughHistory(
                "the labels table has no as_of date between first_as_of and last_as_of")
        return dates
    dates = monthly_as_ofs(prep, cfg, target, first, last)
    if dates:
        return dates
    begin, end = data_begin(prep), pd.Timestamp(data_end(prep))
    earliest = (parse_day(first, "first_as_of") if first is not None
                else begin + pd.Timedelta(days=cfg.history_days))
    latest = end - pd.Timedelta(days=target.horizon_days)
    history = ("" if first is not None else
               f"{cfg.history_days} days of history before it (history_days) and ")
    raise NotEnoughHistory(
        f"too little history for a {target.horizon_days}-day horizon: a labelled snapshot needs "
        f"{history}the {target.horizon_days} days of the horizon after it, i.e. a month start "
        f"from {earliest:%Y-%m-%d} to {latest:%Y-%m-%d}; the data run from {begin:%Y-%m-%d} to "
        f"{end:%Y-%m-%d} ({(end - begin).days} days). Use a shorter --horizon-days, an earlier "
        "first_as_of in the training config (the longest windows are then partly empty), or the "
        "company's own labels (--target labels)")


def _month_start_on_or_after(ts: pd.Timestamp) -> pd.Timestamp:
    ts = ts.normalize()
    return ts if ts.day == 1 else ts + pd.offsets.MonthBegin(1)


def build_training_frame(
    prep: PreparedData,
    as_ofs: Sequence[str | pd.Timestamp],
    cfg: FeatureConfig,
    target: Target,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Stack labelled snapshots. Rows without a churn label (incomplete horizon, customers
    the company did not label) are dropped."""
    end = data_end(prep)
    frames = []
    for i, as_of in enumerate(as_ofs):
        frame = build_labelled_snapshot(prep, as_of, cfg, target, end)
        frames.append(frame.loc[frame[CHURN_LABEL].notna()])
        if progress is not None:
            progress(i + 1, len(as_ofs))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
