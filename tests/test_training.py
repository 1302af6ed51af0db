"""Training: time split, the bundle, calibration, behaviour, quality bars, promotion."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from churn_risk.errors import UsageError
from churn_risk.features.labels import resolve_target
from churn_risk.features.target import TargetKind
from churn_risk.jobs.common import prepared
from churn_risk.jobs.train import run as train
from churn_risk.models.bundle import Calibrator, ChurnBundle, high_risk_from
from churn_risk.training.config import SearchSpace, TrainConfig
from churn_risk.training.fit import fit_calibrator
from churn_risk.training.split import split_by_time


@pytest.fixture(scope="module")
def target(prep):
    """The demo data's own churn definition: no active subscription at the end of 90 days."""
    chosen = resolve_target(prep)
    assert chosen.kind is TargetKind.subscription_end and chosen.horizon_days == 90
    return chosen


@pytest.fixture(scope="module")
def training_frame(fitted, target) -> pd.DataFrame:
    assert fitted.data.target == target
    return fitted.data.frame


# ---------------------------------------------------------------------------- time split


def test_split_is_by_time_with_gaps(training_frame):
    split = split_by_time(training_frame, gap=3)
    assert split.method == "time"
    train_dates = pd.to_datetime(split.train["as_of"])
    val_date = pd.to_datetime(split.validation["as_of"]).unique()
    test_date = pd.to_datetime(split.test["as_of"]).unique()
    assert len(val_date) == 1 and len(test_date) == 1
    # No test row is earlier than any training row; labels never overlap across the sides.
    assert train_dates.max() + pd.DateOffset(months=3) <= val_date[0]
    assert val_date[0] + pd.DateOffset(months=3) <= test_date[0]
    assert test_date[0] == pd.to_datetime(training_frame["as_of"]).max()
    assert len(split.train) + len(split.validation) + len(split.test) <= len(training_frame)


def test_a_single_snapshot_falls_back_to_a_customer_holdout(training_frame):
    one = training_frame.loc[training_frame["as_of"] == training_frame["as_of"].max()]
    split = split_by_time(one, gap=3)
    assert split.method == "customer_holdout"
    assert "customer-level holdout" in split.description and "single as_of date" in \
        split.description
    sides = [set(s["customer_id"]) for s in (split.train, split.validation, split.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert sum(map(len, sides)) == one["customer_id"].nunique()
    # The held-out customers travel with the split (and the model), side by side.
    held = split.holdout.set_index("customer_id")["side"]
    assert set(held.loc[held == "test"].index) == sides[2]
    assert set(held.loc[held == "validation"].index) == sides[1]


# ---------------------------------------------------------------------------- the bundle


def test_bundle_round_trip_gives_identical_scores(fitted, tmp_path):
    bundle, split = fitted.bundle, fitted.split
    loaded = ChurnBundle.load(bundle.save(tmp_path / "bundle"))
    pd.testing.assert_frame_equal(loaded.predict(split.test), bundle.predict(split.test))
    assert loaded.feature_config == bundle.feature_config
    assert loaded.target == bundle.target


def test_a_model_with_a_risk_split_of_its_own_loads_with_the_api_high_band(fitted, tmp_path):
    """Models trained before the matrix split at the `high` band kept a quantile (e.g. 6.1%):
    loaded, their quadrants call high risk what the API's `risk_band` calls high."""
    bundle = fitted.bundle
    assert bundle.policy.risk_threshold == high_risk_from(bundle.risk_bands)
    old = dataclasses.replace(bundle, policy=dataclasses.replace(bundle.policy,
                                                                 risk_threshold=0.061))
    loaded = ChurnBundle.load(old.save(tmp_path / "bundle"))
    assert loaded.policy.risk_threshold == high_risk_from(bundle.risk_bands)


def test_explanations_add_up_to_the_model_output(fitted):
    bundle, split = fitted.bundle, fitted.split
    rows = split.test.head(200)
    explanation = bundle.explain(rows)
    total = explanation.base_value + explanation.contributions.sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, explanation.margin, atol=1e-4)
    np.testing.assert_allclose(bundle.calibrator(total),
                               bundle.predict(rows)["churn_probability"], atol=1e-6)
    np.testing.assert_allclose(explanation.groups.sum(axis=1),
                               explanation.contributions.sum(axis=1), atol=1e-6)
    reasons = bundle.top_reasons(rows.head(3), explanation, top_k=4)
    assert all(len(r) == 4 for r in reasons)
    first = reasons[0]
    assert [r["contribution"] for r in first] == sorted((r["contribution"] for r in first),
                                                        reverse=True)
    assert {"feature", "label", "driver_group", "value", "contribution", "direction",
            "actionable"} <= set(first[0])


def test_unseen_category_levels_are_missing_not_errors(fitted):
    bundle, split = fitted.bundle, fitted.split
    rows = split.test.head(5).copy()
    rows["segment"] = "a segment never seen"
    scores = bundle.predict(rows)
    assert scores["churn_probability"].between(0, 1).all()
    with pytest.raises(KeyError, match="tenure_days"):
        bundle.predict(rows.drop(columns=["tenure_days"]))


def test_calibrator_choice_is_out_of_fold():
    rng = np.random.default_rng(0)
    margin = rng.normal(-2, 1, 20_000)
    y = rng.random(20_000) < 1 / (1 + np.exp(-(0.5 * margin - 1)))  # mis-scaled margins
    calibrator, losses = fit_calibrator(margin, y)
    assert calibrator.method in ("platt", "isotonic")
    assert set(losses) == {"calibration_logloss_isotonic", "calibration_logloss_platt"}
    p = calibrator(margin)
    assert abs(p.mean() - y.mean()) < 0.01  # calibrated in the large
    assert Calibrator.from_dict(calibrator.to_dict())(margin[:10]).tolist() == p[:10].tolist()


# ---------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("feature", ["tickets_open", "late_deliveries_90d",
                                     "tickets_closed_unresolved_90d", "damaged_deliveries_90d"])
def test_more_problems_never_lower_churn_risk(fitted, feature):
    """All else equal, more unresolved tickets or late deliveries never lower the risk."""
    bundle, split = fitted.bundle, fitted.split
    rows = split.test.head(300)
    previous = bundle.predict(rows.assign(**{feature: 0.0}))["churn_probability"].to_numpy()
    for value in (1.0, 2.0, 3.0, 5.0, 8.0):
        current = bundle.predict(rows.assign(**{feature: value}))["churn_probability"].to_numpy()
        assert (current >= previous - 1e-12).all(), f"{feature}={value} lowered some risks"
        previous = current


# ---------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_promotion_refuses_a_worse_challenger_and_takes_a_better_one(demo_folder, project):
    from churn_risk.training.evaluate import HoldoutEvaluator
    from churn_risk.training.registry import champion_history, champion_version
    from churn_risk.training.registry import promote as run_promotion

    weak = TrainConfig(search=SearchSpace(max_depth=(1,), num_boost_round=2,
                                          early_stopping_rounds=1), propensity=False,
                        figures=False)
    good = TrainConfig(search=SearchSpace(max_depth=(3,), num_boost_round=200),
                       propensity=False, figures=False)
    evaluate_uri = HoldoutEvaluator(prepared(demo_folder))

    def promote(evaluate, **kwargs):
        return run_promotion(evaluate, target_of=evaluate.target_of, begin=evaluate.begin,
                             **kwargs)

    assert train(demo_folder, weak, project_dir=project).version == "1"
    first = promote(evaluate_uri)
    assert first.promoted and champion_version() == "1"

    assert train(demo_folder, good, project_dir=project).version == "2"
    better = promote(evaluate_uri)
    assert better.promoted and champion_version() == "2", better.reason

    assert train(demo_folder, weak, project_dir=project).version == "3"
    worse = promote(evaluate_uri)
    assert not worse.promoted and champion_version() == "2"
    assert "AUC" in worse.reason

    forced = promote(evaluate_uri, force=True)
    assert forced.forced and champion_version() == "3"
    assert [(h["version"], h["forced"]) for h in champion_history()] == [
        ("1", False), ("2", False), ("3", True)]


@pytest.mark.slow
def test_mlflow_run_train_entry_point(demo_folder, project):
    """`mlflow run . -e train --env-manager local` trains, logs into the project run, and
    registers a version."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    uri = f"sqlite:///{project / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=uri,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    (project / "fast.toml").write_text("figures = false\n[search]\nmax_depth = [3]\n")
    ran = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(repo), "-e", "train",
         "-P", f"data={demo_folder}", "-P", f"config={project / 'fast.toml'}",
         "--env-manager", "local", "--experiment-name", "churn-risk"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions("name = 'churn-risk'")
    assert len(versions) == 1
    run = client.get_run(versions[0].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags.get("mlflow.project.entryPoint") == "train"
    assert "test_roc_auc" in run.data.metrics
    # the run says what ran, and where it is filed
    assert run.info.run_name == f"train subscription_end 90d on {demo_folder.name}"
    assert client.get_experiment(run.info.experiment_id).name == "churn-risk"
    assert run.data.tags["target"] == "subscription_end, 90 days"


def test_config_file_sets_any_field_and_rejects_unknown_ones(tmp_path):
    from churn_risk.training.config import load_config

    path = tmp_path / "train.toml"
    path.write_text('propensity = false\n[search]\nmax_depth = [3, 4]\n'
                    '[features]\nrecent_days = 60\n[target]\nhorizon_days = 60\n')
    cfg = load_config(path)
    assert cfg.propensity is False and cfg.search.max_depth == (3, 4)
    assert cfg.features.recent_days == 60 and cfg.features.windows == (30, 90, 180, 365)
    assert cfg.target.horizon_days == 60 and cfg.target.kind is None
    assert cfg.as_params()["target.horizon_days"] == "60"
    assert cfg.as_params()["features.recent_days"] == "60"
    path.write_text("learning_rate = 0.1\n")
    with pytest.raises(UsageError, match="learning_rate: unknown setting"):
        load_config(path)
    # The horizon moved from [features] to [target]: an old config is told where.
    path.write_text("[features]\nhorizon_days = 60\n")
    with pytest.raises(UsageError, match="features.horizon_days: moved to target.horizon_days"):
        load_config(path)
    # High risk is the API's `high` band everywhere: the matrix has no risk split of its own.
    path.write_text("[matrix]\nrisk_quantile = 0.75\n")
    with pytest.raises(UsageError, match="matrix.risk_quantile: moved to risk_bands"):
        load_config(path)
    path.write_text('risk_bands = [["low", 0.0], ["elevated", 0.1]]\n')
    with pytest.raises(UsageError, match="no 'high' band"):
        load_config(path)


def test_array_input_gives_the_same_scores_as_the_training_frame(fitted):
    """Serving builds the DMatrix from a float array with category codes; training from a
    DataFrame with categoricals. Same model input, same splits, same numbers."""
    import xgboost as xgb

    bundle, split = fitted.bundle, fitted.split
    rows = split.test.head(300)
    from_frame = xgb.DMatrix(bundle.matrix(rows), enable_categorical=True)
    np.testing.assert_array_equal(
        bundle.churn.predict(from_frame, output_margin=True),
        bundle.churn_margin(bundle.dmatrix(rows)),
    )
    np.testing.assert_array_equal(
        bundle.churn.predict(from_frame, pred_contribs=True),
        bundle.churn.predict(bundle.dmatrix(rows), pred_contribs=True),
    )
