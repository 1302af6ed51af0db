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

from churn_risk.features.labels import DAYS_PER_MONTH
from churn_risk.features.lifecycle import PreparedData
from churn_risk.features.snapshots import ADOPTION_PREFIX, CHURN_LABEL, SPEND_LABEL
from churn_risk.models.bundle import ChurnBundle
from churn_risk.training import metrics as m
from churn_risk.training import plots

TRUTH_FOLDER = "ground_truth"
#: The demo's true probabilities are of leaving (no active subscription) within 90 days.
TRUTH_HORIZON_DAYS = 90


@dataclass(frozen=True)
class Truth:
    """The demo generator's ground truth: used by evaluation only, never by features."""

    churn: pd.DataFrame  # customer_id, as_of, churn_probability_90d, dominant_driver, ...
    adoption: pd.DataFrame  # customer_id, as_of, family, adoption_probability_90d


def load_truth(source) -> Truth | None:
    """The demo generator's ground truth next to the tables, when `source` is such a folder."""
    from churn_risk.features.io import as_source

    where = as_source(source).folder
    if where is None or not (where / TRUTH_FOLDER / "churn.parquet").exists():
        return None
    folder = where / TRUTH_FOLDER
    wanted = ["customer_id", "as_of", "churn_probability_90d", "dominant_driver",
              "expected_monthly_spend"]
    import pyarrow.parquet as pq

    present = set(pq.read_schema(folder / "churn.parquet").names)
    churn = pd.read_parquet(folder / "churn.parquet", columns=[c for c in wanted if c in present])
    adoption = pd.read_parquet(folder / "adoption.parquet")
    return Truth(churn=churn, adoption=adoption)


@dataclass
class Evaluation:
    metrics: dict[str, float]
    figures: dict = field(default_factory=dict)  # name -> matplotlib Figure
    notes: list[str] = field(default_factory=list)
    #: name -> DataFrame, the numbers behind the figures (logged as tables/<name>.csv)
    tables: dict = field(default_factory=dict)


def evaluate(
    bundle: ChurnBundle,
    frame: pd.DataFrame,
    truth: Truth | None = None,
    figures: bool = True,
    prefix: str = "test_",
) -> Evaluation:
    """Score `frame` (labelled snapshot rows) and measure the churn and propensity models.

    With `figures`: the evaluation figures (`Evaluation.figures`, by MLflow file stem) and the
    tables behind them (`Evaluation.tables`): the threshold table and the shap analysis
    (`training/analysis.py`: beeswarm, summary, dependence, interactions, waterfalls)."""
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

    if SPEND_LABEL in frame and bundle.value is not None:
        out.update(value_metrics(bundle, frame, scores, prefix))

    oracle_p = None
    if truth is not None:
        oracle_p = _oracle(frame, truth, y, p, scores, explanation, out, prefix, notes)

    figs, tables = {}, {}
    if figures and len(frame):
        figs["roc"] = plots.roc_figure(y, p, oracle=oracle_p)
        figs["calibration"] = plots.calibration_figure(y, p)
        figs["gains"] = plots.gains_figure(y, p)
        named = _named_thresholds(bundle)
        tables["thresholds"] = plots.threshold_table(
            y, p, [*plots.DEFAULT_THRESHOLDS, *named], named)
        figs["precision_recall"] = plots.precision_recall_figure(y, p, tables["thresholds"])
        # the shap library's views (beeswarm, summary, dependence, interactions, waterfalls)
        # on samples; imported here: shap takes ~1.5 s to import, metrics-only runs skip it
        from churn_risk.training.analysis import shap_analysis

        shap_views = shap_analysis(bundle, frame, explanation)
        figs.update(shap_views.figures)
        tables.update(shap_views.tables())
        if "segment" in frame:
            figs["key_drivers_by_segment"] = plots.key_drivers_figure(
                explanation.groups, frame["segment"].astype(str)
            )
        if bundle.value is not None:
            figs["risk_matrix"] = plots.risk_matrix_figure(
                scores["quadrant"], scores["value_at_risk"], bundle.risk_bands,
                bundle.policy.value_threshold, bundle.policy.value.currency)
    return Evaluation(out, figs, notes, tables)


def _named_thresholds(bundle: ChurnBundle) -> dict[float, str]:
    """The bundle's own probability thresholds: the risk bands' lower bounds and the risk
    matrix's high-risk threshold."""
    named = {float(low): f"risk band {name}" for name, low in bundle.risk_bands if low > 0}
    risk = float(bundle.policy.risk_threshold)
    named[risk] = ", ".join(filter(None, [named.get(risk), "risk matrix: high risk"]))
    return named


def run_rate_spend(frame: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
    """The naive value estimate a CRM would use: the last horizon's net spend again, plus the
    recurring amounts held today for the horizon. None without a spend feature for the horizon."""
    column = f"spend_{horizon_days}d"
    if column not in frame:
        return None
    spend = frame[column].fillna(0.0).to_numpy(dtype=float)
    if "recurring_amount" in frame:
        spend = spend + frame["recurring_amount"].fillna(0.0).to_numpy(dtype=float) * (
            horizon_days / DAYS_PER_MONTH)
    return spend


def value_metrics(bundle: ChurnBundle, frame: pd.DataFrame, scores: pd.DataFrame,
                  prefix: str) -> dict[str, float]:
    """The value model against realised spend of the customers who stayed, next to the
    run-rate estimate: mean absolute error, rank correlation, and total predicted / realised."""
    from scipy.stats import spearmanr

    stayed = ((frame[CHURN_LABEL] == 0) & frame[SPEND_LABEL].notna()).to_numpy()
    if stayed.sum() < 10:
        return {}
    realised = np.maximum(frame[SPEND_LABEL].to_numpy(dtype=float)[stayed], 0.0)
    margin_rate = bundle.policy.value.margin_rate
    candidates = {"value": scores["horizon_margin"].to_numpy()[stayed] / margin_rate}
    horizon = int(bundle.info.get("horizon_days", bundle.policy.horizon_days))
    run_rate = run_rate_spend(frame, horizon)
    if run_rate is not None:
        candidates["value_run_rate"] = run_rate[stayed]
    out = {}
    for name, predicted in candidates.items():
        out[f"{prefix}{name}_mae"] = float(np.mean(np.abs(predicted - realised)))
        out[f"{prefix}{name}_spearman"] = float(spearmanr(predicted, realised).statistic)
        out[f"{prefix}{name}_total_ratio"] = float(predicted.sum() / max(realised.sum(), 1e-9))
    return out


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


class HoldoutEvaluator:
    """`evaluator(model_uri) -> metrics`: registered models judged on the same rows.

    The rows are the newest labelled snapshot under the first judged model's target (the
    challenger's: `begin`), restricted to the customers every judged model held out for test
    when it was trained on a customer-level holdout (a model is never judged on customers it was
    fitted or calibrated on). Each model's features are rebuilt with the feature set it was
    trained on (it travels in the bundle); dates, customers and outcomes are the same for all."""

    #: Fewest rows (and of each class) a comparison may rest on.
    MIN_ROWS = 50

    def __init__(self, prep: PreparedData):
        self.prep = prep
        self._bundles: dict[str, ChurnBundle] = {}
        self._frames: dict = {}
        self.target = None
        self.as_of: pd.Timestamp | None = None
        self.customers: pd.Index | None = None

    def bundle(self, model_uri: str) -> ChurnBundle:
        from churn_risk.models.pyfunc import load_bundle

        if model_uri not in self._bundles:
            self._bundles[model_uri] = load_bundle(model_uri)
        return self._bundles[model_uri]

    def target_of(self, model_uri: str):
        return self.bundle(model_uri).target

    def begin(self, model_uris: list[str]) -> None:
        """Fix the rows for judging `model_uris` (the first one's target decides them)."""
        from churn_risk.features.snapshots import training_as_ofs

        bundles = [self.bundle(uri) for uri in model_uris]
        self.target = bundles[0].target
        self.as_of = training_as_ofs(self.prep, bundles[0].feature_config, self.target)[-1]
        self.customers = None
        for bundle in bundles:
            held_out = bundle.test_customers()
            if held_out is not None:
                self.customers = (held_out if self.customers is None
                                  else self.customers.intersection(held_out))
        self._frames.clear()

    def rows(self, bundle: ChurnBundle) -> pd.DataFrame:
        from churn_risk.errors import DataError
        from churn_risk.features.snapshots import build_labelled_snapshot

        cfg = bundle.feature_config
        if cfg not in self._frames:
            frame = build_labelled_snapshot(self.prep, self.as_of, cfg, self.target)
            frame = frame.loc[frame[CHURN_LABEL].notna()]
            if self.customers is not None:
                frame = frame.loc[frame["customer_id"].isin(self.customers).to_numpy()]
            counts = frame[CHURN_LABEL].value_counts()
            if len(frame) < self.MIN_ROWS or len(counts) < 2 or counts.min() < 5:
                raise DataError(
                    f"only {len(frame):,} labelled rows ({dict(counts.astype(int))}) of the "
                    f"{self.as_of:%Y-%m-%d} snapshot are held out from every model judged: too "
                    "few to compare them. Train the models on the same data (same seed and "
                    "holdout_share), or bring newer labels")
            self._frames[cfg] = frame
        return self._frames[cfg]

    def __call__(self, model_uri: str) -> dict[str, float]:
        if self.target is None:
            self.begin([model_uri])
        bundle = self.bundle(model_uri)
        return evaluate(bundle, self.rows(bundle), figures=False, prefix="").metrics

    @property
    def description(self) -> str:
        held_out = " (customers held out by every model)" if self.customers is not None else ""
        return f"the snapshot of {self.as_of:%Y-%m-%d}{held_out}, target {self.target}"


def true_churn_and_value(source: str | Path, bundle: ChurnBundle, rows: pd.DataFrame
                         ) -> tuple[np.ndarray, np.ndarray]:
    """For demo data: each row's true 90-day churn probability and true lifetime value (the
    generator's expected transaction spend plus the recurring amounts held at `as_of`, through
    the policy's margin rate and lifetime factor), to judge targeting by the ground truth."""
    folder = Path(str(source))
    truth = pd.read_parquet(folder / TRUTH_FOLDER / "churn.parquet",
                            columns=["customer_id", "as_of", "churn_probability_90d",
                                     "expected_monthly_spend"])
    joined = rows[["customer_id", "as_of"]].merge(truth, on=["customer_id", "as_of"],
                                                  how="left")
    if joined["churn_probability_90d"].isna().any():
        raise ValueError("the ground truth does not cover every row (as_of must be a month "
                         "start inside the simulated period)")
    subs = pd.read_parquet(folder / "subscriptions.parquet")
    as_of = rows["as_of"].to_numpy()
    held = subs.merge(rows[["customer_id", "as_of"]], on="customer_id")
    held = held[(held["start_date"] < held["as_of"])
                & (held["end_date"].isna() | (held["end_date"] >= held["as_of"]))]
    recurring = held.groupby(["customer_id", "as_of"])["recurring_amount"].sum()
    keys = pd.MultiIndex.from_arrays([rows["customer_id"].to_numpy(), as_of])
    monthly = (joined["expected_monthly_spend"].to_numpy()
               + recurring.reindex(keys).fillna(0.0).to_numpy())
    spend = monthly * bundle.policy.horizon_days / DAYS_PER_MONTH
    ltv = bundle.policy.lifetime_value(bundle.policy.horizon_margin(spend))
    return joined["churn_probability_90d"].to_numpy(), ltv
