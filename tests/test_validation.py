"""Validation at the data boundary: every contract rule, the typed output, and the readers."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from churn_risk.features.contract import TABLES
from churn_risk.features.io import DataSourceError, write_tables
from churn_risk.features.validation import (
    MAX_EXAMPLES,
    RULES,
    STRING_DTYPE,
    CrmData,
    DataContractError,
    DataContractWarning,
    Problem,
    load_crm,
    table_schema,
    validate,
)

D = pd.Timestamp


def valid_tables() -> dict[str, pd.DataFrame]:
    """A small data set using every table, as typed Parquet input would be."""
    customers = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "signup_date": pd.to_datetime(["2021-01-05", "2021-03-01", "2022-06-30", "2023-01-01"]),
            "segment": ["consumer", "consumer", "small_business", None],
            "region": ["north", "south", "north", "east"],
            "age": [34.0, 51.0, np.nan, 28.0],  # numeric attribute
            "plan": ["basic", "premium", "basic", "basic"],  # categorical attribute
        }
    )
    products = pd.DataFrame(
        {
            "product_id": [10, 20, 30],
            "family": ["phone", "internet", "tv"],
            "price": [20.0, 35.0, 9.5],
        }
    )
    transactions = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 3, 4, 4],
            "timestamp": pd.to_datetime(
                [
                    "2023-01-02 10:00",
                    "2023-02-03",
                    "2023-02-10",
                    "2023-03-01",
                    "2023-03-05",
                    "2023-04-01 08:30",
                ],
                format="ISO8601",
            ),
            "amount": [19.9, 5.0, 0.0, 120.5, 35.0, 12.25],
            "transaction_id": [100, 101, 102, 103, 104, 105],
            "product_id": pd.array([10, 20, None, 30, 10, 20], dtype="Int64"),
            "quantity": [1.0, 2.0, 1.0, 1.0, np.nan, 3.0],
            "is_return": pd.array([False, False, True, None, False, False], dtype="boolean"),
        }
    )
    subscriptions = pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "product_id": [20, 20, 30],
            "start_date": pd.to_datetime(["2021-01-05", "2021-03-01", "2022-07-01"]),
            "end_date": pd.to_datetime([None, "2023-03-01", "2022-07-01"]),
            "recurring_amount": [35.0, 35.0, 9.5],
        }
    )
    interactions = pd.DataFrame(
        {
            "customer_id": [1, 2, 2],
            "timestamp": pd.to_datetime(["2023-01-03", "2023-02-11", "2023-02-12"]),
            "channel": ["web", "contact_center", "service"],
            "kind": ["complaint", None, "question"],
            "agent_id": ["A7", "A7", "B2"],
            "outsourced": pd.array([None, True, False], dtype="boolean"),
        }
    )
    tickets = pd.DataFrame(
        {
            "customer_id": [2, 3],
            "opened_at": pd.to_datetime(["2023-02-11", "2023-03-02"]),
            "closed_at": pd.to_datetime(["2023-02-15", None]),
            "category": ["billing", "network"],
            "resolved": pd.array([True, None], dtype="boolean"),
        }
    )
    deliveries = pd.DataFrame(
        {
            "customer_id": [3, 4],
            "promised_date": pd.to_datetime(["2023-03-03", "2023-03-08"]),
            "delivered_date": pd.to_datetime(["2023-03-04", None]),
            "damaged": pd.array([False, None], dtype="boolean"),
        }
    )
    surveys = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "timestamp": pd.to_datetime(["2023-02-01", "2023-02-20"]),
            "satisfaction": [8.0, 3.0],
            "nps": [9.0, np.nan],
            "price_score": [7.0, 2.0],  # a driver score
        }
    )
    campaigns = pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "campaign_id": [5, 5, 6],
            "timestamp": pd.to_datetime(["2023-01-15", "2023-01-15", "2023-02-01"]),
            "group": ["treatment", "control", None],
            "offer": ["discount", None, "upgrade"],
            "responded": pd.array([True, False, None], dtype="boolean"),
        }
    )
    labels = pd.DataFrame(
        {
            "customer_id": [1, 2, 1],
            "as_of": pd.to_datetime(["2023-01-01", "2023-01-01", "2023-02-01"]),
            "churned": [False, True, False],
        }
    )
    return {
        "customers": customers,
        "transactions": transactions,
        "subscriptions": subscriptions,
        "products": products,
        "interactions": interactions,
        "tickets": tickets,
        "deliveries": deliveries,
        "surveys": surveys,
        "campaigns": campaigns,
        "labels": labels,
    }


def minimal_tables() -> dict[str, pd.DataFrame]:
    tables = valid_tables()
    return {"customers": tables["customers"], "transactions": tables["transactions"]}


def problems_of(raw: dict[str, pd.DataFrame]) -> list[Problem]:
    with pytest.raises(DataContractError) as caught:
        validate(raw)
    return caught.value.problems


def only(problems: list[Problem], rule: str) -> Problem:
    found = [p for p in problems if p.rule == rule]
    assert len(found) == 1, [p.message for p in problems]
    return found[0]


# ---------------------------------------------------------------------------------------------
# Valid data


def test_valid_data_returns_typed_tables() -> None:
    crm = validate(valid_tables())

    assert isinstance(crm, CrmData)
    assert list(crm.tables) == list(TABLES)  # contract order
    tx = crm["transactions"]
    assert list(tx.columns) == list(TABLES["transactions"].column_names)
    assert tx["timestamp"].dtype == "datetime64[ns]"
    assert tx["amount"].dtype == np.float64
    assert tx["is_return"].dtype == "boolean"
    assert crm["interactions"]["channel"].dtype == STRING_DTYPE
    assert crm["customers"]["segment"].dtype == STRING_DTYPE
    assert crm["labels"]["churned"].dtype == "boolean"
    assert isinstance(tx.index, pd.RangeIndex)
    # Ids: integer everywhere; an optional id with nulls is the nullable Int64.
    for name in ("customers", "transactions", "subscriptions", "labels", "surveys"):
        assert crm[name]["customer_id"].dtype == np.int64, name
    # transactions.product_id has a null: product_id is the nullable Int64 in every table.
    for name in ("products", "subscriptions", "transactions"):
        assert crm[name]["product_id"].dtype == "Int64", name
    assert crm["interactions"]["agent_id"].dtype == STRING_DTYPE  # a text id stays text
    # Extra columns.
    assert crm.attributes == {"age": "numeric", "plan": "categorical"}
    assert crm["customers"]["age"].dtype == np.float64
    assert crm["customers"]["plan"].dtype == STRING_DTYPE
    assert crm.survey_drivers == ("price_score",)
    assert crm["surveys"]["price_score"].tolist() == [7.0, 2.0]


def test_validated_tables_match_their_pandera_schema() -> None:
    crm = validate(valid_tables())
    for name, frame in crm.tables.items():
        ids = {c.name: frame[c.name].dtype for c in TABLES[name].columns if c.kind == "id"}
        table_schema(TABLES[name], ids).validate(frame)


def test_absent_optional_tables_and_columns_stay_absent() -> None:
    raw = minimal_tables()
    raw["transactions"] = raw["transactions"][["customer_id", "timestamp", "amount"]]

    crm = validate(raw)

    assert set(crm.tables) == {"customers", "transactions"}
    assert not crm.has("products") and crm.has("transactions")
    with pytest.raises(KeyError, match="products"):
        crm["products"]
    assert list(crm["transactions"].columns) == ["customer_id", "timestamp", "amount"]


def test_the_input_frames_are_left_unchanged() -> None:
    raw = valid_tables()
    raw["transactions"]["amount"] = raw["transactions"]["amount"].astype(str)
    before = {name: frame.copy(deep=True) for name, frame in raw.items()}
    validate(raw)
    for name, frame in raw.items():
        pd.testing.assert_frame_equal(frame, before[name], obj=name)


def test_an_empty_activity_table_is_valid(tmp_path) -> None:
    # The validator accepts a table with no rows (typed as the contract says) ...
    raw = {
        "customers": pd.DataFrame({"customer_id": ["1"], "signup_date": ["2023-01-01"]}),
        "transactions": pd.DataFrame({"customer_id": pd.Series([], dtype=object),
                                      "timestamp": pd.Series([], dtype=object),
                                      "amount": pd.Series([], dtype=object)}),
    }
    crm = validate(raw)
    assert len(crm["transactions"]) == 0
    assert crm["transactions"]["timestamp"].dtype == "datetime64[ns]"
    assert crm["transactions"]["customer_id"].dtype == crm["customers"]["customer_id"].dtype
    # ... but a header-only (or 0-byte) CSV file is refused by the reader, naming the file.
    (tmp_path / "customers.csv").write_text("customer_id,signup_date\n1,2023-01-01\n")
    (tmp_path / "transactions.csv").write_text("customer_id,timestamp,amount\n")
    with pytest.raises(DataSourceError, match="transactions.csv.*header but no rows"):
        load_crm(tmp_path)
    (tmp_path / "transactions.csv").write_text("")
    with pytest.raises(DataSourceError, match="transactions.csv.*empty"):
        load_crm(tmp_path)


def test_subscriptions_alone_are_an_activity_table() -> None:
    tables = valid_tables()
    crm = validate({"customers": tables["customers"], "subscriptions": tables["subscriptions"]})
    assert set(crm.tables) == {"customers", "subscriptions"}


# ---------------------------------------------------------------------------------------------
# One test per rule


def test_required_table_customers() -> None:
    raw = minimal_tables()
    del raw["customers"]
    p = only(problems_of(raw), "required_table")
    assert (p.table, p.column) == ("customers", None)
    assert "customers" in p.message and "required_table" in p.message


def test_required_table_activity() -> None:
    p = only(problems_of({"customers": valid_tables()["customers"]}), "required_table")
    assert "transactions" in p.table and "subscriptions" in p.table
    assert "required_table" in p.message


def test_required_column() -> None:
    raw = minimal_tables()
    raw["transactions"] = raw["transactions"].rename(columns={"amount": "Amount"})
    p = only(problems_of(raw), "required_column")
    assert (p.table, p.column) == ("transactions", "amount")
    assert "transactions.amount" in p.message and "'Amount'" in p.message  # a hint


def test_type_problems_list_the_unparseable_rows() -> None:
    raw = minimal_tables()
    tx = raw["transactions"].astype({"timestamp": str, "amount": str})
    tx.loc[2, "timestamp"] = "2024-13-45"
    tx.loc[4, "amount"] = "abc"
    raw["transactions"] = tx

    problems = problems_of(raw)

    assert {(p.column, p.rule) for p in problems} == {("timestamp", "type"), ("amount", "type")}
    bad_date = next(p for p in problems if p.column == "timestamp")
    assert bad_date.table == "transactions"
    assert bad_date.examples["row"].tolist() == [2]
    assert bad_date.examples["timestamp"].tolist() == ["2024-13-45"]  # the input value
    assert "transactions.timestamp" in bad_date.message and "type" in bad_date.message
    bad_amount = next(p for p in problems if p.column == "amount")
    assert bad_amount.examples["row"].tolist() == [4]
    assert bad_amount.examples["amount"].tolist() == ["abc"]


def test_out_of_range_dates_are_type_problems() -> None:
    raw = minimal_tables()
    raw["customers"] = raw["customers"].astype({"signup_date": str})
    raw["customers"].loc[1, "signup_date"] = "1500-01-01"
    p = only(problems_of(raw), "type")
    assert (p.table, p.column, p.examples["row"].tolist()) == ("customers", "signup_date", [1])


def test_infinite_numbers_are_type_problems() -> None:
    raw = minimal_tables()
    raw["transactions"].loc[3, "amount"] = np.inf
    p = only(problems_of(raw), "type")
    assert (p.table, p.column, p.examples["row"].tolist()) == ("transactions", "amount", [3])


def test_not_null() -> None:
    raw = minimal_tables()
    raw["transactions"].loc[[1, 3], "amount"] = np.nan
    p = only(problems_of(raw), "not_null")
    assert (p.table, p.column) == ("transactions", "amount")
    assert p.examples["row"].tolist() == [1, 3]
    assert p.examples["amount"].isna().all()
    assert p.message.startswith("transactions.amount: 2 rows are empty")


def test_unparseable_required_value_is_a_type_problem_not_also_a_null() -> None:
    raw = minimal_tables()
    raw["transactions"] = raw["transactions"].astype({"amount": str})
    raw["transactions"].loc[0, "amount"] = "n/a?"
    p = only(problems_of(raw), "type")
    assert p.column == "amount"


def test_unique_key_single_column() -> None:
    raw = minimal_tables()
    customers = raw["customers"]
    raw["customers"] = pd.concat([customers, customers.iloc[[2]]], ignore_index=True)
    p = only(problems_of(raw), "unique_key")
    assert (p.table, p.column) == ("customers", "customer_id")
    assert p.examples["row"].tolist() == [2, 4]
    assert p.examples["customer_id"].tolist() == [3, 3]


def test_unique_key_composite() -> None:
    tables = valid_tables()
    labels = tables["labels"]
    tables["labels"] = pd.concat([labels, labels.iloc[[0]].assign(churned=True)], ignore_index=True)
    p = only(problems_of(tables), "unique_key")
    assert (p.table, p.column) == ("labels", "customer_id, as_of")
    assert p.examples["row"].tolist() == [0, 3]
    assert "labels.(customer_id, as_of)" in p.message
    assert "(1, 2023-01-01 00:00:00)" in p.message


def test_unique_key_ignores_missing_optional_keys() -> None:
    raw = minimal_tables()
    raw["transactions"]["transaction_id"] = pd.array([1, None, None, 2, 3, 4], dtype="Int64")
    assert validate(raw).has("transactions")


def test_orphan_customer_id() -> None:
    raw = minimal_tables()
    raw["transactions"].loc[[1, 5], "customer_id"] = 99
    p = only(problems_of(raw), "orphan_id")
    assert (p.table, p.column) == ("transactions", "customer_id")
    assert p.examples["row"].tolist() == [1, 5]
    assert "missing from customers" in p.message


def test_orphan_product_id_only_checked_against_a_present_products_table() -> None:
    tables = valid_tables()
    tables["subscriptions"].loc[0, "product_id"] = 77
    p = only(problems_of(tables), "orphan_id")
    assert (p.table, p.column, p.examples["row"].tolist()) == ("subscriptions", "product_id", [0])

    without_products = {k: v for k, v in tables.items() if k != "products"}
    assert not validate(without_products).has("products")


def test_min_value() -> None:
    raw = minimal_tables()
    raw["transactions"].loc[[0, 3, 4], "amount"] = [-1.0, -20.0, -0.5]
    p = only(problems_of(raw), "min_value")
    assert (p.table, p.column) == ("transactions", "amount")
    assert p.examples["row"].tolist() == [0, 3, 4]
    assert p.message.startswith("transactions.amount: 3 rows are negative")
    assert "rule min_value: amount >= 0" in p.message


def test_max_value() -> None:
    tables = valid_tables()
    tables["surveys"].loc[1, "nps"] = 11.0
    p = only(problems_of(tables), "max_value")
    assert (p.table, p.column, p.examples["row"].tolist()) == ("surveys", "nps", [1])
    assert "nps <= 10" in p.message


def test_allowed_values() -> None:
    tables = valid_tables()
    tables["interactions"].loc[1, "channel"] = "phone"
    tables["campaigns"].loc[0, "group"] = "holdout"
    problems = problems_of(tables)
    assert {(p.table, p.column, p.rule) for p in problems} == {
        ("interactions", "channel", "allowed_values"),
        ("campaigns", "group", "allowed_values"),
    }
    channel = next(p for p in problems if p.table == "interactions")
    assert channel.examples["row"].tolist() == [1]
    assert channel.examples["channel"].tolist() == ["phone"]
    assert "'phone'" in channel.message and "contact_center" in channel.message


def test_date_order() -> None:
    tables = valid_tables()
    tables["subscriptions"].loc[1, "end_date"] = D("2020-01-01")  # ends before it starts
    p = only(problems_of(tables), "date_order")
    assert (p.table, p.column) == ("subscriptions", "end_date")
    assert p.examples["row"].tolist() == [1]
    assert list(p.examples.columns[:3]) == ["row", "start_date", "end_date"]
    assert "start_date <= end_date" in p.message


def test_examples_are_capped_and_the_count_is_complete() -> None:
    raw = minimal_tables()
    tx = raw["transactions"]
    raw["transactions"] = pd.concat([tx] * 3, ignore_index=True).assign(
        amount=-1.0, transaction_id=range(18)
    )
    p = only(problems_of(raw), "min_value")
    assert len(p.examples) == MAX_EXAMPLES
    assert p.examples["row"].tolist() == [0, 1, 2, 3, 4]
    assert "18 rows are negative" in p.message


def test_every_problem_is_reported_at_once() -> None:
    tables = valid_tables()
    del tables["customers"]["signup_date"]
    tables["transactions"].loc[0, "amount"] = -5.0
    tables["surveys"].loc[0, "nps"] = 12.0
    tables["tickets"].loc[0, "closed_at"] = D("2000-01-01")
    tables["labels"]["churned"] = pd.array([False, True, None], dtype="boolean")

    with pytest.raises(DataContractError) as caught:
        validate(tables)

    error = caught.value
    assert {(p.table, p.column, p.rule) for p in error.problems} == {
        ("customers", "signup_date", "required_column"),
        ("transactions", "amount", "min_value"),
        ("surveys", "nps", "max_value"),
        ("tickets", "closed_at", "date_order"),
        ("labels", "churned", "not_null"),
    }
    assert all(p.rule in RULES for p in error.problems)
    report = str(error)
    assert "5 problems" in report
    for p in error.problems:
        assert p.message in report
    assert "-5.0" in report  # the example row is shown
    assert isinstance(error, ValueError)
    assert pickle.loads(pickle.dumps(error)).problems[0].message == error.problems[0].message


# ---------------------------------------------------------------------------------------------
# Types and ids


def test_ids_with_leading_zeros_are_text_in_every_table() -> None:
    raw = minimal_tables()
    raw["customers"]["customer_id"] = ["00123", "2", "3", "4"]
    raw["transactions"]["customer_id"] = [123, 2, 2, 3, 4, 4]  # integers elsewhere

    problems = problems_of(raw)  # 123 is not "00123": the join would silently miss

    p = only(problems, "orphan_id")
    assert p.examples["customer_id"].tolist() == [123]

    raw["transactions"]["customer_id"] = ["00123", "2", "2", "3", "4", "4"]
    crm = validate(raw)
    assert crm["customers"]["customer_id"].dtype == STRING_DTYPE
    assert crm["transactions"]["customer_id"].dtype == STRING_DTYPE
    assert crm["customers"]["customer_id"].tolist() == ["00123", "2", "3", "4"]


def test_integer_like_text_ids_become_int64_everywhere() -> None:
    raw = minimal_tables()
    raw["customers"]["customer_id"] = [" 1", "2", "3", "4 "]  # CSV text, blanks around
    raw["transactions"]["customer_id"] = [1.0, 1.0, 2.0, 3.0, 4.0, 4.0]  # a float column
    raw["transactions"]["product_id"] = ["10", "20", None, "30.0", "10", "20"]
    crm = validate(raw)
    assert crm["customers"]["customer_id"].dtype == np.int64
    assert crm["transactions"]["customer_id"].dtype == np.int64
    assert crm["customers"]["customer_id"].tolist() == [1, 2, 3, 4]
    assert crm["transactions"]["product_id"].tolist()[3] == 30


def test_product_id_is_int64_everywhere_without_nulls() -> None:
    tables = valid_tables()
    tables["transactions"]["product_id"] = [10, 20, 20, 30, 10, 20]
    crm = validate(tables)
    for name in ("products", "subscriptions", "transactions"):
        assert crm[name]["product_id"].dtype == np.int64, name


def test_text_ids_mixed_with_numbers_become_text_everywhere() -> None:
    raw = minimal_tables()
    raw["customers"]["customer_id"] = ["C1", "2", "3", "4"]
    raw["transactions"]["customer_id"] = ["C1", "C1", "2", "3", "4", "4"]
    crm = validate(raw)
    assert crm["transactions"]["customer_id"].tolist() == ["C1", "C1", "2", "3", "4", "4"]
    assert crm["customers"]["customer_id"].dtype == crm["transactions"]["customer_id"].dtype


def test_booleans_from_text_and_numbers() -> None:
    tables = valid_tables()
    tables["transactions"]["is_return"] = ["yes", "No", "TRUE", "0", None, " false "]
    tables["labels"]["churned"] = [0, 1, 0]
    crm = validate(tables)
    assert crm["transactions"]["is_return"].tolist() == [True, False, True, False, pd.NA, False]
    assert crm["labels"]["churned"].tolist() == [False, True, False]

    tables["transactions"]["is_return"] = ["yes", "maybe", "TRUE", "0", None, "2"]
    p = only(problems_of(tables), "type")
    assert (p.column, p.examples["row"].tolist()) == ("is_return", [1, 5])


def test_timezones_are_converted_to_utc_then_dropped() -> None:
    raw = minimal_tables()
    tx = raw["transactions"]
    tx["timestamp"] = tx["timestamp"].dt.tz_localize("Europe/Paris")
    raw["customers"]["signup_date"] = [
        "2021-01-05T10:00:00+02:00",
        "2021-03-01",
        "2022-06-30 23:30",
        "2023-01-01T00:00:00Z",
    ]
    crm = validate(raw)
    assert crm["transactions"]["timestamp"].dtype == "datetime64[ns]"
    assert crm["transactions"]["timestamp"].iloc[0] == D("2023-01-02 09:00")  # 10:00 in Paris
    assert crm["customers"]["signup_date"].tolist() == [
        D("2021-01-05 08:00"),
        D("2021-03-01"),
        D("2022-06-30 23:30"),
        D("2023-01-01"),
    ]


# ---------------------------------------------------------------------------------------------
# Extra columns


def test_unusable_customer_attributes_are_dropped_with_a_warning() -> None:
    n = 60
    customers = pd.DataFrame(
        {
            "customer_id": range(n),
            "signup_date": pd.Timestamp("2022-01-01"),
            "tier": ["gold", "silver"] * (n // 2),  # categorical
            "score": [str(i / 2) for i in range(n)],  # numeric text
            "has_app": [True, False] * (n // 2),  # boolean -> categorical
            "notes": [f"called on day {i}" for i in range(n)],  # free text
            "last_login": pd.Timestamp("2023-01-01"),  # dates
            "birthday": [f"1980-01-{1 + i % 28:02d}" for i in range(n)],  # dates as text
        }
    )
    transactions = pd.DataFrame(
        {"customer_id": [0], "timestamp": [D("2023-01-01")], "amount": [1.0], "note": ["x"]}
    )
    with pytest.warns(DataContractWarning) as caught:
        crm = validate({"customers": customers, "transactions": transactions})

    assert crm.attributes == {"tier": "categorical", "score": "numeric", "has_app": "categorical"}
    assert list(crm["customers"].columns) == [
        "customer_id",
        "signup_date",
        "tier",
        "score",
        "has_app",
    ]
    assert crm["customers"]["score"].dtype == np.float64
    assert crm["customers"]["has_app"].tolist()[:2] == ["True", "False"]
    dropped = " ".join(str(w.message) for w in caught)
    for name in ("customers.notes", "customers.last_login", "customers.birthday"):
        assert name in dropped
    assert "note" not in crm["transactions"].columns  # other tables: dropped quietly


def test_non_numeric_survey_columns_are_dropped_with_a_warning() -> None:
    tables = valid_tables()
    tables["surveys"]["comment"] = ["great", "too slow"]
    tables["surveys"]["benefits_score"] = ["6", "4.5"]  # numeric text is a driver
    with pytest.warns(DataContractWarning, match="surveys.comment"):
        crm = validate(tables)
    assert crm.survey_drivers == ("price_score", "benefits_score")
    assert "comment" not in crm["surveys"].columns


def test_valid_data_raises_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate(valid_tables())


# ---------------------------------------------------------------------------------------------
# Readers: Parquet and CSV folders, SQL databases


def test_csv_and_parquet_of_the_same_data_validate_to_equal_frames(tmp_path) -> None:
    tables = valid_tables()
    write_tables(tables, tmp_path / "parquet", fmt="parquet")
    write_tables(tables, tmp_path / "csv", fmt="csv")

    from_parquet = load_crm(tmp_path / "parquet")
    from_csv = load_crm(tmp_path / "csv")

    assert list(from_csv.tables) == list(from_parquet.tables) == list(TABLES)
    for name in TABLES:
        pd.testing.assert_frame_equal(from_csv[name], from_parquet[name], obj=name)
    assert from_csv.attributes == from_parquet.attributes
    assert from_csv.survey_drivers == from_parquet.survey_drivers


def test_csv_problems_show_the_text_as_written(tmp_path) -> None:
    raw = minimal_tables()
    write_tables(raw, tmp_path, fmt="csv")
    path = tmp_path / "transactions.csv"
    path.write_text(path.read_text().replace("120.5", "12O.5"))  # letter O, not zero

    with pytest.raises(DataContractError) as caught:
        load_crm(tmp_path)

    p = only(caught.value.problems, "type")
    assert (p.table, p.column) == ("transactions", "amount")
    assert p.examples["row"].tolist() == [3]
    assert p.examples["amount"].tolist() == ["12O.5"]


def test_sqlite_database(tmp_path) -> None:
    tables = valid_tables()
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    for name, frame in tables.items():
        frame.to_sql(name, engine, index=False)
    engine.dispose()

    crm = load_crm(url)

    assert list(crm.tables) == list(TABLES)
    expected = validate(tables)
    for name in TABLES:
        pd.testing.assert_frame_equal(crm[name], expected[name], obj=name)


def test_sqlite_problems_are_reported(tmp_path) -> None:
    tables = minimal_tables()
    tables["transactions"].loc[2, "amount"] = -3.0
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    for name, frame in tables.items():
        frame.to_sql(name, engine, index=False)
    engine.dispose()

    with pytest.raises(DataContractError) as caught:
        load_crm(url)
    p = only(caught.value.problems, "min_value")
    assert p.examples["row"].tolist() == [2]
