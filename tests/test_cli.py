"""The `churn` command as a user runs it."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest

from churn_risk.cli import main
from churn_risk.features.io import write_tables


def test_validate_accepts_good_data(demo_folder, capsys):
    assert main(["validate", "--data", str(demo_folder)]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize(
    "break_it, table, column, rule",
    [
        (lambda t: t["transactions"].assign(amount=t["transactions"]["amount"].astype(object))
         .pipe(lambda f: f.assign(amount=f["amount"].where(f.index % 97 != 0, "lots"))),
         "transactions", "amount", "type"),
        (lambda t: t["tickets"].drop(columns=["opened_at"]), "tickets", "opened_at",
         "required_column"),
        (lambda t: t["interactions"].assign(
            customer_id=t["interactions"]["customer_id"].where(
                t["interactions"].index % 50 != 0, 999_999_999)),
         "interactions", "customer_id", "orphan_id"),
    ],
    ids=["wrong-type", "missing-column", "orphan-id"],
)
def test_validate_reports_table_column_rule_and_examples(
    raw_tables, tmp_path, capsys, break_it, table, column, rule
):
    tables = dict(raw_tables)
    tables[table] = break_it(raw_tables)
    write_tables(tables, tmp_path, "csv")
    assert main(["validate", "--data", str(tmp_path)]) == 1
    report = capsys.readouterr().err
    assert table in report and column in report and rule in report
    if rule != "required_column":
        assert "row" in report  # example rows are shown


def test_features_write_a_file_and_a_failed_run_keeps_the_old_one(raw_tables, demo_folder,
                                                                  tmp_path, capsys):
    out = tmp_path / "features.parquet"
    assert main(["features", "--data", str(demo_folder), "--as-of", "2024-07-01",
                 "--out", str(out)]) == 0
    written = pd.read_parquet(out)
    assert len(written) > 100 and "tenure_days" in written
    assert "Lifecycle features as of 2024-07-01" in capsys.readouterr().out

    broken = tmp_path / "broken"
    shutil.copytree(demo_folder, broken)
    tx = raw_tables["transactions"].copy()
    tx.loc[tx.index[:3], "amount"] = -5.0
    write_tables({"transactions": tx}, broken, "parquet")
    assert main(["features", "--data", str(broken), "--as-of", "2024-08-01",
                 "--out", str(out)]) == 1
    assert "min_value" in capsys.readouterr().err
    pd.testing.assert_frame_equal(pd.read_parquet(out), written)


def test_bad_dates_and_missing_folders_are_user_errors(demo_folder, tmp_path, capsys):
    assert main(["features", "--data", str(demo_folder), "--as-of", "someday"]) == 2
    assert main(["validate", "--data", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_snapshots_write_a_labelled_training_frame(demo_folder, tmp_path):
    out = tmp_path / "training.parquet"
    assert main(["snapshots", "--data", str(demo_folder), "--first", "2024-03-01",
                 "--last", "2024-05-01", "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    assert sorted(frame["as_of"].unique()) == list(pd.date_range("2024-03-01", "2024-05-01",
                                                                 freq="MS"))
    assert frame["churned"].isin([0.0, 1.0]).all()


@pytest.mark.slow
def test_demo_end_to_end(project, capsys, data_reads):
    out = project / "demo"
    assert main(["demo", "--out", str(out), "--customers", "1500", "--months", "24"]) == 0
    assert data_reads == [str(out)]  # every stage works on the one validated copy
    printed = capsys.readouterr().out
    assert "valid" in printed and "Lifecycle features as of" in printed
    assert "Test metrics" in printed and "mlflow ui --backend-store-uri" in printed
    assert "promoted" in printed
    assert "riskiest and the safest" in printed and "/customers/" in printed  # served, asked
    # Live: a ticket sent through POST /events reached the customer's score.
    assert "A new ticket for customer" in printed and "stored: 1 record(s)" in printed
    assert "after the ticket" in printed and "churn probability" in printed
    # The channel's outcome and the simulated matured reports reached the store and the rate.
    flat = " ".join(printed.split())
    assert "POST /outcomes" in flat and "stored: 1 report(s)" in flat
    learned = re.search(r"Success rate of (\w+): (\d+)% before the reports, (\d+)% \(95% "
                        r"interval (\d+)% to (\d+)%\) after ([\d,]+) reports", flat)
    assert learned, flat[-1500:]
    assert int(learned[4]) <= int(learned[3]) <= int(learned[5])
    assert int(learned[6].replace(",", "")) > 0
    assert (out / "churn-store.db").exists()
    assert (out / "customers.parquet").exists() and (out / "ground_truth").is_dir()
    assert (project / "mlflow.db").exists()
    assert main(["evaluate", "--data", str(out)]) == 0
    assert "models:/churn-risk@champion on" in capsys.readouterr().out


def test_features_from_a_sqlite_database_equal_those_from_files(raw_tables, demo_folder,
                                                                tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    for name, frame in raw_tables.items():
        frame.to_sql(name, engine, index=False)
    engine.dispose()
    from_db, from_files = tmp_path / "db.parquet", tmp_path / "files.parquet"
    assert main(["features", "--data", url, "--as-of", "2024-07-01", "--out", str(from_db)]) == 0
    assert main(["features", "--data", str(demo_folder), "--as-of", "2024-07-01",
                 "--out", str(from_files)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(from_db), pd.read_parquet(from_files))
