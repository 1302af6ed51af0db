"""Crash safety of the registry and the tracking store: a promotion or a training killed at a
chosen moment leaves the old or the new state and the next command repairs it; two first
commands on a new store do not race in its migration."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from churn_risk.jobs.train import run as train
from churn_risk.training.config import SearchSpace, TrainConfig
from churn_risk.training.registry import promote
from churn_risk.training.tracking import MODEL_NAME
from tests.conftest import MLFLOW_EXPORTS

pytestmark = pytest.mark.slow



# ----------------------------------------------------------------------------------- 7, 8


KILL_AFTER = textwrap.dedent("""
    import os, sys
    import mlflow
    from mlflow import MlflowClient
    from churn_risk.training.registry import promote
    mlflow.set_tracking_uri(sys.argv[1]); mlflow.set_registry_uri(sys.argv[1])
    point = sys.argv[2]
    original = {"tag": MlflowClient.set_model_version_tag,
                "alias": MlflowClient.set_registered_model_alias}
    def tag(self, name, version, key, value):
        original["tag"](self, name, version, key, value)
        if point == "tag" and key.startswith("promotion."):
            os._exit(9)  # killed right after the first promotion tag
    def alias(self, *args):
        original["alias"](self, *args)
        if point == "alias":
            os._exit(9)  # killed right after the alias moved
    MlflowClient.set_model_version_tag = tag
    MlflowClient.set_registered_model_alias = alias
    promote(lambda uri: {"roc_auc": 0.9, "ece": 0.01}, version=sys.argv[3], actor="ops")
""")


def log_constant(tmp_path: Path) -> str:
    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant())
    return mlflow.register_model(info.model_uri, MODEL_NAME).version


@pytest.mark.parametrize("point", ["tag", "alias"])
def test_a_killed_promotion_leaves_old_or_new_state_and_a_rerun_repairs_it(tmp_path, point,
                                                                           monkeypatch):
    from churn_risk.training.registry import champion_history, champion_version, repair

    for name in MLFLOW_EXPORTS:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # a new store's artifacts go to ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("hardening")
    first, second = log_constant(tmp_path), log_constant(tmp_path)
    promote(lambda _: {"roc_auc": 0.8, "ece": 0.01}, version=str(first), actor="ops")
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER, uri, point, str(second)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    tags = client.get_model_version(MODEL_NAME, str(second)).tags
    assert tags["promotion.decision"] == "pending"  # never "promoted" while not champion
    expected_champion = str(first) if point == "tag" else str(second)
    assert champion_version() == expected_champion  # the old or the new state, never between
    repair()  # what every promote runs first
    tags = client.get_model_version(MODEL_NAME, str(second)).tags
    history = [e["version"] for e in champion_history()]
    if point == "tag":  # killed before the alias moved: closed, nothing changed
        assert tags["promotion.decision"] == "interrupted" and history == [str(first)]
    else:  # killed after: completed
        assert tags["promotion.decision"] == "promoted"
        assert history == [str(first), str(second)]
    # Re-running the same promotion ends in the same complete state either way.
    promote(lambda _: {"roc_auc": 0.8, "ece": 0.01}, version=str(second), actor="ops")
    assert champion_version() == str(second)
    assert [e["version"] for e in champion_history()] == [str(first), str(second)]
    assert client.get_model_version(MODEL_NAME, str(second)).tags[
        "promotion.decision"] == "promoted"


# ---------------------------------------------------------------------------------------- 10


KILLED_TRAIN = textwrap.dedent("""
    import os, sys
    from mlflow import MlflowClient
    from churn_risk.training.config import SearchSpace, TrainConfig
    from churn_risk.jobs.train import run as train
    def dying(*args, **kwargs):
        os._exit(9)  # killed while the model is logged: it stays PENDING, never registered
    MlflowClient.finalize_logged_model = dying
    train(sys.argv[1], TrainConfig(search=SearchSpace(max_depth=(2,), num_boost_round=20),
                                   propensity=False, figures=False), project_dir=sys.argv[2])
""")


def test_a_killed_training_run_is_closed_by_the_next_and_never_registered(demo_folder, tmp_path,
                                                                          monkeypatch):
    from mlflow.entities import LoggedModelStatus

    for name in MLFLOW_EXPORTS:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    killed = subprocess.run([sys.executable, "-c", KILLED_TRAIN, str(demo_folder), str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr[-2000:]
    result = train(demo_folder, TrainConfig(search=SearchSpace(max_depth=(2,),
                                                               num_boost_round=20),
                                            propensity=False, figures=False),
                   project_dir=tmp_path)
    client = MlflowClient()
    runs = client.search_runs([result.tracking.experiment_id])
    dead = [r for r in runs if r.info.run_id != result.run_id]
    assert len(dead) == 1 and dead[0].info.status == "FAILED"
    models = client.search_logged_models([result.tracking.experiment_id])
    of_dead = [m for m in models if m.source_run_id == dead[0].info.run_id]
    assert of_dead and all(m.status == LoggedModelStatus.FAILED for m in of_dead)
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert [v.run_id for v in versions] == [result.run_id]  # the killed run never became one


def test_two_first_commands_on_a_new_store_do_not_race(demo_folder, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [sys.executable, "-m", "churn_risk.cli", "train", "--data", str(demo_folder)]
    config = tmp_path / "fast.toml"
    config.write_text("propensity = false\nfigures = false\n[search]\nmax_depth = [2]\n"
                      "num_boost_round = 20\n")
    both = [subprocess.Popen([*command, "--config", str(config)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    assert all("CommandError" not in out for out in outputs)
