"""Fresh features for a few customers, read from the store: the same feature functions as
training and batch scoring, on only these customers' records.

A customer's features depend only on their own records (and the products table), so building
them from those records alone gives exactly the row a full rebuild of the whole portfolio gives
as of the same moment: `tests/test_live_features.py` checks it bit for bit, on SQLite and on
PostgreSQL, with events ingested after the first load. The point-in-time rule carries over:
nothing at or after `as_of` is read."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from churn_risk.features.config import FeatureConfig
from churn_risk.features.lifecycle import prepare
from churn_risk.features.snapshots import build_snapshot
from churn_risk.features.store import Store
from churn_risk.features.target import Target
from churn_risk.features.validation import CrmData, validate


def customer_features(store: Store, customer_ids: Iterable, as_of: str | pd.Timestamp,
                      cfg: FeatureConfig, target: Target, like: CrmData) -> pd.DataFrame:
    """Feature rows of `customer_ids` as of `as_of` (customers unknown to the store, or not
    customers then by the target's rule, are absent). `like`: the whole data set the model
    reads (its customer attributes and survey drivers mean the same here)."""
    raw = store.customer_tables(customer_ids)
    if "customers" not in raw:  # none of them is in the store
        return pd.DataFrame({"customer_id": pd.Series([], dtype=object)})
    for name, frame in like.tables.items():  # a table they have no record in still counts:
        raw.setdefault(name, frame.iloc[:0])  # its features are there, at their empty values
    typed = validate(raw, stored_keys={})
    crm = CrmData(typed.tables, attributes=like.attributes, survey_drivers=like.survey_drivers)
    return build_snapshot(prepare(crm), as_of, cfg, target).reset_index(drop=True)
