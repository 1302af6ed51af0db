"""Shared, seeded, small synthetic CRM data for fast tests."""

from __future__ import annotations

import os

# XGBoost's OpenMP threads sleep while waiting (see `churn_risk.runtime.THREADING_ENV`): set
# before anything loads XGBoost, or two-thread training spins 70x slower on a busy machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from churn_risk.demo import DemoData, generate
from churn_risk.features.io import write_tables
from churn_risk.features.lifecycle import PreparedData, prepare
from churn_risk.features.validation import validate
from churn_risk.training.config import SearchSpace, TrainConfig

SEED = 7
REPO = Path(__file__).resolve().parents[1]

#: A small model that trains in seconds on the session's demo data: what tests that need a real
#: model (but not its quality or its figures) train.
FAST = TrainConfig(search=SearchSpace(max_depth=(3,), num_boost_round=150), min_positives=10,
                   figures=False)


@pytest.fixture(scope="session")
def demo() -> DemoData:
    return generate(customers=600, months=24, seed=SEED)


@pytest.fixture(scope="session")
def raw_tables(demo: DemoData) -> dict[str, pd.DataFrame]:
    """The demo tables; tests must copy before changing them."""
    return demo.tables


@pytest.fixture(scope="session")
def prep(raw_tables) -> PreparedData:
    return prepare(validate(raw_tables))


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """The README's default demo data: 20k customers x 36 months, seed 42 (for the tests of
    model quality, which need the size)."""
    from churn_risk.demo import write_demo

    folder = tmp_path_factory.mktemp("demo") / "demo-data"
    write_demo(folder, customers=20_000, months=36, seed=42)
    return folder


@pytest.fixture(scope="session")
def mid_demo_folder(tmp_path_factory) -> Path:
    """5,000 customers x 24 months (seed 11): big enough to compare models, small enough to
    train in seconds."""
    from churn_risk.demo import write_demo

    folder = tmp_path_factory.mktemp("mid") / "data"
    write_demo(folder, customers=5000, months=24, seed=11)
    return folder


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory, raw_tables):
    folder = tmp_path_factory.mktemp("crm")
    write_tables(raw_tables, folder, "parquet")
    return folder


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL cluster for this test process (see tests/postgres.py)."""
    from tests.postgres import cluster

    with cluster() as running:
        yield running


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """The URL of a new, empty store: embedded SQLite, then a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh project folder as the working directory, with the embedded MLflow store.

    MLflow exports MLFLOW_TRACKING_URI when a tracking URI is set; setting and then deleting it
    here makes pytest restore the variable's absence after the test."""
    monkeypatch.chdir(tmp_path)
    for name in MLFLOW_EXPORTS:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    return tmp_path


#: Variables MLflow exports into the environment when a tracking URI or experiment is set.
MLFLOW_EXPORTS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID",
                  "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


@pytest.fixture
def data_reads(monkeypatch) -> list[str]:
    """Every read of a data source in this process, as the source it named: `io.read_tables`
    is the one function through which validation, the jobs and the Dask engine read tables."""
    from churn_risk.features import io, validation

    reads: list[str] = []
    real = io.read_tables

    def counted(source):
        reads.append(str(source))
        return real(source)

    monkeypatch.setattr(io, "read_tables", counted)
    monkeypatch.setattr(validation, "read_tables", counted)
    return reads


@dataclass(frozen=True)
class Fitted:
    """A bundle fitted with `FAST` on the session's demo data, without MLflow."""

    bundle: object  # models.bundle.ChurnBundle
    split: object  # training.split.Split
    data: object  # training.train.TrainingData

    @property
    def test(self) -> pd.DataFrame:
        return self.split.test.reset_index(drop=True)


@pytest.fixture(scope="session")
def fitted(demo_folder, prep) -> Fitted:
    """Trained once for every test that needs a real model but no MLflow."""
    from churn_risk.training.train import build_training_data, fit_bundle

    data = build_training_data(demo_folder, FAST, prep=prep)
    bundle, split, _, _ = fit_bundle(data.frame, data.specs, FAST, data.target)
    return Fitted(bundle, split, data)


@dataclass(frozen=True)
class ChampionStore:
    folder: Path
    train: object  # jobs.train.TrainResult of version 1


@pytest.fixture(scope="session")
def champion_store(tmp_path_factory, demo_folder, prep) -> ChampionStore:
    """An MLflow store whose `churn-risk` version 1 (`FAST` on `demo_folder`) is @champion.
    Tests take a copy (`champion_project`), never this one."""
    from churn_risk.jobs import promote
    from churn_risk.jobs import train as train_job

    folder = tmp_path_factory.mktemp("champion-store")
    with pytest.MonkeyPatch.context() as mp:
        for name in MLFLOW_EXPORTS:
            mp.setenv(name, "unset")
            mp.delenv(name)
        mp.chdir(folder)
        result = train_job.run(demo_folder, FAST, prep, project_dir=folder)
        decision = promote.run(demo_folder, prep=prep).decision
        assert decision.promoted, decision.reason
    return ChampionStore(folder, result)


@pytest.fixture(scope="module")
def champion_project(tmp_path_factory, champion_store) -> Path:
    """A project of this module's own whose store holds the session's champion (version 1):
    a copy of the store's database. The artifacts are shared (MLflow writes each run's into a
    folder of its own and never changes them), so the copy costs milliseconds, not a training."""
    folder = tmp_path_factory.mktemp("project")
    shutil.copy2(champion_store.folder / "mlflow.db", folder / "mlflow.db")
    return folder


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request, champion_project, demo_folder, tmp_path_factory):
    """A real server reading and writing a store filled with the session's demo data, with the
    API keys of the module's `KEYS` (and its `SERVER_ENV`, if any): on SQLite, then on
    PostgreSQL."""
    from churn_risk.features.io import DataSource
    from churn_risk.features.store import Store
    from churn_risk.features.validation import load_crm
    from tests.serve import running

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    with Store(url) as store:
        store.write(load_crm(demo_folder))
    with running(DataSource(url, store=True), champion_project, request.module.KEYS,
                 **getattr(request.module, "SERVER_ENV", {})) as base:
        customers = load_crm(url).tables["customers"]["customer_id"].tolist()
        yield {"base": base, "url": url, "customers": customers,
               "project": champion_project}


# --------------------------------------------------------------------------------------------
# Tests never write into the repository
# --------------------------------------------------------------------------------------------

#: What tools (not tests) keep in the repository: caches and the editable install's metadata.
TOOL_FILES = (".pytest_cache", ".ruff_cache", "__pycache__", ".egg-info")


def _untracked() -> set[str] | None:
    """Untracked and ignored paths of the repository (None outside a git checkout)."""
    import subprocess

    try:
        listed = subprocess.run(["git", "status", "--porcelain", "--ignored", "-uall"],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if listed.returncode != 0:
        return None
    paths = {line[3:] for line in listed.stdout.splitlines() if line[:2] in ("??", "!!")}
    return {p for p in paths if not any(part in p for part in TOOL_FILES)
            and not p.startswith(".venv/")}


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller, with or without xdist
        session.config._repo_files = _untracked()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_repo_files", None)
    if before is None or hasattr(session.config, "workerinput"):
        return
    written = sorted((_untracked() or set()) - before)
    if written:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = ("tests wrote into the repository (they must use tmp_path): "
                   + ", ".join(written[:10]) + (" ..." if len(written) > 10 else ""))
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = 1
