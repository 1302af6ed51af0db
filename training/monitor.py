"""Drift of the scored portfolio against the model's training reference, and the verdict.

At training (`training.train._fit_policy`) the newest snapshot the model was not trained on, the
portfolio as it will be scored, becomes the model's **reference** (`reference_profile`, stored in
`bundle.info["reference"]`): per model feature the bins (numeric: the reference's deciles,
duplicates merged, so a constant or 0/1 feature gets one or two bins; categorical: the training
levels and one bin for any other level), the reference's share per bin and its missing share;
and the calibrated churn probabilities' deciles (bins of the score PSI) and a histogram.

`compare` puts the current portfolio (features as of a date, by the same feature functions) into
the same bins: per feature the population stability index

    PSI = sum over bins of (current share - reference share) x ln(current share / reference share)

over the value bins plus one bin for missing values (shares floored at `EPSILON`, so an empty
bin costs a finite amount), the change of the missing share, and the PSI of the scores.

Seasons are not drift: the reference also keeps, per calendar month, the newest training
snapshot of that month in the same bins (`seasonal_references`). A feature's PSI is judged
against the nearer of the two: a 90-day purchase trend monitored in November differs from a
July reference by the Christmas peak alone, and matches last November's. A model trained on
less than a year of snapshots has no reference for some months; there the reference alone is
used. The usual
reading: below 0.1 stable, 0.1 to 0.25 a moderate shift worth watching, above 0.25 a shift that
calls for a retraining. `verdict` applies the thresholds (`Thresholds`) and says in words why
retraining is due, or that the portfolio is stable.

Why our own PSI rather than Evidently or NannyML: the statistic is a few lines of numpy over
bins that must be fixed at training and travel with the model (a library recomputes them from a
reference frame it is given, which the bundle would then have to carry whole); and both pull in
large dependency trees (checked with `pip install --dry-run` against this environment): Evidently
0.7 adds ~26 packages (litestar, nltk, plotly, Faker, uvloop, a telemetry client, ...), NannyML
0.13 adds ~35 (FLAML, LightGBM, plotly, gcsfs/s3fs with the Google Cloud and AWS clients, a
telemetry client) and, through FLAML's `xgboost<3`, the CUDA build of `xgboost` 2.1 next to our
`xgboost-cpu` 3.x: two distributions of one module, and a downgrade. NannyML's performance
estimation before labels arrive (CBPE) would be its one real gain; the realised accuracy of
matured predictions (`training.realised`) covers the same need one horizon later.

`prediction_log_by_month` summarises the store's prediction log: the score distribution and the
mix of first reasons per month of `features_as_of`. Pure computation, no I/O and no MLflow; the
figures are standalone (`training.plots` style) for `mlflow.log_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn_risk.features.lifecycle import FeatureSpec

if TYPE_CHECKING:  # the service computes its score PSI here: no matplotlib in its workers
    from matplotlib.figure import Figure

#: 1: bins, shares and missing share per feature; score deciles and histogram.
REFERENCE_FORMAT = 1
DECILES = tuple(np.round(np.linspace(0.1, 0.9, 9), 2))
#: Floor of a bin's share in the PSI (an empty bin would make it infinite).
EPSILON = 1e-4
SCORE_HISTOGRAM_BINS = 20
OTHER = "(other)"
#: The usual reading of a PSI: below `WATCH` stable, from `WATCH` a moderate shift.
WATCH = 0.10


# --------------------------------------------------------------------------------- reference


def _numeric(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def feature_reference(values: pd.Series, spec: FeatureSpec, levels: list[str] | None = None
                      ) -> dict:
    """The bins of one feature and the reference's shares in them (see the module doc)."""
    n = len(values)
    if spec.kind == "categorical":
        known = list(levels if levels is not None else
                     sorted(values.dropna().astype(str).unique()))
        present = values.notna().to_numpy()
        text = values.astype(object).where(values.notna(), None)
        shares = _category_shares(text, known)
        return {"kind": "categorical", "levels": known, "shares": shares,
                "missing": float(1.0 - present.mean()) if n else 0.0}
    x = _numeric(values)
    seen = x[np.isfinite(x)]
    edges = _deciles(seen)
    return {"kind": "numeric", "edges": edges, "shares": _numeric_shares(x, edges),
            "missing": float(1.0 - len(seen) / n) if n else 0.0}


def _deciles(values: np.ndarray) -> list[float]:
    """The distinct deciles of `values`, each a value that occurs (so a count or a 0/1 flag
    gets bins at its own values, not between them)."""
    if not len(values):
        return []
    return sorted(set(np.quantile(values, DECILES, method="inverted_cdf").tolist()))


def _numeric_shares(x: np.ndarray, edges: list[float]) -> list[float]:
    """Shares of the non-missing values in the bins (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    seen = x[np.isfinite(x)]
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), seen, side="left"),
                         minlength=len(edges) + 1)
    return (counts / max(len(seen), 1)).tolist()


def _category_shares(values: pd.Series, levels: list[str]) -> list[float]:
    """Shares of the non-missing values per level, then of any other level."""
    seen = values.dropna().astype(str)
    index = pd.Index(levels).get_indexer(seen)
    counts = np.bincount(np.where(index >= 0, index, len(levels)), minlength=len(levels) + 1)
    return (counts / max(len(seen), 1)).tolist()


def score_reference(probability: np.ndarray) -> dict:
    """Deciles of the churn probability (the bins of the score PSI) and a histogram to plot."""
    p = np.asarray(probability, dtype=float)
    p = p[np.isfinite(p)]
    edges = _deciles(p)
    upper = float(min(1.0, max(np.quantile(p, 0.995) * 1.1, 1e-3))) if len(p) else 1.0
    histogram = np.linspace(0.0, upper, SCORE_HISTOGRAM_BINS + 1).tolist()
    return {"edges": edges, "shares": _numeric_shares(p, edges),
            "histogram_edges": histogram, "histogram_shares": _histogram(p, histogram),
            "mean": float(p.mean()) if len(p) else float("nan"),
            "quantiles": {f"p{int(q * 100)}": float(np.quantile(p, q)) if len(p) else None
                          for q in (0.1, 0.5, 0.9, 0.99)}}


def _histogram(p: np.ndarray, edges: list[float]) -> list[float]:
    """Shares per histogram bin, values beyond the last edge counted in the last bin."""
    clipped = np.minimum(p, edges[-1])
    counts, _ = np.histogram(clipped, bins=np.asarray(edges))
    return (counts / max(len(p), 1)).tolist()


def reference_profile(frame: pd.DataFrame, specs: list[FeatureSpec],
                      categories: dict[str, list[str]], probability: np.ndarray,
                      history: Sequence[pd.DataFrame] = ()) -> dict:
    """The training reference stored with the model (`bundle.info["reference"]`): `frame` is
    the reference snapshot (one as_of), `probability` the model's calibrated churn probability
    of its rows; `history`, the frames of snapshots the model learnt from, gives the seasonal
    references (`seasonal_references`). JSON-able."""
    as_of = pd.to_datetime(frame["as_of"]).max() if "as_of" in frame and len(frame) else None
    features = {s.name: feature_reference(frame[s.name], s, categories.get(s.name))
                for s in specs}
    return {
        "format": REFERENCE_FORMAT,
        "as_of": None if as_of is None else f"{as_of:%Y-%m-%d}",
        "rows": len(frame),
        "features": features,
        "score": score_reference(probability),
        "seasonal": seasonal_references(history, specs, features),
    }


def seasonal_references(history: Sequence[pd.DataFrame], specs: list[FeatureSpec],
                        features: dict[str, dict]) -> dict[str, dict]:
    """Per calendar month ("01".."12") of the snapshots in `history` (frames with an `as_of`
    column: the training splits, never copied whole), the newest snapshot of that month in the
    reference's bins: {"as_of", "rows", "features": {name: {"shares", "missing"}}}. A portfolio
    is compared with the same month too (`compare`), so a change that comes back every year
    (the Nov/Dec peak in a 90-day purchase trend) is not taken for drift. Shares are rounded to
    5 decimals (the bundle carries 12 x features x bins of them)."""
    frames = [f for f in history if "as_of" in f and len(f)]
    dates = [pd.to_datetime(f["as_of"]) for f in frames]
    if not frames:
        return {}
    every = pd.concat([pd.Series(d.unique()) for d in dates], ignore_index=True)
    newest = every.groupby(every.dt.month).max()
    out = {}
    for month, as_of in newest.items():
        rows = pd.concat([f.loc[(d == as_of).to_numpy()] for f, d in zip(frames, dates,
                                                                          strict=True)])
        shares = {}
        for spec in specs:
            ref = features.get(spec.name)
            if ref is None or spec.name not in rows:
                continue
            values, missing = current_shares(rows[spec.name], ref)
            shares[spec.name] = {"shares": [round(v, 5) for v in values],
                                 "missing": round(missing, 5)}
        out[f"{month:02d}"] = {"as_of": f"{as_of:%Y-%m-%d}", "rows": len(rows),
                               "features": shares}
    return out


# --------------------------------------------------------------------------------- comparison


def psi(reference: np.ndarray | list[float], current: np.ndarray | list[float],
        epsilon: float = EPSILON) -> float:
    """Population stability index of two share vectors over the same bins (each sums to 1, or
    to 0 for no values: then 0)."""
    e = np.maximum(np.asarray(reference, dtype=float), epsilon)
    a = np.maximum(np.asarray(current, dtype=float), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def portfolio_score_psi(score: dict, at_most: dict[float, int], customers: int) -> float:
    """The score PSI of a portfolio known only by counts: `at_most` maps each of the reference's
    score edges (`score["edges"]`) to the customers whose probability is at most it
    (`Store.portfolio_summary`): the same bins as `compare`, without reading a row."""
    cumulative = [*(at_most[edge] for edge in score["edges"]), customers]
    counts = np.diff([0, *cumulative])
    return psi(score["shares"], counts / max(customers, 1))


def current_shares(values: pd.Series, ref: dict) -> tuple[list[float], float]:
    """The current values in the reference's bins: (shares of the non-missing values, missing
    share)."""
    n = len(values)
    if ref["kind"] == "categorical":
        missing = float(values.isna().mean()) if n else 0.0
        return _category_shares(values.astype(object).where(values.notna(), None),
                                ref["levels"]), missing
    x = _numeric(values)
    missing = float(1.0 - np.isfinite(x).mean()) if n else 0.0
    return _numeric_shares(x, ref["edges"]), missing


def _with_missing(shares: list[float], missing: float) -> np.ndarray:
    """Shares over the value bins and a missing bin (of all rows)."""
    return np.append(np.asarray(shares) * (1.0 - missing), missing)


@dataclass(frozen=True)
class DriftReport:
    """The current portfolio against the reference (see `compare`)."""

    as_of: str
    reference_as_of: str | None
    rows: int
    reference_rows: int
    #: One row per model feature, largest PSI first: feature, label, group, psi (the one
    #: judged: the lower of psi_reference and psi_same_month), psi_reference (against the
    #: reference), psi_same_month (against the training snapshot of the same calendar month;
    #: NaN without one), missing_reference, missing_current, missing_change.
    features: pd.DataFrame
    score_psi: float
    score_reference_mean: float
    score_current_mean: float
    #: Histogram of the current scores on the reference's histogram edges.
    score_histogram: list[float] = field(default_factory=list)
    #: The training snapshot of the same calendar month compared with too (None: none).
    same_month_as_of: str | None = None

    @property
    def seasonal(self) -> pd.DataFrame:
        """The features that shifted against the reference by at least `WATCH` but not against
        the same month of the training data: a change of season, not counted as drift."""
        t = self.features
        return t.loc[(t["psi_reference"] >= WATCH) & (t["psi_same_month"] < WATCH)]


def compare(reference: dict, frame: pd.DataFrame, specs: list[FeatureSpec],
            probability: np.ndarray, as_of: pd.Timestamp | str) -> DriftReport:
    """Per feature PSI and missing-share change, and the score PSI, of the current portfolio
    (`frame`: its features; `probability`: the model's churn probability of its rows)."""
    as_of = pd.Timestamp(as_of)
    month = (reference.get("seasonal") or {}).get(f"{as_of.month:02d}")
    if month is not None and month["as_of"] == reference.get("as_of"):
        month = None  # the reference is of this month already
    rows = []
    for spec in specs:
        ref = reference["features"].get(spec.name)
        if ref is None or spec.name not in frame:
            continue
        shares, missing = current_shares(frame[spec.name], ref)
        current = _with_missing(shares, missing)
        against = psi(_with_missing(ref["shares"], ref["missing"]), current)
        same = (month or {}).get("features", {}).get(spec.name)
        seasonal = (psi(_with_missing(same["shares"], same["missing"]), current)
                    if same is not None else float("nan"))
        rows.append({"feature": spec.name, "label": spec.label, "group": spec.group,
                     "psi": float(np.fmin(against, seasonal)), "psi_reference": against,
                     "psi_same_month": seasonal, "missing_reference": ref["missing"],
                     "missing_current": missing, "missing_change": missing - ref["missing"]})
    table = pd.DataFrame(rows, columns=["feature", "label", "group", "psi", "psi_reference",
                                        "psi_same_month", "missing_reference",
                                        "missing_current", "missing_change"])
    table = table.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)
    p = np.asarray(probability, dtype=float)
    p = p[np.isfinite(p)]
    score = reference["score"]
    return DriftReport(
        as_of=f"{as_of:%Y-%m-%d}",
        reference_as_of=reference.get("as_of"),
        rows=len(frame),
        reference_rows=int(reference.get("rows", 0)),
        features=table,
        score_psi=psi(score["shares"], _numeric_shares(p, score["edges"])),
        score_reference_mean=float(score["mean"]),
        score_current_mean=float(p.mean()) if len(p) else float("nan"),
        score_histogram=_histogram(p, score["histogram_edges"]) if len(p) else [],
        same_month_as_of=None if month is None else month["as_of"],
    )


# --------------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Thresholds:
    """When retraining is due (the `churn monitor` flags)."""

    psi_alert: float = 0.25
    missing_alert: float = 0.10
    score_psi_alert: float = 0.25
    auc_drop: float = 0.05


@dataclass(frozen=True)
class Verdict:
    retraining_due: bool
    #: Why, one sentence each (empty when stable).
    reasons: list[str]
    #: Moderate shifts below the alert thresholds, worth watching.
    watch: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        if self.retraining_due:
            return "retraining due: " + "; ".join(self.reasons)
        note = f" (watch: {'; '.join(self.watch)})" if self.watch else ""
        return "stable" + note


def auc_drop_reason(reference_auc: float | None, realised_auc: float | None,
                    auc_drop: float) -> str | None:
    """The realised-accuracy check: a reason when the realised ROC-AUC of matured predictions
    (`training.realised`) is more than `auc_drop` below the model's test ROC-AUC at training;
    None when fine or when either is unknown."""
    if reference_auc is None or realised_auc is None:
        return None
    if not (np.isfinite(reference_auc) and np.isfinite(realised_auc)):
        return None
    if realised_auc < reference_auc - auc_drop:
        return (f"realised ROC-AUC {realised_auc:.3f} is {reference_auc - realised_auc:.3f} "
                f"below the test ROC-AUC at training {reference_auc:.3f} (--auc-drop "
                f"{auc_drop:g})")
    return None


def _feature_list(rows: pd.DataFrame, column: str, fmt: str) -> str:
    return ", ".join(f"{r.feature} ({fmt.format(getattr(r, column))})"
                     for r in rows.itertuples())


def verdict(report: DriftReport | None, thresholds: Thresholds,
            realised_reason: str | None = None) -> Verdict:
    """Retraining is due when a feature's PSI or the score PSI reaches its alert threshold, a
    feature's missing share moved by at least `missing_alert`, or the realised accuracy dropped
    (`realised_reason`, from `auc_drop_reason`). `report` None: the model has no reference."""
    reasons, watch = [], []
    if report is None:
        reasons.append("the model has no training reference to compare with (trained before "
                       "`churn monitor` existed): retrain it")
    else:
        t = report.features
        drifted = t.loc[t["psi"] >= thresholds.psi_alert]
        if len(drifted):
            reasons.append(f"{len(drifted)} feature(s) drifted (PSI >= {thresholds.psi_alert:g}):"
                           f" {_feature_list(drifted.head(8), 'psi', '{:.2f}')}"
                           + (" ..." if len(drifted) > 8 else ""))
        moved = t.loc[t["missing_change"].abs() >= thresholds.missing_alert]
        if len(moved):
            reasons.append(f"missing share moved (>= {thresholds.missing_alert:.0%}): "
                           f"{_feature_list(moved.head(8), 'missing_change', '{:+.0%}')}")
        if report.score_psi >= thresholds.score_psi_alert:
            reasons.append(f"the score distribution shifted (PSI {report.score_psi:.2f}; mean "
                           f"churn probability {report.score_reference_mean:.1%} at training, "
                           f"{report.score_current_mean:.1%} now)")
        moderate = t.loc[(t["psi"] >= WATCH) & (t["psi"] < thresholds.psi_alert)]
        if len(moderate):
            watch.append(f"moderate shift (PSI {WATCH:g} to {thresholds.psi_alert:g}): "
                         f"{_feature_list(moderate.head(5), 'psi', '{:.2f}')}")
        seasonal = report.seasonal
        if len(seasonal):
            watch.append(f"seasonal, as in {report.same_month_as_of} (not counted): "
                         f"{_feature_list(seasonal.head(5), 'psi_reference', '{:.2f}')}")
    if realised_reason is not None:  # the realised-accuracy check (`auc_drop_reason`)
        reasons.append(realised_reason)
    return Verdict(bool(reasons), reasons, watch)


# --------------------------------------------------------------------------------- prediction log


def prediction_log_by_month(log: pd.DataFrame, top_reasons: int = 5
                            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From the store's prediction log (`Store.predictions()`): per month of `features_as_of`
    the score distribution (predictions, mean, p10/p50/p90 of the churn probability, share per
    risk band) and the reason mix (share of each `reason_1`, the `top_reasons` most frequent
    overall, the rest as "(other)", none as "(none)")."""
    if log is None or not len(log):
        return pd.DataFrame(), pd.DataFrame()
    month = log["features_as_of"].astype(str).str[:7].rename("month")
    p = pd.to_numeric(log["churn_probability"], errors="coerce")
    grouped = p.groupby(month)
    scores = pd.DataFrame({
        "predictions": grouped.size(),
        "mean": grouped.mean(),
        "p10": grouped.quantile(0.1),
        "p50": grouped.quantile(0.5),
        "p90": grouped.quantile(0.9),
    })
    if "risk_band" in log:
        bands = pd.crosstab(month, log["risk_band"].fillna("(none)"), normalize="index")
        scores = scores.join(bands.add_prefix("band_"))
    reason = log["reason_1"].where(log["reason_1"].notna(), "(none)").astype(str)
    top = [r for r in reason.value_counts().index if r != "(none)"][:top_reasons]
    reason = reason.where(reason.isin([*top, "(none)"]), OTHER)
    mix = pd.crosstab(month, reason, normalize="index")
    return scores.reset_index(), mix.reset_index()


# --------------------------------------------------------------------------------- figures


def psi_figure(report: DriftReport, psi_alert: float, top: int = 25) -> Figure:
    """Horizontal bars of the largest feature PSIs, with the watch and alert lines."""
    from churn_risk.training.plots import MODEL_COLOR, REFERENCE_COLOR, _figure

    t = report.features.head(top).iloc[::-1]
    fig = _figure((7.5, max(3.5, 1.2 + 0.28 * len(t))))
    ax = fig.subplots()
    colors = ["tab:red" if v >= psi_alert else ("tab:orange" if v >= WATCH else MODEL_COLOR)
              for v in t["psi"]]
    season = report.same_month_as_of
    if season:  # what the season explains: drawn, not counted
        ax.barh(np.arange(len(t)), t["psi_reference"], color="none",
                edgecolor=REFERENCE_COLOR, hatch="///", lw=0.6,
                label=f"vs reference, where {season} (same month) is nearer")
    ax.barh(np.arange(len(t)), t["psi"], color=colors)
    ax.set_yticks(np.arange(len(t)), t["feature"], fontsize=8)
    ax.axvline(WATCH, color=REFERENCE_COLOR, ls=":", lw=1, label=f"watch ({WATCH:g})")
    ax.axvline(psi_alert, color="tab:red", ls="--", lw=1.2, label=f"alert ({psi_alert:g})")
    ax.set(xlabel="Population stability index (current vs training reference"
                  + (", or vs the same month when lower)" if season else ")"),
           title=f"Feature drift as of {report.as_of} vs reference {report.reference_as_of} "
                 + (f"and {season} " if season else "")
                 + f"({report.rows:,} vs {report.reference_rows:,} customers)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def score_shift_figure(report: DriftReport, reference: dict) -> Figure:
    """The churn probability's histogram now and in the reference (shares, same bins)."""
    from churn_risk.training.plots import MODEL_COLOR, REFERENCE_COLOR, _figure

    score = reference["score"]
    edges = np.asarray(score["histogram_edges"])
    width = np.diff(edges)
    fig = _figure((7.5, 4.5))
    ax = fig.subplots()
    ax.bar(edges[:-1], score["histogram_shares"], width=width, align="edge",
           color=REFERENCE_COLOR, alpha=0.5,
           label=f"reference {report.reference_as_of} (mean {report.score_reference_mean:.1%})")
    if report.score_histogram:
        ax.step(edges, [*report.score_histogram, report.score_histogram[-1]], where="post",
                color=MODEL_COLOR, lw=1.8,
                label=f"now {report.as_of} (mean {report.score_current_mean:.1%})")
    ax.set(xlabel=f"Churn probability (calibrated); above {edges[-1]:.2f} counted in the last bin",
           ylabel="Share of customers",
           title=f"Score distribution shift: PSI {report.score_psi:.3f}")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper right", fontsize=8)
    return fig
