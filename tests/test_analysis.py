"""The shap analysis of training (`training/analysis.py`): shap agrees with the bundle's TreeSHAP,
and every figure shows the numbers returned next to it."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import shap
from scipy.stats import spearmanr

from churn_risk.features.snapshots import CHURN_LABEL
from churn_risk.training.analysis import (
    TOLERANCE,
    labels_of,
    monotonicity_check,
    shap_analysis,
    shap_explanation,
)


@pytest.fixture(scope="module")
def fitted(fitted):
    """The session's FAST bundle (conftest), with its test rows."""
    return fitted.bundle, fitted.test


@pytest.fixture(scope="module")
def analysis(fitted):
    bundle, test = fitted
    before = plt.get_fignums()
    result = shap_analysis(bundle, test, sample_rows=300, interaction_rows=120)
    assert plt.get_fignums() == before  # shap drew through pyplot; nothing is left there
    return result


def _row_labels(ax) -> list[str]:
    """y tick labels, top row first (one per row)."""
    rows: dict[float, str] = {}
    for position, label in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True):
        rows.setdefault(round(float(position), 4), label.get_text())
    return [rows[position] for position in sorted(rows, reverse=True)]


# ---------------------------------------------------------------------------- shap = the bundle


def test_shap_tree_explainer_agrees_with_the_bundle(fitted):
    bundle, test = fitted
    rows = test.sample(200, random_state=1)
    ours = bundle.explain(rows)
    explainer = shap.TreeExplainer(bundle.churn)
    for model_input in (bundle.dmatrix(rows), bundle.array(rows)):  # categories as codes
        theirs = explainer(model_input)
        difference = np.abs(theirs.values - ours.contributions.to_numpy()).max()
        assert difference <= 1e-5, difference
        np.testing.assert_allclose(theirs.base_values, ours.base_value, atol=1e-5)
    assert explainer.expected_value == pytest.approx(ours.base_value, abs=1e-5)
    # and shap's values add up to the bundle's margin, hence its probability
    total = theirs.base_values + theirs.values.sum(axis=1)
    np.testing.assert_allclose(total, ours.margin, atol=1e-4)
    np.testing.assert_allclose(bundle.calibrator(total),
                               bundle.predict(rows)["churn_probability"], atol=1e-5)


def test_the_explanation_is_the_bundles_contributions(fitted):
    bundle, test = fitted
    rows = test.head(50)
    explanation = shap_explanation(bundle, rows)
    ours = bundle.explain(rows)
    np.testing.assert_array_equal(explanation.values, ours.contributions.to_numpy())
    np.testing.assert_array_equal(explanation.base_values, np.full(50, ours.base_value))
    np.testing.assert_array_equal(explanation.data, bundle.array(rows))
    assert explanation.feature_names == [s.label for s in bundle.specs] == labels_of(bundle)
    categorical = [j for j, s in enumerate(bundle.specs) if s.kind == "categorical"]
    assert categorical
    for j in categorical:  # people read category names
        names = set(explanation.display_data[:, j])
        assert names <= {*bundle.categories[bundle.specs[j].name], "(missing)"}


# ---------------------------------------------------------------------------- beeswarm, summary


def test_beeswarm_order_is_the_mean_abs_shap_order(fitted, analysis):
    bundle, test = fitted
    importance = analysis.importance
    sample_values = analysis.explanation.values
    expected = np.abs(sample_values).mean(axis=0)
    assert importance["mean_abs_shap"].is_monotonic_decreasing
    np.testing.assert_allclose(
        importance["mean_abs_shap"], expected[[bundle.feature_names.index(f)
                                               for f in importance["feature"]]])
    # the sample's contributions are the bundle's for those rows
    assert len(sample_values) == 300
    assert set(importance["feature"]) == set(bundle.feature_names)

    rows = _row_labels(analysis.figures["shap_beeswarm"].axes[0])
    assert rows[:-1] == importance["label"].head(len(rows) - 1).tolist()
    assert rows[-1] == f"Sum of {len(importance) - len(rows) + 1} other features"
    bars = analysis.figures["shap_summary"].axes[0]
    assert _row_labels(bars)[:19] == importance["label"].head(19).tolist()
    widths = [bar.get_width() for bar in sorted(bars.patches, key=lambda r: -r.get_y())]
    np.testing.assert_allclose(widths[:19], importance["mean_abs_shap"].head(19), rtol=1e-5)
    remaining = importance["mean_abs_shap"].iloc[19:].sum()
    assert widths[19] <= remaining + 1e-6  # the mean |sum| of the rest, at most the sum


# ---------------------------------------------------------------------------- dependence


def test_monotone_constraints_hold_and_the_dependence_plots_show_them(fitted, analysis):
    bundle, test = fitted
    constrained = [s.name for s in bundle.specs if s.monotone and s.kind != "categorical"]
    check = analysis.monotonicity.set_index("feature")
    assert sorted(check.index) == sorted(constrained)
    assert check["holds"].all() and check["pd_monotone"].all()
    assert (check["max_violation"] <= TOLERANCE).all()
    assert (check["rows_monotone_share"] == 1.0).all()
    # where the SHAP value varies, it goes the constrained way (rank correlation)
    rho = check["shap_spearman"].dropna()
    assert len(rho) and (np.sign(rho) == check.loc[rho.index, "constraint"]).all()

    # by hand for the most important constrained feature: margins on a grid, others fixed
    name = analysis.importance.loc[analysis.importance["monotone"] != 0, "feature"].iloc[0]
    j = bundle.feature_names.index(name)
    array = bundle.array(test.head(100))
    grid = np.unique(array[:, j][np.isfinite(array[:, j])])
    stacked = np.repeat(array, len(grid), axis=0)
    stacked[:, j] = np.tile(grid, len(array))
    import xgboost as xgb

    dm = xgb.DMatrix(stacked, feature_names=bundle.feature_names, enable_categorical=True,
                     feature_types=["c" if s.kind == "categorical" else "float"
                                    for s in bundle.specs])
    margins = bundle.churn_margin(dm).reshape(len(array), len(grid))
    assert (bundle.spec(name).monotone * np.diff(margins, axis=1) >= -TOLERANCE).all()

    # the plotted features: the top numeric ones, with a constrained one among them; the
    # partial-dependence line over the SHAP dots is monotone the constrained way
    plotted = [k.removeprefix("shap_dependence_") for k in analysis.figures
               if k.startswith("shap_dependence_")]
    numeric = [f for f in analysis.importance["feature"]
               if bundle.spec(f).kind != "categorical"]
    assert plotted[:6] == numeric[:6] and name in plotted
    for feature in plotted:
        curve = analysis.partial_dependence[feature]
        ax = analysis.figures[f"shap_dependence_{feature}"].axes[0]
        (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("partial")]
        np.testing.assert_allclose(line.get_xdata(), curve["value"])
        np.testing.assert_allclose(line.get_ydata(), curve["partial_dependence"])
        sign = bundle.spec(feature).monotone
        if sign:
            assert (sign * np.diff(curve["partial_dependence"]) >= -TOLERANCE).all()
            assert "holds" in ax.get_title()
        # the dots are the feature's SHAP values of the sample
        label = bundle.spec(feature).label
        dots = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections
                               if len(c.get_offsets())])
        k = analysis.explanation.feature_names.index(label)
        np.testing.assert_allclose(np.sort(dots), np.sort(analysis.explanation.values[:, k]),
                                   rtol=1e-6)


def test_the_monotone_check_catches_a_violated_constraint(fitted, analysis):
    """Claim the opposite constraint for a constrained feature: the check must fail."""
    bundle, test = fitted
    used = analysis.monotonicity.dropna(subset=["shap_spearman"])
    name = used.sort_values("shap_spearman", key=abs)["feature"].iloc[-1]
    flipped = dataclasses.replace(bundle, specs=[
        dataclasses.replace(s, monotone=-s.monotone) if s.name == name else s
        for s in bundle.specs])
    contributions = bundle.explain(test).contributions.to_numpy()
    result = monotonicity_check(flipped, test, contributions).set_index("feature")
    assert not result.loc[name, "holds"] and result.loc[name, "max_violation"] > 0.01
    assert not result.loc[name, "pd_monotone"]
    assert result.drop(index=name)["holds"].all()


# ---------------------------------------------------------------------------- interactions


def test_interactions_are_symmetric_and_add_up_to_the_contributions(fitted, analysis):
    bundle, test = fitted
    rows = test.iloc[analysis.interaction_rows]
    values = analysis.interaction_values
    assert values.shape == (120, len(bundle.specs) + 1, len(bundle.specs) + 1)
    np.testing.assert_allclose(values, values.transpose(0, 2, 1), atol=1e-5)
    # summed over one axis, the interaction values are the contributions (and the bias)
    explained = bundle.explain(rows)
    np.testing.assert_allclose(values.sum(axis=2)[:, :-1], explained.contributions.to_numpy(),
                               atol=1e-4)
    np.testing.assert_allclose(values.sum(axis=(1, 2)), explained.margin, atol=1e-4)
    # the same as a fresh pred_interactions on those rows
    fresh = bundle.churn.predict(bundle.dmatrix(rows), pred_interactions=True,
                                 validate_features=False)
    np.testing.assert_allclose(values, fresh, atol=1e-6)

    matrix = analysis.interaction_matrix
    np.testing.assert_allclose(matrix.to_numpy(), matrix.to_numpy().T, atol=1e-6)
    np.testing.assert_allclose(matrix.to_numpy(), np.abs(fresh[:, :-1, :-1]).mean(axis=0),
                               rtol=1e-5, atol=1e-7)
    pairs = analysis.interactions
    assert pairs["strength"].is_monotonic_decreasing
    assert len(pairs) == len(bundle.specs) * (len(bundle.specs) - 1) // 2
    top = pairs.iloc[0]
    a, b = (bundle.feature_names.index(top[k]) for k in ("feature_a", "feature_b"))
    assert top["strength"] == pytest.approx(np.abs(fresh[:, a, b] + fresh[:, b, a]).mean(),
                                            rel=1e-5)
    assert top["strength"] == pytest.approx(2 * matrix.iloc[a, b], rel=1e-5)

    bars = analysis.figures["shap_interactions"].axes[0]
    widths = [bar.get_width() for bar in sorted(bars.patches, key=lambda r: -r.get_y())]
    np.testing.assert_allclose(widths, pairs["strength"].head(10), rtol=1e-6)
    first = _row_labels(bars)[0]
    assert top["label_a"] in first and top["label_b"] in first


# ---------------------------------------------------------------------------- waterfalls


def test_waterfalls_of_the_highest_median_and_lowest_risk(fitted, analysis):
    bundle, test = fitted
    p = bundle.predict(test)["churn_probability"].to_numpy()
    w = analysis.waterfalls
    customers = w.groupby("customer", sort=False).first()
    assert list(customers.index) == ["highest", "median", "lowest"]
    assert customers.loc["highest", "churn_probability"] == pytest.approx(p.max())
    assert customers.loc["lowest", "churn_probability"] == pytest.approx(p.min())
    assert customers.loc["median", "churn_probability"] == pytest.approx(
        np.sort(p)[(len(p) - 1) // 2])
    for _, rows in w.groupby("customer"):
        first = rows.iloc[0]
        assert len(rows) == len(bundle.specs)
        assert first["customer_id"] == test["customer_id"].iloc[first["position"]]
        # base value + contributions = the margin, the calibrated margin = the probability
        assert first["base_value"] + rows["contribution"].sum() == pytest.approx(
            first["margin"], abs=1e-4)
        assert bundle.calibrator(np.array([first["margin"]]))[0] == pytest.approx(
            first["churn_probability"], abs=1e-6)
        assert rows["contribution"].abs().is_monotonic_decreasing
    for n, which in enumerate(["highest", "median", "lowest"], start=1):
        fig = analysis.figures[f"shap_waterfall_{n}"]
        first = w.loc[w["customer"] == which].iloc[0]
        assert f"{first['churn_probability']:.1%}" in fig.get_suptitle()
        # shap's waterfall labels its rows "value = label", the largest contribution on top
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
        assert any(first["label"] in label for label in labels)


def test_figure_names_and_tables(fitted, analysis):
    bundle, _ = fitted
    names = set(analysis.figures)
    assert {"shap_beeswarm", "shap_summary", "shap_interactions", "shap_waterfall_1",
            "shap_waterfall_2", "shap_waterfall_3"} <= names
    assert any(n.startswith("shap_dependence_") for n in names)
    tables = analysis.tables()
    assert set(tables) == {"shap_importance", "shap_monotonicity", "shap_interactions",
                           "shap_waterfalls"}
    assert len(tables["shap_interactions"]) == 30


# ---------------------------------------------------------------------------- wiring


def test_evaluate_returns_the_figures_and_tables_train_logs(fitted, project):
    import mlflow

    from churn_risk.jobs.train import log_evaluation
    from churn_risk.training.evaluate import evaluate
    from churn_risk.training.tracking import configure_tracking

    bundle, test = fitted
    evaluation = evaluate(bundle, test)
    table = evaluation.tables["thresholds"]
    y = test[CHURN_LABEL].to_numpy(dtype=int)
    p = bundle.predict(test)["churn_probability"].to_numpy()
    for row in table.itertuples():
        flagged = p >= row.threshold
        assert row.flagged == flagged.sum()
        if flagged.any():
            assert row.precision == pytest.approx(y[flagged].mean())
        assert row.recall == pytest.approx(y[flagged].sum() / y.sum())
    assert bundle.policy.risk_threshold in set(table["threshold"])
    assert "risk matrix" in table.loc[table["threshold"] == bundle.policy.risk_threshold,
                                      "note"].iloc[0]

    configure_tracking(project)
    try:
        with mlflow.start_run() as run:
            log_evaluation(evaluation, {})
        client = mlflow.MlflowClient()
        logged = pd.read_csv(mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="tables/thresholds.csv"))
        plots_logged = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        tables_logged = {a.path for a in client.list_artifacts(run.info.run_id, "tables")}
    finally:
        mlflow.set_tracking_uri(None)  # leave no URI pointing into a deleted tmp_path
        mlflow.set_registry_uri(None)
    assert {"plots/shap_beeswarm.png", "plots/shap_summary.png", "plots/shap_interactions.png",
            "plots/shap_waterfall_1.png", "plots/shap_waterfall_3.png",
            "plots/precision_recall.png", "plots/calibration.png"} <= plots_logged
    assert any(p.startswith("plots/shap_dependence_") for p in plots_logged)
    assert {"tables/thresholds.csv", "tables/shap_importance.csv",
            "tables/shap_interactions.csv", "tables/shap_monotonicity.csv",
            "tables/shap_waterfalls.csv"} <= tables_logged
    for column in ("threshold", "flagged", "precision", "recall", "lift"):
        np.testing.assert_allclose(logged[column], table[column], rtol=1e-9)


def test_spearman_sign_matches_the_table(analysis):
    """`shap_spearman` is the rank correlation of a feature and its SHAP values in the sample."""
    row = analysis.monotonicity.dropna(subset=["shap_spearman"]).iloc[0]
    k = analysis.explanation.feature_names.index(row["label"])
    x = analysis.explanation.data[:, k]
    known = np.isfinite(x)
    assert row["shap_spearman"] == pytest.approx(
        spearmanr(x[known], analysis.explanation.values[known, k]).statistic)
