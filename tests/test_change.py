"""Why did risk change: known answers on constructed data, exactness, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn_risk.features.labels import population, scoring_as_of
from churn_risk.features.lifecycle import (
    build_features,
    prepare,
    to_timestamp,
)
from churn_risk.features.snapshots import build_snapshot
from churn_risk.features.validation import validate
from churn_risk.serving.change import (
    ChangeRequestError,
    CustomerNotFound,
    InvalidDates,
    NotACustomer,
    customer_data,
    explain_change,
)


@pytest.fixture(scope="module")
def bundle(fitted):
    return fitted.bundle


@pytest.fixture(scope="module")
def dates(prep):
    """The service's snapshot date (the day after the data end) and 3 months earlier."""
    to = scoring_as_of(prep)
    return to - pd.DateOffset(months=3), to


@pytest.fixture(scope="module")
def stayers(prep, bundle, dates):
    """Customers in the population at both dates."""
    ids = [set(population(prep, to_timestamp(t), bundle.target)["customer_id"]) for t in dates]
    return sorted(ids[0] & ids[1])


def test_one_customer_features_equal_the_snapshot_rows(prep, bundle, dates, stayers):
    """Restricting the data to one customer changes nothing in their features."""
    cfg, target = bundle.feature_config, bundle.target
    for t in dates:
        snapshot = build_snapshot(prep, t, cfg, target).set_index("customer_id")
        for customer in stayers[:40:4]:
            one = customer_data(prep, customer, target)
            row = build_features(one, to_timestamp(t), population(one, to_timestamp(t), target),
                                 cfg).set_index("customer_id")
            pd.testing.assert_series_equal(row.loc[customer, bundle.feature_names],
                                           snapshot.loc[customer, bundle.feature_names],
                                           check_names=False)


def test_group_changes_add_up_to_the_margin_change(prep, bundle, dates, stayers):
    frm, to = dates
    snapshot = build_snapshot(prep, to, bundle.feature_config,
                              bundle.target).set_index("customer_id")
    for customer in stayers[:60:6]:
        change = explain_change(bundle, prep, customer, frm, to)
        deltas = [g["change"] for g in change["groups"]]
        assert sum(deltas) == pytest.approx(change["margin_change"], abs=1e-6)
        assert change["margin_change"] == pytest.approx(
            change["margin_to"] - change["margin_from"], abs=1e-12)
        for g in change["groups"]:
            assert g["change"] == pytest.approx(g["contribution_to"] - g["contribution_from"],
                                                abs=1e-12)
        assert sum(g["contribution_to"] for g in change["groups"]) + change["base_value"] == (
            pytest.approx(change["margin_to"], abs=1e-6))
        assert [abs(d) for d in deltas] == sorted((abs(d) for d in deltas), reverse=True)
        assert {g["driver_group"] for g in change["groups"]} == {s.group for s in bundle.specs}
        # the later date is the snapshot the service scores: same probability
        expected = bundle.predict(snapshot.loc[[customer]].reset_index())["churn_probability"]
        assert change["churn_probability_to"] == pytest.approx(expected.iloc[0], abs=1e-6)
        assert change["probability_change"] == pytest.approx(
            change["churn_probability_to"] - change["churn_probability_from"], abs=1e-12)
        top = change["features"]
        assert 0 < len(top) <= 10
        assert [abs(f["change"]) for f in top] == sorted((abs(f["change"]) for f in top),
                                                         reverse=True)
        assert all(f["feature"] in bundle.feature_names for f in top)


def _ticketless(prep, stayers, frm, to):
    """Stayers without any ticket in the year before `to` (a clean slate for added tickets)."""
    tickets = prep.events["tickets"]
    recent = tickets.loc[tickets["opened_at"] >= frm - pd.Timedelta(days=365)]
    return [c for c in stayers if c not in set(recent["customer_id"])]


def test_unresolved_tickets_between_the_dates_raise_the_service_group(raw_tables, prep, bundle,
                                                                      dates, stayers):
    frm, to = dates
    candidates = _ticketless(prep, stayers, frm, to)
    assert candidates
    # the customer whose risk moved least on its own, so the added tickets are the story
    quiet = min(candidates[:80], key=lambda c: max(
        abs(g["change"]) for g in explain_change(bundle, prep, c, frm, to)["groups"]))
    before = explain_change(bundle, prep, quiet, frm, to)

    opened = [to - pd.Timedelta(days=d) for d in (70, 50, 30, 10)]
    added = pd.DataFrame({
        "customer_id": [quiet] * 4,
        "opened_at": opened,
        "closed_at": [opened[0] + pd.Timedelta(days=5), pd.NaT, pd.NaT, pd.NaT],
        "category": ["billing", "billing", "technical", "billing"],
        "resolved": pd.array([False, None, None, None], dtype="boolean"),
    })
    tables = dict(raw_tables)
    tables["tickets"] = pd.concat([raw_tables["tickets"], added], ignore_index=True)
    changed = prepare(validate(tables))
    after = explain_change(bundle, changed, quiet, frm, to)

    service = next(g for g in after["groups"] if g["driver_group"] == "service")
    assert service["change"] > 0
    assert after["groups"][0]["driver_group"] == "service"  # the largest change
    assert sum(g["change"] for g in after["groups"]) == pytest.approx(after["margin_change"],
                                                                      abs=1e-6)
    assert after["probability_change"] > before["probability_change"]
    # the earlier date is untouched by tickets opened after it: identical explanation there
    for g_after in after["groups"]:
        g_before = next(g for g in before["groups"] if g["driver_group"] == g_after["driver_group"])
        assert g_after["contribution_from"] == pytest.approx(g_before["contribution_from"],
                                                             abs=1e-12)
    biggest = after["features"][0]  # the largest feature-level change: a ticket feature
    assert biggest["driver_group"] == "service" and biggest["change"] > 0, after["features"]
    assert biggest["value_to"] > biggest["value_from"] == 0


def test_ids_as_strings_find_the_customer(prep, bundle, dates, stayers):
    frm, to = dates
    a = explain_change(bundle, prep, stayers[0], frm, to)
    b = explain_change(bundle, prep, str(stayers[0]), f"{frm:%Y-%m-%d}", f"{to:%Y-%m-%d}")
    assert a == b
    assert b["customer_id"] == stayers[0] and b["from_date"] == f"{frm:%Y-%m-%d}"


def test_bad_requests_raise_typed_errors_with_the_field_and_an_example(prep, bundle, dates,
                                                                       stayers):
    frm, to = dates
    customer = stayers[0]
    with pytest.raises(CustomerNotFound) as unknown:
        explain_change(bundle, prep, 999_999_999, frm, to)
    assert unknown.value.status == 404 and unknown.value.field == "customer_id"
    explain_change(bundle, prep, unknown.value.example, frm, to)  # the example is a customer

    cases = [
        ((customer, to, frm), InvalidDates, "to_date", "not after"),
        ((customer, frm, frm), InvalidDates, "to_date", "not after"),
        ((customer, frm, to + pd.Timedelta(days=30)), InvalidDates, "to_date", "end of the data"),
        ((customer, "yesterday-ish", to), InvalidDates, "from_date", "not a date"),
        ((customer, frm, ""), InvalidDates, "to_date", "required"),
    ]
    for args, error, field, words in cases:
        with pytest.raises(error) as caught:
            explain_change(bundle, prep, *args)
        assert caught.value.status == 422
        assert caught.value.field == field and words in str(caught.value), str(caught.value)
        assert caught.value.example and str(caught.value).startswith(f"{field}: ")
    latest = next(c for c in cases if "end of the data" in c[3])
    with pytest.raises(InvalidDates) as caught:
        explain_change(bundle, prep, *latest[0])
    assert caught.value.example == f"{to:%Y-%m-%d}"


def test_not_a_customer_at_one_of_the_dates(prep, bundle, dates):
    frm, to = dates
    target = bundle.target
    customers = prep.customers
    # signed up after `frm`: not a customer yet then
    late = customers.loc[customers["signup_date"] >= frm, "customer_id"]
    at_to = set(population(prep, to_timestamp(to), target)["customer_id"])
    newcomer = next(c for c in late if c in at_to)
    with pytest.raises(NotACustomer) as caught:
        explain_change(bundle, prep, newcomer, frm, to)
    assert caught.value.field == "from_date" and "not signed up" in str(caught.value)
    assert caught.value.status == 422

    # in the population at `frm`, gone by `to`
    at_from = set(population(prep, to_timestamp(frm), target)["customer_id"])
    gone = sorted(at_from - at_to)[0]
    with pytest.raises(NotACustomer) as caught:
        explain_change(bundle, prep, gone, frm, to)
    assert caught.value.field == "to_date" and "no longer a customer" in str(caught.value)
    example = caught.value.example
    assert example is not None and pd.Timestamp(example) < to
    explain_change(bundle, prep, gone, pd.Timestamp(example) - pd.DateOffset(months=3), example)


def test_errors_share_one_base_class():
    for error in (CustomerNotFound, InvalidDates, NotACustomer):
        assert issubclass(error, ChangeRequestError) and issubclass(error, ValueError)


def test_cli_prints_the_group_table_and_refuses_bad_input(bundle, demo_folder, dates, stayers,
                                                         tmp_path, project, capsys):
    """`churn explain-change` with a real MLflow model folder (saved like training logs it)."""
    import mlflow

    from churn_risk.cli import main
    from churn_risk.models import mlflow_model
    from churn_risk.models.pyfunc import ARTIFACT_KEY

    folder = bundle.save(tmp_path / "bundle")
    model_dir = tmp_path / "model"
    mlflow.pyfunc.save_model(str(model_dir), python_model=str(Path(mlflow_model.__file__)),
                             artifacts={ARTIFACT_KEY: str(folder)})
    frm, to = dates
    argv = ["explain-change", "--customer", str(stayers[0]), "--from", f"{frm:%Y-%m-%d}",
            "--to", f"{to:%Y-%m-%d}", "--data", str(demo_folder), "--model", str(model_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "driver group" in out and "service" in out and "Churn probability" in out
    assert "points" in out

    bad = [*argv]
    bad[2] = "999999999"
    assert main(bad) == 2
    assert "999999999" in capsys.readouterr().err
    bad = [*argv]
    bad[4], bad[6] = bad[6], bad[4]
    assert main(bad) == 2
    assert "--to" in capsys.readouterr().err
    missing = [*argv[:-1], str(tmp_path / "no-such-model")]
    assert main(missing) == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_a_call_is_cheap(prep, bundle, dates, stayers):
    import time

    frm, to = dates
    started = time.perf_counter()
    for customer in stayers[:10]:
        explain_change(bundle, prep, customer, frm, to)
    assert (time.perf_counter() - started) / 10 < 0.5
    assert np.isfinite(explain_change(bundle, prep, stayers[0], frm, to)["margin_change"])
