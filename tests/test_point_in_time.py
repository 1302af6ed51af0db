"""Point-in-time correctness: no feature reads data at or after its as-of date.

Each test rebuilds the features from altered tables and compares them bit for bit with the
features of the untouched tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn_risk.features.config import FeatureConfig
from churn_risk.features.contract import TABLES
from churn_risk.features.lifecycle import prepare
from churn_risk.features.snapshots import build_snapshot
from churn_risk.features.target import Target, TargetKind
from churn_risk.features.validation import validate

# A month start and an awkward mid-month date with a time of day.
AS_OFS = ["2024-07-01", "2024-04-17 13:30"]
EVENT_TABLES = [
    name for name, t in TABLES.items()
    if t.event_time and name not in ("customers", "labels")
]
# Columns that describe a later state of an earlier record.
STATE_COLUMNS = {
    "subscriptions": ["end_date"],
    "tickets": ["closed_at"],
    "deliveries": ["delivered_date"],
}


#: Who is a customer follows the target's rule; the demo data hold subscriptions.
TARGET = Target(kind=TargetKind.subscription_end, horizon_days=90)


def snapshot(tables: dict[str, pd.DataFrame], as_of: str) -> pd.DataFrame:
    return build_snapshot(prepare(validate(tables)), as_of, FeatureConfig(), TARGET)


def copy(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {name: frame.copy() for name, frame in tables.items()}


def assert_identical(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a = a.sort_values("customer_id").reset_index(drop=True)
    b = b.sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.fixture(scope="module", params=AS_OFS)
def as_of(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def baseline(raw_tables, as_of) -> pd.DataFrame:
    return snapshot(raw_tables, as_of)


def future_mask(frame: pd.DataFrame, table: str, as_of: str) -> np.ndarray:
    return (frame[TABLES[table].event_time] >= pd.Timestamp(as_of)).to_numpy()


def test_baseline_is_not_trivial(baseline):
    assert len(baseline) > 300
    assert baseline.filter(like="late_deliveries").to_numpy().sum() > 0
    assert baseline.filter(like="tickets").to_numpy().sum() > 0


def with_future_records(tables: dict[str, pd.DataFrame], table: str, as_of: str,
                        n: int = 40) -> dict[str, pd.DataFrame]:
    """Copies of past records moved to at or after as_of, so every table has future records
    whatever the demo's calendar (campaigns, for one, are rare)."""
    tables = copy(tables)
    frame = tables[table]
    time_col = TABLES[table].event_time
    past = frame.loc[frame[time_col] < pd.Timestamp(as_of)].tail(n).copy()
    shift = pd.Timestamp(as_of) - past[time_col].min()
    for column in past.columns:
        if pd.api.types.is_datetime64_any_dtype(past[column]):
            past[column] = past[column] + shift
    if "transaction_id" in past:
        past["transaction_id"] = frame["transaction_id"].max() + 1 + np.arange(len(past))
    tables[table] = pd.concat([frame, past], ignore_index=True)
    return tables


@pytest.mark.parametrize("table", EVENT_TABLES)
def test_deleting_records_at_or_after_as_of_changes_nothing(raw_tables, baseline, as_of, table):
    tables = with_future_records(raw_tables, table, as_of)
    assert_identical(snapshot(tables, as_of), baseline)
    mask = future_mask(tables[table], table, as_of)
    assert mask.sum() >= 40
    tables[table] = tables[table].loc[~mask]
    assert_identical(snapshot(tables, as_of), baseline)


@pytest.mark.parametrize("table", EVENT_TABLES)
def test_changing_records_at_or_after_as_of_changes_nothing(raw_tables, baseline, as_of, table):
    """Scramble every column of every future record: other customers, values, flags, dates."""
    rng = np.random.default_rng(0)
    tables = with_future_records(raw_tables, table, as_of)
    frame = tables[table]
    mask = future_mask(frame, table, as_of)
    future = frame.loc[mask].copy()
    n = len(future)
    shift = pd.to_timedelta(rng.integers(1, 40, n), unit="D")  # one shift per row keeps order
    for column in future.columns:
        values = future[column]
        if column == "customer_id":
            future[column] = rng.choice(tables["customers"]["customer_id"].to_numpy(), n)
        elif pd.api.types.is_datetime64_any_dtype(values):
            # Move dates later (never earlier than as_of for the event time).
            future[column] = values + shift
        elif pd.api.types.is_bool_dtype(values):
            future[column] = ~values.fillna(False).astype(bool)
        elif pd.api.types.is_numeric_dtype(values) and column not in ("transaction_id",):
            future[column] = (values.fillna(1) * 3 + 1).clip(upper=10) if table == "surveys" \
                else values.fillna(1) * 3 + 1
        elif column in ("channel",):
            future[column] = rng.choice(["web", "sales", "service"], n)
        elif column == "group":
            future[column] = np.where(values == "treatment", "control", "treatment")
    tables[table] = pd.concat([frame.loc[~mask], future], ignore_index=True)
    assert_identical(snapshot(tables, as_of), baseline)


@pytest.mark.parametrize("table,column", [(t, c) for t, cs in STATE_COLUMNS.items() for c in cs])
def test_later_state_of_earlier_records_is_not_read(raw_tables, baseline, as_of, table, column):
    """A ticket closed (a delivery arriving, a subscription ending) after as_of was still open
    (on its way, active) at as_of, whatever the later date says."""
    tables = copy(raw_tables)
    frame = tables[table]
    later = (frame[column] >= pd.Timestamp(as_of)).to_numpy()
    assert later.any()
    variant_a = frame.copy()
    variant_a.loc[later, column] = pd.NaT
    tables[table] = variant_a
    assert_identical(snapshot(tables, as_of), baseline)
    variant_b = frame.copy()
    variant_b.loc[later, column] = variant_b.loc[later, column] + pd.Timedelta(days=100)
    tables[table] = variant_b
    assert_identical(snapshot(tables, as_of), baseline)


def test_campaign_responses_inside_the_response_window_are_not_read(raw_tables, baseline, as_of):
    tables = copy(raw_tables)
    frame = tables["campaigns"]
    ts = pd.Timestamp(as_of)
    recent = ((frame["timestamp"] < ts) & (frame["timestamp"] > ts - pd.Timedelta(days=30)))
    frame.loc[recent.to_numpy(), "responded"] = ~frame.loc[recent.to_numpy(), "responded"].fillna(
        False
    ).astype(bool)
    assert_identical(snapshot(tables, as_of), baseline)


def test_records_exactly_at_as_of_are_not_read(raw_tables, baseline, as_of):
    tables = copy(raw_tables)
    someone = baseline["customer_id"].iloc[0]
    ts = pd.Timestamp(as_of)
    tx = tables["transactions"]
    extra = tx.iloc[:1].copy()
    extra["customer_id"] = someone
    extra["timestamp"] = ts
    extra["transaction_id"] = tx["transaction_id"].max() + 1
    tables["transactions"] = pd.concat([tx, extra], ignore_index=True)
    tk = tables["tickets"]
    ticket = tk.iloc[:1].copy()
    ticket["customer_id"] = someone
    ticket["opened_at"] = ts
    ticket["closed_at"] = pd.NaT
    tables["tickets"] = pd.concat([tk, ticket], ignore_index=True)
    assert_identical(snapshot(tables, as_of), baseline)


def row_of(frame: pd.DataFrame, customer_id) -> pd.Series:
    return frame.loc[frame["customer_id"] == customer_id].iloc[0]


def test_records_just_before_as_of_change_the_expected_features(raw_tables, baseline, as_of):
    ts = pd.Timestamp(as_of)
    just_before = ts - pd.Timedelta(seconds=1)
    customer = baseline["customer_id"].iloc[len(baseline) // 2]
    before = row_of(baseline, customer)
    tables = copy(raw_tables)

    tx = tables["transactions"]
    purchase = tx.loc[~tx["is_return"].fillna(False).astype(bool)].iloc[:1].copy()
    purchase["customer_id"] = customer
    purchase["timestamp"] = just_before
    purchase["amount"] = 123.0
    purchase["transaction_id"] = tx["transaction_id"].max() + 1
    tables["transactions"] = pd.concat([tx, purchase], ignore_index=True)

    dl = tables["deliveries"]
    late = dl.iloc[:1].copy()
    late["customer_id"] = customer
    late["promised_date"] = ts - pd.Timedelta(days=3)
    late["delivered_date"] = pd.NaT  # not arrived by as_of: late and overdue
    late["damaged"] = pd.NA
    tables["deliveries"] = pd.concat([dl, late], ignore_index=True)

    tk = tables["tickets"]
    ticket = tk.iloc[:1].copy()
    ticket["customer_id"] = customer
    ticket["opened_at"] = just_before
    ticket["closed_at"] = pd.NaT
    tables["tickets"] = pd.concat([tk, ticket], ignore_index=True)

    sv = tables["surveys"]
    survey = sv.iloc[:1].copy()
    survey["customer_id"] = customer
    survey["timestamp"] = just_before
    survey["satisfaction"] = 1.0
    tables["surveys"] = pd.concat([sv, survey], ignore_index=True)

    after = row_of(snapshot(tables, as_of), customer)
    assert after["purchases_30d"] == before["purchases_30d"] + 1
    assert after["spend_30d"] == pytest.approx(before["spend_30d"] + 123.0)
    assert after["days_since_last_purchase"] == pytest.approx(1 / 86400)
    assert after["late_deliveries_90d"] == before["late_deliveries_90d"] + 1
    assert after["deliveries_overdue"] == before["deliveries_overdue"] + 1
    assert after["tickets_open"] == before["tickets_open"] + 1
    assert after["tickets_90d"] == before["tickets_90d"] + 1
    assert after["satisfaction_last"] == 1.0
    # Everyone else is untouched.
    others = baseline.loc[baseline["customer_id"] != customer]
    rebuilt = snapshot(tables, as_of)
    assert_identical(rebuilt.loc[rebuilt["customer_id"] != customer], others)


def test_customers_already_gone_are_excluded(raw_tables, baseline, as_of):
    ts = pd.Timestamp(as_of)
    subs = raw_tables["subscriptions"]
    active = (subs["start_date"] < ts) & (subs["end_date"].isna() | (subs["end_date"] >= ts))
    active_ids = set(subs.loc[active, "customer_id"])
    signed_up = raw_tables["customers"].loc[raw_tables["customers"]["signup_date"] < ts]
    gone = set(signed_up["customer_id"]) - active_ids
    assert gone, "the demo data should hold customers who left before as_of"
    assert set(baseline["customer_id"]) == active_ids & set(signed_up["customer_id"])

    # Ending a customer's last subscriptions just before as_of removes them from scoring.
    customer = baseline["customer_id"].iloc[0]
    tables = copy(raw_tables)
    s = tables["subscriptions"]
    theirs = (s["customer_id"] == customer) & active
    s.loc[theirs.to_numpy(), "end_date"] = ts - pd.Timedelta(days=1)
    assert customer not in set(snapshot(tables, as_of)["customer_id"])


def test_customers_who_sign_up_at_or_after_as_of_are_not_scored(baseline, raw_tables, as_of):
    customers = raw_tables["customers"].set_index("customer_id")
    signup = customers.loc[baseline["customer_id"], "signup_date"]
    assert (signup < pd.Timestamp(as_of)).all()
