"""Fresh features for a few customers, read from the store: the same feature functions as
training and batch scoring, on only these customers' records.

A customer's features depend only on their own records (and the products table), so building
them from those records alone gives exactly the row a full rebuild of the whole portfolio gives
as of the same moment: `tests/test_live_features.py` checks it bit for bit, on SQLite and on
PostgreSQL, with events ingested after the first load. The point-in-time rule carries over:
nothing at or after `as_of` is read."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import pandas as pd

from churn_risk.features.config import FeatureConfig
from churn_risk.features.lifecycle import PreparedData, prepare
from churn_risk.features.snapshots import build_snapshot
from churn_risk.features.store import Store
from churn_risk.features.target import Target
from churn_risk.features.validation import CrmData, DataContractWarning, validate


def customer_data(store: Store, customer_ids: Iterable, like: CrmData) -> PreparedData | None:
    """These customers' records from the store, validated and prepared as `like` (the whole
    data set the model reads: its tables, customer attributes and survey drivers mean the same
    here); None when the store holds none of them."""
    raw = store.customer_tables(customer_ids)
    if "customers" not in raw:
        return None
    for name, frame in like.tables.items():  # a table they have no record in still counts:
        raw.setdefault(name, frame.iloc[:0])  # its features are there, at their empty values
    with warnings.catch_warnings():  # a column empty for these few customers is no news
        warnings.simplefilter("ignore", DataContractWarning)
        typed = validate(raw, stored_keys={})
    tables = {}
    for name, frame in typed.tables.items():  # columns only other customers fill (validation
        model = like.tables.get(name)  # drops a column empty for these few) are still there
        missing = [] if model is None else [c for c in model.columns if c not in frame.columns]
        filled = frame.assign(**{c: model[c].iloc[:0].reindex(frame.index) for c in missing})
        tables[name] = filled if model is None else filled[list(model.columns)]
    return prepare(CrmData(tables, attributes=like.attributes,
                           survey_drivers=like.survey_drivers))


def customer_features(store: Store, customer_ids: Iterable, as_of: str | pd.Timestamp,
                      cfg: FeatureConfig, target: Target, like: CrmData) -> pd.DataFrame:
    """Feature rows of `customer_ids` as of `as_of` (customers unknown to the store, or not
    customers then by the target's rule, are absent)."""
    prep = customer_data(store, customer_ids, like)
    if prep is None:
        return pd.DataFrame({"customer_id": pd.Series([], dtype=object)})
    return build_snapshot(prep, as_of, cfg, target).reset_index(drop=True)


def live_now() -> pd.Timestamp:
    """"Now" for live features: the wall clock in UTC, to the second (event times in the store
    are read as UTC)."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
