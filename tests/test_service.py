"""The real BentoML server, started with `bentoml serve` on a free loopback port, over HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from churn_risk.jobs.train import run as train
from churn_risk.models.portfolio import QUADRANTS
from churn_risk.serving import launch
from churn_risk.serving.schemas import ExplainChangeResponse, ExplainResponse, ScoreResponse
from tests.conftest import FAST

from . import browser

pytestmark = pytest.mark.slow

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def call(base: str, path: str, body=None, headers=AUTH, method=None, raw: bytes | None = None):
    """(status, parsed JSON or text) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        f"{base}{path}", data=data, method=method or ("POST" if data is not None else "GET"),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


@pytest.fixture(scope="module")
def served(demo_folder, champion_project, champion_store):
    """Train and promote a champion in a fresh project, then serve it with an API key."""
    project = champion_project
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    for k in saved:
        os.environ.pop(k, None)
    first = champion_store.train
    env = launch.server_env(demo_folder, project_dir=project, poll_seconds=1.0, keys=KEY)
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(k, None)
    process, base = launch.start(env, quiet=False)
    try:
        launch.wait_ready(base, process)
        yield {"base": base, "project": project, "first": first, "data": demo_folder}
    finally:
        launch.stop(process)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def known_ids(served):
    status, answer = call(served["base"], "/score",
                          {"customer_ids": list(range(100000, 100300)), "top_k": 1})
    assert status == 200
    ids = [r["customer_id"] for r in answer["results"]]
    assert len(ids) > 100
    return ids


def test_health_is_open_and_metrics_need_the_key(served):
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        status, _ = call(served["base"], path, headers={})
        assert status == 200, path
    status, ready = call(served["base"], "/readyz", headers={})
    assert ready["status"] == "ready" and ready["model"]["version"] == served["first"].version
    assert call(served["base"], "/metrics", headers={})[0] == 401
    status, text = call(served["base"], "/metrics")
    assert status == 200 and "churn_requests_total" in text


def test_requests_without_a_valid_key_get_401(served, known_ids):
    base = served["base"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        assert call(base, "/score", {"customer_ids": known_ids[:1]}, headers=headers)[0] == 401
        assert call(base, "/explain", {"customer_id": known_ids[0]}, headers=headers)[0] == 401
        assert call(base, f"/customers/{known_ids[0]}", headers=headers)[0] == 401


def test_score_known_customers_with_reasons_and_list_unknown_ones(served, known_ids):
    status, answer = call(served["base"], "/score",
                          {"customer_ids": [*known_ids[:3], 999_999_999], "top_k": 4})
    assert status == 200
    ScoreResponse.model_validate(answer)  # the documented response model, to the letter
    assert answer["unknown_customer_ids"] == [999_999_999]
    assert answer["model"]["version"] == served["first"].version
    # What the probabilities are of: at the top level and in every result.
    target = served["first"].bundle.target.as_dict()
    assert answer["target"] == target
    assert set(target) == {"kind", "horizon_days", "lapsed_after_days", "description"}
    assert target["kind"] == "subscription_end" and target["horizon_days"] == 90
    assert "within 90 days" in target["description"]
    assert len(answer["results"]) == 3
    for result in answer["results"]:
        assert result["target"] == target
        assert 0 <= result["churn_probability"] <= 1
        assert result["risk_band"] in ("low", "medium", "high", "very_high")
        assert len(result["top_reasons"]) == 4
        reason = result["top_reasons"][0]
        assert set(reason) == {"feature", "label", "driver_group", "value", "contribution",
                               "direction", "actionable"}
        assert result["next_products"] and "propensity" in result["next_products"][0]
        assert result["model"]["alias"] == "champion"
        assert result["features_as_of"]
        assert {"horizon_margin", "lifetime_value", "value_at_risk", "quadrant",
                "recommended_action"} <= set(result)
        assert "value" not in result  # the placeholder is gone
        assert result["horizon_margin"] >= 0 and result["lifetime_value"] >= 0
        assert result["value_at_risk"] == pytest.approx(
            result["churn_probability"] * result["lifetime_value"], rel=1e-9)
        assert result["quadrant"] in QUADRANTS


def test_recommended_actions_are_typed_and_pay(served, known_ids):
    status, answer = call(served["base"], "/score", {"customer_ids": known_ids, "top_k": 0})
    assert status == 200
    ScoreResponse.model_validate(answer)
    actions = [r["recommended_action"] for r in answer["results"] if r["recommended_action"]]
    assert actions, "no customer of the first 300 has an action that pays"
    for action in actions:
        assert set(action) == {"action", "label", "kind", "channel", "cost", "success_rate",
                               "success_rate_low", "success_rate_high", "success_source",
                               "expected_profit", "reason"}
        assert action["expected_profit"] > 0 and action["action"] != "none"
        assert action["success_source"].startswith("our starting estimate")
        assert action["success_rate_low"] <= action["success_rate"] <= action[
            "success_rate_high"]


@pytest.mark.parametrize("channel, keys", [
    ("contact_center", {"say", "open_tickets", "delivery_issues"}),
    ("sales", {"next_products", "retention_first"}),
    ("service", {"open_tickets", "delivery_issues"}),
    ("web", {"show_retention_offer", "retention_offer", "show_support_shortcut",
             "suggest_families"}),
    ("campaign", {"retention_eligible", "cross_sell_eligible", "contacted_in_last_days"}),
])
def test_every_channel_view(served, known_ids, channel, keys):
    status, answer = call(served["base"], "/score",
                          {"customer_ids": known_ids[:60], "channel": channel})
    assert status == 200
    ScoreResponse.model_validate(answer)
    views = [r["channel_view"] for r in answer["results"]]
    assert all(set(v) == keys | {"recommended_action", "action_owner"} for v in views)
    for result in answer["results"]:  # the action shows in the view of the channel doing it,
        action = result["recommended_action"]  # and every other view names that channel
        mine = action is not None and action["channel"] == channel
        assert result["channel_view"]["recommended_action"] == (action if mine else None)
        assert result["channel_view"]["action_owner"] == (action and action["channel"])
    if channel == "contact_center":
        said = [s for v in views for s in v["say"]]
        assert said and all(s.endswith(".") and " — " in s and "the risk" not in s for s in said)


def test_explanation_adds_up_to_the_score(served, known_ids):
    base = served["base"]
    customer = known_ids[5]
    status, explained = call(base, "/explain", {"customer_id": customer})
    assert status == 200
    ExplainResponse.model_validate(explained)
    assert explained["target"] == served["first"].bundle.target.as_dict()
    total = explained["base_value"] + sum(c["contribution"] for c in explained["contributions"])
    assert total == pytest.approx(explained["margin"], abs=1e-4)
    assert sum(explained["groups"].values()) == pytest.approx(total - explained["base_value"],
                                                              abs=1e-4)
    _, scored = call(base, "/score", {"customer_ids": [customer]})
    assert explained["churn_probability"] == pytest.approx(
        scored["results"][0]["churn_probability"], rel=1e-6)


def test_what_if_records_are_scored_on_the_fly(served, known_ids):
    base = served["base"]
    customer = known_ids[7]
    _, scored = call(base, "/score", {"customer_ids": [customer]})
    same = call(base, "/score", {"records": [{"customer_id": customer}]})[1]["results"][0]
    assert same["churn_probability"] == pytest.approx(
        scored["results"][0]["churn_probability"], rel=1e-9)
    worse = call(base, "/score", {"records": [{"customer_id": customer, "tickets_open": 6,
                                               "late_deliveries_90d": 6}]})[1]["results"][0]
    assert worse["churn_probability"] >= same["churn_probability"]
    status, explained = call(base, "/explain", {"record": {"customer_id": customer,
                                                           "tickets_open": 6}})
    assert status == 200 and explained["customer_id"] == customer


def test_bad_input_gets_a_4xx_with_field_level_messages_and_no_internals(served, known_ids):
    base = served["base"]
    cases = [
        (call(base, "/score", raw=b'{"customer_ids": [1,'), 400),
        (call(base, "/score", {"customer_ids": known_ids[:1], "top_k": "many"}), 422),
        (call(base, "/score", {"customer_ids": known_ids[:1], "channel": "fax"}), 422),
        (call(base, "/score", {"customer_ids": list(range(1001))}), 422),
        (call(base, "/score", {}), 422),
        (call(base, "/explain", {"customer_id": 999_999_999}), 404),
        (call(base, "/score", {"records": [{"tickets_open": 1}]}), 422),
        (call(base, "/score", {"records": [{"customer_id": known_ids[0],
                                            "tickets_open": "lots"}]}), 422),
        (call(base, "/customers/999999999"), 404),
    ]
    for (status, body), expected in cases:
        assert status == expected, (status, body)
        assert body["status"] == status and body["type"].startswith("urn:churn-risk:problem:")
        text = json.dumps(body)
        assert "Traceback" not in text and "/work/" not in text, text
        assert not re.search(r"\.py\b|site-packages", text), text
    assert cases[1][0][1]["errors"][0]["field"] == "top_k"
    assert cases[2][0][1]["errors"][0]["field"] == "channel"
    assert "1000" in json.dumps(cases[3][0][1])
    assert "missing features" in json.dumps(cases[6][0][1])
    assert cases[7][0][1]["errors"][0]["field"] == "records[0].tickets_open"


def test_no_train_serve_skew(served, known_ids):
    """The same customers through HTTP and through the champion bundle in-process."""
    import pandas as pd

    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.snapshots import build_snapshot
    from churn_risk.features.validation import load_crm

    bundle = served["first"].bundle
    _, explained = call(served["base"], "/explain", {"customer_id": known_ids[0]})
    as_of = explained["features_as_of"]
    frame = build_snapshot(prepare(load_crm(served["data"])), as_of, bundle.feature_config,
                           bundle.target)
    rows = frame.set_index("customer_id").loc[known_ids[:50]].reset_index()
    expected = bundle.predict(rows)["churn_probability"].to_numpy()
    _, answer = call(served["base"], "/score", {"customer_ids": known_ids[:50], "top_k": 0})
    got = np.array([r["churn_probability"] for r in answer["results"]])
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    contributions = bundle.explain(rows.head(1)).contributions.iloc[0]
    served_contributions = pd.Series({c["feature"]: c["contribution"]
                                      for c in explained["contributions"]})
    np.testing.assert_allclose(served_contributions[contributions.index].to_numpy(),
                               contributions.to_numpy(), rtol=1e-6, atol=1e-7)
    # value, quadrant and recommended action: the bundle's own, through HTTP
    scores = bundle.predict(rows)
    recommended = bundle.recommend(scores, bundle.explain(rows).groups)
    for column in ("horizon_margin", "lifetime_value", "value_at_risk"):
        got = np.array([r[column] for r in answer["results"]], dtype=float)
        np.testing.assert_allclose(got, scores[column].to_numpy(), rtol=1e-9)
    assert [r["quadrant"] for r in answer["results"]] == scores["quadrant"].tolist()
    served_actions = [r["recommended_action"] for r in answer["results"]]
    assert [a["action"] if a else "none" for a in served_actions] == (
        recommended["recommended_action"].tolist())
    for action, (_, row) in zip(served_actions, recommended.iterrows(), strict=True):
        if action is None:
            continue
        assert action["channel"] == row["action_channel"]
        reason = row["action_reason"]
        assert action["reason"] == (reason if isinstance(reason, str) else None)
        assert action["success_source"] == bundle.policy.action(action["action"]).success_source
        np.testing.assert_allclose(
            [action["expected_profit"], action["cost"], action["success_rate"]],
            [row["expected_profit"], row["action_cost"], row["action_success_rate"]], rtol=1e-9)
    # what-if records get the same fields, computed on the fly
    _, inline = call(served["base"], "/score",
                     {"records": [{"customer_id": c} for c in known_ids[:10]], "top_k": 0})
    for by_id, on_the_fly in zip(answer["results"][:10], inline["results"], strict=True):
        for key in ("horizon_margin", "lifetime_value", "value_at_risk", "quadrant",
                    "recommended_action"):
            assert on_the_fly[key] == by_id[key], key


@pytest.fixture(scope="module")
def change_case(served, known_ids):
    """A customer of the snapshot who was a customer 3 months earlier too, and those dates."""
    import pandas as pd

    from churn_risk.features.labels import population
    from churn_risk.features.lifecycle import prepare, to_timestamp
    from churn_risk.features.validation import load_crm

    _, explained = call(served["base"], "/explain", {"customer_id": known_ids[0]})
    to = pd.Timestamp(explained["features_as_of"])
    frm = to - pd.DateOffset(months=3)
    prep = prepare(load_crm(served["data"]))
    target = served["first"].bundle.target
    earlier = set(population(prep, to_timestamp(frm), target)["customer_id"])
    customer = next(c for c in known_ids if c in earlier)
    now = population(prep, to_timestamp(to), target)["customer_id"]
    return {"customer_id": customer, "from_date": f"{frm:%Y-%m-%d}",
            "to_date": f"{to:%Y-%m-%d}", "prep": prep,
            "newcomer": next(c for c in now if c not in earlier)}


def test_explain_change_answers_and_equals_the_bundle_in_process(served, change_case):
    from churn_risk.serving.change import explain_change

    body = {k: change_case[k] for k in ("customer_id", "from_date", "to_date")}
    status, answer = call(served["base"], "/explain_change", body)
    assert status == 200, answer
    ExplainChangeResponse.model_validate(answer)
    assert answer["model"]["version"] == served["first"].version
    assert answer["target"] == served["first"].bundle.target.as_dict()
    assert sum(g["change"] for g in answer["groups"]) == pytest.approx(answer["margin_change"],
                                                                       abs=1e-6)
    expected = explain_change(served["first"].bundle, change_case["prep"], **body)
    for key in ("margin_from", "margin_to", "churn_probability_from", "churn_probability_to"):
        assert answer[key] == pytest.approx(expected[key], abs=1e-9), key
    assert [g["driver_group"] for g in answer["groups"]] == [
        g["driver_group"] for g in expected["groups"]]
    _, scored = call(served["base"], "/score", {"customer_ids": [body["customer_id"]]})
    assert answer["churn_probability_to"] == pytest.approx(
        scored["results"][0]["churn_probability"], abs=1e-6)
    assert call(served["base"], "/explain_change", body, headers={})[0] == 401


def test_explain_change_bad_input_gets_a_4xx_naming_the_field(served, change_case):
    base = served["base"]
    good = {k: change_case[k] for k in ("customer_id", "from_date", "to_date")}
    newcomer = int(change_case["newcomer"])  # a customer now who was not one 3 months earlier
    cases = [
        ({**good, "customer_id": 999_999_999}, 404, "customer_id"),
        ({**good, "to_date": good["from_date"]}, 422, "to_date"),
        ({**good, "from_date": good["to_date"], "to_date": good["from_date"]}, 422, "to_date"),
        ({**good, "to_date": "2099-01-01"}, 422, "to_date"),
        ({**good, "from_date": "soon"}, 422, "from_date"),
        ({**good, "from_date": "2024-02-30"}, 422, "from_date"),
        ({**good, "customer_id": newcomer}, 422, "from_date"),
        ({k: v for k, v in good.items() if k != "to_date"}, 422, "to_date"),
        ({**good, "customer_id": [1, 2]}, 422, "customer_id"),
    ]
    for body, expected, field in cases:
        status, answer = call(base, "/explain_change", body)
        assert status == expected, (body, status, answer)
        text = json.dumps(answer)
        assert field in text, text
        assert "Traceback" not in text and not re.search(r"\.py\b|site-packages", text), text
    _, unknown = call(base, "/explain_change", cases[0][0])
    assert "e.g." in json.dumps(unknown)  # an example of a valid value


def test_page_renders_in_chromium(served, known_ids, tmp_path):
    url = f"{served['base']}/customers/{known_ids[0]}"
    dom = browser.dump_dom(url, headers=AUTH)
    for element in ('id="risk"', 'id="waterfall"', 'id="reasons"', 'id="history"',
                    'id="next-products"', "data-bar", 'id="value"', 'id="quadrant"',
                    'id="recommended-action"', 'id="risk-change"'):
        assert element in dom, element
    shot = tmp_path / "customer.png"
    browser.screenshot(url, shot, headers=AUTH)
    browser.assert_painted(shot)
    unauthorised = browser.dump_dom(url)
    assert 'id="waterfall"' not in unauthorised


def test_champion_switch_while_serving(served, known_ids):
    """After a promotion the service answers with the new version, without failed requests."""
    base, errors, versions = served["base"], [], []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            status, answer = call(base, "/score", {"customer_ids": known_ids[:5]})
            if status != 200:
                errors.append(status)
            else:
                versions.append(answer["model"]["version"])
            time.sleep(0.05)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        second = train(served["data"], FAST, project_dir=served["project"])
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{served['project'] / 'mlflow.db'}"}
        subprocess.run([sys.executable, "-m", "churn_risk.cli", "promote", "--force", "--data",
                        str(served["data"])], cwd=served["project"], env=env, check=True,
                       capture_output=True, timeout=300)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not versions or versions[-1] != second.version):
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert versions[0] == served["first"].version and versions[-1] == second.version


def test_the_service_refuses_to_start_without_keys(served, tmp_path):
    from churn_risk.cli import main

    env_keys = {k: os.environ.pop(k, None) for k in ("CHURN_API_KEYS", "CHURN_API_KEYS_FILE")}
    try:
        assert main(["serve", "--data", str(served["data"])]) == 2
    finally:
        for k, v in env_keys.items():
            if v is not None:
                os.environ[k] = v
    # Started some other way (plain `bentoml serve`), it serves nothing without a key: not even
    # with the old switch in its environment.
    env = launch.server_env(served["data"], project_dir=served["project"])
    env.pop("CHURN_API_KEYS", None)
    env["CHURN_INSECURE_DEV"] = "1"
    process, base = launch.start(env)
    try:
        launch.wait_ready(base, process, timeout=60)  # the model is ready ...
        status, body = call(base, "/score", {"customer_ids": [1]})  # ... but nothing is served
        assert status == 503 and "no API key configured" in body["detail"]
        assert call(base, "/customers/1")[0] == 503
        assert call(base, "/healthz", headers={})[0] == 200
    finally:
        launch.stop(process)


def test_bentoml_build_packages_the_service(tmp_path):
    """`make bento` on a copy of the project: the wheel and the Bento are built outside the
    repository (setuptools and BentoML write into the folder they build)."""
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    project = tmp_path / "project"
    shutil.copytree(repo, project, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "mlruns", "mlflow.db", ".bench-data",
        "demo-data", "__pycache__", ".*_cache", ".hypothesis", "worklists", "scores*"))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"),
           "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run([str(bin_dir / "pip"), "wheel", "-q", str(project), "--no-deps", "-w",
                    str(project / "dist")], check=True, capture_output=True, env=env,
                   timeout=300)
    built = subprocess.run([str(bin_dir / "bentoml"), "build", str(project)], env=env,
                           cwd=project, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    listed = subprocess.run([str(bin_dir / "bentoml"), "list"], env=env, capture_output=True,
                            text=True, timeout=60).stdout
    assert "churn-risk" in listed
