"""The churn definition as a named target, and company labels as companies have them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn_risk.features.config import FeatureConfig
from churn_risk.features.labels import (
    LAPSE_QUANTILE,
    TargetError,
    check_scoring_date,
    population,
    purchase_gaps,
    resolve_target,
    scoring_as_of,
    suggest_lapsed_after_days,
)
from churn_risk.features.lifecycle import prepare, to_timestamp
from churn_risk.features.snapshots import (
    CHURN_LABEL,
    NotEnoughHistory,
    build_training_frame,
    training_as_ofs,
)
from churn_risk.features.target import Target, TargetKind
from churn_risk.features.validation import validate
from churn_risk.training.config import TrainConfig
from churn_risk.training.split import split_by_time


def test_the_target_says_what_the_probability_is_of():
    target = Target(kind="no_purchase", horizon_days=90, lapsed_after_days=120)
    assert target.description == "chance of leaving within 90 days (no purchase in that time)"
    assert Target(kind="labels", horizon_days=273).period == "273 days, about 9 months"
    assert target.as_dict() == {"kind": "no_purchase", "horizon_days": 90,
                                 "lapsed_after_days": 120,
                                 "description": target.description}
    assert target.same_definition(Target(kind="no_purchase", horizon_days=90))
    assert not target.same_definition(Target(kind="no_purchase", horizon_days=60))
    with pytest.raises(ValueError):
        Target(kind="no_purchase", horizon_days=0)


def test_the_default_target_follows_the_data(prep, raw_tables):
    assert resolve_target(prep).kind is TargetKind.subscription_end
    assert resolve_target(prep).lapsed_after_days is None  # subscriptions decide who is a customer
    purchases_only = prepare(validate({"customers": raw_tables["customers"],
                                       "transactions": raw_tables["transactions"]}))
    target = resolve_target(purchases_only)
    assert target.kind is TargetKind.no_purchase
    assert target.lapsed_after_days == suggest_lapsed_after_days(purchases_only)
    with pytest.raises(TargetError, match="needs a subscriptions table"):
        resolve_target(purchases_only, "subscription_end")
    with pytest.raises(TargetError, match="needs a labels table"):
        resolve_target(prep, "labels", 30)
    with pytest.raises(TargetError, match="is not a target"):
        resolve_target(prep, "abandonment")


def test_the_lapse_rule_is_the_95th_percentile_of_purchase_gaps_in_whole_weeks(raw_tables):
    prep = prepare(validate({"customers": raw_tables["customers"],
                             "transactions": raw_tables["transactions"]}))
    gaps = purchase_gaps(prep)
    days = suggest_lapsed_after_days(prep)
    assert days % 7 == 0 and days - 7 < np.quantile(gaps, LAPSE_QUANTILE) <= days


def test_a_quiet_customer_is_scored_until_they_lapse():
    customers = pd.DataFrame({"customer_id": [1, 2, 3], "signup_date": ["2024-01-01"] * 3})
    tx = pd.DataFrame({"customer_id": [1, 2, 3], "amount": [1.0, 1.0, 1.0],
                       "timestamp": ["2024-02-01", "2024-04-20", "2024-06-25"]})
    prep = prepare(validate({"customers": customers, "transactions": tx}))
    as_of = to_timestamp("2024-07-01")
    target = Target(kind="no_purchase", horizon_days=30, lapsed_after_days=100)
    # 151, 72 and 6 days quiet: only the customer past the lapse rule is a former customer.
    assert list(population(prep, as_of, target)["customer_id"]) == [2, 3]
    one_horizon = target.model_copy(update={"lapsed_after_days": 30})  # the old rule
    assert list(population(prep, as_of, one_horizon)["customer_id"]) == [3]


@pytest.fixture(scope="module")
def labelled(raw_tables):
    """The company's labels at one mid-month date, for a subset of the customers, written as
    yes/no text."""
    customers = raw_tables["customers"]
    rng = np.random.default_rng(3)
    chosen = customers["customer_id"].sample(frac=0.7, random_state=3).to_numpy()
    labels = pd.DataFrame({"customer_id": chosen, "as_of": "2024-06-15",
                           "churned": np.where(rng.random(len(chosen)) < 0.25, "Yes", "no")})
    return {**raw_tables, "labels": labels}, chosen


def test_labels_at_one_date_train_on_exactly_the_labelled_customers(labelled):
    tables, chosen = labelled
    prep = prepare(validate(tables))
    target = resolve_target(prep, "labels", 30)
    as_ofs = training_as_ofs(prep, FeatureConfig(), target)
    assert as_ofs == [pd.Timestamp("2024-06-15")]  # any day, not only month starts
    frame = build_training_frame(prep, as_ofs, FeatureConfig(), target)
    signed_up = set(tables["customers"].loc[
        tables["customers"]["signup_date"] < pd.Timestamp("2024-06-15"), "customer_id"])
    assert set(frame["customer_id"]) == set(chosen) & signed_up  # never thinned by our rules
    assert frame[CHURN_LABEL].isin([0.0, 1.0]).all()
    expected = (tables["labels"].set_index("customer_id")["churned"] == "Yes").astype(float)
    assert (frame.set_index("customer_id")[CHURN_LABEL] == expected.reindex(
        frame["customer_id"])).all()

    split = split_by_time(frame, gap=1, holdout_share=0.2, seed=TrainConfig().seed)
    assert split.method == "customer_holdout" and "single as_of date" in split.description
    sides = [set(getattr(split, s)["customer_id"]) for s in ("train", "validation", "test")]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    rate = frame[CHURN_LABEL].mean()
    for side in ("train", "validation", "test"):  # stratified: each side keeps the churn rate
        assert abs(getattr(split, side)[CHURN_LABEL].mean() - rate) < 0.01
    assert set(split.holdout.loc[split.holdout["side"] == "test", "customer_id"]) == sides[2]


def test_labels_at_several_dates_split_by_time(raw_tables):
    customers = raw_tables["customers"]["customer_id"]
    dates = pd.date_range("2023-07-10", periods=16, freq="MS") + pd.Timedelta(days=9)
    rng = np.random.default_rng(0)
    labels = pd.DataFrame([(c, d, rng.random() < 0.2) for d in dates for c in customers[:300]],
                          columns=["customer_id", "as_of", "churned"])
    prep = prepare(validate({**raw_tables, "labels": labels}))
    target = resolve_target(prep, "labels", 30)
    frame = build_training_frame(prep, training_as_ofs(prep, FeatureConfig(), target),
                                 FeatureConfig(), target)
    split = split_by_time(frame, gap=1)
    assert split.method == "time" and split.holdout is None
    assert split.test["as_of"].min() == dates[-1]


def test_scoring_reaches_the_labels_date_and_stops_at_the_data_end(labelled, prep):
    tables, _ = labelled
    late = tables["labels"].assign(as_of="2025-02-01")  # after the last recorded event
    with_labels = prepare(validate({**tables, "labels": late}))
    assert scoring_as_of(with_labels) == pd.Timestamp("2025-02-01")
    check_scoring_date(with_labels, pd.Timestamp("2025-02-01"))
    with pytest.raises(ValueError, match="after the end of the data"):
        check_scoring_date(prep, scoring_as_of(prep) + pd.Timedelta(days=1))


def test_a_horizon_longer_than_the_history_is_refused_naming_the_dates(prep):
    target = Target(kind="subscription_end", horizon_days=400)
    with pytest.raises(NotEnoughHistory) as caught:
        training_as_ofs(prep, FeatureConfig(), target)
    message = str(caught.value)
    assert "400-day horizon" in message and "the data run from" in message
    shorter = training_as_ofs(prep, FeatureConfig(), target, first="2023-03-01")
    assert shorter and shorter[0] == pd.Timestamp("2023-03-01")  # the escape hatch
