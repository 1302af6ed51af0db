"""The portfolio report of a batch scoring: one self-contained HTML page with PNG charts.

`portfolio_report` writes, into one folder, `report.html` (charts embedded as base64 PNGs, inline
CSS, no CDN: it opens from a mail attachment or an MLflow artifact view), each chart as a PNG
file, and `summary.json` with the headline figures the page shows:

- customers, mean churn probability, total value at risk;
- per quadrant of the value × risk matrix: customers and value at risk;
- the recommended actions: customers and total expected profit.

The page names actions by their catalogue labels, lists the customers with the most value at
risk (with their band and action) and writes amounts in the policy's currency.

Charts: the risk matrix (2×2: the risk split is the API's `high` band, the value split the
bundle's policy), value at risk by segment, key drivers by segment (the mean signed
contribution of each driver group, from the `group_*` columns) and the score distribution with
the risk bands. `log_report_to_mlflow` records the whole in one run.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from churn_risk.features.io import atomic_write
from churn_risk.models.bundle import DEFAULT_RISK_BANDS, high_risk_from
from churn_risk.models.portfolio import NO_ACTION, QUADRANT_LABELS, QUADRANTS, PortfolioPolicy
from churn_risk.training import plots

REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"
GROUP_PREFIX = "group_"
ALL_CUSTOMERS = "all customers"
#: Customers listed in the report: the most value at risk first.
CUSTOMERS_SHOWN = 20


def portfolio_summary(scores: pd.DataFrame) -> dict:
    """The headline figures of a scored portfolio (plain numbers, JSON-ready)."""
    p = scores["churn_probability"].to_numpy(dtype=float)
    var = np.nan_to_num(scores["value_at_risk"].to_numpy(dtype=float))
    quadrant = scores["quadrant"].astype(object)
    quadrants = {
        q: {"customers": int((quadrant == q).sum()),
            "value_at_risk": float(var[(quadrant == q).to_numpy()].sum())}
        for q in QUADRANTS
    }
    actions = (
        scores.loc[scores["recommended_action"] != NO_ACTION]
        .groupby("recommended_action")["expected_profit"]
        .agg(customers="size", expected_profit="sum")
        .sort_values("expected_profit", ascending=False, kind="stable")
    )
    return {
        "customers": len(scores),
        "target": (str(scores["target_description"].iloc[0])
                   if "target_description" in scores and len(scores) else None),
        "mean_churn_probability": float(p.mean()) if len(p) else float("nan"),
        "total_value_at_risk": float(var.sum()),
        "customers_without_quadrant": int(quadrant.isna().sum()),
        "quadrants": quadrants,
        "risk_bands": {str(k): int(v) for k, v in
                       scores["risk_band"].astype(object).value_counts().items()},
        "actions": [
            {"action": str(name), "customers": int(row.customers),
             "expected_profit": float(row.expected_profit)}
            for name, row in actions.iterrows()
        ],
        "customers_with_an_action": int(actions["customers"].sum()) if len(actions) else 0,
        "total_expected_profit": float(actions["expected_profit"].sum()) if len(actions) else 0.0,
    }


def portfolio_figures(
    scores: pd.DataFrame,
    frame_segments: pd.Series | np.ndarray | None,
    policy: PortfolioPolicy | None = None,
    risk_bands: tuple[tuple[str, float], ...] = DEFAULT_RISK_BANDS,
) -> dict:
    """The report's charts by file stem (matplotlib Figures, see `training/plots.py`).
    `policy` (None: the defaults) must split risk where `risk_bands` put the `high` band, the
    split the quadrants of `scores` were made with."""
    if policy is not None and not np.isclose(policy.risk_threshold, high_risk_from(risk_bands)):
        raise ValueError(f"the policy splits risk at {policy.risk_threshold:.1%}, the risk bands "
                         f"at {high_risk_from(risk_bands):.1%}: not the same model's")
    currency = (policy or PortfolioPolicy()).value.currency
    segments = (np.full(len(scores), ALL_CUSTOMERS, dtype=object) if frame_segments is None
                else np.asarray(frame_segments, dtype=object))
    if len(segments) != len(scores):
        raise ValueError(f"frame_segments has {len(segments)} rows, scores has {len(scores)}")
    figures = {}
    if scores["quadrant"].notna().any():
        figures["risk_matrix"] = plots.risk_matrix_figure(
            scores["quadrant"], scores["value_at_risk"], risk_bands,
            policy.value_threshold if policy else None, currency)
        figures["value_at_risk_by_segment"] = plots.value_at_risk_by_segment_figure(
            scores["value_at_risk"], segments, scores["quadrant"], currency)
    groups = scores[[c for c in scores.columns if c.startswith(GROUP_PREFIX)]]
    if groups.shape[1] and len(groups):
        figures["key_drivers_by_segment"] = plots.key_drivers_figure(
            groups.rename(columns=lambda c: c[len(GROUP_PREFIX):]), pd.Series(segments)
        )
    if len(scores):
        figures["score_distribution"] = plots.score_distribution_figure(
            scores["churn_probability"], risk_bands)
    return figures


def portfolio_report(
    scores: pd.DataFrame,
    frame_segments: pd.Series | np.ndarray | None,
    out_dir: str | os.PathLike,
    title: str,
    policy: PortfolioPolicy | None = None,
    risk_bands: tuple[tuple[str, float], ...] = DEFAULT_RISK_BANDS,
    details: dict[str, str] | None = None,
) -> Path:
    """Write report.html, one PNG per chart and summary.json into `out_dir`; return the HTML's
    path. `frame_segments` (aligned with `scores` by position; None: one segment) splits the
    by-segment charts; `policy` gives the matrix thresholds; `details` are shown under the title
    (model, as-of date, ...)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = portfolio_summary(scores)
    pngs: dict[str, bytes] = {}
    for name, fig in portfolio_figures(scores, frame_segments, policy, risk_bands).items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=plots.DPI)
        pngs[name] = buffer.getvalue()
        atomic_write(out_dir / f"{name}.png", pngs[name])
    atomic_write(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    html = _html(title, details or {}, summary, pngs, top_customers(scores),
                 policy or PortfolioPolicy())
    return atomic_write(out_dir / REPORT_FILE, html)


CHART_TITLES = {
    "risk_matrix": "Risk matrix: who to act on first",
    "value_at_risk_by_segment": "Value at risk by segment",
    "key_drivers_by_segment": "Key drivers by segment",
    "score_distribution": "Score distribution and risk bands",
}

#: Recommended actions listed in the report (the most profitable).
ACTIONS_SHOWN = 10


def top_customers(scores: pd.DataFrame, n: int = CUSTOMERS_SHOWN) -> pd.DataFrame:
    """The `n` customers with the most value at risk (without a value model: the highest churn
    probability), the columns the report lists."""
    key = "value_at_risk" if scores["value_at_risk"].notna().any() else "churn_probability"
    columns = ["customer_id", "churn_probability", "risk_band", "value_at_risk",
               "recommended_action", "expected_profit"]
    return scores.sort_values(key, ascending=False, kind="stable", na_position="last")[
        columns].head(n)


def _html(title: str, details: dict[str, str], summary: dict, pngs: dict[str, bytes],
          customers: pd.DataFrame, policy: PortfolioPolicy) -> str:
    """The report document from `templates/report.html` (autoescaped, CSS inlined)."""
    from churn_risk.serving.page import ENV

    return ENV.get_template("report.html").render(
        title=title, details=details, summary=summary, quadrant_labels=QUADRANT_LABELS,
        actions_shown=ACTIONS_SHOWN, action_label=policy.action_label,
        currency=policy.value.currency, customers=customers.to_dict("records"),
        charts=[(name, CHART_TITLES.get(name, name), base64.b64encode(png).decode("ascii"))
                for name, png in pngs.items()],
    )


def log_report_to_mlflow(
    report: str | os.PathLike,
    scores_file: str | os.PathLike | None,
    summary: dict,
    model_uri: str,
    model_version: str,
    as_of: str | pd.Timestamp,
    engine: str,
    model_name: str | None = None,
) -> str:
    """One MLflow run, "score <as_of>", with the batch's params and headline metrics, the report
    folder (report.html, PNGs, summary.json) under `report/` and the scores file under `scores/`.
    Tracking must be configured (`training.tracking.configure_tracking`). Returns the run id."""
    import mlflow

    day = f"{pd.Timestamp(as_of):%Y-%m-%d}"
    report = Path(report)
    folder = report.parent if report.is_file() else report
    metrics = {
        "customers": float(summary["customers"]),
        "mean_churn_probability": summary["mean_churn_probability"],
        "total_value_at_risk": summary["total_value_at_risk"],
        "total_expected_profit": summary["total_expected_profit"],
        "customers_with_an_action": float(summary["customers_with_an_action"]),
    }
    for q, cell in summary["quadrants"].items():
        metrics[f"quadrant_{q}_customers"] = float(cell["customers"])
        metrics[f"quadrant_{q}_value_at_risk"] = cell["value_at_risk"]
    with mlflow.start_run(run_name=f"score {day} with {model_name or model_uri} "
                                   f"v{model_version}") as run:
        tags = {"job": "score", "model_uri": model_uri, "as_of": day}
        if summary.get("target"):
            tags["target"] = summary["target"]
        mlflow.set_tags(tags)
        mlflow.log_params({"model_uri": model_uri, "model_name": model_name or "",
                           "model_version": str(model_version), "as_of": day, "engine": engine})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_artifacts(str(folder), artifact_path="report")
        if scores_file is not None:
            mlflow.log_artifact(str(scores_file), artifact_path="scores")
        return run.info.run_id
