"""Service hardening: every reproduction of the probe that found the defects (an attacker's and
an operator's) against one real server: bad numbers, content types, slow channels, metrics,
a champion that cannot be loaded, one error shape, strict requests."""

from __future__ import annotations

import json
import time

import mlflow
import pytest
from mlflow import MlflowClient

from churn_risk.serving import launch
from churn_risk.training.tracking import MODEL_NAME
from tests.serve import AUTH, KEY, assert_problem, churn_serve, request, servers_of, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(champion_project, champion_store, demo_folder):
    """A project with a promoted champion (version 1), its MLflow store named explicitly."""
    folder = champion_project
    return {"folder": folder, "data": demo_folder, "first": champion_store.train,
            "uri": f"sqlite:///{folder / 'mlflow.db'}"}


@pytest.fixture(scope="module")
def server(project, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "server.log"
    env = launch.server_env(project["data"], project_dir=project["folder"], keys=KEY,
                            poll_seconds=1.0)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)
    process, base = launch.start(env, log=log)
    try:
        launch.wait_ready(base, process)
        status, _, answer = request(base, "/score", {"customer_ids": list(range(100000, 100600)),
                                                     "top_k": 1})
        assert status == 200
        ids = [r["customer_id"] for r in answer["results"]]
        yield {"base": base, "process": process, "log": log, "ids": ids, "env": env}
    finally:
        launch.stop(process)



# ------------------------------------------------------------------------------------- 1, 2


def test_non_finite_or_huge_numbers_get_a_422_naming_the_field(server):
    base, customer = server["base"], server["ids"][0]
    for raw in (b'{"records":[{"customer_id":%d,"tenure_days":1e39}]}' % customer,
                b'{"records":[{"customer_id":%d,"tenure_days":Infinity}]}' % customer,
                b'{"records":[{"customer_id":%d,"tenure_days":-Infinity}]}' % customer,
                b'{"records":[{"customer_id":%d,"tenure_days":NaN}]}' % customer):
        body = assert_problem(request(base, "/score", raw=raw), 422, body_slug(raw))
        assert body["errors"][0]["field"] == "records[0].tenure_days"
    raw = b'{"record":{"customer_id":%d,"tickets_open":1e39}}' % customer
    body = assert_problem(request(base, "/explain", raw=raw), 422, "invalid-record")
    assert body["errors"][0]["field"] == "record.tickets_open"


def body_slug(raw: bytes) -> str:
    """1e39 is a number the schema allows in JSON but the model cannot use; the others are not
    finite, which the request schema itself refuses."""
    return "invalid-record" if b"1e39" in raw else "invalid-request"


@pytest.mark.parametrize("path", ["/score", "/explain", "/explain_change"])
@pytest.mark.parametrize("content_type", ["multipart/form-data", "text/plain", None,
                                          "application/x-www-form-urlencoded"])
def test_other_content_types_get_a_415(server, path, content_type):
    body = assert_problem(request(server["base"], path, raw=b"{}", content_type=content_type),
                          415, "unsupported-media-type")
    assert "application/json" in body["detail"]


# ---------------------------------------------------------------------------------------- 3


@pytest.mark.parametrize("channel", ["contact_center", "service", "sales", "web", "campaign"])
def test_a_thousand_ids_with_any_channel_answer_in_time(server, channel):
    ids = (server["ids"] * 3)[:1000]
    started = time.perf_counter()
    status, _, answer = request(server["base"], "/score",
                                {"customer_ids": ids, "channel": channel, "top_k": 3})
    elapsed = time.perf_counter() - started
    assert status == 200 and len(answer["results"]) == 1000
    assert all(r["channel_view"] is not None for r in answer["results"])
    assert elapsed < 2.0, elapsed  # the deadline is 2.5 s; the views used to cost 4.8 s


def test_a_request_out_of_time_gets_a_504_and_its_work_stops(project, server):
    env = launch.server_env(project["data"], project_dir=project["folder"], keys=KEY,
                            public_metrics=True)
    env["CHURN_REQUEST_TIMEOUT_SECONDS"] = "0.001"
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)
    before = metrics_text(server["base"])  # the first server's own counts
    process, base = launch.start(env)
    try:
        launch.wait_ready(base, process)
        body = assert_problem(request(base, "/score", {"customer_ids": server["ids"] * 2,
                                                       "channel": "contact_center"}),
                              504, "timeout")
        assert "fewer customers" in body["detail"]
        time.sleep(0.5)
        status, _, text = request(base, "/metrics", headers={})  # --public-metrics: no key
        assert status == 200
        assert "churn_customers_scored_total{" not in text  # the work stopped: nothing scored
        assert 'route="/score",status="504"' in text
        # Starting a second server on the host left the first one's metrics alone (defect 5).
        after = metrics_text(server["base"])
        assert counter(after, "/score", "200") >= counter(before, "/score", "200") > 0
    finally:
        launch.stop(process)


def metrics_text(base: str) -> str:
    status, _, text = request(base, "/metrics")
    assert status == 200
    return text


def counter(text: str, route: str, status: str) -> float:
    for line in text.splitlines():
        if line.startswith("churn_requests_total{") and f'route="{route}"' in line and \
                f'status="{status}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ---------------------------------------------------------------------------------------- 4


def test_metrics_carry_no_customer_data_and_need_the_key(server):
    base = server["base"]
    assert_problem(request(base, "/metrics", headers={}), 401, "unauthorized")
    size_before = len(metrics_text(base))
    for i in range(150):
        request(base, f"/customers/secret-{i}", headers={})
        request(base, f"/no-such-path-{i}")
        request(base, f"/customers/{server['ids'][i % 50]}")
    text = metrics_text(base)
    assert "secret-" not in text and "no-such-path" not in text
    assert not any(f"/customers/{c}" in text for c in server["ids"][:50])
    assert 'route="/customers/{customer_id}"' in text and 'route="(unauthorized)"' in text
    assert 'route="(other)"' in text
    assert len(text) - size_before < 5_000  # bounded: no label per path
    for metric in ("churn_customers_scored_total", "churn_churn_probability_bucket",
                   "churn_model_info"):
        assert metric in text, metric
    assert 'churn_model_info{model_version="1"' in text


# ---------------------------------------------------------------------------------------- 9


def test_a_champion_that_cannot_be_loaded_keeps_the_last_good_one_serving(project, server):
    mlflow.set_tracking_uri(project["uri"])
    mlflow.set_registry_uri(project["uri"])
    client = MlflowClient()
    bogus = client.create_model_version(MODEL_NAME, source=str(project["folder"] / "gone"),
                                        run_id=None)
    client.set_registered_model_alias(MODEL_NAME, "champion", bogus.version)
    try:
        base = server["base"]

        def degraded() -> bool:  # on every worker (a request may reach either)
            return all(request(base, "/readyz", headers={})[2].get("status") == "degraded"
                       for _ in range(6))

        assert wait_until(degraded, 20)
        status, _, ready = request(base, "/readyz", headers={})
        assert status == 200 and ready["status"] == "degraded"
        assert ready["model"]["version"] == "1" and f"v{bogus.version}" in ready["problem"]
        status, _, answer = request(base, "/score", {"customer_ids": server["ids"][:3]})
        assert status == 200 and answer["model"]["version"] == "1"
        time.sleep(2.5)  # a few more polls: one line each, no traceback
        log = server["log"].read_text()
        lines = [line for line in log.splitlines()
                 if f"champion v{bogus.version} cannot be loaded" in line]
        assert len(lines) >= 2 and "Traceback" not in log

        # Restarted now, the server cannot start: churn serve says why and exits non-zero.
        port = launch.free_port()
        started = time.monotonic()
        parent = churn_serve(project, port)
        output, _ = parent.communicate(timeout=90)
        assert parent.returncode == 1 and time.monotonic() - started < 60
        assert "the service cannot start" in output and "Traceback" not in output.split(
            "the service cannot start")[1]
        assert not servers_of(port)
    finally:
        client.set_registered_model_alias(MODEL_NAME, "champion", "1")



# ------------------------------------------------------------------------- the rough edges


def test_one_error_shape_and_strict_requests(server):
    base, customer = server["base"], server["ids"][0]
    cases = [
        ({"customer_ids": [customer], "top_k": "5"}, "top_k"),
        ({"customer_ids": [True]}, "customer_ids[0]"),
        ({"customer_ids": [customer], "colour": "red"}, "colour"),
        ({"customer_ids": [customer], "records": [{}]}, "body"),
        ({"customer_ids": list(range(1001))}, "customer_ids"),
        ({"customer_ids": [customer], "top_k": 101}, "top_k"),
    ]
    for body, field in cases:
        problem = assert_problem(request(base, "/score", body), 422, "invalid-request")
        assert problem["errors"][0]["field"] == field, problem
    what_if = [({"customer_id": customer, "tickets_open": -5}, "never below 0"),
               ({"customer_id": customer, "late_share_90d": 1.5}, "never above 1"),
               ({"customer_id": customer, "segment": "martian"}, "not one of the known values")]
    for record, message in what_if:
        problem = assert_problem(request(base, "/score", {"records": [record]}), 422,
                                 "invalid-record")
        assert message in problem["errors"][0]["message"], problem
    status, _, answer = request(base, "/score", {"records": [{"customer_id": customer,
                                                              "tenure_days": 1e30}]})
    assert status == 200
    warning = answer["results"][0]["warnings"][0]
    assert warning["field"] == "records[0].tenure_days" and "outside the range" in warning[
        "message"]
    assert_problem(request(base, "/score", raw=b'{"customer_ids": [1,'), 400, "invalid-json")
    assert_problem(request(base, "/nope"), 404, "not-found")
    code, headers, _ = request(base, "/score", method="PUT", raw=b"{}")
    assert code == 405 and "POST" in headers.get("allow", "")


def test_errors_are_capped_and_bodies_too(server):
    base = server["base"]
    many = [{"customer_id": server["ids"][0], "tickets_open": -1} for _ in range(100)]
    problem = assert_problem(request(base, "/score", {"records": many}), 422, "invalid-record")
    assert len(problem["errors"]) == 21 and "80 more" in problem["errors"][-1]["message"]
    assert len(json.dumps(problem)) < 5_000
    # A client announcing 10 MB gets the 413 before sending it (the default cap is 4 MiB).
    import http.client

    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/score")
    for name, value in {**AUTH, "Content-Type": "application/json",
                        "Content-Length": str(10 * 1024 * 1024)}.items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    body = json.loads(response.read())
    assert response.status == 413 and body["type"].endswith("payload-too-large")
    connection.close()


def test_4xx_are_logged_in_one_line_without_values(server):
    base = server["base"]
    request(base, "/score", {"records": [{"customer_id": "secret-value-42", "tickets_open": 1}]})
    time.sleep(0.5)
    log = server["log"].read_text()
    assert "POST /score 404" in log
    assert "secret-value-42" not in log and "Traceback" not in log


def test_docs_are_consistently_open_and_the_schema_states_the_rules(server):
    base = server["base"]
    for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui-bundle.js",
                 "/docs/assets/swagger-ui.css"):
        assert request(base, path, headers={})[0] == 200, path
    for path in ("/docs.json", "/schema.json", "/static_content/index.css"):
        assert_problem(request(base, path, headers={}), 404, "not-found")
    schema = request(base, "/openapi.json", headers={})[2]
    assert schema["info"]["title"] == "churn-risk" and schema["info"]["version"]
    assert {"bearer", "basic"} <= set(schema["components"]["securitySchemes"])
    score = schema["paths"]["/score"]["post"]
    assert score["summary"] and {"401", "413", "415", "422", "504"} <= set(score["responses"])
    request_schema = schema["components"]["schemas"]["ScoreRequest"]
    assert request_schema["additionalProperties"] is False and "oneOf" in request_schema
    assert request_schema["properties"]["customer_ids"]["maxItems"] == 1000
    assert request_schema["properties"]["top_k"]["maximum"] == 100
    record = schema["components"]["schemas"]["FeatureRecord"]
    assert record["additionalProperties"] is False
    assert record["properties"]["tickets_open"]["anyOf"][0]["minimum"] == 0
    assert "enum" in record["properties"]["segment"]["anyOf"][0]


def test_pages_have_security_headers_and_answer_head(server):
    base, customer = server["base"], server["ids"][0]
    status, headers, _ = request(base, f"/customers/{customer}")
    assert status == 200
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    assert request(base, f"/customers/{customer}", method="HEAD")[0] == 200


@pytest.mark.parametrize("date", ["now", "today", "20250101", "01/06/2025", "2025-02-30"])
def test_explain_change_refuses_dates_that_are_not_iso(server, date):
    body = {"customer_id": server["ids"][0], "from_date": date, "to_date": "2024-12-01"}
    problem = request(server["base"], "/explain_change", body)[2]
    assert problem["status"] == 422 and problem["errors"][0]["field"] == "from_date"
