"""Evaluation and explanation figures, for `mlflow.log_figure(fig, "plots/<name>.png")`.

Every function builds and returns a `matplotlib.figure.Figure` created directly (never through
`pyplot`): no global figure registry, no interactive backend, nothing to close, so the functions
are safe in training jobs, tests and threads. Numbers come from `training.metrics`, so a figure
always shows the same values the run logs as metrics.

Units: SHAP contributions of an XGBoost binary model are in log-odds (the model's margin); a
positive contribution raises the churn risk.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from churn_risk.training.metrics import (
    MISSING_SEGMENT,
    _check,
    _segment_names,
    calibration_table,
    expected_calibration_error,
    gains_curve,
)

__all__ = [
    "calibration_figure",
    "gains_figure",
    "key_drivers_figure",
    "roc_figure",
    "shap_summary_figure",
]

FIGSIZE = (7.0, 5.0)
DPI = 100
MODEL_COLOR = "tab:blue"
REFERENCE_COLOR = "0.55"
GREY = (0.72, 0.72, 0.72, 1.0)
#: At most this many customers are drawn per feature in the SHAP dot strip (a seeded sample;
#: the bar lengths always use every row).
MAX_STRIP_POINTS = 1500


def _figure(figsize: tuple[float, float] = FIGSIZE) -> Figure:
    return Figure(figsize=figsize, dpi=DPI, layout="tight")


def _auc_text(y: np.ndarray, p: np.ndarray) -> str:
    if y.min() == y.max():
        return "AUC undefined: one class"
    return f"AUC = {roc_auc_score(y, p):.3f}"


def roc_figure(
    y: np.ndarray,
    p: np.ndarray,
    label: str = "churn model",
    oracle: np.ndarray | None = None,
) -> Figure:
    """ROC curve of `p` with its AUC in the legend.

    `oracle`, when given, is the true churn probability of each row (known for simulated data):
    its curve is the best any model can do on these realised labels, so the gap between the two
    curves is what is left to learn.
    """
    y, p = _check(y, p)
    fig = _figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color=REFERENCE_COLOR, label="random (AUC = 0.500)")
    if oracle is not None:
        _, oracle = _check(y, oracle)
        if y.min() != y.max():
            fpr, tpr, _ = roc_curve(y, oracle)
            ax.plot(fpr, tpr, lw=1.5, ls=":", color="tab:green",
                    label=f"oracle: true probabilities ({_auc_text(y, oracle)})")
    if y.min() != y.max():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=2, color=MODEL_COLOR, label=f"{label} ({_auc_text(y, p)})")
    else:
        ax.text(0.5, 0.5, "ROC undefined: only one class in y", ha="center", va="center")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="False positive rate (share of staying customers flagged)",
        ylabel="True positive rate (share of churners flagged)",
        title=f"ROC curve ({len(y):,} customers, {int(y.sum()):,} churners)",
    )
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return fig


def calibration_figure(y: np.ndarray, p: np.ndarray, bins: int = 10) -> Figure:
    """Reliability diagram (observed churn rate against mean predicted probability in
    equal-frequency bins, with ±2 standard-error bars) above a histogram of `p`; ECE in the title.
    """
    y, p = _check(y, p)
    table = calibration_table(y, p, bins)
    ece = expected_calibration_error(y, p, bins)
    fig = _figure()
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})

    observed = table["observed_rate"].to_numpy()
    predicted = table["mean_predicted"].to_numpy()
    stderr = np.sqrt(observed * (1 - observed) / table["rows"].to_numpy())
    # zoom on where the customers are: a few extreme scores must not squash the diagram
    tail = float(np.quantile(p, 0.995))
    upper = max(tail, float(predicted.max()), float(np.max(observed + 2 * stderr)))
    upper = min(1.0, upper * 1.08) if upper > 0 else 1.0
    beyond = int(np.sum(p > upper))

    top.plot([0, upper], [0, upper], ls="--", lw=1, color=REFERENCE_COLOR,
             label="perfect calibration")
    top.errorbar(predicted, observed, yerr=2 * stderr, fmt="o-", color=MODEL_COLOR, lw=1.5,
                 ms=5, capsize=3, label=f"model ({len(table)} equal-frequency bins, ±2 s.e.)")
    top.set(ylim=(0, upper), ylabel="Observed churn rate",
            title=f"Calibration: ECE = {ece:.4f} ({len(y):,} customers)")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=9)

    bottom.hist(np.minimum(p, upper), bins=50, range=(0, upper), color=MODEL_COLOR, alpha=0.7)
    xlabel = "Predicted churn probability"
    if beyond:
        xlabel += f" ({beyond:,} customers above {upper:.2f} counted in the last bar)"
    bottom.set(xlim=(0, upper), xlabel=xlabel, ylabel="Customers")
    bottom.grid(alpha=0.3)
    return fig


def gains_figure(y: np.ndarray, p: np.ndarray) -> Figure:
    """Cumulative gains (with random and perfect baselines) and the lift of each score decile."""
    y, p = _check(y, p)
    contacted, captured = gains_curve(y, p)
    fig = _figure()
    left, right = fig.subplots(1, 2)
    rate = float(y.mean())

    left.plot([0, 1], [0, 1], ls="--", lw=1, color=REFERENCE_COLOR, label="random")
    if rate > 0:
        left.plot([0, rate, 1], [0, 1, 1], ls=":", lw=1, color="tab:green", label="perfect")
        left.plot(contacted, captured, lw=2, color=MODEL_COLOR, label="model")
    left.set(xlim=(0, 1), ylim=(0, 1.01), ylabel="Share of churners captured",
             xlabel="Share of customers contacted\n(highest risk first)", title="Cumulative gains")
    left.grid(alpha=0.3)
    left.legend(loc="lower right", fontsize=9)

    deciles = np.arange(1, 11)
    if rate > 0:
        cumulative = np.interp(np.r_[0, deciles / 10], contacted, captured)
        lift = np.diff(cumulative) / 0.1
    else:
        lift = np.full(10, np.nan)
    bars = right.bar(deciles, np.nan_to_num(lift), color=MODEL_COLOR, alpha=0.8)
    right.axhline(1.0, ls="--", lw=1, color=REFERENCE_COLOR, label="random (lift = 1)")
    right.bar_label(bars, labels=[f"{v:.1f}" if np.isfinite(v) else "" for v in lift],
                    fontsize=8, padding=2)
    top = float(np.nanmax(lift)) if np.isfinite(lift).any() else 1.0
    right.set(xticks=deciles, ylim=(0, max(top, 1.0) * 1.15),
              xlabel="Score decile (1 = highest risk)", ylabel="Lift (churn rate / overall rate)",
              title=f"Lift by decile (top decile: {lift[0]:.2f})" if rate > 0
              else "Lift by decile (undefined: no churners)")
    right.grid(alpha=0.3, axis="y")
    right.legend(loc="upper right", fontsize=9)
    return fig


def _strip_offsets(x: np.ndarray, rng: np.random.Generator, nbins: int = 80) -> np.ndarray:
    """Vertical offsets in [-0.4, 0.4] that spread points like a beeswarm: points falling in the
    same slice of the x range are stacked alternately above and below the centre line."""
    if len(x) == 0:
        return np.zeros(0)
    span = float(x.max() - x.min())
    slot = np.zeros(len(x), dtype=np.int64) if span == 0 else np.minimum(
        ((x - x.min()) / span * nbins).astype(np.int64), nbins - 1
    )
    order = np.lexsort((rng.permutation(len(x)), slot))
    sorted_slot = slot[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_slot)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(x)]))
    rank = np.arange(len(x)) - first  # 0, 1, 2, ... within each slice
    signed = np.where(rank % 2 == 1, 1, -1) * ((rank + 1) // 2)
    offsets = np.empty(len(x))
    offsets[order] = signed
    return offsets * 0.4 / max(float(np.abs(signed).max()), 8.0)


def _value_colors(values: pd.Series, cmap) -> np.ndarray:
    """RGBA per value: colormap of the value's rank for numeric columns, grey for categorical
    columns and missing values."""
    colors = np.tile(GREY, (len(values), 1))
    if pd.api.types.is_numeric_dtype(values.dtype):
        numeric = values.astype(float)
        rank = numeric.rank(pct=True, method="average").to_numpy()
        known = ~np.isnan(rank)
        colors[known] = cmap(rank[known])
    return colors


def shap_summary_figure(
    contributions: pd.DataFrame,
    features: pd.DataFrame,
    labels: dict[str, str],
    max_features: int = 20,
) -> Figure:
    """Global SHAP summary: mean |SHAP| per feature (bars) next to each customer's contribution
    (dots, coloured by the rank of the feature's value: blue low, red high, grey for categorical
    features and missing values).

    `contributions` and `features` have the same columns (one per feature) and rows aligned by
    position; `labels` maps a feature name to its human label (the name is used when absent).
    The `max_features` features with the largest mean |SHAP| are shown, most important on top.
    """
    if len(contributions) != len(features):
        raise ValueError(
            f"contributions has {len(contributions)} rows, features has {len(features)}"
        )
    if contributions.shape[1] == 0 or len(contributions) == 0:
        raise ValueError("contributions has no rows or no feature columns")
    shap_values = contributions.astype(float)
    importance = shap_values.abs().mean().sort_values(ascending=False, kind="stable")
    shown = list(importance.index[:max_features])
    n_shown = len(shown)

    rng = np.random.default_rng(0)
    sample = np.arange(len(shap_values))
    if len(sample) > MAX_STRIP_POINTS:
        sample = np.sort(rng.choice(sample, MAX_STRIP_POINTS, replace=False))
    cmap = colormaps["coolwarm"]

    fig = _figure((8.0, max(5.0, 1.2 + 0.28 * n_shown)))
    bar_ax, strip_ax = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": (1, 1.6)})
    rows = np.arange(n_shown)[::-1]  # most important on top
    bar_ax.barh(rows, importance.loc[shown].to_numpy(), color=MODEL_COLOR, alpha=0.8, height=0.7)
    names = [textwrap.fill(str(labels.get(name, name)), 38) for name in shown]
    bar_ax.set_yticks(rows, names, fontsize=8 if n_shown > 12 else 9)
    bar_ax.set_ylim(-0.6, n_shown - 0.4)
    bar_ax.set_xlabel("Mean |SHAP| (log-odds)")
    bar_ax.set_title("Importance", fontsize=10)
    bar_ax.grid(alpha=0.3, axis="x")

    for row, name in zip(rows, shown, strict=True):
        x = shap_values[name].to_numpy()[sample]
        if name in features:
            colors = _value_colors(features[name].reset_index(drop=True), cmap)[sample]
        else:
            colors = np.tile(GREY, (len(sample), 1))
        y = row + _strip_offsets(x, rng)
        strip_ax.scatter(x, y, c=colors, s=5, linewidths=0, rasterized=True)
    strip_ax.axvline(0, color=REFERENCE_COLOR, lw=0.8)
    strip_ax.set_xlabel("SHAP (log-odds); > 0 raises risk")
    strip_ax.set_title(f"Per customer ({len(sample):,} shown)", fontsize=10)
    strip_ax.grid(alpha=0.3, axis="x")
    strip_ax.tick_params(axis="y", left=False)

    colorbar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=strip_ax, pad=0.02,
                            fraction=0.05, aspect=30)
    colorbar.set_ticks([0, 1], labels=["low", "high"])
    colorbar.set_label("Feature value (rank); grey = categorical / missing", fontsize=8)
    fig.suptitle(f"What drives the churn score: top {n_shown} of {contributions.shape[1]} "
                 f"features ({len(contributions):,} customers)", fontsize=11)
    return fig


def key_drivers_figure(group_contributions: pd.DataFrame, segments: pd.Series) -> Figure:
    """Heatmap of the mean |SHAP| of each driver group (columns, most important overall first)
    in each segment (rows), annotated with the values.

    `group_contributions` holds, per customer, the sum of the SHAP contributions of each
    group's features; `segments` is aligned with it by position (missing values form the
    segment "(missing)").
    """
    if group_contributions.shape[1] == 0 or len(group_contributions) == 0:
        raise ValueError("group_contributions has no rows or no group columns")
    names = _segment_names(segments, len(group_contributions))
    magnitude = group_contributions.astype(float).abs().reset_index(drop=True)
    by_segment = magnitude.groupby(names, sort=True).mean()
    sizes = pd.Series(names).value_counts()
    order = magnitude.mean().sort_values(ascending=False, kind="stable").index
    by_segment = by_segment[order]
    segment_order = [s for s in by_segment.index if s != MISSING_SEGMENT]
    segment_order += [s for s in by_segment.index if s == MISSING_SEGMENT]
    by_segment = by_segment.loc[segment_order]
    values = by_segment.to_numpy()

    n_rows, n_cols = values.shape
    fig = _figure((7.0, min(12.0, max(5.0, 1.8 + 0.45 * n_rows))))
    ax = fig.subplots()
    cmap = colormaps["Reds"]
    vmax = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    image = ax.imshow(values, cmap=cmap, vmin=0, vmax=vmax or 1.0, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            shade = v / vmax if vmax else 0.0
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if shade > 0.6 else "black")
    ax.set_xticks(np.arange(n_cols), [str(c) for c in by_segment.columns], rotation=35,
                  ha="right", fontsize=9)
    ax.set_yticks(np.arange(n_rows),
                  [f"{s}\n(n={sizes[s]:,})" for s in by_segment.index], fontsize=9)
    ax.set_xlabel("Driver group (most important overall first)")
    ax.set_ylabel("Segment")
    ax.set_title("Key drivers by segment")
    colorbar = fig.colorbar(image, ax=ax, pad=0.02)
    colorbar.set_label("Mean |SHAP| of the group (log-odds)", fontsize=8)
    return fig
