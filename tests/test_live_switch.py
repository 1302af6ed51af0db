"""A new champion on a live server (a store): the refresher scores the portfolio into the store
with the new version while the old one keeps answering, then every worker switches, with no
failed request; only one process scored it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from churn_risk.features.io import DataSource
from churn_risk.features.store import Store
from churn_risk.features.validation import load_crm
from churn_risk.jobs.train import run as train
from churn_risk.serving import launch
from tests.conftest import FAST, MLFLOW_EXPORTS
from tests.serve import request

pytestmark = pytest.mark.slow

KEY = "switch-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def test_a_new_champion_is_scored_into_the_store_and_served_by_every_worker(
        champion_project, demo_folder, prep, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store(url) as store:
        store.write(load_crm(demo_folder))
    env = launch.server_env(DataSource(url, store=True), project_dir=champion_project,
                            poll_seconds=1.0, keys=KEY)
    for name in MLFLOW_EXPORTS:
        env.pop(name, None)
    process, base = launch.start(env)
    errors, answers = [], []
    stop = threading.Event()
    try:
        launch.wait_ready(base, process)
        _, _, first = request(base, "/score", {"customer_ids": load_crm(url).tables[
            "customers"]["customer_id"].tolist()[:200], "top_k": 1}, headers=AUTH)
        ids = [r["customer_id"] for r in first["results"]][:5]

        def hammer() -> None:
            while not stop.is_set():
                status, _, answer = request(base, "/score", {"customer_ids": ids},
                                            headers=AUTH)
                if status != 200:
                    errors.append((status, answer))
                else:
                    answers.append(answer)
                time.sleep(0.05)

        thread = threading.Thread(target=hammer)
        thread.start()
        for name in MLFLOW_EXPORTS:
            monkeypatch.setenv(name, "unset")
            monkeypatch.delenv(name)
        monkeypatch.chdir(champion_project)
        second = train(demo_folder, FAST.model_copy(update={"seed": 7}), prep,
                       project_dir=champion_project)
        subprocess.run([sys.executable, "-m", "churn_risk.cli", "promote", "--force", "--data",
                        str(demo_folder)], cwd=champion_project, check=True, timeout=300,
                       capture_output=True, env={
                           **os.environ,
                           "MLFLOW_TRACKING_URI": f"sqlite:///{champion_project / 'mlflow.db'}"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both workers: ten answers in a row from v2
            recent = answers[-10:]
            if len(recent) == 10 and all(a["model"]["version"] == second.version
                                         for a in recent):
                break
            time.sleep(0.5)
        stop.set()
        thread.join()
    finally:
        stop.set()
        launch.stop(process)
    assert not errors, errors[:3]
    versions = [a["model"]["version"] for a in answers]
    assert versions[0] == "1" and versions[-1] == second.version, versions[-20:]
    switched = versions.index(second.version)
    assert set(versions[switched:]) == {second.version}  # never back to the old one
    with Store(url) as store:
        run = store.latest_run("churn-risk", second.version)
        stored = store.read_scores("churn-risk", second.version, [str(i) for i in ids])
        old_run = store.latest_run("churn-risk", "1")
        with store.engine.connect() as conn:
            scorings = conn.exec_driver_sql("SELECT COUNT(*) FROM _score_runs WHERE "
                                            f"model_version = '{second.version}'").scalar_one()
    assert run is not None and run["customers"] == old_run["customers"]
    assert scorings == 1  # one process (the refresher) scored the portfolio, once
    assert len(stored) == len(ids)
    new = answers[-1]["results"]
    old = answers[0]["results"]
    assert [r["churn_probability"] for r in new] != [r["churn_probability"] for r in old]
