"""Model quality on the README's default demo data (20k customers x 36 months): against the
oracle that knows the true probabilities, calibration, propensity, explanation fidelity, what the
MLflow run holds, and the registered champion loading in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest

from churn_risk.jobs.train import run as train
from churn_risk.training.config import TrainConfig


@pytest.mark.slow
def test_quality_bars_on_demo_data_and_loading_the_champion(demo_data, project):
    from churn_risk.cli import main

    result = train(demo_data, TrainConfig(), project_dir=project)
    m = result.metrics
    # Churn: close to the oracle that knows the true probabilities, and calibrated.
    assert m["test_roc_auc"] >= m["test_oracle_roc_auc"] - 0.02, m
    assert m["test_ece"] <= 0.02
    # Every propensity model with an oracle is close to it, on the same rows.
    oracles = {k.rsplit("_auc_", 1)[1]: v for k, v in m.items()
               if k.startswith("test_oracle_propensity_auc_")}
    assert len(oracles) >= 3
    for family, oracle in oracles.items():
        assert m[f"test_propensity_auc_on_truth_rows_{family}"] >= oracle - 0.03, family
    # Explanations point at the true driver for the riskiest customers.
    assert m["test_explanation_fidelity_top3"] >= 0.70
    assert m["test_explain_ms_per_customer"] > 0

    # Everything is in the MLflow run.
    run = mlflow.get_run(result.run_id)
    for key in ("test_roc_auc", "test_oracle_roc_auc", "test_ece", "test_pr_auc",
                "test_log_loss", "test_brier", "test_top_decile_lift",
                "test_propensity_precision_at_3", "test_explanation_fidelity_top3",
                "test_explain_ms_per_customer"):
        assert key in run.data.metrics, key
    assert run.data.params["feature_set"] == "lifecycle_v2"
    assert run.data.params["split.method"] == "time"
    assert any(k.startswith("test_roc_auc_segment_") for k in run.data.metrics)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    assert {"plots/roc.png", "plots/calibration.png", "plots/gains.png",
            "plots/shap_summary.png", "plots/key_drivers_by_segment.png"} <= artifacts
    assert run.inputs.dataset_inputs, "dataset lineage is logged"

    # Promote, then load models:/churn-risk@champion in a fresh process: same scores.
    assert main(["promote", "--data", str(demo_data)]) == 0
    rows = result.split.test.head(50)
    expected = result.bundle.predict(rows)["churn_probability"].to_numpy()
    rows[result.bundle.feature_names].to_parquet(project / "rows.parquet")
    code = (
        "import json, mlflow, pandas as pd;"
        "m = mlflow.pyfunc.load_model('models:/churn-risk@champion');"
        "p = m.predict(pd.read_parquet('rows.parquet'));"
        "print(json.dumps(p['churn_probability'].tolist()))"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    out = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, check=True,
                         capture_output=True, text=True).stdout
    np.testing.assert_allclose(json.loads(out.strip().splitlines()[-1]), expected, rtol=1e-6)
