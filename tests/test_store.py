"""The store on SQLite and on a real PostgreSQL: what goes in comes back out typed as validated,
features from the store equal those from the files, nothing is stored twice, and a rejected or
failed batch stores nothing."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from churn_risk.cli import main
from churn_risk.features.io import BOOKKEEPING, DataSource, write_tables
from churn_risk.features.store import Store
from churn_risk.features.validation import CrmData, load_crm, validate


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal as sets of typed records (a database keeps no row order)."""
    columns = list(a.columns)
    assert list(b.columns) == columns
    pd.testing.assert_frame_equal(a.sort_values(columns).reset_index(drop=True),
                                  b.sort_values(columns).reset_index(drop=True))


def test_the_store_returns_the_validated_tables_and_stores_nothing_twice(store_url,
                                                                          raw_tables):
    crm = validate(raw_tables)
    with Store(store_url) as store:
        first = store.write(crm)
        assert first.stored == {name: len(frame) for name, frame in crm.tables.items()}
        again = store.write(crm)
        assert sum(again.stored.values()) == 0
        assert again.duplicates == first.received
        assert store.counts() == first.received
        assert store.watermark() is not None
    back = load_crm(store_url)
    assert set(back.tables) == set(crm.tables)
    for name, frame in crm.tables.items():
        same_rows(frame, back.tables[name])


def test_equal_records_in_one_batch_are_two_events_and_a_resend_is_none(store_url, raw_tables):
    tables = {name: frame.copy() for name, frame in raw_tables.items()}
    delivery = tables["deliveries"].iloc[[0]]
    tables["deliveries"] = pd.concat([tables["deliveries"], delivery], ignore_index=True)
    crm = validate(tables)
    with Store(store_url) as store:
        store.write(crm)
        store.write(crm)
        assert store.counts()["deliveries"] == len(tables["deliveries"])
    stored = load_crm(store_url).tables["deliveries"]
    row = crm.tables["deliveries"].iloc[0]
    same = (stored[list(row.index)] == row).all(axis=1)
    assert same.sum() >= 2


def test_features_from_the_store_equal_features_from_the_files(store_url, demo_folder,
                                                               tmp_path):
    assert main(["store", "load", "--data", str(demo_folder), "--store", store_url]) == 0
    from_store, from_files = tmp_path / "store.parquet", tmp_path / "files.parquet"
    assert main(["features", "--store", store_url, "--as-of", "2024-07-01",
                 "--out", str(from_store)]) == 0
    assert main(["features", "--data", str(demo_folder), "--as-of", "2024-07-01",
                 "--out", str(from_files)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(from_store), pd.read_parquet(from_files))


def test_a_batch_that_breaks_the_contract_stores_nothing(store_url, raw_tables, tmp_path,
                                                         capsys):
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_tables(raw_tables, good, "csv")
    broken = {name: frame.copy() for name, frame in raw_tables.items()}
    broken["transactions"].loc[3, "amount"] = -5.0
    write_tables(broken, bad, "csv")
    assert main(["store", "load", "--data", str(good), "--store", store_url]) == 0
    with Store(store_url) as store:
        before = store.counts()
    capsys.readouterr()
    assert main(["store", "load", "--data", str(bad), "--store", store_url]) == 1
    assert "transactions" in capsys.readouterr().err
    with Store(store_url) as store:
        assert store.counts() == before


def test_a_write_that_fails_half_way_leaves_the_store_as_it_was(store_url, raw_tables,
                                                                monkeypatch):
    crm = validate(raw_tables)
    first = CrmData({"customers": crm.tables["customers"]}, crm.attributes)
    with Store(store_url) as store:
        store.write(first)
        before = store.counts()
        real, calls = Store._insert_new, []

        def failing(self, conn, table, rows, tick):
            calls.append(table.name)
            if len(calls) == 3:  # the third table: after two were written in this transaction
                raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))
            return real(self, conn, table, rows, tick)

        monkeypatch.setattr(Store, "_insert_new", failing)
        with pytest.raises(Exception, match="cannot write to the store"):
            store.write(crm)
        assert store.counts() == before


def test_readers_never_see_the_bookkeeping_columns(store_url, raw_tables):
    from churn_risk.features.dask_engine import _read

    with Store(store_url) as store:
        store.write(validate(raw_tables))
        with store.engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("tickets")}
    assert set(BOOKKEEPING) <= columns  # they are there ...
    for frame in load_crm(store_url).tables.values():  # ... and no reader returns them
        assert not set(BOOKKEEPING) & set(frame.columns)
    lazy = _read(DataSource(store_url), sql_rows_per_part=200)
    for frame in lazy.values():
        assert not set(BOOKKEEPING) & set(frame.columns)
        assert not set(BOOKKEEPING) & set(frame.partitions[0].compute().columns)


@pytest.mark.parametrize("args, message", [
    (["--store", "crm-folder"], "not a database URL"),
    (["--store", "sqlite:///x.db", "--data", "demo-data"], "name two sources"),
])
def test_store_options_that_cannot_work_are_one_line_errors(args, message, capsys, tmp_path,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_without_data_or_store_a_store_in_the_working_folder_is_read(demo_folder, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["store", "load", "--data", str(demo_folder)]) == 0  # default store file
    assert (tmp_path / "churn-store.db").exists()
    capsys.readouterr()
    assert main(["validate"]) == 0
    assert "sqlite:///churn-store.db: valid" in capsys.readouterr().out


# ------------------------------------------------------------------------------ churn ingest


def test_ingest_adds_new_records_that_refer_to_stored_customers(store_url, demo_folder,
                                                                tmp_path, capsys):
    assert main(["store", "load", "--data", str(demo_folder), "--store", store_url]) == 0
    customer = int(load_crm(store_url).tables["customers"]["customer_id"].iloc[0])
    ticket = tmp_path / "tickets.csv"  # a CRM's export of one new ticket, in its own file
    ticket.write_text("customer_id,opened_at,category\n"
                      f"{customer},2026-12-02T09:30:00,billing\n")
    with Store(store_url) as store:
        before = store.counts()
    capsys.readouterr()
    assert main(["ingest", "--data", str(ticket), "--store", store_url]) == 0
    assert "tickets" in capsys.readouterr().out
    with Store(store_url) as store:
        after = store.counts()
        assert after == {**before, "tickets": before["tickets"] + 1}
    tickets = load_crm(store_url).tables["tickets"]
    new = tickets[tickets["opened_at"] == pd.Timestamp("2026-12-02T09:30:00")]
    assert new["customer_id"].tolist() == [customer] and new["category"].tolist() == ["billing"]
    # Sent again (a retry): nothing more is stored.
    assert main(["ingest", "--data", str(ticket), "--store", store_url]) == 0
    with Store(store_url) as store:
        assert store.counts() == after


def test_ingest_rejects_a_batch_with_one_bad_record_and_stores_none_of_it(store_url,
                                                                          demo_folder,
                                                                          tmp_path, capsys):
    assert main(["store", "load", "--data", str(demo_folder), "--store", store_url]) == 0
    customer = int(load_crm(store_url).tables["customers"]["customer_id"].iloc[0])
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "tickets.csv").write_text("customer_id,opened_at,category\n"
                                       f"{customer},2026-12-02T09:30:00,billing\n"
                                       "999999999,2026-12-02T09:31:00,billing\n")
    (batch / "customers.csv").write_text("customer_id,signup_date\n777,2026-12-01\n")
    with Store(store_url) as store:
        before = store.counts()
    capsys.readouterr()
    assert main(["ingest", "--data", str(batch), "--store", store_url]) == 1
    err = capsys.readouterr().err
    assert "tickets.customer_id" in err and "999999999" in err and "orphan_id" in err
    with Store(store_url) as store:
        assert store.counts() == before  # not the valid ticket, not the new customer


def test_a_new_customer_and_their_first_event_arrive_in_one_batch(store_url, demo_folder,
                                                                  tmp_path):
    assert main(["store", "load", "--data", str(demo_folder), "--store", store_url]) == 0
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "customers.csv").write_text("customer_id,signup_date,segment\n"
                                         "9000001,2026-12-01,consumer\n")
    (batch / "interactions.csv").write_text("customer_id,timestamp,channel,kind\n"
                                            "9000001,2026-12-02T08:00:00,web,visit\n")
    assert main(["ingest", "--data", str(batch), "--store", store_url]) == 0
    crm = load_crm(store_url)
    assert 9000001 in set(crm.tables["customers"]["customer_id"])
    assert 9000001 in set(crm.tables["interactions"]["customer_id"])


def test_ingest_needs_to_know_the_table_of_a_file(store_url, tmp_path, capsys):
    export = tmp_path / "export-2026-12-02.csv"
    export.write_text("customer_id,opened_at\n1,2026-12-02\n")
    assert main(["ingest", "--data", str(export), "--store", store_url]) == 2
    assert "say it with --table" in capsys.readouterr().err
