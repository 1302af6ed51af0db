"""The store goes away under a running service (PostgreSQL restarted, the network cut): every
route that needs it answers a 503 problem saying so, with `Retry-After`, never a 500; nothing is
half-stored; and the service answers again, by itself, once the store is back."""

from __future__ import annotations

import contextlib
import time

import pytest

from churn_risk.features.io import DataSource
from churn_risk.features.store import Store
from churn_risk.features.validation import load_crm
from tests.serve import assert_problem, bearer, request, running

READ = "read-key-0123456789abcdef"
INGEST = "ingest-key-0123456789abcd"
KEYS = f"{READ},ingest:{INGEST}"


@contextlib.contextmanager
def _closed(postgres, url: str):
    """The store's database refuses connections and every open one is cut, then it is back."""
    import sqlalchemy as sa

    name = sa.engine.make_url(url).database
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 f"WHERE datname = '{name}'")
        yield
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.dispose()


@pytest.mark.slow
def test_a_store_outage_is_a_503_that_says_retry_and_the_service_comes_back(
        postgres, champion_project, demo_folder):
    url = postgres.new_database()
    with Store(url) as store:
        store.write(load_crm(demo_folder))
    customers = load_crm(url).tables["customers"]["customer_id"].tolist()
    customer = customers[0]
    ticket = {"table": "tickets", "records": [
        {"customer_id": customer, "opened_at": "2026-12-02T09:30:00", "category": "billing"}]}
    with running(DataSource(url, store=True), champion_project, KEYS) as base:
        status, _, scored = request(base, "/score", {"customer_ids": [customer]},
                                    headers=bearer(READ))
        assert status == 200, scored
        with Store(url) as store:
            tickets_before = store.counts()["tickets"]

        with _closed(postgres, url):
            answers = {
                "events": request(base, "/events", ticket, headers=bearer(INGEST)),
                "page": request(base, f"/customers/{customers[1]}", headers=bearer(READ)),
                "list": request(base, "/customers", headers=bearer(READ)),
                "score": request(base, "/score", {"customer_ids": [customer]},
                                 headers=bearer(READ)),
            }
            for route, answer in answers.items():
                problem = assert_problem(answer, 503, "store-unavailable")
                assert "store" in problem["detail"] and "retry" in problem["detail"], route
                assert int(answer[1]["retry-after"]) > 0, route

        deadline = time.monotonic() + 30
        while request(base, "/events", ticket, headers=bearer(INGEST))[0] != 200:
            assert time.monotonic() < deadline, "the service did not come back with its store"
            time.sleep(0.5)
        with Store(url) as store:
            assert store.counts()["tickets"] == tickets_before + 1  # stored once, not twice
        status, _, page = request(base, f"/customers/{customers[1]}", headers=bearer(READ))
        assert status == 200


def _result(customer_id: str) -> dict:
    """A `/score` result as the service gives it out (`serving.schemas.CustomerScore`)."""
    return {"customer_id": customer_id, "model": {"name": "churn-risk", "version": "1"},
            "target": {"kind": "no_purchase", "horizon_days": 90},
            "features_as_of": "2026-12-01", "scored_at": "2026-12-02T10:00:00Z",
            "data_watermark": None, "churn_probability": 0.3, "risk_band": "high",
            "top_reasons": [{"feature": "tickets_open"}], "recommended_action": None}


@pytest.mark.slow
def test_scores_given_out_while_the_store_is_away_are_logged_once_it_is_back(postgres):
    from churn_risk.serving.predlog import PredictionLog

    url = postgres.new_database()
    with Store(url) as store:
        before = PredictionLog(store).record([_result("0")], "web")
        deadline = time.monotonic() + 10
        while store.predictions().empty:
            assert time.monotonic() < deadline, "the log is not written"
            time.sleep(0.1)
        log = PredictionLog(store)
        with _closed(postgres, url):
            given = log.record([_result(str(c)) for c in range(1, 4)], "web")
            time.sleep(2)  # the writer fails meanwhile, and keeps them
        log.flush(timeout=20)
        logged = store.predictions()
    assert sorted(logged["prediction_id"]) == sorted(r["prediction_id"] for r in before + given)
    assert logged.set_index("prediction_id").loc[given[0]["prediction_id"], "channel"] == "web"


def test_a_log_sent_again_after_a_lost_answer_is_stored_once(store_url):
    from churn_risk.serving.predlog import prediction_rows

    rows = prediction_rows([{**_result("7"), "prediction_id": "a" * 32}], "api", "web")
    with Store(store_url) as store:
        store.log_predictions(rows)
        store.log_predictions(rows)  # the commit went through, its answer did not
        assert store.predictions()["prediction_id"].tolist() == ["a" * 32]


def test_a_store_away_is_told_from_a_bad_statement():
    import sqlite3

    import psycopg
    import sqlalchemy as sa

    from churn_risk.features.io import DataSourceError
    from churn_risk.features.store import unreachable

    def wrapped(orig: Exception) -> Exception:
        try:
            try:
                raise sa.exc.OperationalError("SELECT 1", {}, orig)
            except sa.exc.SQLAlchemyError:
                raise DataSourceError("cannot write to the store") from None
        except DataSourceError as exc:
            return exc

    assert unreachable(wrapped(psycopg.OperationalError("connection refused")))
    assert unreachable(wrapped(sqlite3.OperationalError("database is locked")))
    assert not unreachable(wrapped(sqlite3.OperationalError("no such table: customers")))
    assert not unreachable(sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not unreachable(ValueError("not a store at all"))
