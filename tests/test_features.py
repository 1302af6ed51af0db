"""Lifecycle features, their metadata, population and labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn_risk.features.config import FeatureConfig
from churn_risk.features.contract import DRIVER_GROUPS
from churn_risk.features.labels import (
    TargetError,
    adoption_labels,
    churn_labels,
    data_end,
    population,
    resolve_target,
)
from churn_risk.features.lifecycle import feature_specs, prepare, to_timestamp
from churn_risk.features.snapshots import (
    ADOPTION_PREFIX,
    CHURN_LABEL,
    build_snapshot,
    build_training_frame,
    monthly_as_ofs,
)
from churn_risk.features.target import Target, TargetKind
from churn_risk.features.validation import validate

AS_OF = "2024-07-01"
CFG = FeatureConfig()
#: The demo data's own churn definition (they hold subscriptions).
TARGET = Target(kind=TargetKind.subscription_end, horizon_days=90)


@pytest.fixture(scope="module")
def snap(prep):
    return build_snapshot(prep, AS_OF, CFG, TARGET)


def test_every_feature_has_metadata(prep, snap):
    specs = feature_specs(prep)
    names = [s.name for s in specs]
    assert list(snap.columns) == ["customer_id", "as_of", *names]
    assert len(set(names)) == len(names)
    for spec in specs:
        assert spec.group in DRIVER_GROUPS, spec
        assert spec.label and spec.label[0].isupper(), spec
        assert spec.kind in ("numeric", "categorical")
        assert spec.monotone in (-1, 0, 1)
    groups = {s.group for s in specs}
    assert {"delivery", "service", "communication", "satisfaction", "price", "engagement",
            "products", "tenure", "value", "profile"} <= groups
    assert any(s.actionable for s in specs) and not all(s.actionable for s in specs)


def test_rows_are_keyed_on_customer_and_as_of(snap):
    assert not snap.duplicated(["customer_id", "as_of"]).any()
    assert (snap["as_of"] == pd.Timestamp(AS_OF)).all()


def test_counts_are_complete_numbers_and_recency_is_missing_without_history(snap):
    assert snap["late_deliveries_90d"].notna().all()
    assert (snap["late_deliveries_90d"] >= 0).all()
    no_purchase = snap["purchases_365d"] == 0
    # A customer with no purchase in the year may still have older ones, never a negative recency.
    assert (snap["days_since_last_purchase"].dropna() > 0).all()
    assert snap.loc[~no_purchase, "days_since_last_purchase"].notna().all()


def test_values_match_a_hand_count(raw_tables, snap):
    """Recompute a few features for one customer straight from the tables."""
    as_of = pd.Timestamp(AS_OF)
    row = snap.sort_values("late_deliveries_90d").iloc[-1]
    cid = row["customer_id"]
    d = raw_tables["deliveries"]
    d = d.loc[(d["customer_id"] == cid) & (d["promised_date"] < as_of)
              & (d["promised_date"] >= as_of - pd.Timedelta(days=90))]
    arrived = d["delivered_date"].where(d["delivered_date"] < as_of, as_of)
    assert row["deliveries_90d"] == len(d)
    assert row["late_deliveries_90d"] == int((arrived > d["promised_date"]).sum())
    t = raw_tables["transactions"]
    t = t.loc[(t["customer_id"] == cid) & (t["timestamp"] < as_of)
              & (t["timestamp"] >= as_of - pd.Timedelta(days=30))]
    purchases = t.loc[~t["is_return"].fillna(False).astype(bool)]
    assert row["purchases_30d"] == len(purchases)
    net = purchases["amount"].sum() - t.loc[t["is_return"].fillna(False).astype(bool),
                                             "amount"].sum()
    assert row["spend_30d"] == pytest.approx(net)
    tenure = (as_of - raw_tables["customers"].set_index("customer_id").loc[cid, "signup_date"])
    assert row["tenure_days"] == pytest.approx(tenure / pd.Timedelta(days=1))


def test_absent_optional_table_removes_its_features_only(raw_tables, snap):
    tables = {k: v for k, v in raw_tables.items() if k not in ("deliveries", "surveys")}
    without = build_snapshot(prepare(validate(tables)), AS_OF, CFG, TARGET)
    assert not [c for c in without.columns if "deliver" in c]
    assert "satisfaction_last" not in without
    shared = [c for c in without.columns]
    pd.testing.assert_frame_equal(without, snap[shared])


def test_declared_customer_attributes_become_features(raw_tables, prep, snap):
    from churn_risk.features.contract import TABLES

    extra = set(raw_tables["customers"].columns) - {c.name for c in TABLES["customers"].columns}
    assert extra, "the demo customers table carries extra attribute columns"
    assert set(prep.data.attributes) == extra
    assert "name" in raw_tables["customers"] and "name" not in prep.data.attributes  # never
    specs = {s.name: s for s in feature_specs(prep)}
    for name, kind in prep.data.attributes.items():
        assert specs[name].group == "profile"
        assert specs[name].kind == kind
        assert name in snap


def test_feature_set_is_configurable(prep):
    cfg = FeatureConfig(windows=(14, 60), recent_days=60)
    frame = build_snapshot(prep, AS_OF, cfg, TARGET)
    assert {"purchases_14d", "purchases_60d", "late_deliveries_60d"} <= set(frame.columns)
    assert "purchases_30d" not in frame
    with pytest.raises(ValueError, match="windows"):
        FeatureConfig(windows=(0,))


def test_subscription_churn_label_follows_the_horizon(prep):
    t = to_timestamp(AS_OF)
    assert resolve_target(prep) == TARGET
    customers = population(prep, t, TARGET)
    labels = churn_labels(prep, customers, t, TARGET)
    assert set(np.unique(labels)) <= {0.0, 1.0}
    subs = prep.data["subscriptions"]
    horizon_end = pd.Timestamp(AS_OF) + pd.Timedelta(days=90)
    active_at_end = subs.loc[(subs["start_date"] < horizon_end)
                             & (subs["end_date"].isna() | (subs["end_date"] >= horizon_end)),
                             "customer_id"]
    expected = (~customers["customer_id"].isin(set(active_at_end))).astype(float).to_numpy()
    np.testing.assert_array_equal(labels, expected)
    assert 0.01 < labels.mean() < 0.4


def test_labels_are_missing_when_the_horizon_is_incomplete(prep):
    end = pd.Timestamp(data_end(prep))
    late = to_timestamp((end - pd.Timedelta(days=30)).normalize())
    customers = population(prep, late, TARGET)
    assert np.isnan(churn_labels(prep, customers, late, TARGET)).all()
    assert all(np.isnan(v).all()
               for v in adoption_labels(prep, customers, late, CFG, TARGET).values())


def test_companys_own_labels_override_the_derived_ones(raw_tables):
    t = pd.Timestamp(AS_OF)
    ids = raw_tables["customers"]["customer_id"].iloc[:50]
    labels = pd.DataFrame({"customer_id": ids, "as_of": t, "churned": [True, False] * 25})
    prep = prepare(validate({**raw_tables, "labels": labels}))
    target = resolve_target(prep, horizon_days=90)
    assert target.kind is TargetKind.labels
    with pytest.raises(TargetError, match="horizon-days"):
        resolve_target(prep)  # the labels table does not say which period its flag covers
    frame = build_training_frame(prep, [AS_OF], CFG, target)
    assert len(frame) > 0 and set(frame["customer_id"]) <= set(ids)
    merged = frame[["customer_id", CHURN_LABEL]].merge(
        labels.rename(columns={"churned": "given"}), on="customer_id"
    )
    np.testing.assert_array_equal(merged[CHURN_LABEL].to_numpy(),
                                  merged["given"].astype(float).to_numpy())


def test_adoption_labels_skip_families_already_held(prep):
    t = to_timestamp(AS_OF)
    customers = population(prep, t, TARGET)
    labels = adoption_labels(prep, customers, t, CFG, TARGET)
    products = prep.data["products"]
    family_of = dict(zip(products["product_id"], products["family"], strict=True))
    assert set(labels) == set(family_of.values()) == set(prep.families)
    subs = prep.data["subscriptions"]
    ts = pd.Timestamp(AS_OF)
    active = subs.loc[(subs["start_date"] < ts) & (subs["end_date"].isna()
                                                   | (subs["end_date"] >= ts))]
    held = set(zip(active["customer_id"], active["product_id"].map(family_of), strict=True))
    ids = customers["customer_id"].to_numpy()
    for family, label in labels.items():
        is_held = np.array([(c, family) in held for c in ids])
        assert np.isnan(label[is_held]).all()
    eligible = np.concatenate([v[~np.isnan(v)] for v in labels.values()])
    assert 0 < eligible.mean() < 0.5


def test_training_frame_stacks_months_with_labels(prep):
    as_ofs = monthly_as_ofs(prep, CFG, TARGET)
    assert all(d.day == 1 for d in as_ofs)
    assert as_ofs == sorted(as_ofs)
    frame = build_training_frame(prep, as_ofs[-3:], CFG, TARGET)
    assert sorted(frame["as_of"].unique()) == as_ofs[-3:]
    assert frame[CHURN_LABEL].notna().all()
    assert any(c.startswith(ADOPTION_PREFIX) for c in frame.columns)
    assert not frame.duplicated(["customer_id", "as_of"]).any()
