"""Bring your own data: mapping files, other CSV dialects, and unreadable files named."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from churn_risk.cli import main
from churn_risk.errors import UsageError
from churn_risk.features.io import DataSourceError, data_source
from churn_risk.features.mapping import load_mapping
from churn_risk.features.validation import DataContractError, load_crm

CUSTOMERS = (
    "Kundennummer;Seit;Typ;Kreditlinie\n"
    "A-01;01/06/2024;P;1.234,50\n"
    "A-02;13/06/2024;B;250,00\n"
    "A-03;02/07/2024;P;\n"
)
PURCHASES = (
    "Kunde;Datum;Betrag\n"
    "A-01;03/06/2024;12,50\n"
    "A-01;20/07/2024;1.020,00\n"
    "A-02;14/06/2024;7,00\n"
    "A-03;05/07/2024;3,25\n"
)
MAPPING = """
[csv]
delimiter = ";"
decimal = ","
thousands = "."
date_format = "%d/%m/%Y"

[tables.customers]
file = "kunden.csv"
[tables.customers.columns]
customer_id = "Kundennummer"
signup_date = "Seit"
segment = "Typ"
credit_line = "Kreditlinie"
[tables.customers.values.segment]
"P" = "consumer"
"B" = "small_business"

[tables.transactions]
file = "umsaetze.csv"
[tables.transactions.columns]
customer_id = "Kunde"
timestamp = "Datum"
amount = "Betrag"
"""


@pytest.fixture
def export(tmp_path):
    """A European export: semicolons, decimal commas, a byte-order mark, day-first dates."""
    (tmp_path / "kunden.csv").write_bytes(CUSTOMERS.encode("utf-8-sig"))
    (tmp_path / "umsaetze.csv").write_bytes(PURCHASES.encode("utf-8-sig"))
    (tmp_path / "mapping.toml").write_text(MAPPING)
    return tmp_path


def test_a_mapped_export_reads_into_the_contract(export):
    crm = load_crm(data_source(None, export / "mapping.toml"))  # source: the mapping's folder
    customers = crm["customers"].set_index("customer_id")
    assert customers.loc["A-01", "signup_date"] == pd.Timestamp("2024-06-01")  # 1 June
    assert customers.loc["A-02", "signup_date"] == pd.Timestamp("2024-06-13")
    assert list(customers["segment"]) == ["consumer", "small_business", "consumer"]
    assert crm.attributes == {"credit_line": "numeric"}
    assert customers.loc["A-01", "credit_line"] == 1234.5
    assert np.isnan(customers.loc["A-03", "credit_line"])
    tx = crm["transactions"]
    assert list(tx["amount"]) == [12.5, 1020.0, 7.0, 3.25]
    assert tx["timestamp"].iloc[1] == pd.Timestamp("2024-07-20")


def test_validate_with_a_mapping_shows_the_mapped_tables(export, capsys):
    assert main(["validate", "--mapping", str(export / "mapping.toml")]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "small_business" in out and "2024-06-13" in out


def test_a_date_that_does_not_match_the_declared_format_is_reported(export):
    text = PURCHASES.replace("14/06/2024", "2024-06-14")
    (export / "umsaetze.csv").write_bytes(text.encode("utf-8-sig"))
    with pytest.raises(DataContractError) as caught:
        load_crm(data_source(None, export / "mapping.toml"))
    problem = caught.value.problems[0]
    assert (problem.table, problem.column, problem.rule) == ("transactions", "timestamp", "type")
    assert "'%d/%m/%Y'" in problem.message and "'2024-06-14'" in problem.message
    assert list(problem.examples["row"]) == [2]  # the file's row, with its own column name
    assert "Datum" in problem.examples.columns


def test_without_a_mapping_the_error_says_which_separator_the_file_seems_to_use(export):
    (export / "customers.csv").write_text("customer_id;signup_date\n1;2024-01-01\n")
    (export / "transactions.csv").write_text("customer_id,timestamp,amount\n1,2024-02-01,3\n")
    with pytest.raises(DataSourceError, match=r"customers.csv.*seems to use ';'"):
        load_crm(export)
    (export / "customers.csv").write_text("customer_id\tsignup_date\n1\t2024-01-01\n")
    with pytest.raises(DataSourceError, match=r"seems to use 'tab'.*delimiter = \"tab\""):
        load_crm(export)


def test_a_byte_order_mark_is_read_without_a_mapping(tmp_path):
    (tmp_path / "customers.csv").write_bytes("customer_id,signup_date\n1,2024-01-01\n"
                                             .encode("utf-8-sig"))
    (tmp_path / "transactions.csv").write_text("customer_id,timestamp,amount\n1,2024-02-01,3\n")
    assert list(load_crm(tmp_path)["customers"].columns) == ["customer_id", "signup_date"]


def test_customers_derived_from_the_purchases(tmp_path):
    (tmp_path / "tx.txt").write_text(" 00001 19970101 2 29.33\n 00001 19970118 1 9.00\n"
                                     " 00002 19970112 1 12.00\n")
    (tmp_path / "m.toml").write_text("""
[tables.customers]
derive = "first_activity"
[tables.transactions]
file = "tx.txt"
names = ["customer_id", "date", "cds", "dollars"]
delimiter = "whitespace"
date_format = "%Y%m%d"
[tables.transactions.columns]
timestamp = "date"
amount = "dollars"
quantity = "cds"
""")
    crm = load_crm(data_source(None, tmp_path / "m.toml"))
    customers = crm["customers"]
    assert list(customers["customer_id"]) == ["00001", "00002"]  # codes keep their zeros
    assert list(customers["signup_date"]) == [pd.Timestamp("1997-01-01"),
                                              pd.Timestamp("1997-01-12")]


def test_a_mapping_reads_sql_tables_and_queries(tmp_path):
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table clients (no integer, since text)")
        conn.executemany("insert into clients values (?, ?)",
                         [(1, "2024-01-05"), (2, "2024-02-01")])
        conn.execute("create table sales (who integer, at text, eur real, void integer)")
        conn.executemany("insert into sales values (?, ?, ?, ?)",
                         [(1, "2024-03-01", 10.0, 0), (2, "2024-03-02", 4.0, 1)])
    (tmp_path / "m.toml").write_text("""
[tables.customers]
table = "clients"
[tables.customers.columns]
customer_id = "no"
signup_date = "since"
[tables.transactions]
query = "SELECT who, at, eur FROM sales WHERE void = 0"
[tables.transactions.columns]
customer_id = "who"
timestamp = "at"
amount = "eur"
""")
    crm = load_crm(data_source(f"sqlite:///{db}", tmp_path / "m.toml"))
    assert list(crm["transactions"]["amount"]) == [10.0]
    assert list(crm["customers"]["customer_id"]) == [1, 2]


@pytest.mark.parametrize("body, message", [
    ("[tables.customers]\nfiel = 'x.csv'\n", "tables.customers.fiel: unknown setting"),
    ("[tables.clients]\nfile = 'x.csv'\n", "tables.clients"),
    ("[csv]\ndelimiter = ';;'\n", "csv.delimiter"),
    ("[csv]\nencoding = 'klingon'\n", "unknown encoding"),
    ("[tables.labels.values.nope]\n'Y' = 1\n", "'nope' is not a column of the labels table"),
    ("[tables.labels]\nfile = 'a.csv'\nquery = 'select 1'\n", "give one of file, table"),
    ("not toml = = 1", "not valid TOML"),
])
def test_a_wrong_mapping_file_is_refused_naming_the_key(tmp_path, body, message):
    (tmp_path / "m.toml").write_text(body)
    with pytest.raises(UsageError, match="m.toml") as caught:
        load_mapping(tmp_path / "m.toml")
    assert message in str(caught.value)
