"""A user's mistake or a data problem gets a short message and a non-zero exit, never a
traceback: one test per expected failure (the exit codes are documented in `errors.py`)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from churn_risk.cli import main
from churn_risk.features.io import write_tables
from tests.conftest import MLFLOW_EXPORTS

#: Trains in seconds: what these tests need is a registered version, not a good one.
QUICK = "figures = false\n[search]\nmax_depth = [3]\nnum_boost_round = 60\n"


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text, text
    return code, " ".join(text.split())  # rich wraps long lines


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_folder):
    """A project with one trained (not promoted) version, subscription_end over 90 days."""
    project = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        for name in MLFLOW_EXPORTS:
            mp.setenv(name, "unset")
            mp.delenv(name)
        (project / "fast.toml").write_text(QUICK)
        assert main(["train", "--data", str(demo_folder), "--config", "fast.toml"]) == 0
    return project


@pytest.fixture
def in_trained(trained, monkeypatch):
    monkeypatch.chdir(trained)
    for name in MLFLOW_EXPORTS:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    return trained


def test_too_little_history_names_the_dates_needed_and_present(project, demo_folder, capsys):
    code, text = run(capsys, "train", "--data", str(demo_folder), "--horizon-days", "700")
    assert code == 1
    assert "too little history for a 700-day horizon" in text
    assert "the data run from 2023-01-01 to" in text and "--horizon-days" in text


def test_zero_rows_after_labelling(project, raw_tables, tmp_path, capsys):
    late = raw_tables["customers"]["signup_date"].min() - pd.Timedelta(days=30)
    labels = pd.DataFrame({"customer_id": raw_tables["customers"]["customer_id"][:50],
                           "as_of": late, "churned": False})
    write_tables({**raw_tables, "labels": labels}, tmp_path / "data")
    code, text = run(capsys, "train", "--data", str(tmp_path / "data"), "--horizon-days", "30")
    assert code == 1 and "zero labelled rows" in text and "signed up before the date" in text


def test_a_single_class_after_labelling(project, raw_tables, tmp_path, capsys):
    labels = pd.DataFrame({"customer_id": raw_tables["customers"]["customer_id"],
                           "as_of": pd.Timestamp("2024-06-15"), "churned": "no"})
    write_tables({**raw_tables, "labels": labels}, tmp_path / "data")
    code, text = run(capsys, "train", "--data", str(tmp_path / "data"), "--horizon-days", "30")
    assert code == 1 and "0 churned" in text and "at least 20 of each" in text


def test_labels_without_their_period_ask_for_it(project, raw_tables, tmp_path, capsys):
    labels = pd.DataFrame({"customer_id": raw_tables["customers"]["customer_id"],
                           "as_of": pd.Timestamp("2024-06-15"), "churned": "no"})
    write_tables({**raw_tables, "labels": labels}, tmp_path / "data")
    code, text = run(capsys, "train", "--data", str(tmp_path / "data"))
    assert code == 2 and "--horizon-days" in text and "churned flag covers" in text


def test_no_model_at_all(project, demo_folder, capsys):
    code, text = run(capsys, "score", "--data", str(demo_folder), "--out", "s.csv")
    assert code == 2 and "no model 'models:/churn-risk@champion'" in text
    code, text = run(capsys, "promote", "--data", str(demo_folder))
    assert code == 2 and "no version of model 'churn-risk' is registered" in text


def test_no_champion_yet(in_trained, demo_folder, capsys):
    code, text = run(capsys, "worklist", "--data", str(demo_folder), "--as-of", "2024-12-01",
                     "--budget", "100")
    assert code == 2 and "churn promote" in text
    code, text = run(capsys, "explain-change", "--data", str(demo_folder), "--customer", "1",
                     "--from", "2024-06-01", "--to", "2024-12-01")
    assert code == 2 and "@champion" in text


def test_an_unknown_version_to_promote(in_trained, demo_folder, capsys):
    code, text = run(capsys, "promote", "--data", str(demo_folder), "--version", "42")
    assert code == 2 and "--version 42" in text and "no such version" in text


def test_a_challenger_with_another_target_is_refused_with_exit_3(in_trained, demo_folder,
                                                                 capsys):
    assert main(["promote", "--data", str(demo_folder), "--version", "1"]) == 0
    assert main(["train", "--data", str(demo_folder), "--horizon-days", "60", "--config",
                 "fast.toml"]) == 0
    capsys.readouterr()
    code, text = run(capsys, "promote", "--data", str(demo_folder))
    assert code == 3
    assert "subscription_end, 60 days" in text and "subscription_end, 90 days" in text
    assert "different targets" in text
    code, text = run(capsys, "promote", "--data", str(demo_folder), "--force")
    assert code == 0 and "forced" in text


def test_tracking_store_unreachable(project, demo_folder, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    code, text = run(capsys, "train", "--data", str(demo_folder))
    assert code == 2 and "unreachable" in text and "MLFLOW_TRACKING_URI" in text


@pytest.mark.parametrize("body, message", [
    ("[search]\nmax_dept = [3]\n", "search.max_dept: unknown setting"),
    ("[search]\nmax_depth = \"3\"\n", "search.max_depth: Input should be a valid tuple"),
    ("seed = 1.5\n", "seed: Input should be a valid integer"),
    ("[features]\nhorizon_days = 60\n", "features.horizon_days: moved to target.horizon_days"),
    ("[target]\nkind = \"subscription\"\n", "target.kind: use one of labels"),
])
def test_a_wrong_training_config_names_the_key(project, demo_folder, tmp_path, capsys, body,
                                               message):
    (tmp_path / "train.toml").write_text(body)
    code, text = run(capsys, "train", "--data", str(demo_folder), "--config",
                     str(tmp_path / "train.toml"))
    assert code == 2 and "train.toml" in text and message in text


@pytest.mark.parametrize("body, message", [
    ("[[action]]\nname='a'\nlabel='A'\nchannel='web'\ncost=1.0\nsucces_rate=0.1\n",
     "succes_rate: unknown setting"),
    ("[[action]]\nname='a'\nlabel='A'\nchannel='phone'\ncost=1.0\nsuccess_rate=0.1\n",
     "channel: Input should be"),
    ("[[action]]\nname='a'\nlabel='A'\nchannel='web'\ncost=1.0\nsuccess_rate=0.1\n"
     "driver_group='delivry'\n", "driver_group"),
])
def test_a_wrong_action_catalogue_names_the_key(in_trained, demo_folder, tmp_path, capsys, body,
                                                message):
    (tmp_path / "actions.toml").write_text(body)
    main(["promote", "--data", str(demo_folder), "--version", "1"])
    capsys.readouterr()
    code, text = run(capsys, "worklist", "--data", str(demo_folder), "--as-of", "2024-12-01",
                     "--budget", "100", "--actions", str(tmp_path / "actions.toml"))
    assert code == 2 and "actions.toml" in text and message in text


def test_a_truncated_parquet_file_is_named(project, demo_folder, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(demo_folder, data)
    content = (data / "tickets.parquet").read_bytes()
    (data / "tickets.parquet").write_bytes(content[: len(content) // 2])
    code, text = run(capsys, "validate", "--data", str(data))
    assert code == 2 and "tickets.parquet" in text and "truncated" in text


@pytest.mark.parametrize("content, message", [
    ("", "the file is empty (0 bytes)"),
    ("customer_id,opened_at,closed_at\n", "has a header but no rows"),
])
def test_an_empty_or_header_only_csv_is_named(project, demo_folder, tmp_path, capsys, content,
                                              message):
    data = tmp_path / "data"
    shutil.copytree(demo_folder, data)
    (data / "tickets.parquet").unlink()
    (data / "tickets.csv").write_text(content)
    code, text = run(capsys, "train", "--data", str(data))
    assert code == 2 and "tickets.csv" in text and message in text


@pytest.mark.parametrize("as_of, message", [
    ("2030-01-01", "after the end of the data"),
    ("2010-01-01", "before the data begin"),
    ("01/06/2024", "ambiguous: write 2024-06-01 (day first) or 2024-01-06 (month first)"),
    ("2024-02-30", "not a calendar date"),
    ("yesterday", "not a date in ISO 8601 form"),
])
def test_an_as_of_outside_the_data_or_not_iso(project, demo_folder, capsys, as_of, message):
    code, text = run(capsys, "features", "--data", str(demo_folder), "--as-of", as_of)
    assert code == 2 and message in text
