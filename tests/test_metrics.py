"""Evaluation metrics (hand-checked and against scikit-learn) and the evaluation figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

from churn_risk.features.contract import DRIVER_GROUPS
from churn_risk.training import plots
from churn_risk.training.metrics import (
    MISSING_SEGMENT,
    calibration_table,
    classification_metrics,
    expected_calibration_error,
    gains_curve,
    precision_at_k,
    reason_group_hit_rate,
    segment_auc,
    top_decile_lift,
)


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, model p, true p): a churn-like population (~7% churn) and an imperfect model."""
    rng = np.random.default_rng(3)
    n = 5000
    logit = -2.8 + rng.normal(0, 1.0, n)
    truth = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < truth).astype(int)
    p = 1 / (1 + np.exp(-(0.8 * logit - 0.4 + rng.normal(0, 0.5, n))))
    return y, p, truth


# ---------------------------------------------------------------------------- calibration


def test_ece_near_zero_when_calibrated_and_large_when_shifted():
    rng = np.random.default_rng(0)
    p = rng.beta(1, 12, 200_000)
    y = (rng.random(len(p)) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01
    assert expected_calibration_error(y, np.minimum(p + 0.2, 1.0)) > 0.1


def test_ece_and_calibration_table_by_hand():
    # 4 rows, 2 equal-frequency bins: {0.1, 0.2} and {0.3, 0.4}
    y = np.array([0, 1, 0, 0])
    p = np.array([0.1, 0.2, 0.3, 0.4])
    # bin 0: mean p 0.15, rate 0.5; bin 1: mean p 0.35, rate 0.0
    expected = 0.5 * abs(0.5 - 0.15) + 0.5 * abs(0.0 - 0.35)
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(expected)
    table = calibration_table(y, p, bins=2)
    assert list(table.columns) == ["bin", "mean_predicted", "observed_rate", "rows"]
    assert table["bin"].tolist() == [0, 1]
    assert table["mean_predicted"].tolist() == pytest.approx([0.15, 0.35])
    assert table["observed_rate"].tolist() == pytest.approx([0.5, 0.0])
    assert table["rows"].tolist() == [2, 2]


def test_ece_ignores_row_order_and_keeps_ties_in_one_bin():
    y = np.array([1, 0, 0, 1, 0, 0])
    p = np.array([0.2, 0.2, 0.2, 0.2, 0.6, 0.6])
    table = calibration_table(y, p, bins=3)
    assert table["rows"].sum() == 6
    assert set(table["mean_predicted"].round(6)) == {0.2, 0.6}  # ties never split
    reversed_ = expected_calibration_error(y[::-1], p[::-1], bins=3)
    assert expected_calibration_error(y, p, bins=3) == pytest.approx(reversed_)


def test_invalid_input_is_rejected():
    with pytest.raises(ValueError, match="lengths"):
        expected_calibration_error(np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError, match="0/1"):
        classification_metrics(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classification_metrics(np.array([0, 1]), np.array([0.1, np.nan]))


# ---------------------------------------------------------------------------- headline metrics


def test_classification_metrics_match_sklearn(scored):
    y, p, _ = scored
    m = classification_metrics(y, p)
    assert list(m) == [
        "roc_auc", "pr_auc", "log_loss", "brier", "ece", "ece_noise", "top_decile_lift",
        "positive_rate", "rows",
    ]
    assert all(isinstance(v, float) for v in m.values())
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert m["log_loss"] == pytest.approx(log_loss(y, p))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert m["ece"] == pytest.approx(expected_calibration_error(y, p))
    assert m["positive_rate"] == pytest.approx(y.mean())
    assert m["rows"] == len(y)
    assert m["top_decile_lift"] > 1.5  # an informative model


def test_classification_metrics_single_class_is_nan_not_error():
    m = classification_metrics(np.zeros(20, dtype=int), np.full(20, 0.1))
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
    assert math.isnan(m["top_decile_lift"])
    assert m["brier"] == pytest.approx(0.01)


def test_top_decile_lift_by_hand():
    n = 100
    p = np.linspace(1.0, 0.0, n)  # row i is the i-th highest score
    # 5% churn, all in the top decile: lift capped by 10 (the top decile's rate is 5/10)
    y = np.zeros(n, dtype=int)
    y[:5] = 1
    assert top_decile_lift(y, p) == pytest.approx(10.0)
    # 40% churn, the top decile all churners: lift = 1 / positive rate
    y = np.zeros(n, dtype=int)
    y[:40] = 1
    assert top_decile_lift(y, p) == pytest.approx(1 / 0.4)
    # 2 churners among the top 10 of 100 rows with 10 churners: (2/10) / (10/100) = 2
    y = np.zeros(n, dtype=int)
    y[[3, 7]] = 1
    y[50:58] = 1
    assert top_decile_lift(y, p) == pytest.approx(2.0)


def test_top_decile_lift_shares_ties_and_ignores_row_order():
    rng = np.random.default_rng(1)
    y = (rng.random(1000) < 0.1).astype(int)
    assert top_decile_lift(y, np.full(1000, 0.3)) == pytest.approx(1.0)
    p = np.round(rng.random(1000), 1)  # many ties
    order = rng.permutation(1000)
    assert top_decile_lift(y, p) == pytest.approx(top_decile_lift(y[order], p[order]))


def test_gains_curve_endpoints_and_monotone(scored):
    y, p, _ = scored
    contacted, captured = gains_curve(y, p)
    assert (contacted[0], captured[0]) == (0.0, 0.0)
    assert contacted[-1] == pytest.approx(1.0) and captured[-1] == pytest.approx(1.0)
    assert np.all(np.diff(contacted) > 0) and np.all(np.diff(captured) >= 0)
    # small hand example: scores 0.9, 0.8, 0.8, 0.1 with labels 1, 1, 0, 0 (tie block of two)
    contacted, captured = gains_curve(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.8, 0.1]))
    assert contacted.tolist() == pytest.approx([0, 0.25, 0.75, 1.0])
    assert captured.tolist() == pytest.approx([0, 0.5, 1.0, 1.0])


# ---------------------------------------------------------------------------- segments


def test_segment_auc_skips_tiny_segments_and_matches_sklearn(scored):
    y, p, _ = scored
    segments = np.where(np.arange(len(y)) % 2 == 0, "consumer", "small_business").astype(object)
    tiny = np.flatnonzero(y == 1)[:3]
    segments[tiny] = "enterprise"  # 3 positives only
    segments[np.flatnonzero(y == 0)[:50]] = "enterprise"
    segments[np.flatnonzero(y == 0)[50:60]] = None  # missing, and no positives
    result = segment_auc(y, p, pd.Series(segments, index=np.arange(len(y))[::-1]))
    assert set(result) == {"consumer", "small_business"}
    inside = segments == "consumer"
    assert result["consumer"] == pytest.approx(roc_auc_score(y[inside], p[inside]))
    assert "enterprise" in segment_auc(y, p, segments, min_positives=3)
    assert MISSING_SEGMENT not in segment_auc(y, p, segments, min_positives=0)  # one class


def test_segment_auc_reports_missing_segment():
    y = np.array([0, 1, 0, 1])
    p = np.array([0.1, 0.9, 0.2, 0.8])
    assert segment_auc(y, p, np.array([None, None, "a", "a"]), min_positives=1) == {
        MISSING_SEGMENT: 1.0,
        "a": 1.0,
    }


# ---------------------------------------------------------------------------- next product


def test_precision_at_k_by_hand():
    families = ["add_on", "hardware", "insurance", "premium_support"]
    labels = pd.DataFrame(
        [
            [1, 0, 0, 1],  # top 2 by score: add_on (1), insurance (0) -> 1/2
            [np.nan, 1, 0, np.nan],  # 2 eligible, k=2 -> hardware (1), insurance (0) -> 1/2
            [np.nan, np.nan, np.nan, 1],  # 1 eligible, adopted -> 1/1
            [0, 0, 0, 0],  # no adoption: left out
            [np.nan] * 4,  # nothing eligible: left out
        ],
        columns=families,
        index=["c1", "c2", "c3", "c4", "c5"],
    )
    scores = pd.DataFrame(
        [
            [0.9, 0.1, 0.5, 0.3],
            [0.99, 0.2, 0.8, 0.95],  # the highest scores are ineligible and must be skipped
            [0.5, 0.5, 0.5, 0.1],
            [0.9, 0.1, 0.5, 0.3],
            [0.9, 0.1, 0.5, 0.3],
        ],
        columns=families,
        index=labels.index,
    )
    assert precision_at_k(labels, scores, k=2) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    # k=1: c1 add_on 1, c2 insurance 0, c3 premium_support 1
    assert precision_at_k(labels, scores, k=1) == pytest.approx(2 / 3)
    # same result with shuffled columns and rows in scores (aligned on labels)
    shuffled = scores.loc[scores.index[::-1], families[::-1]]
    assert precision_at_k(labels, shuffled, k=2) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert math.isnan(precision_at_k(labels.loc[["c4", "c5"]], scores.loc[["c4", "c5"]]))
    with pytest.raises(ValueError, match="product families"):
        precision_at_k(labels, scores.drop(columns="add_on"))


# ---------------------------------------------------------------------------- explanations


def test_reason_group_hit_rate_by_hand():
    contributions = pd.DataFrame(
        {
            "delivery": [0.9, -0.2, 0.1, 0.0],
            "service": [0.5, 0.3, 0.2, 0.0],
            "price": [0.1, 0.4, -0.5, 0.0],
            "tenure": [-0.3, 0.6, 0.3, 0.0],
        }
    )
    # ranks: row0 delivery>service>price>tenure; row1 tenure>price>service>delivery;
    #        row2 tenure>service>delivery>price
    truth = ["delivery", "delivery", "price", None]
    assert reason_group_hit_rate(truth, contributions, k=1) == pytest.approx(1 / 3)
    assert reason_group_hit_rate(truth, contributions, k=3) == pytest.approx(1 / 3)
    assert reason_group_hit_rate(truth, contributions, k=4) == pytest.approx(1.0)
    assert reason_group_hit_rate(["value"] * 4, contributions, k=4) == 0.0  # not a column


# ---------------------------------------------------------------------------- figures


def _shap_example(n: int = 800) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(5)
    features = pd.DataFrame(
        {
            "tickets_open": rng.poisson(0.4, n).astype(float),
            "tenure_days": rng.gamma(2, 400, n),
            "satisfaction": np.where(rng.random(n) < 0.3, np.nan, rng.normal(7, 1.5, n)),
            "segment": rng.choice(["consumer", "small_business", "enterprise"], n),
        }
    )
    contributions = pd.DataFrame(
        {
            "tickets_open": 0.5 * (features["tickets_open"] - 0.4),
            "tenure_days": -0.0006 * (features["tenure_days"] - 800),
            "satisfaction": -0.3 * (features["satisfaction"].fillna(7) - 7),
            "segment": features["segment"].map({"consumer": 0.1, "small_business": -0.05,
                                                "enterprise": -0.4}),
        }
    )
    labels = {"tickets_open": "Open tickets", "tenure_days": "Days as a customer",
              "satisfaction": "Latest satisfaction score", "segment": "Segment"}
    return contributions, features, labels


def _shap_explanation():
    import shap

    contributions, features, labels = _shap_example()
    return shap.Explanation(
        values=contributions.to_numpy(), base_values=np.full(len(features), -2.5),
        data=features.to_numpy(dtype=object), display_data=features.to_numpy(dtype=object),
        feature_names=[labels[c] for c in contributions.columns],
    )


def _figures(scored) -> dict[str, Figure]:
    y, p, truth = scored
    rng = np.random.default_rng(2)
    groups = pd.DataFrame(rng.normal(0, 0.3, (len(y), len(DRIVER_GROUPS))),
                          columns=list(DRIVER_GROUPS))
    segments = pd.Series(rng.choice(["consumer", "small_business", "enterprise"], len(y)))
    return {
        "roc": plots.roc_figure(y, p, oracle=truth),
        "calibration": plots.calibration_figure(y, p),
        "gains": plots.gains_figure(y, p),
        "precision_recall": plots.precision_recall_figure(y, p),
        "shap_beeswarm": plots.shap_beeswarm_figure(_shap_explanation()),
        "shap_summary": plots.shap_importance_figure(_shap_explanation()),
        "key_drivers": plots.key_drivers_figure(groups, segments),
    }


def _line(ax, label_start: str):
    """The (x, y) data of the line of `ax` whose legend label starts with `label_start`."""
    lines = [line for line in ax.get_lines() if line.get_label().startswith(label_start)]
    assert len(lines) == 1, [line.get_label() for line in ax.get_lines()]
    return lines[0].get_xdata(), lines[0].get_ydata()


def test_every_figure_renders_with_titles(scored):
    import io

    for name, fig in _figures(scored).items():
        assert isinstance(fig, Figure), name
        assert any(ax.get_title() for ax in fig.axes), name
        fig.savefig(io.BytesIO(), format="png")  # renders without error


def test_roc_and_gains_figures_draw_the_metrics(scored):
    from sklearn.metrics import roc_curve

    y, p, truth = scored
    ax = plots.roc_figure(y, p, oracle=truth).axes[0]
    x, yy = _line(ax, "churn model")
    fpr, tpr, _ = roc_curve(y, p)
    np.testing.assert_allclose(x, fpr)
    np.testing.assert_allclose(yy, tpr)
    assert any(f"AUC = {roc_auc_score(y, p):.3f}" in t.get_text()
               for t in ax.get_legend().get_texts())

    left, right = plots.gains_figure(y, p).axes[:2]
    contacted, captured = gains_curve(y, p)
    x, yy = _line(left, "model")
    np.testing.assert_allclose(x, contacted)
    np.testing.assert_allclose(yy, captured)
    heights = [bar.get_height() for bar in right.patches]
    assert len(heights) == 10
    assert heights[0] == pytest.approx(top_decile_lift(y, p), rel=1e-6)
    # the lifts of the ten deciles average to 1 (every churner is in some decile)
    assert np.mean(heights) == pytest.approx(1.0)


def test_calibration_figure_plots_the_table_and_zooms_on_the_predictions(scored):
    y, p, _ = scored
    fig = plots.calibration_figure(y, p)
    top, bottom = fig.axes[:2]
    table = calibration_table(y, p)
    (points,) = [c for c in top.containers if c.get_label().startswith("model")]
    x, yy = points.lines[0].get_xdata(), points.lines[0].get_ydata()
    np.testing.assert_allclose(x, table["mean_predicted"])
    low, high = top.get_xlim()
    np.testing.assert_allclose(yy, np.maximum(table["observed_rate"], low))
    # scores span two orders of magnitude: log axes, the same limits on both, covering the
    # 0.5th-99.5th percentiles of the predictions and every bin's point
    assert top.get_xscale() == top.get_yscale() == "log"
    assert top.get_ylim() == pytest.approx((low, high))
    q_low, q_high = np.quantile(p, [0.005, 0.995])
    assert low <= q_low and high >= q_high
    assert low > 0 and high < 1
    positive = table["observed_rate"][table["observed_rate"] > 0]
    assert low <= min(table["mean_predicted"].min(), positive.min())
    assert high >= max(table["mean_predicted"].max(), table["observed_rate"].max())
    assert high <= 1.25 * max(q_high, table["observed_rate"].max()) + 1e-12
    # the diagonal spans the axes; the histogram counts every customer (tails in the edge bars)
    dx, dy = _line(top, "perfect calibration")
    np.testing.assert_allclose(dx, dy)
    assert dx.min() == pytest.approx(low) and dx.max() == pytest.approx(high)
    assert sum(bar.get_height() for bar in bottom.patches) == len(p)


def test_calibration_axes_are_not_the_unit_square_for_low_scores():
    rng = np.random.default_rng(4)
    p = rng.uniform(0.04, 0.28, 3000)  # all below 0.3, spanning a factor of 7: linear axes
    y = (rng.random(len(p)) < p).astype(int)
    top = plots.calibration_figure(y, p).axes[0]
    low, high = top.get_xlim()
    assert top.get_xscale() == "linear"
    assert (low, high) != (0.0, 1.0)
    assert low <= np.quantile(p, 0.005) and high >= np.quantile(p, 0.995)
    assert high < 0.4 and low > 0.0
    table = calibration_table(y, p)
    assert low <= table["observed_rate"].min() and high >= table["observed_rate"].max()
    assert top.get_ylim() == pytest.approx((low, high))
    # asked for log axes, they are log and still cover the predictions
    top = plots.calibration_figure(y, p, scale="log").axes[0]
    low, high = top.get_xlim()
    assert top.get_xscale() == "log"
    assert low <= np.quantile(p, 0.005) and high >= np.quantile(p, 0.995)


def test_threshold_table_matches_sklearn(scored):
    from sklearn.metrics import precision_score, recall_score

    y, p, _ = scored
    thresholds = (0.02, 0.05, 0.1, 0.2, 0.3)
    table = plots.threshold_table(y, p, thresholds, {0.1: "campaign"})
    assert table["threshold"].tolist() == list(thresholds)
    assert table["note"].tolist() == ["", "", "campaign", "", ""]
    for row in table.itertuples():
        flagged = p >= row.threshold
        assert row.flagged == flagged.sum()
        assert row.share_flagged == pytest.approx(flagged.mean())
        assert row.churners_flagged == y[flagged].sum()
        assert row.precision == pytest.approx(precision_score(y, flagged))
        assert row.recall == pytest.approx(recall_score(y, flagged))
        assert row.lift == pytest.approx(precision_score(y, flagged) / y.mean())
    # more flagged at lower thresholds; nobody flagged above every score: undefined, not 0
    assert table["flagged"].is_monotonic_decreasing
    empty = plots.threshold_table(y, p, [p.max() + 1e-9]).iloc[0]
    assert empty["flagged"] == 0 and math.isnan(empty["precision"]) and math.isnan(empty["lift"])
    assert empty["recall"] == 0.0


def test_precision_recall_figure_draws_sklearns_curve_and_the_thresholds(scored):
    from sklearn.metrics import precision_recall_curve

    y, p, _ = scored
    table = plots.threshold_table(y, p, (0.05, 0.1, 0.2))
    ax = plots.precision_recall_figure(y, p, table).axes[0]
    precision, recall, _ = precision_recall_curve(y, p)
    x, yy = _line(ax, "churn model")
    np.testing.assert_allclose(x, recall)
    np.testing.assert_allclose(yy, precision)
    assert any(f"{average_precision_score(y, p):.3f}" in t.get_text()
               for t in ax.get_legend().get_texts())
    x, yy = _line(ax, "thresholds")
    np.testing.assert_allclose(x, table["recall"])
    np.testing.assert_allclose(yy, table["precision"])
    _, baseline = _line(ax, "random")
    assert baseline[0] == pytest.approx(y.mean())


def _row_labels(ax) -> list[str]:
    """y tick labels, top row first (one per row: shap's bar chart puts two ticks on a row)."""
    rows: dict[float, str] = {}
    for position, label in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True):
        rows.setdefault(round(float(position), 4), label.get_text())
    return [rows[position] for position in sorted(rows, reverse=True)]


def test_shap_beeswarm_orders_features_by_mean_abs_shap():
    explanation = _shap_explanation()
    mean_abs = np.abs(explanation.values).mean(axis=0)
    expected = [explanation.feature_names[i] for i in np.argsort(-mean_abs)]
    ax = plots.shap_beeswarm_figure(explanation).axes[0]
    assert _row_labels(ax) == expected
    # one dot per customer and feature; the categorical feature (segment) is drawn grey
    dots = [c for c in ax.collections if len(c.get_offsets())]
    assert sum(len(c.get_offsets()) for c in dots) == explanation.values.size
    row = len(expected) - 1 - expected.index("Segment")
    segment = [c for c in dots if np.allclose(np.round(c.get_offsets()[:, 1]), row)]
    assert segment and all(
        np.allclose(c.get_facecolor()[:, :3], c.get_facecolor()[0, :3]) for c in segment)
    # at most max_display rows: the rest are summed in the last one
    ax = plots.shap_beeswarm_figure(explanation, max_display=3).axes[0]
    assert _row_labels(ax) == [*expected[:2], "Sum of 2 other features"]


def test_shap_summary_bars_are_the_mean_abs_shap():
    explanation = _shap_explanation()
    mean_abs = np.abs(explanation.values).mean(axis=0)
    order = np.argsort(-mean_abs)
    ax = plots.shap_importance_figure(explanation).axes[0]
    assert _row_labels(ax)[:len(order)] == [explanation.feature_names[i] for i in order]
    widths = sorted((bar.get_width() for bar in ax.patches), reverse=True)
    np.testing.assert_allclose(widths, mean_abs[order], rtol=1e-6)


def test_figures_use_no_pyplot_state(scored):
    import matplotlib
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    interactive = matplotlib.is_interactive()
    np.random.seed(11)
    expected = np.random.random()
    np.random.seed(11)
    _figures(scored)  # shap's plots draw through pyplot and shuffle with np.random
    assert plt.get_fignums() == before
    assert matplotlib.is_interactive() == interactive
    assert np.random.random() == expected


def test_key_drivers_figure_title_and_values():
    groups = pd.DataFrame({"service": [1.0, -3.0, 0.5], "price": [0.2, 0.2, -0.4]})
    fig = plots.key_drivers_figure(groups, pd.Series(["a", "a", "b"]))
    heatmap = fig.axes[0]
    assert heatmap.get_title() == "Key drivers by segment"
    texts = sorted(t.get_text() for t in heatmap.texts)
    # signed means: a: service -1.00, price +0.20; b: service +0.50, price -0.40 (true minus)
    assert texts == ["+0.20", "+0.50", "−0.40", "−1.00"]


def test_key_drivers_are_signed_on_a_scale_centred_at_zero_with_groups_in_words():
    """Users saw every cell red: unsigned means on a 0-based scale. A group that lowers the
    risk on average must be a blue cell, one that raises it red, white at 0."""
    groups = pd.DataFrame({"delivery": [0.6, 0.4, 0.5, 0.5], "tenure": [-0.5, -0.3, 0.0, 0.0]})
    fig = plots.key_drivers_figure(groups, pd.Series(["new", "new", "old", "old"]))
    heatmap, colorbar = fig.axes
    image = heatmap.get_images()[0]
    norm = image.norm
    assert norm.vmin == -norm.vmax and norm(0.0) == pytest.approx(0.5)
    rgba = image.to_rgba(image.get_array())
    # rows: new, old; columns: delivery (larger mean |contribution|), tenure
    red, green, blue = rgba[0, 1, :3]  # new customers: tenure -0.40, lowers the risk
    assert blue > red + 0.2 and blue > green, rgba[0, 1]
    red, green, blue = rgba[0, 0, :3]  # delivery +0.50 raises it
    assert red > blue + 0.2 and red > green, rgba[0, 0]
    assert np.allclose(rgba[1, 1, :3], 1.0, atol=0.1)  # old customers: tenure 0: white
    assert [t.get_text() for t in heatmap.get_xticklabels()] == ["Delivery", "Tenure"]
    words = " ".join([colorbar.get_ylabel(), colorbar.get_title(), colorbar.get_xlabel()])
    assert "raises\nrisk" in words and "lowers\nrisk" in words and "log-odds" in words


def test_money_and_count_axes_carry_the_currency_and_thousands_separators():
    """Users saw "1e6" offsets on money axes and bare counts."""
    rng = np.random.default_rng(3)
    value_at_risk = rng.gamma(2, 400_000, 60)
    fig = plots.value_at_risk_by_segment_figure(value_at_risk, rng.choice(["a", "b"], 60),
                                                currency="$")
    fig.canvas.draw()
    axis = fig.axes[0].xaxis
    ticks = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
    assert axis.get_offset_text().get_text() == ""
    assert all(t.startswith("$") for t in ticks), ticks
    assert any("M" in t for t in ticks) or any("," in t for t in ticks), ticks
    assert plots.money(1_250_000) == "€1.25M" and plots.money(35_412.4, "$") == "$35,412"

    p = rng.beta(1, 12, 20_000)
    fig = plots.score_distribution_figure(p, (("low", 0.0), ("high", 0.15)))
    fig.canvas.draw()
    counts = [t.get_text() for t in fig.axes[0].yaxis.get_ticklabels() if t.get_text()]
    assert any("," in t for t in counts), counts
    assert fig.axes[0].yaxis.get_offset_text().get_text() == ""


def test_risk_matrix_splits_risk_where_the_api_high_band_starts():
    """The matrix said "high risk (from 6.1%)" while the API's `high` band starts at 15%: the
    quadrants and their columns are the API's bands now."""
    from churn_risk.models.bundle import DEFAULT_RISK_BANDS, high_risk_from
    from churn_risk.models.portfolio import PortfolioPolicy, fit_policy

    split = high_risk_from(DEFAULT_RISK_BANDS)
    assert split == dict(DEFAULT_RISK_BANDS)["high"] == 0.15
    policy = fit_policy(np.full(4, 100.0), 0.9, 90, split)
    assert policy.risk_threshold == split
    quadrant = policy.quadrant(np.array([split - 1e-9, split]), np.full(2, 1e6))
    assert quadrant.tolist() == ["keep", "protect_first"]

    fig = plots.risk_matrix_figure(quadrant, np.array([10.0, 20.0]), DEFAULT_RISK_BANDS, 5e5)
    low, high = (t.get_text() for t in fig.axes[0].get_xticklabels())
    assert "Low risk, Medium risk" in low and "below 15.0%" in low
    assert "High risk, Very high risk" in high and "from 15.0%" in high
    assert "€500,000" in fig.axes[0].get_yticklabels()[0].get_text()
    with pytest.raises(ValueError, match="'high' band"):
        high_risk_from((("low", 0.0), ("elevated", 0.1)))
    assert PortfolioPolicy().action_label("none") == "No action"


def test_figures_survive_degenerate_input(tmp_path):
    y = np.zeros(50, dtype=int)
    p = np.full(50, 0.2)
    for fig in (plots.roc_figure(y, p), plots.calibration_figure(y, p), plots.gains_figure(y, p),
                plots.precision_recall_figure(y, p)):
        fig.savefig(tmp_path / "x.png")
    low, high = plots.calibration_figure(y, p).axes[0].get_xlim()
    assert low <= 0.0 < 0.2 < high < 1.0  # the observed rate (0) and the score (0.2)
