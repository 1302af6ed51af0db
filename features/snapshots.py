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

from churn_risk.features.config import FeatureConfig
from churn_risk.features.contract import TABLES
from churn_risk.features.labels import (
    adoption_labels,
    churn_labels,
    data_end,
    horizon_complete,
    population,
    spend_labels,
)
from churn_risk.features.lifecycle import PreparedData, _times, build_features, to_timestamp

KEY = ("customer_id", "as_of")
CHURN_LABEL = "churned"
SPEND_LABEL = "horizon_spend"
ADOPTION_PREFIX = "adopts_"


def build_snapshot(
    prep: PreparedData, as_of: str | pd.Timestamp, cfg: FeatureConfig = FeatureConfig()
) -> pd.DataFrame:
    """Feature rows for every customer to score at `as_of` (already-gone customers excluded)."""
    t = to_timestamp(as_of)
    return build_features(prep, t, population(prep, t, cfg), cfg)


def build_labelled_snapshot(
    prep: PreparedData,
    as_of: str | pd.Timestamp,
    cfg: FeatureConfig = FeatureConfig(),
    end: np.datetime64 | None = None,
) -> pd.DataFrame:
    """`build_snapshot` plus the churn, spend and adoption labels observed after `as_of`."""
    t = to_timestamp(as_of)
    customers = population(prep, t, cfg)
    frame = build_features(prep, t, customers, cfg)
    frame[CHURN_LABEL] = churn_labels(prep, customers, t, cfg, end)
    frame[SPEND_LABEL] = spend_labels(prep, customers, t, cfg, end)
    for family, label in adoption_labels(prep, customers, t, cfg, end).items():
        frame[f"{ADOPTION_PREFIX}{family}"] = label
    return frame


def monthly_as_ofs(
    prep: PreparedData,
    cfg: FeatureConfig = FeatureConfig(),
    first: str | pd.Timestamp | None = None,
    last: str | pd.Timestamp | None = None,
    labelled: bool = True,
) -> list[pd.Timestamp]:
    """Month starts from `first` (default: one `history_days` after the data begin, so windows
    are full) to `last` (default: the latest month start whose label horizon is complete, or the
    latest month start of the data when `labelled` is False).

    The data begin with the first record of the largest event table: subscriptions often reach
    far back (a plan signed in 2015) while transactions or contacts are only kept since a recent
    date, and snapshots before that would show every customer as inactive."""
    end = data_end(prep)
    densest = max(prep.events, key=lambda name: len(prep.events[name]))
    begin = _times(prep.events[densest][TABLES[densest].event_time]).min()
    start = pd.Timestamp(first) if first is not None else (
        pd.Timestamp(begin) + pd.Timedelta(days=cfg.history_days)
    )
    stop = pd.Timestamp(last) if last is not None else pd.Timestamp(end)
    dates = list(pd.date_range(_month_start_on_or_after(start), stop, freq="MS"))
    if labelled and last is None:
        dates = [d for d in dates if horizon_complete(prep, to_timestamp(d), cfg, end)]
    return dates


def _month_start_on_or_after(ts: pd.Timestamp) -> pd.Timestamp:
    ts = ts.normalize()
    return ts if ts.day == 1 else ts + pd.offsets.MonthBegin(1)


def build_training_frame(
    prep: PreparedData,
    as_ofs: Sequence[str | pd.Timestamp],
    cfg: FeatureConfig = FeatureConfig(),
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Stack labelled snapshots. Rows whose churn horizon is incomplete are dropped."""
    end = data_end(prep)
    frames = []
    for i, as_of in enumerate(as_ofs):
        frame = build_labelled_snapshot(prep, as_of, cfg, end)
        frames.append(frame.loc[frame[CHURN_LABEL].notna()])
        if progress is not None:
            progress(i + 1, len(as_ofs))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
