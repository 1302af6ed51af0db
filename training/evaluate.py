"""Evaluating a bundle on labelled snapshots: metrics, oracle comparison, figures.

The same function judges a freshly trained model (in `train`), a challenger against the
champion (in `promote`) and any registered version (`churn evaluate`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from churn_risk.features.snapshots import ADOPTION_PREFIX, CHURN_LABEL
from churn_risk.models.bundle import ChurnBundle
from churn_risk.training import metrics as m
from churn_risk.training import plots

TRUTH_FOLDER = "ground_truth"


@dataclass(frozen=True)
class Truth:
    """The demo generator's ground truth: used by evaluation only, never by features."""

    churn: pd.DataFrame  # customer_id, as_of, churn_probability_90d, dominant_driver
    adoption: pd.DataFrame  # customer_id, as_of, family, adoption_probability_90d


def load_truth(source: str | Path) -> Truth | None:
    folder = Path(str(source)) / TRUTH_FOLDER
    if "://" in str(source) or not (folder / "churn.parquet").exists():
        return None
    churn = pd.read_parquet(folder / "churn.parquet",
                            columns=["customer_id", "as_of", "churn_probability_90d",
                                     "dominant_driver"])
    adoption = pd.read_parquet(folder / "adoption.parquet")
    return Truth(churn=churn, adoption=adoption)


@dataclass
class Evaluation:
    metrics: dict[str, float]
    figures: dict = field(default_factory=dict)  # name -> matplotlib Figure
    notes: list[str] = field(default_factory=list)


def evaluate(
    bundle: ChurnBundle,
    frame: pd.DataFrame,
    truth: Truth | None = None,
    figures: bool = True,
    prefix: str = "test_",
) -> Evaluation:
    """Score `frame` (labelled snapshot rows) and measure the churn and propensity models."""
    y = frame[CHURN_LABEL].to_numpy(dtype=int)
    scores = bundle.predict(frame)
    p = scores["churn_probability"].to_numpy()
    out: dict[str, float] = {}
    notes: list[str] = []
    for key, value in m.classification_metrics(y, p).items():
        out[f"{prefix}{key}"] = value
    if "segment" in frame:
        for segment, auc in m.segment_auc(y, p, frame["segment"].astype(str)).items():
            out[f"{prefix}roc_auc_segment_{segment}"] = auc

    # Propensity: AUC per family on eligible rows, precision@3 across families.
    labels = pd.DataFrame(index=frame.index)
    for family in bundle.families:
        column = f"{ADOPTION_PREFIX}{family}"
        if column not in frame:
            continue
        label = frame[column]
        labels[family] = label
        eligible = label.notna().to_numpy()
        yy = label.to_numpy()[eligible]
        if len(np.unique(yy)) == 2:
            out[f"{prefix}propensity_auc_{family}"] = float(
                roc_auc_score(yy, scores.loc[eligible, f"propensity_{family}"])
            )
    if len(labels.columns):
        propensities = scores[[f"propensity_{f}" for f in labels.columns]]
        propensities.columns = labels.columns
        out[f"{prefix}propensity_precision_at_3"] = m.precision_at_k(labels, propensities, k=3)

    # Explanations: cost per customer (TreeSHAP is the expensive part of scoring).
    started = time.perf_counter()
    explanation = bundle.explain(frame)
    out[f"{prefix}explain_ms_per_customer"] = (
        1000 * (time.perf_counter() - started) / max(len(frame), 1)
    )
    out[f"{prefix}explain_sum_error"] = float(np.max(np.abs(
        explanation.base_value + explanation.contributions.sum(axis=1).to_numpy()
        - bundle.churn_margin(bundle.dmatrix(frame))
    ))) if len(frame) else 0.0

    oracle_p = None
    if truth is not None:
        oracle_p = _oracle(frame, truth, y, p, scores, explanation, out, prefix, notes)

    figs = {}
    if figures and len(frame):
        figs["roc"] = plots.roc_figure(y, p, oracle=oracle_p)
        figs["calibration"] = plots.calibration_figure(y, p)
        figs["gains"] = plots.gains_figure(y, p)
        sample = frame.sample(min(len(frame), 5000), random_state=0).index
        figs["shap_summary"] = plots.shap_summary_figure(
            explanation.contributions.loc[sample],
            frame.loc[sample, bundle.feature_names],
            {s.name: s.label for s in bundle.specs},
        )
        if "segment" in frame:
            figs["key_drivers_by_segment"] = plots.key_drivers_figure(
                explanation.groups, frame["segment"].astype(str)
            )
    return Evaluation(out, figs, notes)


def _oracle(frame, truth: Truth, y, p, scores, explanation, out, prefix, notes
            ) -> np.ndarray | None:
    """Compare with the best possible model: one that knows the true probabilities."""
    keys = frame[["customer_id", "as_of"]].reset_index(drop=True)
    joined = keys.merge(truth.churn, on=["customer_id", "as_of"], how="left")
    known = joined["churn_probability_90d"].notna().to_numpy()
    if known.mean() < 0.95:
        notes.append(f"ground truth covers only {known.mean():.0%} of the evaluated rows")
    if not known.any():
        return None
    oracle = joined["churn_probability_90d"].to_numpy()
    out[f"{prefix}oracle_roc_auc"] = float(roc_auc_score(y[known], oracle[known]))
    out[f"{prefix}roc_auc_on_truth_rows"] = float(roc_auc_score(y[known], p[known]))
    out[f"{prefix}oracle_gap_roc_auc"] = (
        out[f"{prefix}oracle_roc_auc"] - out[f"{prefix}roc_auc_on_truth_rows"]
    )

    # Explanation fidelity: top risk decile, is the true dominant driver in our top-3 groups?
    top = np.argsort(-p)[: max(1, len(p) // 10)]
    top = top[known[top]]
    out[f"{prefix}explanation_fidelity_top3"] = m.reason_group_hit_rate(
        joined["dominant_driver"].to_numpy()[top],
        explanation.groups.iloc[top].reset_index(drop=True),
        k=3,
    )

    adoption = truth.adoption
    for column in [c for c in frame.columns if c.startswith(ADOPTION_PREFIX)]:
        family = column[len(ADOPTION_PREFIX):]
        if f"propensity_{family}" not in scores:
            continue
        fam_truth = adoption.loc[adoption["family"] == family,
                                 ["customer_id", "as_of", "adoption_probability_90d"]]
        rows = frame[["customer_id", "as_of", column]].reset_index(drop=True).merge(
            fam_truth, on=["customer_id", "as_of"], how="left"
        )
        ok = (rows[column].notna() & rows["adoption_probability_90d"].notna()).to_numpy()
        yy = rows.loc[ok, column].to_numpy()
        if ok.sum() and len(np.unique(yy)) == 2:
            out[f"{prefix}oracle_propensity_auc_{family}"] = float(
                roc_auc_score(yy, rows.loc[ok, "adoption_probability_90d"])
            )
            model = scores[f"propensity_{family}"].to_numpy()[ok]
            out[f"{prefix}propensity_auc_on_truth_rows_{family}"] = float(roc_auc_score(yy, model))
    return oracle if known.all() else None


def newest_test_snapshot_evaluator(source: str | Path, horizon_days: int | None = None):
    """`evaluate(model_uri) -> metrics` on the newest snapshot with a complete label horizon.

    Each model's features are rebuilt with the feature set it was trained on (it travels in
    the bundle); the snapshot date and labels are the same for every model judged, so a
    challenger and the champion are compared on the same customers and outcomes."""
    from churn_risk.features.config import FeatureConfig
    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.snapshots import build_labelled_snapshot, monthly_as_ofs
    from churn_risk.features.validation import load_crm
    from churn_risk.models.pyfunc import load_bundle

    prep = prepare(load_crm(source))
    label_cfg = FeatureConfig(horizon_days=horizon_days or FeatureConfig().horizon_days)
    as_of = monthly_as_ofs(prep, label_cfg)[-1]
    frames: dict[FeatureConfig, pd.DataFrame] = {}

    def evaluate_uri(model_uri: str) -> dict[str, float]:
        bundle = load_bundle(model_uri)
        cfg = bundle.feature_config
        if cfg not in frames:
            frame = build_labelled_snapshot(prep, as_of, cfg)
            frames[cfg] = frame.loc[frame[CHURN_LABEL].notna()]
        return evaluate(bundle, frames[cfg], figures=False, prefix="").metrics

    evaluate_uri.as_of = as_of  # type: ignore[attr-defined]
    return evaluate_uri
