"""`POST /events` on a real server started on a store, SQLite and PostgreSQL: records reach the
store committed, a resend stores nothing, one bad record rejects its whole batch with the record,
column and rule named, and keys have roles."""

from __future__ import annotations

import pytest

from churn_risk.features.io import DataSource
from churn_risk.features.store import Store
from churn_risk.features.validation import load_crm
from tests.serve import assert_problem, bearer, request

pytestmark = pytest.mark.slow

READ = "read-key-0123456789abcdef"
INGEST = "ingest-key-0123456789abcd"
ADMIN = "admin-key-0123456789abcde"
KEYS = f"{READ},ingest:{INGEST},admin:{ADMIN}"
#: The gauges are recomputed every second here (60 s by default).
SERVER_ENV = {"CHURN_GAUGE_SECONDS": "1"}


def counts(url: str) -> dict[str, int]:
    with Store(url) as store:
        return store.counts()


def test_a_new_ticket_is_stored_before_the_answer_and_a_resend_stores_nothing(live):
    customer = live["customers"][0]
    body = {"table": "tickets", "records": [
        {"customer_id": customer, "opened_at": "2026-12-02T09:30:00", "category": "billing"}]}
    before = counts(live["url"])
    status, _, answer = request(live["base"], "/events", body, headers=bearer(INGEST))
    assert status == 200, answer
    assert answer["stored"] == 1 and answer["already_stored"] == 0
    assert answer["customer_ids"] == [customer] and answer["watermark"].endswith("Z")
    assert counts(live["url"]) == {**before, "tickets": before["tickets"] + 1}
    status, _, again = request(live["base"], "/events", body, headers=bearer(INGEST))
    assert status == 200 and again["stored"] == 0 and again["already_stored"] == 1
    assert counts(live["url"])["tickets"] == before["tickets"] + 1


def test_a_new_customer_then_their_first_events(live):
    base = live["base"]
    status, _, answer = request(base, "/events", {"table": "customers", "records": [
        {"customer_id": 8_000_001, "signup_date": "2026-12-01", "segment": "consumer"}]},
        headers=bearer(INGEST))
    assert status == 200 and answer["stored"] == 1, answer
    status, _, answer = request(base, "/events", {"table": "interactions", "records": [
        {"customer_id": 8_000_001, "timestamp": "2026-12-02T08:00:00", "channel": "web"},
        {"customer_id": 8_000_001, "timestamp": "2026-12-02T08:05:00", "channel": "web"}]},
        headers=bearer(ADMIN))
    assert status == 200 and answer["stored"] == 2, answer
    stored = load_crm(live["url"]).tables["interactions"]
    assert (stored["customer_id"] == 8_000_001).sum() == 2


def test_one_bad_record_rejects_the_batch_naming_record_column_and_rule(live):
    customer = live["customers"][1]
    before = counts(live["url"])
    body = {"table": "tickets", "records": [
        {"customer_id": customer, "opened_at": "2026-12-02T10:00:00"},
        {"customer_id": 987_654_321, "opened_at": "2026-12-02T10:01:00"},
        {"customer_id": customer, "opened_at": "02/12/2026"}]}
    problem = assert_problem(request(live["base"], "/events", body, headers=bearer(INGEST)),
                             422, "invalid-events")
    fields = {e["field"]: e["message"] for e in problem["errors"]}
    assert "orphan_id" in fields["records[1].customer_id"]
    assert "987654321" in fields["records[1].customer_id"]
    assert "does not parse as a date" in fields["records[2].opened_at"]
    assert "nothing of this batch is stored" in problem["detail"]
    assert counts(live["url"]) == before  # not even the valid first record


@pytest.mark.parametrize("body, field", [
    ({"table": "orders", "records": [{"customer_id": 1}]}, "table"),
    ({"table": "tickets", "records": []}, "records"),
    ({"table": "tickets", "records": [{"customer_id": 1}] * 10_001}, "records"),
    ({"table": "tickets", "records": [{"customer_id": 1}], "force": True}, "force"),
    ({"table": "tickets", "records": [{"customer_id": [1]}]}, "records[0].customer_id"),
])
def test_requests_outside_the_schema_get_a_422_naming_the_field(live, body, field):
    problem = assert_problem(request(live["base"], "/events", body, headers=bearer(INGEST)),
                             422, "invalid-request")
    assert any(e["field"] == field for e in problem["errors"]), problem["errors"]


def test_keys_have_roles(live):
    base, customer = live["base"], live["customers"][0]
    event = {"table": "tickets", "records": [{"customer_id": customer,
                                              "opened_at": "2026-12-02T11:00:00"}]}
    score = {"customer_ids": [customer]}
    problem = assert_problem(request(base, "/events", event, headers=bearer(READ)), 403,
                             "forbidden")
    assert "'ingest'" in problem["detail"] and READ not in problem["detail"]
    assert_problem(request(base, "/score", score, headers=bearer(INGEST)), 403, "forbidden")
    assert_problem(request(base, "/events", event, headers={}), 401, "unauthorized")
    assert request(base, "/score", score, headers=bearer(READ))[0] == 200
    assert request(base, "/score", score, headers=bearer(ADMIN))[0] == 200
    assert request(base, "/events", event, headers=bearer(ADMIN))[0] == 200


def test_a_server_on_files_says_events_need_a_store():
    from churn_risk.serving.ingest import Ingestion
    from churn_risk.serving.problems import Problem
    from churn_risk.serving.schemas import EventsRequest

    event = EventsRequest(table="tickets", records=[{"customer_id": 1}])
    with pytest.raises(Problem) as raised:
        Ingestion(None).ingest(event)
    assert raised.value.status == 409 and "--store" in raised.value.detail


def test_role_prefixes_are_checked_at_start_up():
    from churn_risk.serving.auth import NoKeysConfigured, load_keys

    keys = load_keys({"CHURN_API_KEYS": KEYS})
    assert keys == {READ: {"read"}, INGEST: {"ingest"}, ADMIN: {"admin"}}
    both = load_keys({"CHURN_API_KEYS": f"read+ingest:{INGEST}"})
    assert both == {INGEST: {"read", "ingest"}}
    with pytest.raises(NoKeysConfigured, match="unknown role 'write'"):
        load_keys({"CHURN_API_KEYS": f"write:{INGEST}"})


def test_a_ticket_reaches_the_score_within_a_second_as_a_full_rebuild_would_score_it(
        live, champion_store):
    import time

    import pandas as pd

    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.live import customer_features
    from churn_risk.features.snapshots import build_snapshot

    base = live["base"]
    status, _, answer = request(base, "/score", {"customer_ids": live["customers"][:300]},
                                headers=bearer(READ))
    customer = answer["results"][5]["customer_id"]
    before = answer["results"][5]
    opened = (pd.Timestamp.now(tz="UTC").tz_localize(None) - pd.Timedelta(minutes=1))
    event = {"table": "tickets", "records": [{"customer_id": customer,
                                              "opened_at": f"{opened:%Y-%m-%dT%H:%M:%S}",
                                              "category": "delivery"}]}
    status, _, accepted = request(base, "/events", event, headers=bearer(INGEST))
    assert status == 200 and accepted["stored"] == 1
    posted = time.monotonic()
    while True:  # either worker may answer: until one answers with data including the event
        _, _, answer = request(base, "/score", {"customer_ids": [customer], "top_k": 70},
                               headers=bearer(READ))
        after = answer["results"][0]
        if after["data_watermark"] >= accepted["watermark"] or time.monotonic() - posted > 30:
            break
        time.sleep(0.05)
    # How fast is shown by benchmarks/live.py, not timed here (a loaded CI machine).
    assert after["data_watermark"] >= accepted["watermark"], "the ticket never arrived"
    assert before["features_as_of"] <= after["features_as_of"]
    tickets = {r["feature"]: r["value"] for r in after["top_reasons"]}["tickets_90d"]
    assert tickets >= 1

    # Exactly what a full rebuild of the whole store as of the same moment gives.
    bundle = champion_store.train.bundle
    as_of = pd.Timestamp(after["features_as_of"])
    like = load_crm(live["url"])
    with Store(live["url"]) as store:
        fresh = customer_features(store, [customer], as_of, bundle.feature_config,
                                  bundle.target, like)
    full = build_snapshot(prepare(like), as_of, bundle.feature_config, bundle.target)
    full = full[full["customer_id"] == customer].reset_index(drop=True)
    pd.testing.assert_frame_equal(fresh, full, check_exact=True)
    expected = float(bundle.predict(full)["churn_probability"].iloc[0])
    assert after["churn_probability"] == pytest.approx(expected, rel=1e-12, abs=0)
    # ... and the page and /explain say the same.
    status, _, explained = request(base, "/explain", {"customer_id": customer},
                                   headers=bearer(READ))
    assert explained["features_as_of"] == after["features_as_of"]
    # (the margin summed from float32 contributions: equal to about 1e-7)
    assert explained["churn_probability"] == pytest.approx(expected, rel=1e-6)


@pytest.fixture
def loaded_store(champion_project, demo_folder, store_url, monkeypatch) -> str:
    """A store with the session's demo data, and this process tracking to the champion's
    project (for a `Scorer` in process)."""
    from churn_risk.training.tracking import configure_tracking
    from tests.conftest import MLFLOW_EXPORTS

    for name in MLFLOW_EXPORTS:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    monkeypatch.chdir(champion_project)
    configure_tracking(champion_project)
    with Store(store_url) as store:
        store.write(load_crm(demo_folder))
    return store_url


def test_time_passing_rescores_the_whole_portfolio_without_a_restart(loaded_store,
                                                                     monkeypatch):
    """In process (the clock moved forward instead of waiting a day): when the portfolio is
    `rescore_seconds` old, `follow` re-reads the store and scores everyone as of the new now
    into it, records stored meanwhile included; a reading process picks the new run up."""
    import pandas as pd

    from churn_risk.serving.scorer import Scorer

    store_url = loaded_store
    scorer = Scorer(DataSource(store_url, store=True), rescore_seconds=3600)
    reader = Scorer(DataSource(store_url, store=True), rescore_seconds=3600, refresher=False)
    first = scorer.state
    assert scorer.live and first.as_of > pd.Timestamp("2026-01-01")
    assert reader.state.run == first.run  # the reader scored nothing: it read the run
    customer = first.ids[0]
    tickets = _value(first, customer, "tickets_90d")
    later = first.as_of + pd.Timedelta(hours=2)
    with Store(store_url) as store:
        store.ingest({"tickets": pd.DataFrame({"customer_id": [customer], "opened_at": [
            first.as_of + pd.Timedelta(minutes=30)]})})
    monkeypatch.setattr(Scorer, "_now", staticmethod(lambda: later))
    assert scorer.follow() == first.customers  # everyone, as of the new now
    state = scorer.state
    assert state.as_of == later and state.run["id"] != first.run["id"]
    assert _value(state, customer, "tickets_90d") == tickets + 1
    assert scorer.follow() == 0  # nothing new since
    reader.follow()
    assert reader.state.run == state.run and _value(reader.state, customer, "tickets_90d") == \
        tickets + 1


def test_a_portfolio_scored_by_a_scheduler_is_answered_from_not_scored_again(loaded_store,
                                                                             monkeypatch):
    """`churn store score` run from a scheduler (its own process, its memory freed after)
    spares the service its own re-score: when the portfolio is due, the refresher answers from
    the newer run, and re-scores only when there is none."""
    import pandas as pd

    from churn_risk.serving import stored
    from churn_risk.serving.scorer import Scorer

    scorer = Scorer(DataSource(loaded_store, store=True), rescore_seconds=3600)
    first = scorer.state
    later = first.as_of + pd.Timedelta(hours=2)
    with Store(loaded_store) as store:  # `churn store score` from a scheduler, 61 minutes on
        run = stored.materialise(store, first.bundle, first.model,
                                 first.as_of + pd.Timedelta(minutes=61))
    monkeypatch.setattr(Scorer, "_now", staticmethod(lambda: later))
    scored = []
    real = stored.materialise
    monkeypatch.setattr(stored, "materialise", lambda *a, **k: scored.append(1) or real(*a, **k))
    assert scorer.follow() == 0 and not scored  # the scheduler's run is not 1 h old yet
    assert scorer.state.run["id"] == run["id"] and scorer.state.as_of == run["as_of"]
    monkeypatch.setattr(Scorer, "_now", staticmethod(lambda: later + pd.Timedelta(hours=1)))
    assert scorer.follow() == first.customers and scored == [1]  # none newer: its own run
    assert scorer.state.run["id"] > run["id"]


def _value(state, customer, feature: str):
    """A feature's value in the customer's stored scores."""
    owner = state.owner(customer)
    return owner.values[0][state.bundle.feature_names.index(feature)]


def test_every_score_given_out_carries_its_provenance_and_is_logged(live):
    import time

    base, customers = live["base"], live["customers"][:50]
    _, _, answer = request(base, "/score", {"customer_ids": customers, "channel": "web"},
                           headers=bearer(READ))
    results = answer["results"]
    assert results
    for r in results:
        assert r["scored_at"].endswith("Z") and r["data_watermark"].endswith("Z")
        assert r["target"]["horizon_days"] == 90 and r["model"]["version"] == "1"
    deadline = time.monotonic() + 10
    logged = None
    while time.monotonic() < deadline:  # the log is written behind the answers
        with Store(live["url"]) as store:
            logged = store.predictions(results[0]["customer_id"])
        if len(logged) and (logged["channel"] == "web").any():
            break
        time.sleep(0.1)
    row = logged[logged["channel"] == "web"].iloc[-1]
    assert row["source"] == "api" and row["model_version"] == "1"
    assert row["churn_probability"] == results[0]["churn_probability"]
    assert row["features_as_of"] == results[0]["features_as_of"]
    assert row["reason_1"] == results[0]["top_reasons"][0]["feature"]


def test_batch_scores_from_a_store_are_as_of_now_with_provenance_and_logged(
        champion_project, demo_folder, store_url, tmp_path, monkeypatch):
    import pandas as pd

    from churn_risk.cli import main
    from tests.conftest import MLFLOW_EXPORTS

    for name in MLFLOW_EXPORTS:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    monkeypatch.chdir(champion_project)
    with Store(store_url) as store:
        store.write(load_crm(demo_folder))
    out = tmp_path / "scores.parquet"
    assert main(["score", "--store", store_url, "--out", str(out)]) == 0
    scores = pd.read_parquet(out)
    assert "T" in scores["features_as_of"].iloc[0]  # a moment, not a day
    assert scores["data_watermark"].notna().all() and scores["scored_at"].notna().all()
    with Store(store_url) as store:
        logged = store.predictions()
    assert len(logged) == len(scores) and (logged["source"] == "batch").all()
    assert logged["churn_probability"].tolist() == scores["churn_probability"].tolist()
    # each row quotes its id in the log (what a channel reports an outcome against)
    assert logged["prediction_id"].tolist() == scores["prediction_id"].tolist()
    assert scores["prediction_id"].is_unique

    # A worklist from the store: its rows carry the same provenance and are logged as given.
    from churn_risk.features.labels import scoring_as_of
    from churn_risk.features.lifecycle import prepare

    day = f"{scoring_as_of(prepare(load_crm(demo_folder))):%Y-%m-%d}"
    listed = tmp_path / "worklist.csv"
    assert main(["worklist", "--store", store_url, "--as-of", day, "--budget", "3000",
                 "--out", str(listed), "--columns", "codes",
                 "--ledger", str(tmp_path / "ledger.csv")]) == 0
    rows = pd.read_csv(listed)
    assert len(rows) and rows["data_watermark"].notna().all()
    assert {"features_as_of", "scored_at", "model_version", "target"} <= set(rows.columns)
    with Store(store_url) as store:
        given = store.predictions()
    given = given[given["source"] == "worklist"]
    assert given["customer_id"].tolist() == [str(c) for c in rows["customer_id"]]
    assert given["prediction_id"].tolist() == rows["prediction_id"].tolist()
    assert given["recommended_action"].tolist() == rows["recommended_action"].tolist()

    # contact pressure read from the store is the campaigns' of the data (`recently_contacted`)
    from churn_risk.serving.worklist import recently_contacted

    as_of = pd.Timestamp(day)
    expected = recently_contacted(prepare(load_crm(demo_folder)), None, as_of, 365)
    with Store(store_url) as store:
        assert store.contacted(None, as_of - pd.Timedelta(days=365), as_of) == expected
        some = sorted(expected)[:3]
        assert store.contacted([*some, "no-such-customer"], as_of - pd.Timedelta(days=365),
                               as_of) == set(some)
    assert len(expected) > 3


def test_live_workers_hold_no_customers_and_answer_as_a_snapshot_in_memory(loaded_store):
    """Live, the portfolio is scored into the store and every lookup reads its customers' rows:
    the process keeps no customer data, yet scores, explanations, channel views, what-ifs, pages
    and explain-change are those of a snapshot kept in memory as of the same moment."""
    import pandas as pd

    from churn_risk.features.lifecycle import prepare
    from churn_risk.serving.scorer import Scorer, ScoringState

    store_url = loaded_store
    scorer = Scorer(DataSource(store_url, store=True))
    state = scorer.state
    assert scorer.prep is None and state.prep is None and not state.row_of
    kept = ScoringState(state.bundle, state.model, prepare(load_crm(store_url)), state.as_of)
    assert state.customers == kept.customers
    ids = kept.ids[:40]
    for channel in (None, "contact_center", "campaign", "service"):
        stored, unknown = state.score_ids(ids, top_k=70, channel=channel)
        in_memory, _ = kept.score_ids(ids, top_k=70, channel=channel)
        assert not unknown
        for a, b in zip(stored, in_memory, strict=True):
            assert {**a, "scored_at": None, "data_watermark": None} == \
                {**b, "scored_at": None, "data_watermark": None}
    for customer in ids[:3]:
        assert state.explain(customer) | {"scored_at": None, "data_watermark": None} == \
            kept.explain(customer) | {"scored_at": None, "data_watermark": None}
        what_if = [{"customer_id": customer, "tickets_90d": 4}]
        assert [r["churn_probability"] for r in state.score_records(what_if)] == \
            [r["churn_probability"] for r in kept.score_records(what_if)]
        assert state.page_model(customer) == kept.page_model(customer)
        earlier = f"{state.as_of - pd.DateOffset(months=2):%Y-%m-%d}"
        today = f"{state.as_of:%Y-%m-%d}"
        assert state.explain_change(customer, earlier, today) == \
            kept.explain_change(customer, earlier, today)
    assert state.score_ids(["no-such-customer"])[1] == ["no-such-customer"]
    # Events reach the customer's stored scores, and their page.
    customer = ids[1]
    with Store(store_url) as store:
        store.ingest({"tickets": pd.DataFrame({"customer_id": [customer], "opened_at": [
            state.as_of - pd.Timedelta(minutes=5)]})})
    assert scorer.follow() == 1
    assert scorer.state.owner(customer).as_of > state.as_of
    page = scorer.state.page_model(customer)
    assert any(t.opened == (state.as_of - pd.Timedelta(minutes=5)).date()
               for t in page.history.tickets)


def test_metrics_show_the_served_portfolio_by_band_without_customer_ids(live):
    """The refresher's gauges equal the store's served scores counted here from their payloads,
    and no customer id appears in `/metrics`."""
    import json
    import re
    import time

    import sqlalchemy as sa

    with Store(live["url"]) as store, store.engine.connect() as conn:
        payloads = conn.execute(sa.text(
            "SELECT payload FROM served_scores WHERE model_version = '1'")).scalars().all()
    bands: dict[str, int] = {}
    probabilities = []
    for payload in map(json.loads, payloads):
        bands[payload["band"]] = bands.get(payload["band"], 0) + 1
        probabilities.append(payload["probability"])
    deadline, gauges = time.monotonic() + 30, {}
    while time.monotonic() < deadline and not gauges:  # set within a follow of the start
        _, _, text = request(live["base"], "/metrics", headers=bearer(READ))
        gauges = {m[0]: float(m[1]) for m in re.findall(
            r'churn_portfolio_customers\{model_version="1",risk_band="(\w+)"\} (\S+)', text)}
        time.sleep(0.2)
    # fresh events of the other tests re-score customers, but never add or drop one here
    assert gauges == {band: float(bands.get(band, 0)) for band in gauges}
    assert sum(gauges.values()) == len(payloads)
    below = len([p for p in probabilities if p <= 0.1])
    assert f'churn_portfolio_probability_at_most{{le="0.1",model_version="1"}} {below}.0' in text
    assert not any(re.search(rf"\b{customer}\b", text) for customer in live["customers"][:200])


def _gauges(text: str, name: str) -> dict[str, float]:
    """The samples of gauge `name` of model version 1, by their other label (or "")."""
    import re

    samples = {}
    for labels, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found.pop("model_version", None) == "1":
            samples[next(iter(found.values()), "")] = float(value)
    return samples


def test_metrics_show_the_newest_monitor_verdict_and_the_live_score_drift(live, monkeypatch,
                                                                           capsys):
    """`churn monitor --store` keeps its verdict in the store; the service exports it (retraining
    due, each feature's PSI and missing-share change, when it was judged) and computes the
    served portfolio's score PSI against the training reference itself, close to the monitor's
    (the same customers, a few re-scored by the other tests' events)."""
    import time

    from churn_risk.cli import main
    from tests.conftest import MLFLOW_EXPORTS

    monkeypatch.chdir(live["project"])
    for name in MLFLOW_EXPORTS:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    code = main(["monitor", "--store", live["url"]])
    assert code in (0, 4), capsys.readouterr().out
    with Store(live["url"]) as store:
        check = store.latest_check("churn-risk", "1")
    assert check is not None and check["retraining_due"] == (code == 4)
    assert check["features"] and check["score_psi"] is not None

    deadline, text = time.monotonic() + 30, ""
    while time.monotonic() < deadline and not _gauges(text, "churn_retraining_due"):
        time.sleep(0.5)
        _, _, text = request(live["base"], "/metrics", headers=bearer(READ))
    assert _gauges(text, "churn_retraining_due") == {"": float(check["retraining_due"])}
    psi = _gauges(text, "churn_feature_psi")
    assert psi.keys() == check["features"].keys()
    assert all(psi[f] == pytest.approx(v["psi"]) for f, v in check["features"].items())
    missing = _gauges(text, "churn_feature_missing_change")
    assert all(missing[f] == pytest.approx(v["missing_change"])
               for f, v in check["features"].items())
    checked = _gauges(text, "churn_monitor_checked_timestamp_seconds")[""]
    assert abs(checked - time.time()) < 120
    assert _gauges(text, "churn_score_psi")[""] == pytest.approx(check["score_psi"], abs=0.02)


def test_a_former_customer_has_a_page_of_their_last_known_state(live):
    """Live, a customer who left is read from the store's records: a page saying when they left,
    no score; an id the store does not know is still a 404."""
    former = None
    for customer in live["customers"][:120]:
        status, _, html = request(live["base"], f"/customers/{customer}", headers=bearer(READ))
        if status == 200 and "Former customer — left on" in html:
            former = html
            break
    assert former is not None, "no former customer among the first 120"
    assert "No longer scored" in former
    status, _, answer = request(live["base"], "/customers/no-such-id", headers=bearer(READ))
    assert status == 404
