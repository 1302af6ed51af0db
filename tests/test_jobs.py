"""Each job reads and validates its data once, whatever it then does with them (train, judge,
score, rank, explain); the CLI command of a job only parses, calls the job and prints."""

from __future__ import annotations

import pytest

from churn_risk.cli import main
from tests.conftest import MLFLOW_EXPORTS

FAST = "figures = false\n[search]\nmax_depth = [3]\nnum_boost_round = 60\n"


@pytest.fixture(scope="module")
def project(champion_project):
    """A project with a champion trained on `demo_folder`, and a fast training config."""
    (champion_project / "fast.toml").write_text(FAST)
    return champion_project


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project)
    for name in MLFLOW_EXPORTS:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    return project


def customer_of(demo_folder) -> str:
    """A customer subscribed from before 2024-06-01 to after 2024-12-01."""
    import pandas as pd

    subs = pd.read_parquet(demo_folder / "subscriptions.parquet")
    start, end = pd.to_datetime(subs["start_date"]), pd.to_datetime(subs["end_date"])
    kept = subs.loc[(start < "2024-06-01") & (end.isna() | (end > "2024-12-02"))]
    return str(kept["customer_id"].iloc[0])


@pytest.mark.parametrize("job", ["train", "promote", "evaluate", "score", "worklist",
                                 "campaigns", "explain-change"])
def test_each_job_reads_its_data_once(in_project, demo_folder, data_reads, job, tmp_path):
    data = ["--data", str(demo_folder)]
    argv = {
        "train": ["train", *data, "--config", "fast.toml"],
        "promote": ["promote", *data, "--force"],
        "evaluate": ["evaluate", *data],
        "score": ["score", *data, "--out", str(tmp_path / "scores.parquet")],
        "worklist": ["worklist", *data, "--as-of", "2024-12-01", "--budget", "500",
                     "--out", str(tmp_path / "w.csv"), "--ledger", str(tmp_path / "l.parquet")],
        "campaigns": ["campaigns", "evaluate", *data, "--no-uplift"],
        "explain-change": ["explain-change", *data, "--customer", customer_of(demo_folder),
                           "--from", "2024-06-01", "--to", "2024-12-01"],
    }[job]
    data_reads.clear()
    assert main(argv) == 0
    assert data_reads == [str(demo_folder)], data_reads
