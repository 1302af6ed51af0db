"""Incremental equals rebuild: a customer's features built from only their records in the store
are bit-identical to their row in a full rebuild of the portfolio as of the same moment, after
new events were ingested, on SQLite and on PostgreSQL; and events at or after the moment are not
read (the point-in-time guarantee, carried over to the live path)."""

from __future__ import annotations

import pandas as pd
import pytest

from churn_risk.features.config import FeatureConfig
from churn_risk.features.labels import resolve_target, scoring_as_of
from churn_risk.features.lifecycle import prepare
from churn_risk.features.live import customer_features
from churn_risk.features.snapshots import build_snapshot
from churn_risk.features.store import Store
from churn_risk.features.validation import load_crm, validate

CFG = FeatureConfig()


@pytest.fixture
def store(store_url, raw_tables):
    with Store(store_url) as store:
        store.write(validate(raw_tables))
        yield store


def new_events(customers: list[int], at: pd.Timestamp, before: tuple = (50, 40, 30, 20)
               ) -> dict[str, pd.DataFrame]:
    """A ticket, a contact, a purchase and a survey for each customer, `before` minutes before
    `at` (negative: after)."""
    minutes = [at - pd.Timedelta(minutes=m) for m in before]
    rows = len(customers)
    return {
        "tickets": pd.DataFrame({"customer_id": customers, "opened_at": [minutes[0]] * rows,
                                 "category": ["billing"] * rows}),
        "interactions": pd.DataFrame({"customer_id": customers,
                                      "timestamp": [minutes[1]] * rows,
                                      "channel": ["contact_center"] * rows,
                                      "kind": ["complaint"] * rows}),
        "transactions": pd.DataFrame({"customer_id": customers, "timestamp": [minutes[2]] * rows,
                                      "amount": [42.5] * rows}),
        "surveys": pd.DataFrame({"customer_id": customers, "timestamp": [minutes[3]] * rows,
                                 "satisfaction": [2.0] * rows, "nps": [1.0] * rows}),
    }


def full_rebuild(store: Store, as_of, target) -> pd.DataFrame:
    return build_snapshot(prepare(load_crm(store.url)), as_of, CFG, target)


def rows_of(frame: pd.DataFrame, ids) -> pd.DataFrame:
    return (frame[frame["customer_id"].isin(ids)].sort_values("customer_id")
            .reset_index(drop=True))


def test_features_of_touched_customers_equal_a_full_rebuild(store):
    like = load_crm(store.url)
    prep = prepare(like)
    target = resolve_target(prep)
    as_of = scoring_as_of(prep) + pd.Timedelta(hours=10, minutes=30)  # "now", not a midnight
    current = build_snapshot(prep, as_of, CFG, target)["customer_id"]
    touched = current.sample(5, random_state=3).tolist()
    store.ingest(new_events(touched, as_of))

    full = full_rebuild(store, as_of, target)
    fresh = customer_features(store, touched, as_of, CFG, target, like)
    pd.testing.assert_frame_equal(fresh.sort_values("customer_id").reset_index(drop=True),
                                  rows_of(full, touched), check_exact=True)
    # The new events count: these customers' features moved.
    before = rows_of(build_snapshot(prep, as_of, CFG, target), touched)
    assert (before["tickets_90d"] < rows_of(full, touched)["tickets_90d"]).all()

    untouched = current[~current.isin(touched)].sample(40, random_state=4).tolist()
    pd.testing.assert_frame_equal(
        customer_features(store, untouched, as_of, CFG, target, like)
        .sort_values("customer_id").reset_index(drop=True),
        rows_of(full, untouched), check_exact=True)


def test_events_at_or_after_the_moment_are_not_read(store):
    like = load_crm(store.url)
    prep = prepare(like)
    target = resolve_target(prep)
    as_of = scoring_as_of(prep) + pd.Timedelta(hours=9)
    customer = build_snapshot(prep, as_of, CFG, target)["customer_id"].iloc[7]
    before = customer_features(store, [customer], as_of, CFG, target, like)
    exactly, later = (new_events([customer], as_of, before=(0, 0, 0, 0)),
                      new_events([customer], as_of, before=(-10, -20, -30, -40)))
    at_and_after = {name: pd.concat([exactly[name], later[name]], ignore_index=True)
                    for name in exactly}
    store.ingest(at_and_after)
    after = customer_features(store, [customer], as_of, CFG, target, like)
    pd.testing.assert_frame_equal(after, before, check_exact=True)
    later = customer_features(store, [customer], as_of + pd.Timedelta(hours=2), CFG, target,
                              like)
    assert later["tickets_90d"].iloc[0] == before["tickets_90d"].iloc[0] + 2


def test_customers_the_store_does_not_hold_have_no_row(store):
    like = load_crm(store.url)
    prep = prepare(like)
    target = resolve_target(prep)
    frame = customer_features(store, [123_456_789], scoring_as_of(prep), CFG, target, like)
    assert len(frame) == 0
