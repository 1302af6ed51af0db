"""Drift simulation in the demo generator, the training reference, `churn monitor` and
`churn retrain` (issue 14)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from churn_risk.demo import generate, truth_readme
from churn_risk.features.lifecycle import FeatureSpec
from churn_risk.training.monitor import (
    Thresholds,
    compare,
    feature_reference,
    portfolio_score_psi,
    psi,
    reference_profile,
    verdict,
)

#: `_digest` of `generate(customers=300, months=8, seed=3)` made by the generator before drift
#: simulation existed (76e9bd0): without --drift the data (tables, truth, README) must stay
#: identical. Of the values as text, not of `pd.util.hash_pandas_object`, whose hashes of the
#: same frames changed with a pandas upgrade (pinned before, it failed on a fresh install).
BEFORE_DRIFT = "3dcea54cd17dfa392c357d74d55316dfdbd361ec30a650d4f627603a72e74935"


def _digest(data) -> str:
    """Every table and truth frame but the customers' names, which came later and are drawn
    from the ids alone (no random draw: every other value is unchanged by them)."""
    h = hashlib.sha256()
    for group in (data.tables, data.truth):
        for name in sorted(group):
            h.update(name.encode())
            frame = group[name].drop(columns=["name"]) if name == "customers" else group[name]
            h.update(frame.to_csv(index=True, float_format="%.17g").encode())
    h.update(truth_readme(data, customers=300, months=8, seed=3, start="2023-01-01").encode())
    return h.hexdigest()


# -------------------------------------------------------------------------------- demo drift


def test_without_drift_the_data_are_those_made_before_drift_existed():
    assert _digest(generate(customers=300, months=8, seed=3)) == BEFORE_DRIFT
    assert _digest(generate(customers=300, months=8, seed=3, drifts={})) == BEFORE_DRIFT


def _late(deliveries: pd.DataFrame) -> pd.Series:
    return deliveries["delivered_date"].isna() | (
        deliveries["delivered_date"] > deliveries["promised_date"])


def test_delivery_drift_acts_from_its_month_only():
    stable = generate(customers=1500, months=12, seed=4)
    drifted = generate(customers=1500, months=12, seed=4, drifts={"delivery": "2023-08"})
    before = pd.Timestamp("2023-07-25")  # purchases of July are promised up to 6 days later
    old = stable.tables["deliveries"]
    new = drifted.tables["deliveries"]
    pd.testing.assert_frame_equal(old[old["promised_date"] < before].reset_index(drop=True),
                                  new[new["promised_date"] < before].reset_index(drop=True))
    after = pd.Timestamp("2023-08-10")
    late_old = _late(old[old["promised_date"] >= after]).mean()
    late_new = _late(new[new["promised_date"] >= after]).mean()
    assert late_new > 2 * late_old
    truth = drifted.truth["drifts"]
    assert truth["drift"].tolist() == ["delivery"]
    assert truth["from_month"].tolist() == [pd.Timestamp("2023-08-01")]
    assert "drifts" not in stable.truth
    # the hazard rises with it
    churn = drifted.truth["churn"].groupby("as_of")["hazard"].mean()
    churn_old = stable.truth["churn"].groupby("as_of")["hazard"].mean()
    assert churn.loc["2023-11-01":].mean() > 1.1 * churn_old.loc["2023-11-01":].mean()


def test_price_drift_lowers_price_scores_and_raises_churn():
    stable = generate(customers=1500, months=12, seed=4)
    drifted = generate(customers=1500, months=12, seed=4, drifts={"price": "2023-09"})

    def price(data):
        s = data.tables["surveys"]
        return s.loc[s["timestamp"] >= "2023-09-01", "price"].mean()

    assert price(drifted) < price(stable) - 1.0
    readme = truth_readme(drifted, customers=1500, months=12, seed=4, start="2023-01-01")
    assert "## Simulated drift" in readme and "**price** from 2023-09" in readme
    assert "Simulated drift" not in truth_readme(stable, customers=1500, months=12, seed=4,
                                                 start="2023-01-01")
    hazard = drifted.truth["churn"].groupby("as_of")["hazard"].mean()
    hazard_old = stable.truth["churn"].groupby("as_of")["hazard"].mean()
    assert hazard.loc["2023-09-01":].mean() > 1.3 * hazard_old.loc["2023-09-01":].mean()


def test_competitor_drift_wins_customers_of_one_region_whatever_their_drivers():
    from scipy.special import expit

    from churn_risk.demo.coefficients import DRIFT
    from churn_risk.demo.simulation import known_at

    stable = generate(customers=1500, months=12, seed=4)
    drifted = generate(customers=1500, months=12, seed=4, drifts={"competitor": "2023-08"})
    since = pd.Timestamp("2023-08-01")
    before, before_drift = known_at(stable, since), known_at(drifted, since)
    for name, table in before.tables.items():  # nothing differs before its first month
        pd.testing.assert_frame_equal(table, before_drift.tables[name])
    regions = drifted.tables["customers"].set_index("customer_id")["region"]
    churn = drifted.truth["churn"]
    market = churn["customer_id"].map(regions).eq(DRIFT.competitor_region).to_numpy()
    after = (churn["as_of"] >= since).to_numpy()
    usual = expit(churn["log_odds"]) * (1.0 - churn["campaign_reduction"])
    won = np.where(market & after, DRIFT.competitor_hazard, 0.0)
    np.testing.assert_allclose(churn["hazard"], 1.0 - (1.0 - usual) * (1.0 - won), rtol=1e-12)
    left = churn.loc[after].groupby(market[after])["churned_in_month"].mean()
    assert left[True] > 2 * left[False]
    assert drifted.truth["drifts"]["drift"].tolist() == ["competitor"]
    readme = truth_readme(drifted, customers=1500, months=12, seed=4, start="2023-01-01")
    assert "**competitor** from 2023-08" in readme and f"`{DRIFT.competitor_region}`" in readme


def test_bad_drifts_are_refused(tmp_path):
    from churn_risk.cli import main
    from churn_risk.demo.simulation import parse_drift

    assert parse_drift("delivery:2025-06") == ("delivery", pd.Timestamp("2025-06-01"))
    for text in ("weather:2025-06", "delivery", "delivery:June"):
        with pytest.raises(ValueError, match="drift"):
            parse_drift(text)
    with pytest.raises(ValueError, match="not a simulated month"):
        generate(customers=50, months=6, seed=1, drifts={"price": "2030-01"})
    out = tmp_path / "data"
    assert main(["generate-data", "--out", str(out), "--customers", "50", "--months", "6",
                 "--drift", "delivery:2030-01"]) == 2
    assert not out.exists()


# -------------------------------------------------------------------------------- PSI


def test_psi_of_the_reference_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    spec = FeatureSpec("x", "x", "delivery")
    values = pd.Series(rng.normal(size=5000))
    ref = feature_reference(values, spec)
    frame = pd.DataFrame({"x": values, "as_of": pd.Timestamp("2024-01-01")})
    reference = reference_profile(frame, [spec], {}, rng.random(5000))
    same = compare(reference, frame, [spec], rng.random(5000), "2024-02-01")
    assert same.features.loc[0, "psi"] == pytest.approx(0.0, abs=1e-12)
    assert same.score_psi < 0.01  # another draw of the same distribution
    shifted = compare(reference, frame.assign(x=values + 1.0), [spec], rng.random(5000),
                      "2024-02-01")
    assert shifted.features.loc[0, "psi"] > 0.5
    assert len(ref["edges"]) == 9 and sum(ref["shares"]) == pytest.approx(1.0)
    assert psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0  # empty bins cost nothing when both are


def _seasonal_history(months: pd.DatetimeIndex, shift: float = 1.5, n: int = 3000):
    """Monthly snapshots of a feature that is higher every November and December."""
    rng = np.random.default_rng(3)
    return [pd.DataFrame({"x": rng.normal(size=n) + (shift if m.month in (11, 12) else 0.0),
                          "as_of": m}) for m in months]


def test_a_change_that_comes_back_every_year_is_a_season_not_drift():
    spec = FeatureSpec("x", "x", "engagement")
    history = _seasonal_history(pd.date_range("2022-10-01", "2024-07-01", freq="MS"))
    newest = history[-1]
    reference = reference_profile(newest, [spec], {}, np.full(len(newest), 0.05),
                                  history=(pd.concat(history[:12]), pd.concat(history[12:])))
    assert sorted(reference["seasonal"]) == [f"{m:02d}" for m in range(1, 13)]
    assert reference["seasonal"]["11"]["as_of"] == "2023-11-01"  # the newest November
    november = _seasonal_history(pd.DatetimeIndex(["2024-11-01"]))[0]
    report = compare(reference, november, [spec], np.full(3000, 0.05), "2024-11-01")
    row = report.features.iloc[0]
    assert report.same_month_as_of == "2023-11-01"
    assert row["psi_reference"] > 0.5 and row["psi_same_month"] < 0.02
    assert row["psi"] == row["psi_same_month"]
    decided = verdict(report, Thresholds())
    assert not decided.retraining_due
    assert "seasonal, as in 2023-11-01 (not counted): x" in decided.text

    # a real drift on top of the season is still drift
    drifted = november.assign(x=november["x"] + 1.0)
    report = compare(reference, drifted, [spec], np.full(3000, 0.05), "2024-11-01")
    assert report.features.loc[0, "psi"] > 0.25 and verdict(report, Thresholds()).retraining_due

    # a model that learnt from less than a year has no November: the reference alone
    short = reference_profile(newest, [spec], {}, np.full(len(newest), 0.05),
                              history=history[-6:])
    assert "11" not in short["seasonal"]
    report = compare(short, november, [spec], np.full(3000, 0.05), "2024-11-01")
    assert report.same_month_as_of is None and np.isnan(report.features.loc[0, "psi_same_month"])
    assert verdict(report, Thresholds()).retraining_due


def test_the_score_psi_from_counts_is_the_score_psi_of_the_rows():
    """The service knows its portfolio by counts of probabilities at most each edge
    (`Store.portfolio_summary`): the same PSI as `compare` computes from the rows."""
    rng = np.random.default_rng(1)
    spec = FeatureSpec("x", "x", "delivery")
    frame = pd.DataFrame({"x": rng.normal(size=3000), "as_of": pd.Timestamp("2024-01-01")})
    reference = reference_profile(frame, [spec], {}, rng.beta(1, 8, 3000))
    for current in (rng.beta(1, 8, 2000), rng.beta(2, 5, 2000)):  # the same, and drifted
        at_most = {e: int((current <= e).sum()) for e in reference["score"]["edges"]}
        rows = compare(reference, frame, [spec], current, "2024-02-01").score_psi
        assert portfolio_score_psi(reference["score"], at_most, len(current)) == \
            pytest.approx(rows, abs=1e-12)
    assert rows > 0.25


def test_reference_of_constant_boolean_categorical_and_missing_features():
    n = 1000
    frame = pd.DataFrame({
        "constant": np.zeros(n), "flag": np.r_[np.zeros(700), np.ones(300)],
        "segment": ["consumer"] * 600 + ["enterprise"] * 300 + [None] * 100,
        "empty": np.full(n, np.nan), "as_of": pd.Timestamp("2024-01-01")})
    specs = [FeatureSpec("constant", "c", "tenure"), FeatureSpec("flag", "f", "products"),
             FeatureSpec("segment", "s", "profile", kind="categorical"),
             FeatureSpec("empty", "e", "satisfaction")]
    reference = reference_profile(frame, specs, {"segment": ["consumer", "enterprise"]},
                                  np.full(n, 0.05))
    features = reference["features"]
    assert features["constant"]["edges"] == [0.0] and features["constant"]["shares"] == [1, 0]
    assert features["flag"]["edges"] == [0.0, 1.0]
    assert features["flag"]["shares"] == pytest.approx([0.7, 0.3, 0.0])
    assert features["segment"]["shares"] == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert features["segment"]["missing"] == pytest.approx(0.1)
    assert features["empty"] == {"kind": "numeric", "edges": [], "shares": [0.0], "missing": 1.0}
    now = frame.assign(segment=["small_business"] * n, flag=1.0)  # an unseen level, all flags
    report = compare(reference, now, specs, np.full(n, 0.05), "2024-02-01")
    by_feature = report.features.set_index("feature")
    assert by_feature.loc["segment", "psi"] > 1 and by_feature.loc["flag", "psi"] > 1
    assert by_feature.loc["constant", "psi"] == 0 and by_feature.loc["empty", "psi"] == 0
    assert by_feature.loc["segment", "missing_change"] == pytest.approx(-0.1)
    decided = verdict(report, Thresholds(missing_alert=0.05))
    assert decided.retraining_due
    assert "segment" in decided.text and "flag" in decided.text and "missing" in decided.text


def test_a_model_without_reference_is_told_to_retrain():
    decided = verdict(None, Thresholds())
    assert decided.retraining_due and "no training reference" in decided.text


def test_the_reference_travels_with_the_bundle(fitted, tmp_path):
    from churn_risk.models.bundle import ChurnBundle

    reference = fitted.bundle.info["reference"]
    assert set(reference["features"]) == set(fitted.bundle.feature_names)
    loaded = ChurnBundle.load(fitted.bundle.save(tmp_path / "bundle"))
    assert loaded.info["reference"] == reference
    newest = fitted.test.loc[fitted.test["as_of"] == fitted.test["as_of"].max()]
    p = loaded.predict(newest)["churn_probability"].to_numpy()
    report = compare(reference, newest, loaded.specs, p, newest["as_of"].max())
    assert report.features["psi"].max() == pytest.approx(0.0, abs=1e-9)  # its own snapshot
    assert report.score_psi == pytest.approx(0.0, abs=1e-9)


# -------------------------------------------------------------------------------- end to end

#: Data end in September, so the reference (the newest labelled month) and the portfolio are
#: outside the Nov/Dec season: the drift is the only shift in the data.
E2E = ["--customers", "3000", "--months", "24", "--seed", "11", "--start", "2022-10-01"]
FAST_TOML = ('figures = false\nmin_positives = 10\n[search]\nmax_depth = [3]\n'
             'num_boost_round = 150\n')


def _project(tmp_path, monkeypatch, name: str, drift: str | None,
             train_before: str | None = None):
    """A project folder (the working directory, its own MLflow store) with the E2E demo data in
    `data` and a champion trained and promoted on them, or, with `train_before`, on the data as
    a CRM knew them at that moment (in `data-before`)."""
    from churn_risk.cli import main
    from churn_risk.demo.simulation import DemoData, known_at
    from churn_risk.features.io import write_tables
    from churn_risk.features.validation import load_crm
    from tests.conftest import MLFLOW_EXPORTS

    folder = tmp_path / name
    folder.mkdir()
    monkeypatch.chdir(folder)
    for variable in MLFLOW_EXPORTS:
        monkeypatch.setenv(variable, "unset")
        monkeypatch.delenv(variable)
    (folder / "fast.toml").write_text(FAST_TOML)
    args = ["generate-data", "--out", "data", *E2E]
    assert main(args + (["--drift", drift] if drift else [])) == 0
    train_on = "data"
    if train_before is not None:
        train_on = "data-before"
        known = known_at(DemoData(load_crm("data").tables, {}), pd.Timestamp(train_before))
        write_tables(known.tables, train_on)
    assert main(["train", "--data", train_on, "--config", "fast.toml"]) == 0
    assert main(["promote", "--data", train_on]) == 0
    return folder


def _champion() -> str:
    from mlflow import MlflowClient

    return str(MlflowClient().get_model_version_by_alias("churn-risk", "champion").version)


@pytest.mark.slow
def test_monitor_finds_the_simulated_delivery_drift_and_retrain_keeps_the_rule(
        tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    from churn_risk.cli import main

    _project(tmp_path, monkeypatch, "drifted", "delivery:2024-07")
    capsys.readouterr()
    assert main(["monitor", "--data", "data"]) == 4
    out = capsys.readouterr().out
    assert "retraining due" in out and "late_deliveries_90d" in out
    runs = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("churn-risk").experiment_id],
        filter_string="tags.job = 'monitor'")
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    drifted = {k: v for k, v in metrics.items() if k.startswith("psi_") and v >= 0.25}
    assert drifted and all(k in {"psi_late_deliveries_90d", "psi_late_share_90d",
                                 "psi_lateness_days_90d", "psi_deliveries_overdue",
                                 "psi_damaged_deliveries_90d"} for k in drifted), drifted
    artifacts = {a.path for a in MlflowClient().list_artifacts(runs[0].info.run_id, "plots")}
    assert artifacts == {"plots/psi.png", "plots/score_distribution.png"}

    # retraining is due: monitor -> train -> promote by the usual rule
    code = main(["retrain", "--data", "data", "--config", "fast.toml"])
    assert code in (0, 3)
    assert _champion() == ("2" if code == 0 else "1")  # refused: the champion is left alone


@pytest.mark.slow
def test_monitor_raises_no_false_alarm_on_stable_data(tmp_path, monkeypatch, capsys):
    from churn_risk.cli import main

    _project(tmp_path, monkeypatch, "stable", None)
    capsys.readouterr()
    assert main(["monitor", "--data", "data"]) == 0
    out = capsys.readouterr().out
    assert "stable" in out and "retraining due" not in out
    assert main(["retrain", "--data", "data", "--config", "fast.toml"]) == 0
    assert "nothing to retrain" in capsys.readouterr().out
    assert _champion() == "1"  # nothing trained


#: The competitor drift acts from April 2024 (the E2E data end in September 2024): the champion
#: knows the data up to then, predictions are logged in May and June, and both have matured
#: (90 days) by the data end.
COMPETITOR_FROM = "2024-04-01"
LOGGED = ("2024-05-01", "2024-06-01")
#: The monitored portfolio: the month after the last logged predictions. (As of the data end,
#: October, its purchase trend differs from the January reference by the season alone, PSI 0.30,
#: and matches the October 2023 training snapshot: `compare` judges it seasonal.)
MONITORED = "2024-07-01"


def _logged_and_monitored(url: str, capsys):
    """Load `data` into the store at `url`, log the champion's scores as of `LOGGED` and run
    `churn monitor` on it: (exit code, what it printed, its MLflow run)."""
    from mlflow import MlflowClient

    from churn_risk.cli import main
    from churn_risk.features.store import Store

    main(["store", "load", "--data", "data", "--store", url])
    for as_of in LOGGED:
        main(["score", "--store", url, "--as-of", as_of, "--out", f"scores-{as_of}.parquet"])
    with Store(url) as store:  # `churn score` logged what it gave out
        log = store.predictions()
    logged = pd.concat([pd.read_parquet(f"scores-{as_of}.parquet") for as_of in LOGGED])
    assert sorted(log["prediction_id"]) == sorted(logged["prediction_id"])
    assert sorted(log["features_as_of"].unique()) == list(LOGGED)
    capsys.readouterr()
    code = main(["monitor", "--store", url, "--as-of", MONITORED])
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("churn-risk").experiment_id],
                              filter_string="tags.job = 'monitor'")
    assert len(runs) == 1
    return code, out, runs[0]


def _sklearn_auc() -> float:
    """sklearn's ROC-AUC of the scores `churn score` wrote, against labels computed here from
    the raw tables by the repository's label definition: independent of `training.realised`
    (log, maturity, one prediction per day) and of the monitor."""
    from sklearn.metrics import roc_auc_score

    from churn_risk.features.labels import churn_labels, data_end
    from churn_risk.features.lifecycle import prepare, to_timestamp
    from churn_risk.features.target import Target
    from churn_risk.features.validation import load_crm

    prep = prepare(load_crm("data"))
    customers = prep.customers.assign(_pos=np.arange(len(prep.customers)))
    customers = customers.set_index("customer_id", drop=False)
    y, p = [], []
    for as_of in LOGGED:
        scores = pd.read_parquet(f"scores-{as_of}.parquet")
        target = Target(kind=scores["target"].iloc[0],
                        horizon_days=int(scores["horizon_days"].iloc[0]))
        y.append(churn_labels(prep, customers.loc[scores["customer_id"]], to_timestamp(as_of),
                              target, data_end(prep)))
        p.append(scores["churn_probability"].to_numpy())
    y = np.concatenate(y)
    assert not np.isnan(y).any()  # every prediction has matured
    return float(roc_auc_score(y, np.concatenate(p)))


@pytest.mark.slow
def test_monitor_finds_the_realised_accuracy_drop_of_a_drift_the_features_do_not_show(
        tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    from churn_risk.training.monitor import auc_drop_reason

    judged = {}
    for name, drift in (("competitor", f"competitor:{COMPETITOR_FROM[:7]}"), ("stable", None)):
        folder = _project(tmp_path, monkeypatch, name, drift, train_before=COMPETITOR_FROM)
        code, out, run = _logged_and_monitored(f"sqlite:///{folder / 'store.db'}", capsys)
        metrics = run.data.metrics
        realised, test_auc = metrics["realised.roc_auc"], metrics["test_roc_auc_at_training"]
        client = MlflowClient()
        champion = client.get_model_version_by_alias("churn-risk", "champion")
        assert test_auc == client.get_run(champion.run_id).data.metrics["test_roc_auc"]
        # the monitor's realised AUC is sklearn's on labels from the raw tables, and it printed it
        assert realised == pytest.approx(_sklearn_auc(), abs=1e-12)
        assert f"realised ROC-AUC {realised:.3f}" in out
        assert {"realised.ece", "realised.top_decile_lift", "realised.month.2024-05.roc_auc",
                "realised.segment.consumer.roc_auc"} <= set(metrics)
        reason = auc_drop_reason(test_auc, realised, 0.05)
        judged[name] = (code, out, realised, test_auc, reason)
        artifacts = {a.path for kind in ("plots", "tables")
                     for a in client.list_artifacts(run.info.run_id, kind)}
        assert {"plots/realised_by_month.png", "plots/realised_calibration.png",
                "tables/realised_by_month.csv", "tables/realised_by_segment.csv"} <= artifacts

    # the same champion: the data before the drift are the same
    assert judged["competitor"][3] == judged["stable"][3]
    code, out, realised, test_auc, reason = judged["competitor"]
    assert realised < test_auc - 0.05
    # retraining is due for the realised accuracy alone: no feature drifted enough to tell
    assert code == 4
    assert reason is not None and f"retraining due: {reason}" in out
    assert "feature(s) drifted" not in out and "score distribution shifted" not in out
    code, out, realised, test_auc, reason = judged["stable"]
    assert reason is None and "below the test ROC-AUC" not in out
    assert code == 0 and "stable" in out and "retraining due" not in out
