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


# ---------------------------------------------------------------------------- portfolio figures

QUADRANT_COLORS = {
    "protect_first": "tab:red",
    "keep": "tab:blue",
    "grow": "tab:green",
    "let_go": "tab:orange",
}


def _money(value: float) -> str:
    """A compact amount: 1.2M, 35.4k, 812."""
    value = float(value)
    for size, suffix in ((1e9, "bn"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:,.1f}{suffix}"
    return f"{value:,.0f}"


def risk_matrix_figure(
    quadrant: np.ndarray | pd.Series,
    value_at_risk: np.ndarray | pd.Series,
    risk_threshold: float | None = None,
    value_threshold: float | None = None,
) -> Figure:
    """The value × risk matrix as a 2×2 heatmap: customers and value at risk in each quadrant
    (cells shaded by their share of the portfolio's value at risk).

    `quadrant` holds each customer's quadrant name (`portfolio.QUADRANTS`; missing when there is
    no value model) and `value_at_risk` their churn probability × lifetime value; the thresholds
    (the bundle's policy) label the axes."""
    from churn_risk.models.portfolio import QUADRANT_LABELS

    names = pd.Series(np.asarray(quadrant, dtype=object))
    var = pd.Series(np.asarray(value_at_risk, dtype=float))
    if len(names) != len(var):
        raise ValueError(f"quadrant has {len(names)} rows, value_at_risk has {len(var)}")
    counts = names.value_counts()
    sums = var.groupby(names.to_numpy()).sum()
    total = float(np.nansum(var.to_numpy())) or 1.0
    # rows: high value on top; columns: low risk left, high risk right
    layout = [["keep", "protect_first"], ["grow", "let_go"]]
    shares = np.array([[float(sums.get(q, 0.0)) / total for q in row] for row in layout])

    fig = _figure((7.0, 5.5))
    ax = fig.subplots()
    image = ax.imshow(shares, cmap=colormaps["Reds"], vmin=0, vmax=max(shares.max(), 1e-9))
    for i, row in enumerate(layout):
        for j, q in enumerate(row):
            n = int(counts.get(q, 0))
            share = n / max(len(names), 1)
            text = (f"{QUADRANT_LABELS[q]}\n{n:,} customers ({share:.0%})\n"
                    f"value at risk {_money(sums.get(q, 0.0))} ({shares[i, j]:.0%})")
            ax.text(j, i, text, ha="center", va="center", fontsize=10,
                    color="white" if shares[i, j] > 0.6 * shares.max() else "black")
    risk = f" (from {risk_threshold:.1%})" if risk_threshold is not None else ""
    value = f" (from {_money(value_threshold)})" if value_threshold is not None else ""
    ax.set_xticks([0, 1], ["low risk", f"high risk{risk}"])
    ax.set_yticks([0, 1], [f"high value{value}", "low value"], rotation=90, va="center")
    ax.set_xlabel("Churn probability")
    ax.set_ylabel("Lifetime value")
    unplaced = int(names.isna().sum())
    note = f"; {unplaced:,} without a value" if unplaced else ""
    ax.set_title(f"Risk matrix: {len(names):,} customers, value at risk {_money(total)}{note}")
    colorbar = fig.colorbar(image, ax=ax, pad=0.02, fraction=0.05)
    colorbar.set_label("Share of the portfolio's value at risk", fontsize=8)
    return fig


def value_at_risk_by_segment_figure(
    value_at_risk: np.ndarray | pd.Series,
    segments: np.ndarray | pd.Series,
    quadrant: np.ndarray | pd.Series | None = None,
) -> Figure:
    """Horizontal bars of the total value at risk per segment (largest on top), stacked by
    quadrant when `quadrant` is given, annotated with the segment's total and customers."""
    var = np.nan_to_num(np.asarray(value_at_risk, dtype=float))
    names = _segment_names(segments, len(var))
    parts = pd.DataFrame({"segment": names, "value_at_risk": var})
    if quadrant is not None:
        parts["quadrant"] = pd.Series(np.asarray(quadrant, dtype=object)).fillna("(none)")
    else:
        parts["quadrant"] = "all"
    table = parts.pivot_table(index="segment", columns="quadrant", values="value_at_risk",
                              aggfunc="sum", fill_value=0.0)
    totals = table.sum(axis=1).sort_values(kind="stable")
    table = table.loc[totals.index]
    sizes = pd.Series(names).value_counts()

    fig = _figure((7.5, max(3.5, 1.5 + 0.45 * len(table))))
    ax = fig.subplots()
    rows = np.arange(len(table))
    left = np.zeros(len(table))
    from churn_risk.models.portfolio import QUADRANT_LABELS, QUADRANTS

    order = [q for q in QUADRANTS if q in table.columns] + [
        q for q in table.columns if q not in QUADRANTS]
    for q in order:
        values = table[q].to_numpy()
        ax.barh(rows, values, left=left, height=0.7, label=QUADRANT_LABELS.get(q, q),
                color=QUADRANT_COLORS.get(q, MODEL_COLOR), alpha=0.85)
        left += values
    for row, (segment, total) in zip(rows, totals.items(), strict=True):
        ax.text(total, row, f"  {_money(total)} (n={sizes[segment]:,})", va="center", fontsize=8)
    ax.set_yticks(rows, [str(s) for s in table.index], fontsize=9)
    ax.set_xlim(0, float(totals.max()) * 1.3 if len(totals) and totals.max() > 0 else 1.0)
    ax.set_xlabel("Value at risk (churn probability × lifetime value)")
    ax.set_title(f"Value at risk by segment (total {_money(totals.sum())})")
    ax.grid(alpha=0.3, axis="x")
    if len(order) > 1:
        ax.legend(loc="lower right", fontsize=8, title="quadrant", title_fontsize=8)
    return fig


def score_distribution_figure(
    churn_probability: np.ndarray | pd.Series,
    risk_bands: tuple[tuple[str, float], ...],
    risk_threshold: float | None = None,
    bins: int = 60,
) -> Figure:
    """Histogram of the churn probability with the risk bands shaded and counted, and the risk
    matrix's high-risk threshold as a line. Scores beyond the 99.5th percentile are counted in
    the last bar so a few extreme customers do not squash the rest."""
    p = np.asarray(churn_probability, dtype=float)
    p = p[np.isfinite(p)]
    if len(p) == 0:
        raise ValueError("churn_probability is empty")
    upper = min(1.0, max(float(np.quantile(p, 0.995)) * 1.1, 1e-3))
    fig = _figure((7.5, 4.5))
    ax = fig.subplots()
    counts, edges, _ = ax.hist(np.minimum(p, upper), bins=bins, range=(0, upper),
                               color=MODEL_COLOR, alpha=0.8)
    top = float(counts.max()) if len(counts) else 1.0
    lows = [low for _, low in risk_bands] + [np.inf]
    band_colors = colormaps["YlOrRd"](np.linspace(0.1, 0.8, len(risk_bands)))
    for (name, low), high, color in zip(risk_bands, lows[1:], band_colors, strict=True):
        n = int(np.sum((p >= low) & (p < high)))
        if low >= upper:
            ax.plot([], [], color=color, lw=6, label=f"{name} (≥ {low:.0%}): {n:,}")
            continue
        ax.axvspan(low, min(high, upper), color=color, alpha=0.25, lw=0,
                   label=f"{name} ({low:.0%}–{high:.0%}): {n:,}" if np.isfinite(high)
                   else f"{name} (≥ {low:.0%}): {n:,}")
    if risk_threshold is not None:
        ax.axvline(risk_threshold, color="tab:red", ls="--", lw=1.2,
                   label=f"high risk (matrix) from {risk_threshold:.1%}")
    beyond = int(np.sum(p > upper))
    xlabel = "Churn probability (calibrated)"
    if beyond:
        xlabel += f"; {beyond:,} customers above {upper:.2f} counted in the last bar"
    ax.set(xlim=(0, upper), ylim=(0, top * 1.1), xlabel=xlabel, ylabel="Customers",
           title=f"Score distribution: {len(p):,} customers, mean {p.mean():.1%}")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper right", fontsize=8, title="risk band: customers", title_fontsize=8)
    return fig


__all__ += ["risk_matrix_figure", "score_distribution_figure", "value_at_risk_by_segment_figure"]
