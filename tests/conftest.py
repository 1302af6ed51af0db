"""Shared, seeded, small synthetic CRM data for fast tests."""

from __future__ import annotations

import os

# XGBoost's OpenMP threads sleep while waiting (see `churn_risk.runtime.THREADING_ENV`): set
# before anything loads XGBoost, or two-thread training spins 70x slower on a busy machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd
import pytest

from churn_risk.demo import DemoData, generate
from churn_risk.features.io import write_tables
from churn_risk.features.lifecycle import PreparedData, prepare
from churn_risk.features.validation import validate

SEED = 7


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
def demo_folder(tmp_path_factory, raw_tables):
    folder = tmp_path_factory.mktemp("crm")
    write_tables(raw_tables, folder, "parquet")
    return folder


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
