"""Realised performance of matured predictions (`training.realised`), on the demo data.

The prediction log is the real one: the session's fitted model scores the demo portfolio at
several dates as `churn score` does (`score_portfolio`, `with_provenance`,
`batch_prediction_rows`), and the rows go through a store's `prediction_log` and back. The
realised labels the tests compare with are computed here from the raw subscriptions table (the
demo's target is `subscription_end`: no active subscription at the end of the horizon), not
through `features.labels`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churn_risk.features.store import Store
from churn_risk.jobs.score import batch_prediction_rows, with_provenance
from churn_risk.serving.batch import score_portfolio
from churn_risk.training.metrics import expected_calibration_error
from churn_risk.training.realised import (
    METRIC_COLUMNS,
    realised_figures,
    realised_performance,
)

MATURE = ("2024-06-01", "2024-08-01")  # + 90 days is before the demo data end (2024-12-31)
IMMATURE = "2024-11-01"


def independent_labels(raw: dict[str, pd.DataFrame], customer_ids, as_of, horizon_days: int
                       ) -> np.ndarray:
    """1.0 when the customer holds no subscription active at `as_of + horizon_days` (started
    before that moment, not ended before it), straight from the raw table."""
    at = pd.Timestamp(as_of) + pd.Timedelta(days=horizon_days)
    subs = raw["subscriptions"]
    active = (pd.to_datetime(subs["start_date"]) < at) & (
        subs["end_date"].isna() | (pd.to_datetime(subs["end_date"]) >= at))
    holders = set(subs.loc[active, "customer_id"])
    return np.array([0.0 if c in holders else 1.0 for c in customer_ids])


def independent_end(raw: dict[str, pd.DataFrame]) -> pd.Timestamp:
    """The newest event of the raw tables."""
    columns = {"transactions": "timestamp", "subscriptions": "start_date",
               "interactions": "timestamp", "tickets": "opened_at",
               "deliveries": "promised_date", "surveys": "timestamp", "campaigns": "timestamp"}
    return max(pd.to_datetime(raw[t][c]).max() for t, c in columns.items() if t in raw)


@pytest.fixture(scope="module")
def scored(fitted, demo_folder, prep) -> dict[str, pd.DataFrame]:
    """The portfolio scored by the session's model at each date, as `churn score` logs it."""
    out = {}
    for day in (*MATURE, IMMATURE):
        scores = score_portfolio(demo_folder, pd.Timestamp(day), fitted.bundle, "churn-risk",
                                 "1", prep=prep)
        out[day] = with_provenance(scores, demo_folder)
    return out


@pytest.fixture(scope="module")
def log(scored, tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the prediction log read back from a store, the scores of the re-run of the second
    mature date). That date is scored twice: the re-run, logged later with other
    probabilities, is the prediction that counts."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('realised') / 'store.db'}")
    for day in (*MATURE, IMMATURE):
        store.log_predictions(batch_prediction_rows(scored[day], "batch"))
    rerun = scored[MATURE[1]].copy()
    rng = np.random.default_rng(3)
    rerun["churn_probability"] = rng.permutation(rerun["churn_probability"].to_numpy())
    store.log_predictions(batch_prediction_rows(rerun, "batch"))
    frame = store.predictions()
    store.close()
    return frame, rerun


def expected_rows(raw, scored, rerun) -> pd.DataFrame:
    """The matured predictions that count, with their independent labels."""
    parts = []
    for day, scores in ((MATURE[0], scored[MATURE[0]]), (MATURE[1], rerun)):
        parts.append(pd.DataFrame({
            "customer_id": scores["customer_id"].to_numpy(),
            "month": day[:7],
            "churn_probability": scores["churn_probability"].to_numpy(dtype=float),
            "churned": independent_labels(raw, scores["customer_id"], day, 90),
        }))
    rows = pd.concat(parts, ignore_index=True)
    segment = raw["customers"].set_index("customer_id")["segment"]
    rows["segment"] = segment.reindex(rows["customer_id"]).fillna("(missing)").to_numpy()
    return rows


def test_realised_auc_equals_an_independent_computation(prep, raw_tables, scored, log):
    frame, rerun = log
    assert fitted_target_is_subscription_end(frame)
    assert pd.Timestamp(IMMATURE) + pd.Timedelta(days=90) > independent_end(raw_tables)
    assert pd.Timestamp(MATURE[1]) + pd.Timedelta(days=90) <= independent_end(raw_tables)

    perf = realised_performance(prep, frame)
    expected = expected_rows(raw_tables, scored, rerun)
    y, p = expected["churned"].to_numpy(), expected["churn_probability"].to_numpy()
    assert 0 < y.sum() < len(y)

    assert not perf.empty
    assert perf.overall["n"] == len(expected) == perf.counts["evaluated"]
    assert perf.overall["churners"] == int(y.sum())
    assert perf.overall["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert perf.overall["ece"] == pytest.approx(expected_calibration_error(y, p), abs=1e-12)
    assert perf.overall["churn_rate"] == pytest.approx(y.mean())
    assert perf.overall["mean_predicted"] == pytest.approx(p.mean())

    # the same customer, date and label row by row
    got = perf.rows.assign(month=perf.rows["month"].astype(str)).set_index(
        ["month", "customer_id"]).sort_index()
    want = expected.set_index(["month", "customer_id"]).sort_index()
    assert got.index.equals(want.index)
    np.testing.assert_array_equal(got["churned"].to_numpy(), want["churned"].to_numpy())
    assert (perf.rows["label_as_of"] == perf.rows["features_as_of"]).all()  # batch: a day

    by_month = perf.by_month.set_index("month")
    assert list(by_month.index) == [d[:7] for d in MATURE]
    for month, group in expected.groupby("month"):
        assert by_month.loc[month, "n"] == len(group)
        assert by_month.loc[month, "roc_auc"] == pytest.approx(
            roc_auc_score(group["churned"], group["churn_probability"]), abs=1e-12)

    by_segment = perf.by_segment.set_index("segment")
    assert set(by_segment.index) == set(expected["segment"])
    for segment, group in expected.groupby("segment"):
        assert by_segment.loc[segment, "n"] == len(group)
        if 0 < group["churned"].sum() < len(group):
            assert by_segment.loc[segment, "roc_auc"] == pytest.approx(
                roc_auc_score(group["churned"], group["churn_probability"]), abs=1e-12)
        else:
            assert by_segment.loc[segment, "roc_auc"] is None


def fitted_target_is_subscription_end(frame: pd.DataFrame) -> bool:
    """What `independent_labels` computes is this target's definition."""
    return set(frame["target"]) == {"subscription_end"} and set(frame["horizon_days"]) == {90}


def test_immature_predictions_are_left_out(prep, scored, log):
    frame, _ = log
    perf = realised_performance(prep, frame)
    assert IMMATURE[:7] not in set(perf.by_month["month"])
    assert perf.counts["immature"] == len(scored[IMMATURE])
    assert perf.next_maturity == pd.Timestamp(IMMATURE) + pd.Timedelta(days=90)
    assert "not yet matured" in perf.summary

    # judged at an earlier end, the second date has not matured either
    earlier = pd.Timestamp(MATURE[1]) + pd.Timedelta(days=89)
    perf = realised_performance(prep, frame, end=earlier)
    assert list(perf.by_month["month"]) == [MATURE[0][:7]]
    assert perf.counts["evaluated"] == len(scored[MATURE[0]])


def test_duplicates_count_once_and_the_newest_logged_counts(prep, raw_tables, scored, log):
    frame, rerun = log
    perf = realised_performance(prep, frame)
    assert perf.counts["logged"] == len(frame)
    assert perf.counts["superseded"] == len(rerun)
    second = perf.rows.loc[perf.rows["month"] == MATURE[1][:7]]
    assert second["customer_id"].is_unique and len(second) == len(rerun)
    newest = rerun.set_index("customer_id")["churn_probability"]
    np.testing.assert_allclose(second["churn_probability"].to_numpy(),
                               newest.reindex(second["customer_id"]).to_numpy())

    # a live score later the same day replaces the batch score of that customer; its horizon
    # starts after what its features saw: at the next midnight
    first = scored[MATURE[0]].iloc[:3]
    live = first.assign(features_as_of=f"{MATURE[0]}T15:30:00", churn_probability=0.5)
    later = pd.concat([frame, pd.DataFrame(batch_prediction_rows(live, "api")).assign(
        id=frame["id"].max() + 1 + np.arange(len(live)),
        logged_at=pd.to_datetime(frame["logged_at"]).max() + pd.Timedelta(seconds=1))],
        ignore_index=True)
    again = realised_performance(prep, later)
    assert again.counts["superseded"] == len(rerun) + len(live)
    assert again.counts["evaluated"] == perf.counts["evaluated"]
    june = again.rows.loc[again.rows["month"] == MATURE[0][:7]]
    replaced = june.set_index("customer_id").loc[first["customer_id"]]
    assert (replaced["churn_probability"] == 0.5).all()
    assert (replaced["features_as_of"] == pd.Timestamp(f"{MATURE[0]} 15:30")).all()
    next_day = pd.Timestamp(MATURE[0]) + pd.Timedelta(days=1)
    assert (replaced["label_as_of"] == next_day).all()
    np.testing.assert_array_equal(
        replaced["churned"].to_numpy(),
        independent_labels(raw_tables, first["customer_id"], next_day, 90))
    assert (june["label_as_of"] <= next_day).all()


def test_predictions_that_cannot_be_judged_are_counted_not_fatal(prep, log):
    frame, _ = log
    row = frame.iloc[0].to_dict()
    odd = pd.DataFrame([
        {**row, "id": 10**6, "customer_id": None},  # a what-if record
        {**row, "id": 10**6 + 1, "customer_id": "no-such-customer"},
        {**row, "id": 10**6 + 2, "features_as_of": "yesterday"},
        # the company's labels are the definition, but the demo has no labels table
        {**row, "id": 10**6 + 3, "target": "labels", "model_version": "2"},
    ])
    perf = realised_performance(prep, pd.concat([frame, odd], ignore_index=True))
    base = realised_performance(prep, frame)
    assert perf.counts["no_customer"] == 1
    assert perf.counts["unknown_customer"] == 1
    assert perf.counts["unreadable"] == 1
    assert perf.counts["unlabelled"] == 1
    assert perf.overall == base.overall

    one_model = realised_performance(prep, pd.concat([frame, odd]), model_version="1")
    assert one_model.overall == base.overall and one_model.counts["unlabelled"] == 0


def test_nothing_matured_says_so(prep, scored, log, tmp_path):
    frame, _ = log
    perf = realised_performance(prep, frame, end=MATURE[0])
    assert perf.empty and perf.counts["evaluated"] == 0
    assert perf.counts["immature"] == perf.counts["logged"] - perf.counts["superseded"]
    assert perf.summary.startswith("no matured prediction")
    assert perf.next_maturity == pd.Timestamp(MATURE[0]) + pd.Timedelta(days=90)
    assert perf.overall["n"] == 0 and perf.overall["roc_auc"] is None
    assert perf.by_month.empty and list(perf.by_month.columns) == ["month", *METRIC_COLUMNS]
    assert realised_figures(perf) == {}
    metrics = perf.mlflow_metrics()  # the counts, and no metric but n = churners = 0
    assert set(metrics) == {f"realised.count.{k}" for k in perf.counts} | {
        "realised.n", "realised.churners"}
    assert metrics["realised.n"] == metrics["realised.churners"] == 0.0

    # a store that never logged a prediction
    empty = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    nothing = realised_performance(prep, empty.predictions())
    empty.close()
    assert nothing.empty and nothing.counts["logged"] == 0 and nothing.next_maturity is None
    assert "no matured prediction" in nothing.summary


def test_one_class_month_has_no_auc(prep, log):
    frame, _ = log
    one_month = frame.loc[frame["features_as_of"] == MATURE[0]]
    perf = realised_performance(prep, one_month)
    stayed = perf.rows.loc[perf.rows["churned"] == 0, "customer_id"].astype(str)
    only_stayers = one_month.loc[one_month["customer_id"].isin(stayed)]
    perf = realised_performance(prep, only_stayers)
    assert perf.overall["roc_auc"] is None and perf.overall["top_decile_lift"] is None
    assert perf.overall["ece"] == pytest.approx(perf.overall["mean_predicted"])
    assert "undefined" in perf.summary


def test_figures_and_mlflow_metrics(prep, log, tmp_path):
    frame, _ = log
    perf = realised_performance(prep, frame)
    figures = realised_figures(perf, reference_auc=0.8)
    assert set(figures) == {"realised_by_month", "realised_calibration", "realised_gains"}
    for name, fig in figures.items():
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    metrics = perf.mlflow_metrics()
    assert metrics["realised.roc_auc"] == perf.overall["roc_auc"]
    assert f"realised.month.{MATURE[0][:7]}.roc_auc" in metrics
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    points = perf.reliability
    assert set(points["scope"]) == {"overall", "month", "segment"}
    overall = points.loc[points["scope"] == "overall"]
    assert overall["rows"].sum() == perf.counts["evaluated"]
