"""The registered MLflow model is self-contained: it loads and predicts where only its own
requirements are installed, `mlflow models serve` answers with it, and its input example reads
back as its schema says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import Model

from churn_risk.models.pyfunc import load_bundle, predict
from churn_risk.serving import launch
from churn_risk.training.tracking import configure_tracking
from tests.conftest import MLFLOW_EXPORTS

pytestmark = pytest.mark.slow

CHAMPION = "models:/churn-risk@champion"


@pytest.fixture(scope="module")
def registered(champion_project, champion_store):
    """The champion of a project, downloaded to a folder, with its in-process bundle."""
    project = champion_project
    with pytest.MonkeyPatch.context() as mp:
        for name in MLFLOW_EXPORTS:
            mp.setenv(name, "unset")
            mp.delenv(name)
        configure_tracking(project)
        folder = Path(mlflow.artifacts.download_artifacts(CHAMPION,
                                                          dst_path=str(project / "model")))
        uri = mlflow.get_tracking_uri()
    return {"project": project, "folder": folder, "bundle": champion_store.train.bundle,
            "uri": uri}


def test_the_input_example_reads_back_as_its_schema_says(registered):
    model = Model.load(registered["folder"])
    example = model.load_input_example(registered["folder"])
    inputs = {c.name: getattr(c.type, "name", "any") for c in model.get_input_schema().inputs}
    assert inputs.pop("customer_id") == "any"  # optional, passed through as given
    for column in example.columns:
        expected = "double" if inputs[column] == "double" else "string"
        actual = "double" if example[column].dtype == np.float64 else "string"
        assert actual == expected, (column, example[column].dtype, inputs[column])
    assert model.get_params_schema().to_dict()[0]["name"] == "top_k"
    assert model.metadata["target"] == registered["bundle"].target.as_dict()


def test_a_fresh_environment_with_only_the_models_requirements_loads_and_predicts(registered,
                                                                                 tmp_path):
    folder = registered["folder"]
    requirements = (folder / "requirements.txt").read_text().split()
    assert any(r.startswith("xgboost") for r in requirements)
    assert not any("churn" in r for r in requirements)  # the project travels as code
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile",
                                "--disable-pip-version-check", "-r",
                                str(folder / "requirements.txt")], capture_output=True,
                               text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    script = (
        "import json, sys, mlflow\n"
        "from mlflow.models import Model\n"
        "path = sys.argv[1]\n"
        "example = Model.load(path).load_input_example(path)\n"
        "out = mlflow.pyfunc.load_model(path).predict(example, params={'top_k': 2})\n"
        "print(json.dumps({'columns': list(out.columns),\n"
        "                  'p': out['churn_probability'].tolist(),\n"
        "                  'reason': out['reason_1_feature'].tolist()}))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHONPATH"))}
    done = subprocess.run([str(python), "-c", script, str(folder)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    example = Model.load(folder).load_input_example(folder)
    expected = predict(registered["bundle"], example, 2)
    np.testing.assert_allclose(answer["p"], expected["churn_probability"], rtol=1e-6)
    assert answer["reason"] == expected["reason_1_feature"].tolist()
    assert "reason_2_contribution" in answer["columns"]


def test_mlflow_models_serve_answers_with_reasons_and_ids(registered, tmp_path):
    port = launch.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = registered["uri"]
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    env["PATH"] = f"{mlflow_cli.parent}{os.pathsep}{env.get('PATH', '')}"  # it runs `uvicorn`
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", CHAMPION,
                                   "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(0.5)
        example = Model.load(registered["folder"]).load_input_example(registered["folder"])
        rows = example.head(3).assign(customer_id=["7590-VHVEG", "11", "C-13"])
        body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False)),
                "params": {"top_k": 1}}
        request = urllib.request.Request(f"{base}/invocations", data=json.dumps(body).encode(),
                                          headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = pd.DataFrame(json.loads(response.read())["predictions"])
    finally:
        launch.stop(server)
    assert answer["customer_id"].tolist() == ["7590-VHVEG", "11", "C-13"]
    assert answer["churn_probability"].between(0, 1).all()
    assert "reason_1_feature" in answer


def test_load_bundle_equals_the_trained_bundle(registered, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    mlflow.set_tracking_uri(registered["uri"])
    mlflow.set_registry_uri(registered["uri"])
    loaded = load_bundle(CHAMPION)
    assert loaded.target == registered["bundle"].target
    assert loaded.feature_names == registered["bundle"].feature_names
