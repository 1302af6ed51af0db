"""Tracking set-up, registration and promotion against a real MLflow SQLite store in tmp_path."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature

from churn_risk.errors import UsageError
from churn_risk.features.target import Target, TargetKind
from churn_risk.training.registry import (
    Candidate,
    champion_history,
    champion_version,
    decide,
    newest_version,
    promote,
    register,
)
from churn_risk.training.tracking import (
    EXPERIMENT,
    MODEL_NAME,
    TrackingSetup,
    configure_tracking,
    tracking_uri,
)

# MLflow nags for an input example on every log_model; the signature is given explicitly instead.
pytestmark = pytest.mark.filterwarnings("ignore:.*An input example was not provided:UserWarning")

# Logged from code (not pickled) so that a fresh process can load it without importing tests.
MODEL_CODE = """
import mlflow
import pandas as pd


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame) -> pd.Series:
        return pd.Series([{value}] * len(model_input), name="churn_probability")


mlflow.models.set_model(Constant())
"""


def _forget_env(monkeypatch, name: str) -> None:
    # setenv first so that teardown removes whatever MLflow exports while the test runs.
    monkeypatch.setenv(name, "unset-by-test")
    monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database with its schema created (the migrations take seconds)."""
    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(tmp_path, monkeypatch, migrated_db) -> TrackingSetup:
    """An embedded store in tmp_path, started from the migrated copy (fresh folders: own test)."""
    monkeypatch.chdir(tmp_path)
    _forget_env(monkeypatch, "MLFLOW_TRACKING_URI")
    _forget_env(monkeypatch, "MLFLOW_REGISTRY_URI")
    shutil.copyfile(migrated_db, tmp_path / "mlflow.db")
    setup = configure_tracking(tmp_path)
    yield setup
    mlflow.set_tracking_uri(None)  # leave no URI pointing into a deleted tmp_path
    mlflow.set_registry_uri(None)


def log_constant(folder: Path, value: float) -> tuple[str, str]:
    """Log a model predicting `value` for everyone; return its model URI and run id."""
    code = folder / f"constant_{value}.py"
    code.write_text(MODEL_CODE.format(value=value))
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            signature=infer_signature(pd.DataFrame({"x": [1.0]}), pd.Series([value])),
            pip_requirements=[],
        )
    return info.model_uri, run.info.run_id


def test_tracking_uri_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.team.example:5000")
    assert tracking_uri(tmp_path) == "http://mlflow.team.example:5000"


def test_default_tracking_uri_is_a_sqlite_file_in_the_project(tmp_path, monkeypatch):
    _forget_env(monkeypatch, "MLFLOW_TRACKING_URI")
    assert tracking_uri(tmp_path) == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == tracking_uri(tmp_path)


def test_configure_tracking_creates_a_quiet_store_and_puts_artifacts_in_the_project(
    store, tmp_path, caplog, capfd
):
    fresh = tmp_path / "fresh-project"
    with caplog.at_level(logging.INFO):
        setup = configure_tracking(fresh)
    captured = capfd.readouterr()
    assert not [r for r in caplog.records if r.name.startswith(("alembic", "mlflow.store"))]
    assert "Creating initial MLflow database tables" not in captured.err + captured.out

    db = (fresh / "mlflow.db").resolve()
    artifacts = (fresh / "mlartifacts").resolve()
    assert db.is_file()
    assert setup.tracking_uri == f"sqlite:///{db}" == mlflow.get_tracking_uri()
    assert mlflow.get_registry_uri() == setup.tracking_uri
    assert setup.artifact_root == artifacts.as_uri()
    assert setup.ui_command == (
        f"mlflow ui --backend-store-uri sqlite:///{db} --default-artifact-root {artifacts.as_uri()}"
    )
    assert MlflowClient().get_experiment(setup.experiment_id).name == EXPERIMENT
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"

    with mlflow.start_run() as run:
        mlflow.log_text("hello", "note.txt")
    assert run.info.experiment_id == setup.experiment_id
    assert list(artifacts.rglob("note.txt"))
    assert not (tmp_path / "mlruns").exists()

    # Calling it again (the next job) reuses the store and the experiment.
    assert configure_tracking(fresh) == setup


def test_a_second_project_in_the_same_process_gets_its_own_store(store, tmp_path, migrated_db):
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; that must not pin later projects.
    (tmp_path / "other").mkdir()
    shutil.copyfile(migrated_db, tmp_path / "other" / "mlflow.db")
    other = configure_tracking(tmp_path / "other")
    assert other.tracking_uri == f"sqlite:///{(tmp_path / 'other' / 'mlflow.db').resolve()}"
    assert other.tracking_uri != store.tracking_uri


def test_first_version_is_promoted():
    decision = decide(Candidate("1", {"roc_auc": 0.7, "ece": 0.02}), None)
    assert decision.promoted and decision.previous is None and not decision.forced
    assert "0.7000" in decision.reason and "promoted" in decision.reason


def test_better_challenger_is_promoted_and_the_reason_has_both_numbers():
    decision = decide(
        Candidate("3", {"roc_auc": 0.812, "ece": 0.011}),
        Candidate("2", {"roc_auc": 0.809, "ece": 0.013}),
    )
    assert decision.promoted and decision.version == "3" and decision.previous == "2"
    for number in ("0.8120", "0.8090", "0.0110", "0.0130", "0.0050"):
        assert number in decision.reason
    assert decision.reason.endswith(": promoted")


def test_lower_auc_is_refused():
    decision = decide(
        Candidate("3", {"roc_auc": 0.80, "ece": 0.010}),
        Candidate("2", {"roc_auc": 0.81, "ece": 0.013}),
    )
    assert not decision.promoted
    assert "0.8000" in decision.reason and "0.8100" in decision.reason
    assert decision.reason.endswith(": refused")


def test_auc_tolerance_allows_a_small_drop():
    decision = decide(
        Candidate("3", {"roc_auc": 0.805, "ece": 0.010}),
        Candidate("2", {"roc_auc": 0.810, "ece": 0.010}),
        auc_tolerance=0.01,
    )
    assert decision.promoted


def test_same_auc_but_ece_worse_beyond_tolerance_is_refused():
    champion = Candidate("2", {"roc_auc": 0.81, "ece": 0.010})
    within = decide(Candidate("3", {"roc_auc": 0.81, "ece": 0.014}), champion)
    beyond = decide(Candidate("3", {"roc_auc": 0.81, "ece": 0.016}), champion)
    assert within.promoted
    assert not beyond.promoted
    assert "0.0160" in beyond.reason and "0.0100" in beyond.reason


def test_missing_metric_is_an_error():
    with pytest.raises(ValueError, match="ece"):
        decide(Candidate("1", {"roc_auc": 0.8}), None)


def test_promote_end_to_end(store, tmp_path):
    client = MlflowClient()
    metrics = {
        "1": {"roc_auc": 0.80, "ece": 0.010},
        "2": {"roc_auc": 0.78, "ece": 0.010},  # worse AUC
        "3": {"roc_auc": 0.83, "ece": 0.009},  # better
        "4": {"roc_auc": 0.70, "ece": 0.050},  # worse, forced anyway
    }
    evaluated: list[str] = []

    def evaluate(uri: str) -> dict[str, float]:
        evaluated.append(uri)
        return metrics[uri.rsplit("/", 1)[1]]

    assert champion_version() is None and newest_version() is None
    assert champion_history() == []
    with pytest.raises(UsageError, match="no version"):
        promote(evaluate)

    run_ids = {}
    for version in metrics:
        uri, run_ids[version] = log_constant(tmp_path, float(version) / 10)
        assert register(uri, run_ids[version], tags={"feature_set": "lifecycle"}) == version
    assert newest_version() == "4"
    registered = client.get_model_version(MODEL_NAME, "1")
    assert registered.run_id == run_ids["1"]
    assert registered.tags["run_id"] == run_ids["1"]
    assert registered.tags["feature_set"] == "lifecycle"

    first = promote(evaluate, version="1", actor="ana")
    assert first.promoted and first.previous is None and champion_version() == "1"
    assert evaluated == [f"models:/{MODEL_NAME}/1"]

    evaluated.clear()
    second = promote(evaluate, version="2", actor="ana")
    assert not second.promoted and second.previous == "1"
    assert evaluated == [f"models:/{MODEL_NAME}/2", f"models:/{MODEL_NAME}/1"]
    assert champion_version() == "1"
    tags = client.get_model_version(MODEL_NAME, "2").tags
    assert tags["promotion.decision"] == "refused"
    assert tags["promotion.reason"] == second.reason
    assert tags["promotion.by"] == "ana"
    assert tags["promotion.previous_champion"] == "1"
    assert json.loads(tags["promotion.metrics"])["champion"]["roc_auc"] == 0.80

    third = promote(evaluate, version="3", actor="ana")
    assert third.promoted and not third.forced and champion_version() == "3"
    assert client.get_model_version(MODEL_NAME, "3").tags["promotion.decision"] == "promoted"

    fourth = promote(evaluate, force=True, actor="ben")  # the newest version by default
    assert fourth.promoted and fourth.forced and fourth.version == "4"
    assert fourth.reason.startswith("forced by ben: version 4 AUC 0.7000 vs champion v3 0.8300")
    assert "would have been refused" in fourth.reason
    assert champion_version() == "4"
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "4"
    tags = client.get_model_version(MODEL_NAME, "4").tags
    assert tags["promotion.decision"] == "forced"
    assert tags["promotion.previous_champion"] == "3"

    again = promote(evaluate, actor="ben")
    assert not again.promoted and "already champion" in again.reason

    history = champion_history()
    assert [(h["version"], h["forced"], h["previous"]) for h in history] == [
        ("1", False, None),
        ("3", False, "1"),
        ("4", True, "3"),
    ]
    assert all(h["at"] for h in history)


def test_a_challenger_with_another_target_is_refused_without_evaluation(store, tmp_path):
    for value in (0.25, 0.75, 0.5):
        uri, run_id = log_constant(tmp_path, value)
        register(uri, run_id)
    targets = {"1": Target(kind=TargetKind.subscription_end, horizon_days=90),
               "2": Target(kind=TargetKind.subscription_end, horizon_days=30),
               "3": Target(kind=TargetKind.subscription_end, horizon_days=30)}
    evaluated, begun = [], []

    def evaluate(uri: str) -> dict[str, float]:
        evaluated.append(uri)
        return {"roc_auc": 0.8, "ece": 0.01}

    def target_of(uri: str) -> Target:
        return targets[uri.rsplit("/", 1)[1]]

    kwargs = {"target_of": target_of, "begin": begun.append, "actor": "ana"}
    assert promote(evaluate, version="1", **kwargs).promoted
    evaluated.clear()
    refused = promote(evaluate, version="2", **kwargs)
    assert not refused.promoted and champion_version() == "1"
    assert "different targets" in refused.reason and evaluated == []
    forced = promote(evaluate, version="2", force=True, **kwargs)
    assert forced.forced and champion_version() == "2" and evaluated == []
    # The champion's target (now 30 days) is compared as usual, on rows fixed for both first.
    begun.clear()
    assert promote(evaluate, version="3", **kwargs).promoted
    assert begun == [[f"models:/{MODEL_NAME}/3", f"models:/{MODEL_NAME}/2"]]
    assert evaluated == [f"models:/{MODEL_NAME}/3", f"models:/{MODEL_NAME}/2"]


def test_champion_history_keeps_the_last_50(store, tmp_path):
    uri, run_id = log_constant(tmp_path, 0.5)
    register(uri, run_id)
    old = [{"version": "1", "at": "2024-01-01T00:00:00+00:00", "forced": False, "previous": None}]
    MlflowClient().set_registered_model_tag(MODEL_NAME, "champion_history", json.dumps(old * 60))
    promote(lambda _: {"roc_auc": 0.8, "ece": 0.01}, actor="ana")
    history = champion_history()
    assert len(history) == 50
    assert history[-1]["version"] == "1" and history[-1]["at"] != old[0]["at"]


def test_champion_alias_loads_in_a_fresh_process(store, tmp_path):
    for value in (0.25, 0.75):
        uri, run_id = log_constant(tmp_path, value)
        register(uri, run_id)
    metrics = {"1": {"roc_auc": 0.70, "ece": 0.02}, "2": {"roc_auc": 0.75, "ece": 0.02}}
    promote(lambda uri: metrics[uri.rsplit("/", 1)[1]], version="1")
    promote(lambda uri: metrics[uri.rsplit("/", 1)[1]], version="2")

    script = (
        "import mlflow, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model('models:/{MODEL_NAME}@champion')\n"
        "print(list(model.predict(pd.DataFrame({'x': [1.0, 2.0]}))))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.tracking_uri}
    env.pop("MLFLOW_REGISTRY_URI", None)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[0.75, 0.75]"
