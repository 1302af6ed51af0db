"""Batch scoring of the portfolio: the table, its agreement with the bundle and XGBoost, the
engines, chunking, the report, the MLflow run and the `churn score` command.

A real model is trained once on the small demo data into a real MLflow store in a temporary
project folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow import MlflowClient

from churn_risk.cli import main
from churn_risk.features.labels import scoring_as_of
from churn_risk.features.snapshots import build_snapshot
from churn_risk.models.bundle import high_risk_from
from churn_risk.models.portfolio import QUADRANTS
from churn_risk.models.pyfunc import load_bundle
from churn_risk.serving.batch import score_frame, score_portfolio
from churn_risk.serving.report import (
    log_report_to_mlflow,
    portfolio_figures,
    portfolio_report,
    portfolio_summary,
)
from churn_risk.training.tracking import MODEL_NAME, configure_tracking

from .conftest import MLFLOW_EXPORTS

KEYS = ["customer_id", "features_as_of", "model_name", "model_version", "target", "horizon_days",
        "target_description"]
CHARTS = ("risk_matrix", "value_at_risk_by_segment", "key_drivers_by_segment",
          "score_distribution")


def assert_a_drawn_chart(png: Path) -> None:
    """A figure was drawn: a readable PNG of the report's chart size with marks on it (more
    than a few colours, not one flat background)."""
    from PIL import Image, ImageStat

    with Image.open(png) as image:
        width, height = image.size
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        spread = ImageStat.Stat(rgb).stddev
    assert width >= 400 and height >= 250, image.size
    assert len(colours) > 50 and min(spread) > 5, (png.name, len(colours), spread)


@pytest.fixture(scope="module")
def trained(champion_project, champion_store):
    """The session's registered model in a project of this module, loaded back from MLflow."""
    version = champion_store.train.version
    with pytest.MonkeyPatch.context() as mp:
        for name in MLFLOW_EXPORTS:
            mp.setenv(name, "unset")
            mp.delenv(name)
        configure_tracking(champion_project)
        bundle = load_bundle(f"models:/{MODEL_NAME}/{version}")
    return SimpleNamespace(project=champion_project, version=version, bundle=bundle)


@pytest.fixture
def in_project(trained, monkeypatch):
    """The trained model's project as the working directory, MLflow pointed at its store."""
    monkeypatch.chdir(trained.project)
    for name in MLFLOW_EXPORTS:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    configure_tracking(trained.project)
    return trained.project


@pytest.fixture(scope="module")
def snapshot(prep, trained):
    """The population at the default as-of date, as the batch builds it."""
    as_of = scoring_as_of(prep)
    frame = build_snapshot(prep, as_of, trained.bundle.feature_config, trained.bundle.target)
    return frame.sort_values("customer_id").reset_index(drop=True), as_of


@pytest.fixture(scope="module")
def scores(demo_folder, trained):
    return score_portfolio(demo_folder, None, trained.bundle, MODEL_NAME, trained.version)


def test_every_field_for_every_customer_of_the_population(scores, snapshot, trained):
    frame, as_of = snapshot
    expected_columns = KEYS + list(trained.bundle.score(frame.head(5)).columns)
    assert set(expected_columns) <= set(scores.columns)
    assert scores["customer_id"].is_unique
    assert scores["customer_id"].tolist() == frame["customer_id"].tolist()
    assert (scores["features_as_of"] == f"{as_of:%Y-%m-%d}").all()
    assert (scores["model_name"] == MODEL_NAME).all()
    assert (scores["model_version"] == trained.version).all()
    # Every row says what its probability is of.
    target = trained.bundle.target
    assert (scores["target"] == target.kind.value).all() and target.kind.value == "subscription_end"
    assert (scores["horizon_days"] == target.horizon_days).all()
    assert (scores["target_description"] == target.description).all()
    assert scores["churn_probability"].between(0, 1).all()
    assert set(scores["quadrant"]) <= set(QUADRANTS)
    assert {"reason_1_feature", "reason_1_group", "reason_1_contribution", "next_product_1",
            "recommended_action", "expected_profit", "segment"} <= set(scores.columns)


def test_scores_equal_the_bundle_and_reasons_equal_xgboost_pred_contribs(scores, snapshot,
                                                                         trained):
    frame, _ = snapshot
    bundle = trained.bundle
    expected = bundle.score(frame)
    pd.testing.assert_frame_equal(scores[expected.columns], expected)
    pd.testing.assert_frame_equal(scores[bundle.predict(frame).columns], bundle.predict(frame))

    # Train/serve skew: TreeSHAP from the training-time input (encode_features → DataFrame
    # DMatrix, as `fit_bundle` feeds XGBoost), not from the batch's own float array.
    dm = xgb.DMatrix(bundle.matrix(frame), enable_categorical=True)
    contribs = bundle.churn.predict(dm, pred_contribs=True)[:, :-1]
    names = bundle.feature_names
    for i in (1, 2, 3):
        feature = scores[f"reason_{i}_feature"]
        known = feature.notna().to_numpy()
        assert known.any()
        columns = np.array([names.index(f) for f in feature[known]])
        np.testing.assert_allclose(scores.loc[known, f"reason_{i}_contribution"],
                                   contribs[known][np.arange(known.sum()), columns], atol=1e-5)
    top = np.sort(contribs, axis=1)[:, ::-1][:, :3]
    shown = scores[[f"reason_{i}_contribution" for i in (1, 2, 3)]].to_numpy(dtype=float)
    np.testing.assert_allclose(shown, np.where(top > 0, top, np.nan), atol=1e-5)
    for group in dict.fromkeys(s.group for s in bundle.specs):
        members = [j for j, s in enumerate(bundle.specs) if s.group == group]
        np.testing.assert_allclose(scores[f"group_{group}"], contribs[:, members].sum(axis=1),
                                   atol=1e-5)
    margin = bundle.churn.predict(dm, output_margin=True)
    np.testing.assert_allclose(scores["churn_probability"], bundle.calibrator(margin), atol=1e-6)


def test_chunking_does_not_change_the_table(snapshot, trained):
    frame, as_of = snapshot
    calls = []
    small = score_frame(frame, trained.bundle, MODEL_NAME, "1", as_of, chunk_rows=37,
                        progress=lambda done, total: calls.append((done, total)))
    whole = score_frame(frame, trained.bundle, MODEL_NAME, "1", as_of, chunk_rows=10_000)
    pd.testing.assert_frame_equal(small, whole)
    chunks = -(-len(frame) // 37)
    assert calls == [(i, chunks) for i in range(1, chunks + 1)]


@pytest.mark.slow
def test_pandas_and_dask_engines_give_the_same_table(demo_folder, scores, trained):
    on_dask = score_portfolio(demo_folder, None, trained.bundle, MODEL_NAME, trained.version,
                              engine="dask", chunk_rows=100)
    pd.testing.assert_frame_equal(on_dask, scores)


def test_report_has_its_charts_and_the_mlflow_run_its_artifacts(scores, trained, in_project,
                                                                tmp_path):
    out = tmp_path / "scores.parquet"
    scores.to_parquet(out)
    page = portfolio_report(scores, scores["segment"], tmp_path / "report", "Portfolio",
                            trained.bundle.policy, trained.bundle.risk_bands)
    text = page.read_text()
    assert page.name == "report.html"
    for chart in CHARTS:
        assert_a_drawn_chart(page.parent / f"{chart}.png")
        assert f'id="{chart}"' in text
    assert text.count("data:image/png;base64,") == len(CHARTS)
    assert "<script" not in text and "http" not in text  # self-contained: no CDN, no links

    summary = portfolio_summary(scores)
    quadrants = summary["quadrants"]
    assert sum(q["customers"] for q in quadrants.values()) == len(scores)
    np.testing.assert_allclose(sum(q["value_at_risk"] for q in quadrants.values()),
                               scores["value_at_risk"].sum())
    for cell in quadrants.values():
        assert f"<td>{cell['customers']:,}</td>" in text

    run_id = log_report_to_mlflow(page, out, summary, f"models:/{MODEL_NAME}/{trained.version}",
                                  trained.version, "2025-01-01", "pandas", MODEL_NAME)
    run = MlflowClient().get_run(run_id)
    assert run.info.run_name == f"score 2025-01-01 with {MODEL_NAME} v{trained.version}"
    assert run.data.tags["target"] == trained.bundle.target.description
    assert run.data.params["as_of"] == "2025-01-01"
    assert run.data.params["model_version"] == trained.version
    assert run.data.metrics["customers"] == len(scores)
    assert sum(run.data.metrics[f"quadrant_{q}_customers"] for q in QUADRANTS) == len(scores)
    logged = {a.path for a in MlflowClient().list_artifacts(run_id, "report")}
    assert {"report/report.html", *(f"report/{c}.png" for c in CHARTS)} <= logged
    assert [a.path for a in MlflowClient().list_artifacts(run_id, "scores")] == [
        "scores/scores.parquet"]


def test_report_is_rendered_from_an_autoescaped_template(scores, trained, tmp_path):
    hostile = "<script>alert(1)</script>"
    page = portfolio_report(scores, scores["segment"], tmp_path / "report", f"Portfolio {hostile}",
                            trained.bundle.policy, trained.bundle.risk_bands,
                            details={"model": hostile, "as of": "2025-01-01"})
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3  # title, heading, details
    assert "<style>" in text and ".tiles {" in text  # report.css, inlined
    summary = portfolio_summary(scores)
    for figure in (f"{summary['customers']:,}", f"{summary['mean_churn_probability']:.1%}",
                   f"€{summary['total_value_at_risk']:,.0f}"):
        assert f'<div class="value">{figure}</div>' in text, figure
    assert text.count('<tr class="quadrant">') == len(QUADRANTS)


def test_report_names_actions_in_words_and_lists_the_customers_most_at_risk(scores, trained,
                                                                            tmp_path):
    """Users read code names (`service_recovery`) and no customer: the report names each action
    by its catalogue label and lists the customers with the most value at risk."""
    policy = trained.bundle.policy
    text = portfolio_report(scores, scores["segment"], tmp_path / "report", "Portfolio",
                            policy, trained.bundle.risk_bands).read_text()
    summary = portfolio_summary(scores)
    assert summary["actions"]
    for action in summary["actions"][:10]:
        label = policy.action(action["action"]).label
        assert f'<tr class="action"><td>{label}</td><td>{action["customers"]:,}</td>' in text
        assert f"<td>{action['action']}</td>" not in text
    assert text.count('<tr class="customer">') == min(20, len(scores))
    top = scores.sort_values("value_at_risk", ascending=False).iloc[0]
    first = text[text.index('<tr class="customer">'):].split("</tr>")[0]
    assert f"<td>{top['customer_id']}</td>" in first
    assert f"<td>€{top['value_at_risk']:,.0f}</td>" in first
    assert f"<td>{policy.action_label(top['recommended_action'])}</td>" in first
    assert "risk</td>" in first  # the band in words: "High risk"


def test_the_quadrants_split_risk_where_the_api_high_band_starts(scores, trained):
    """One definition of high risk: a customer is in a high-risk quadrant exactly when the
    API's band is `high` or above."""
    bands = trained.bundle.risk_bands
    assert trained.bundle.policy.risk_threshold == high_risk_from(bands)
    high_bands = {name for name, low in bands if low >= high_risk_from(bands)}
    high_quadrant = scores["quadrant"].isin(["protect_first", "let_go"])
    assert (high_quadrant == scores["risk_band"].isin(high_bands)).all()
    assert high_quadrant.any() and not high_quadrant.all()
    own_split = dataclasses.replace(trained.bundle.policy, risk_threshold=0.061)
    with pytest.raises(ValueError, match="splits risk at 6.1%, the risk bands at 15.0%"):
        portfolio_figures(scores, None, own_split, bands)


@pytest.mark.slow
def test_churn_score_writes_scores_report_and_run(demo_folder, trained, in_project, capsys):
    MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", trained.version)
    out = in_project / "out" / "scores.csv"
    assert main(["score", "--data", str(demo_folder), "--as-of", "2024-10-01",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = pd.read_csv(out)  # a CSV: readable columns by default (test_exports.py)
    assert len(written) > 100 and written["Data as of"].eq("2024-10-01").all()
    assert (written["Model version"].astype(str) == trained.version).all()
    report = out.with_name("scores-report") / "report.html"
    assert report.exists() and str(report.relative_to(in_project)) in printed.replace("\n", "")
    assert "MLflow run" in printed and "protect_first" in printed
    runs = mlflow.search_runs(filter_string="attributes.run_name = "
                              f"'score 2024-10-01 with {MODEL_NAME} v{trained.version}'")
    assert len(runs) == 1 and runs.iloc[0]["params.engine"] == "pandas"


@pytest.mark.parametrize("args, code, message", [
    (["--as-of", "someday", "--out", "s.parquet"], 2, "--as-of"),
    (["--out", "scores.xlsx"], 2, "--out"),
])
def test_churn_score_refuses_bad_options(demo_folder, args, code, message, capsys):
    assert main(["score", "--data", str(demo_folder), *args]) == code
    assert message in capsys.readouterr().err


def test_churn_score_names_a_missing_model(demo_folder, in_project, capsys):
    out = in_project / "never.parquet"
    assert main(["score", "--data", str(demo_folder), "--out", str(out),
                 "--model", "models:/no-such-model@champion"]) == 2
    assert "--model: no model 'models:/no-such-model@champion'" in capsys.readouterr().err
    assert not out.exists()
