"""Outcomes from the channels: what was done with a score given out, quoted by its
`prediction_id`. The store's part on SQLite and PostgreSQL (ids in the log, old logs upgraded,
reports stored once, a prediction's outcome the newest report of each field), `churn outcomes
load`, the customer page, and `POST /outcomes` on a real server on a store."""

from __future__ import annotations

import re
import time
from html import unescape

import pandas as pd
import pytest
import sqlalchemy as sa

from churn_risk.features.store import PREDICTION_COLUMNS, PREDICTIONS, Store, new_prediction_id
from churn_risk.serving.outcomes import OutcomeErrors, checked_outcomes
from churn_risk.serving.pagemodel import PastRecommendation, past_recommendations
from tests.records import logged_prediction, utc_text
from tests.serve import assert_problem, bearer, request

from . import browser

READ = "read-key-0123456789abcdef"
INGEST = "ingest-key-0123456789abcd"
KEYS = f"{READ},ingest:{INGEST}"


def _report(prediction: dict, **fields) -> dict:
    return {"prediction_id": prediction["prediction_id"],
            "customer_id": prediction["customer_id"], "response": "taken",
            "channel": "contact_center", "occurred_at": utc_text(-1), **fields}


# --------------------------------------------------------------------------------------------
# The store (SQLite and PostgreSQL)
# --------------------------------------------------------------------------------------------


def test_a_log_kept_before_predictions_had_ids_gets_the_column(store_url):
    """A store whose prediction_log predates ids keeps working: read as it is, then written
    with ids, which are unique."""
    engine = sa.create_engine(store_url)
    text = [c for c in PREDICTION_COLUMNS if c not in (
        "logged_at", "prediction_id", "horizon_days", "churn_probability")]
    old = sa.Table(PREDICTIONS, sa.MetaData(),  # the log as it was before ids
                   sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                   sa.Column("logged_at", sa.DateTime, nullable=False),
                   *(sa.Column(c, sa.Text, index=c == "customer_id") for c in text),
                   sa.Column("horizon_days", sa.Integer),
                   sa.Column("churn_probability", sa.Float(precision=53)))
    with engine.begin() as conn:
        old.create(conn)
        conn.execute(sa.insert(old), [{"logged_at": pd.Timestamp("2026-01-02").to_pydatetime(),
                                       "customer_id": "7", "churn_probability": 0.3}])
    engine.dispose()

    with Store(store_url) as store:  # a read first: the column is added for it
        before = store.predictions()
        assert len(before) == 1 and before["prediction_id"].isna().all()
        row = logged_prediction(7)
        store.log_predictions([row])
        assert list(store.predictions_by_id([row["prediction_id"]])) == [row["prediction_id"]]
    with Store(store_url) as store:  # a write first
        store.log_predictions([logged_prediction(8)])
        assert len(store.predictions()) == 3
        store.log_predictions([{**logged_prediction(9), "prediction_id": row["prediction_id"]}])
        kept = store.predictions()  # an id is stored once: the first entry stays
        assert len(kept) == 3 and kept.set_index("prediction_id").loc[
            row["prediction_id"], "customer_id"] == "7"
    engine = sa.create_engine(store_url)
    with engine.connect() as conn:
        indexes = {i["name"]: i for i in sa.inspect(conn).get_indexes(PREDICTIONS)}
    engine.dispose()
    assert indexes["ix_prediction_log_prediction_id"]["unique"]


def test_reports_are_stored_once_and_an_outcome_is_the_newest_report_of_each_field(store_url):
    first, second = logged_prediction(101), logged_prediction(102, action="none")
    with Store(store_url) as store:
        assert store.outcomes().empty and store.outcome_state().empty
        store.log_predictions([first, second])
        reports = [_report(first),
                   _report(second, action="loyalty_discount", response="declined",
                           outcome_id="crm-1")]
        rows = checked_outcomes(reports, store)
        assert rows[0]["action"] is None  # as reported: the recommended one (see the state)
        assert rows[0]["outcome_key"].startswith("sha256:") and rows[1]["outcome_key"] == \
            "id:crm-1"
        assert store.record_outcomes(rows) == 2
        assert store.record_outcomes(checked_outcomes(reports, store)) == 0  # a resend
        # the same report twice in a batch is one report
        assert store.record_outcomes(checked_outcomes([reports[0]] * 2, store)) == 0
        # months later: whether they stayed, a new report of the same prediction
        later = _report(first, stayed=True, occurred_at=utc_text())
        later.pop("channel")
        assert store.record_outcomes(checked_outcomes([later], store)) == 1

        stored = store.outcomes()
        assert list(stored.columns) == ["id", "outcome_key", "prediction_id", "customer_id",
                                        "action", "response", "channel", "occurred_at",
                                        "stayed", "reported_at"]
        assert len(stored) == 3 and len(store.outcomes(102)) == 1
        state = store.outcome_state().set_index("prediction_id")
    assert len(state) == 2
    one = state.loc[first["prediction_id"]]
    # the channel of the first report stands (the later one had none); stayed is the later one
    assert (one["action"], one["response"], one["channel"], one["reports"]) == (
        "service_recovery", "taken", "contact_center", 2)
    assert state.loc[[first["prediction_id"]], "stayed"].tolist() == [True]
    assert (one["churn_probability"], one["horizon_days"], one["features_as_of"],
            one["model_version"]) == (0.42, 90, "2026-12-01", "1")
    two = state.loc[second["prediction_id"]]
    assert (two["action"], two["response"]) == ("loyalty_discount", "declined")
    assert state.loc[[second["prediction_id"]], "stayed"].isna().all()


def test_whether_the_customer_stayed_is_reported_by_prediction_id_alone(store_url):
    first, second, third = (logged_prediction(111), logged_prediction(112, action=None),
                            logged_prediction(113))
    with Store(store_url) as store:
        store.log_predictions([first, second, third])
        taken = _report(first)
        taken.pop("customer_id")  # the prediction says whom it was about
        store.record_outcomes(checked_outcomes([taken], store))
        later = [{"prediction_id": first["prediction_id"], "stayed": False},
                 # what was done and whether they stayed, in one batch
                 _report(second, response="declined", action="loyalty_discount"),
                 # ... of a prediction that recommended nothing: its action named before
                 {"prediction_id": second["prediction_id"], "stayed": True}]
        assert store.record_outcomes(checked_outcomes(later, store)) == 3
        # nothing says what was done with the third: a bare "stayed" is refused
        with pytest.raises(OutcomeErrors) as raised:
            checked_outcomes([{"prediction_id": third["prediction_id"], "stayed": True}], store)
        state = store.outcome_state().set_index("prediction_id")
    errors = {e["field"]: e["message"] for e in raised.value.errors}
    assert set(errors) == {"records[0].response", "records[0].occurred_at"}
    assert "may leave it out" in errors["records[0].response"]
    one, two = state.loc[first["prediction_id"]], state.loc[second["prediction_id"]]
    assert (one["customer_id"], one["response"], one["reports"]) == ("111", "taken", 2)
    assert one["occurred_at"] == pd.Timestamp(taken["occurred_at"]).tz_localize(None)
    assert state.loc[[first["prediction_id"]], "stayed"].tolist() == [False]
    assert (two["response"], two["action"], two["reports"]) == (
        "declined", "loyalty_discount", 2)
    assert state.loc[[second["prediction_id"]], "stayed"].tolist() == [True]


def test_every_broken_rule_is_named_and_nothing_is_kept(store_url):
    prediction, none = logged_prediction(201), logged_prediction(202, action=None)
    with Store(store_url) as store:
        store.log_predictions([prediction, none])
        with pytest.raises(OutcomeErrors) as raised:
            checked_outcomes([
                _report(prediction),
                _report(prediction, response="maybe"),
                _report(prediction, prediction_id="f" * 32),
                _report(prediction, customer_id="999"),
                _report(prediction, occurred_at=utc_text(-24 * 60)),
                _report(prediction, occurred_at=utc_text(60), stayed="yes"),
                _report(none),
                _report(prediction, channel="fax", colour="red"),
            ], store)
    errors = {e["field"]: e["message"] for e in raised.value.errors}
    assert 'must be "taken" or "declined"' in errors["records[1].response"]
    assert "f" * 32 in errors["records[2].prediction_id"]
    assert "was about customer 201, not 999" in errors["records[3].customer_id"]
    assert "before the prediction was given out" in errors["records[4].occurred_at"]
    assert "in the future" in errors["records[5].occurred_at"]
    assert "true or false" in errors["records[5].stayed"]
    assert "recommended no action" in errors["records[6].action"]
    assert "contact_center" in errors["records[7].channel"]
    assert "not a field" in errors["records[7].colour"]
    assert not any(f.startswith("records[0]") for f in errors)


def test_a_bulk_of_reports_is_counted_right(store_url):
    """10,000 reports in one statement-batched write: new ones and resends counted apart."""
    rows = [{"outcome_key": f"k{i}", "prediction_id": new_prediction_id(), "customer_id": "1",
             "action": "service_recovery", "response": "taken", "channel": None,
             "occurred_at": pd.Timestamp("2026-12-01").to_pydatetime(), "stayed": None}
            for i in range(10_000)]
    with Store(store_url) as store:
        assert store.record_outcomes(rows) == 10_000
        again = rows[:3000] + [{**rows[0], "outcome_key": "new"}] * 2
        assert store.record_outcomes(again) == 1
        assert len(store.outcomes()) == 10_001


def test_past_recommendations_keep_reported_ones_and_show_the_newest_first(store_url):
    reported = logged_prediction(301, scored_minutes_ago=600, probability=0.61)
    routine = [logged_prediction(301, scored_minutes_ago=m, action=None, channel=None,
                                 source="batch") for m in (50, 40, 30, 20, 10)]
    other = logged_prediction(302, scored_minutes_ago=5)
    with Store(store_url) as store:
        assert past_recommendations(store, 301) == ()
        store.log_predictions([reported, *routine, other])
        store.record_outcomes(checked_outcomes(
            [_report(reported, action="loyalty_discount", occurred_at=utc_text(-500)),
             _report(reported, stayed=False, occurred_at=utc_text(-2))], store))
        past = past_recommendations(store, 301)
    assert len(past) == 5  # the reported one, then the four newest routine scores
    assert [p.prediction_id for p in past] == [r["prediction_id"] for r in routine[:0:-1]] + [
        reported["prediction_id"]]
    last = past[-1]
    assert (last.probability, last.action, last.action_reported, last.other_action) == (
        0.61, "service_recovery", "loyalty_discount", True)
    assert (last.response, last.stayed, last.reported_by) == ("taken", False, "contact_center")
    assert past[0].response is None and past[0].action is None and past[0].source == "batch"


# --------------------------------------------------------------------------------------------
# `churn outcomes load`
# --------------------------------------------------------------------------------------------


def test_a_bad_file_is_refused_in_a_line_and_nothing_is_stored(tmp_path, capsys):
    from churn_risk.cli import main

    url = f"sqlite:///{tmp_path / 'store.db'}"
    predictions = [logged_prediction(401), logged_prediction(402)]
    with Store(url) as store:
        store.log_predictions(predictions)
    good = pd.DataFrame([_report(p, stayed=i == 0) for i, p in enumerate(predictions)])

    good.drop(columns="prediction_id").to_csv(tmp_path / "no-id.csv", index=False)
    assert main(["outcomes", "load", str(tmp_path / "no-id.csv"), "--store", url]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no column prediction_id" in " ".join(err.split())
    good.drop(columns="response").to_csv(tmp_path / "no-response.csv", index=False)
    assert main(["outcomes", "load", str(tmp_path / "no-response.csv"), "--store", url]) == 1
    err = " ".join(capsys.readouterr().err.split())  # what was done is not reported yet
    assert "row 0, response: must be \"taken\" or \"declined\"" in err

    assert main(["outcomes", "load", str(tmp_path / "missing.csv"), "--store", url]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

    good.assign(response=["taken", "later"]).to_parquet(tmp_path / "bad.parquet")
    assert main(["outcomes", "load", str(tmp_path / "bad.parquet"), "--store", url]) == 1
    err = capsys.readouterr().err
    assert "row 1, response: must be" in err and "nothing stored" in err
    with Store(url) as store:
        assert store.outcomes().empty

    good.to_parquet(tmp_path / "good.parquet")
    assert main(["outcomes", "load", str(tmp_path / "good.parquet"), "--store", url]) == 0
    assert "2 new" in " ".join(capsys.readouterr().out.split())
    assert main(["outcomes", "load", str(tmp_path / "good.parquet"), "--store", url]) == 0
    assert "0 new, 2 stored before" in " ".join(capsys.readouterr().out.split())
    with Store(url) as store:
        assert store.outcome_state()["stayed"].tolist() == [True, False]
    # months later, the CRM's file of who stayed: prediction_id and stayed only
    pd.DataFrame({"prediction_id": [p["prediction_id"] for p in predictions],
                  "stayed": ["no", "yes"]}).to_csv(tmp_path / "stayed.csv", index=False)
    assert main(["outcomes", "load", str(tmp_path / "stayed.csv"), "--store", url]) == 0
    with Store(url) as store:
        state = store.outcome_state()
    assert state["stayed"].tolist() == [False, True] and state["reports"].tolist() == [2, 2]
    assert state["response"].tolist() == ["taken", "taken"]


def test_a_server_on_files_says_outcomes_need_a_store():
    from churn_risk.serving.ingest import Ingestion
    from churn_risk.serving.problems import Problem
    from churn_risk.serving.schemas import OutcomesRequest

    body = OutcomesRequest(records=[{"prediction_id": "x"}])
    with pytest.raises(Problem) as raised:
        Ingestion(None).report_outcomes(body)
    assert raised.value.status == 409 and "outcome reports need a store" in raised.value.detail


# --------------------------------------------------------------------------------------------
# The customer page
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(prep, fitted):
    from churn_risk.features.labels import scoring_as_of
    from churn_risk.serving.scorer import ModelRef, ScoringState

    state = ScoringState(fitted.bundle, ModelRef("churn-risk", "3", "champion"), prep,
                         scoring_as_of(prep))
    return state.page_model(state.ids[0])


def _past_section(html: str) -> str:
    found = re.search(r'id="past-recommendations".*?</section>', html, re.S)
    assert found
    return found.group(0)


def test_the_page_shows_past_recommendations_and_their_outcomes(page, tmp_path):
    from dataclasses import replace
    from datetime import datetime

    from churn_risk.serving.page import render_customer_page

    past = (
        PastRecommendation("a" * 32, datetime(2026, 12, 2, 9, 30), 0.2346, None, None, "batch"),
        PastRecommendation("b" * 32, datetime(2026, 11, 3, 14, 5), 0.61, "service_recovery",
                           "contact_center", "api", "taken", "<script>x</script>", "web",
                           datetime(2026, 11, 4, 10), False),
        PastRecommendation("c" * 32, datetime(2026, 10, 1, 8, 0), 0.5, "loyalty_discount",
                           "sales", "api", "declined", "loyalty_discount", "sales",
                           datetime(2026, 10, 2), None),
    )
    html = render_customer_page(replace(page, past=past))
    section = _past_section(html)
    rows = re.findall(r'<tr data-prediction-id="(\w+)">(.*?)</tr>', section, re.S)
    assert [r[0] for r in rows] == ["a" * 32, "b" * 32, "c" * 32]
    text = [" ".join(unescape(re.sub(r"<[^>]+>", " ", r[1])).split()) for r in rows]
    assert text[0] == "2 Dec 2026 09:30 23.5% No action Batch not reported —"
    assert text[1] == ("3 Nov 2026 14:05 61.0% Service recovery Contact center Taken "
                       "· <script>x</script> instead · Web · 4 Nov 2026 Left")
    assert text[2] == ("1 Oct 2026 08:00 50.0% Loyalty discount Sales Declined · Sales · "
                       "2 Oct 2026 not known yet")
    assert "<script>x" not in section and "&lt;script&gt;x" in section

    assert "No scores have been given out" in _past_section(render_customer_page(
        replace(page, past=())))
    assert "kept by a service running on a store" in _past_section(render_customer_page(page))

    shown = tmp_path / "customer.html"
    shown.write_text(html, encoding="utf-8")
    dom = browser.dump_dom(shown.as_uri())
    assert dom.count("data-prediction-id=") == 3 and "Declined" in dom


# --------------------------------------------------------------------------------------------
# A real server on a store (SQLite and PostgreSQL)
# --------------------------------------------------------------------------------------------


def _scored(live, customers, channel="contact_center") -> list[dict]:
    status, _, answer = request(live["base"], "/score", {"customer_ids": customers,
                                                         "channel": channel},
                                headers=bearer(READ))
    assert status == 200, answer
    return answer["results"]


def _answered(result: dict, **fields) -> dict:
    """A report of what the contact center did with a score `/score` answered."""
    action = result["recommended_action"]
    return {"prediction_id": result["prediction_id"], "customer_id": result["customer_id"],
            "response": "taken", "channel": "contact_center", "occurred_at": utc_text(),
            **({} if action else {"action": "service_recovery"}), **fields}


def _wait_for_log(live, ids: list[str]) -> None:
    """Until the server has logged these scores (behind their answers, within 0.5 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with Store(live["url"]) as store:
            if len(store.predictions_by_id(ids)) == len(ids):
                return
        time.sleep(0.1)
    pytest.fail(f"not logged within 10 s: {ids}")


@pytest.mark.slow
def test_an_outcome_quoting_a_score_just_given_out_is_stored_once(live):
    """Posted the moment the score is answered (its log entry is written behind the answer),
    then sent again: stored once; a later report of whether the customer stayed completes its
    outcome."""
    results = _scored(live, live["customers"][60:80])[:2]
    assert all(len(r["prediction_id"]) == 32 for r in results)
    assert results[0]["prediction_id"] != results[1]["prediction_id"]
    body = {"records": [_answered(results[0]), _answered(results[1], response="declined")]}
    status, _, answer = request(live["base"], "/outcomes", body, headers=bearer(INGEST))
    assert status == 200 and answer == {"received": 2, "stored": 2, "already_stored": 0}, answer
    status, _, again = request(live["base"], "/outcomes", body, headers=bearer(INGEST))
    assert status == 200 and again == {"received": 2, "stored": 0, "already_stored": 2}
    later = {"records": [_answered(results[0], stayed=True, outcome_id="crm-42")]}
    assert request(live["base"], "/outcomes", later, headers=bearer(INGEST))[0] == 200
    with Store(live["url"]) as store:
        state = store.outcome_state(results[0]["customer_id"]).set_index("prediction_id")
    row = state.loc[results[0]["prediction_id"]]
    assert row["response"] == "taken" and row["reports"] == 2
    assert state.loc[[results[0]["prediction_id"]], "stayed"].tolist() == [True]
    assert row["churn_probability"] == results[0]["churn_probability"]
    assert row["action"] == (results[0]["recommended_action"] or {}).get(
        "action", "service_recovery")


@pytest.mark.slow
def test_one_bad_outcome_rejects_the_batch_naming_record_field_and_rule(live):
    results = _scored(live, live["customers"][80:100])[:2]
    with Store(live["url"]) as store:
        before = len(store.outcomes())
    unknown = "0" * 32
    body = {"records": [
        _answered(results[0]),
        _answered(results[1], response="maybe"),
        _answered(results[1], prediction_id=unknown),
        _answered(results[1], customer_id=live["customers"][0]),
        _answered(results[1], occurred_at="2999-01-01T00:00:00Z", stayed="yes"),
    ]}
    answer = request(live["base"], "/outcomes", body, headers=bearer(INGEST))
    problem = assert_problem(answer, 422, "invalid-outcomes")
    fields = {e["field"]: e["message"] for e in problem["errors"]}
    assert 'must be "taken" or "declined"' in fields["records[1].response"]
    assert "no score was given out with this id" in fields["records[2].prediction_id"]
    assert unknown in fields["records[2].prediction_id"]
    assert f"was about customer {results[1]['customer_id']}" in fields["records[3].customer_id"]
    assert "in the future" in fields["records[4].occurred_at"]
    assert "true or false" in fields["records[4].stayed"]
    assert "nothing of this batch is stored" in problem["detail"]
    with Store(live["url"]) as store:
        assert len(store.outcomes()) == before  # the good first report is not stored either


@pytest.mark.slow
@pytest.mark.parametrize("body, field", [
    ({"records": []}, "records"),
    ({"records": [{"prediction_id": "x"}] * 10_001}, "records"),
    ({"records": [{"prediction_id": "x"}], "force": True}, "force"),
])
def test_outcome_requests_outside_the_schema_get_a_422_naming_the_field(live, body, field):
    problem = assert_problem(request(live["base"], "/outcomes", body, headers=bearer(INGEST)),
                             422, "invalid-request")
    assert any(e["field"] == field for e in problem["errors"]), problem["errors"]


@pytest.mark.slow
def test_outcomes_need_the_ingest_role(live):
    results = _scored(live, live["customers"][100:120])[:1]
    answer = request(live["base"], "/outcomes", {"records": [_answered(results[0])]},
                     headers=bearer(READ))
    assert_problem(answer, 403, "forbidden")


@pytest.mark.slow
def test_outcomes_load_from_a_file_all_or_nothing(live, tmp_path, capsys):
    from churn_risk.cli import main

    results = _scored(live, live["customers"][120:140])[:3]
    ids = [r["prediction_id"] for r in results]
    _wait_for_log(live, ids)  # a file arrives after the scores are logged
    reports = pd.DataFrame([_answered(r, stayed=i % 2 == 0) for i, r in enumerate(results)])
    bad = reports.assign(response=["taken", "later", "taken"])
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["outcomes", "load", str(tmp_path / "bad.csv"), "--store", live["url"]]) == 1
    err = capsys.readouterr().err
    assert "row 1, response: must be" in err and "nothing stored" in err
    reports.to_csv(tmp_path / "outcomes.csv", index=False)
    assert main(["outcomes", "load", str(tmp_path / "outcomes.csv"), "--store",
                 live["url"]]) == 0
    assert "3 new" in " ".join(capsys.readouterr().out.split())
    with Store(live["url"]) as store:
        state = store.outcome_state().set_index("prediction_id")
    assert state.loc[ids, "stayed"].tolist() == [True, False, True]


@pytest.mark.slow
def test_the_page_shows_the_customers_recommendations_and_outcomes(live):
    customer = live["customers"][140]
    taken, routine = _scored(live, [customer]), _scored(live, [customer], channel="web")
    body = {"records": [_answered(taken[0], stayed=False)]}
    status, _, answer = request(live["base"], "/outcomes", body, headers=bearer(INGEST))
    assert status == 200 and answer["stored"] == 1, answer
    _wait_for_log(live, [routine[0]["prediction_id"]])  # logged behind its answer
    url = f"{live['base']}/customers/{customer}"
    dom = browser.dump_dom(url, headers=bearer(READ))
    section = _past_section(dom)
    rows = dict(re.findall(r'<tr data-prediction-id="(\w+)">(.*?)</tr>', section, re.S))
    # both scored within the second (`scored_at` is to the second): either may come first
    assert set(rows) == {routine[0]["prediction_id"], taken[0]["prediction_id"]}, section
    shown = " ".join(re.sub(r"<[^>]+>", " ", rows[taken[0]["prediction_id"]]).split())
    assert f"{taken[0]['churn_probability'] * 100:.1f}%" in shown
    assert "Contact center" in shown and "Taken" in shown and "Left" in shown
    assert "not reported" in rows[routine[0]["prediction_id"]]
