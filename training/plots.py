"""Evaluation and explanation figures, for `mlflow.log_figure(fig, "plots/<name>.png")`.

Every function builds and returns a standalone `matplotlib.figure.Figure`: no global figure
registry, no interactive backend, nothing to close, so the functions are safe in training jobs,
tests and threads. Numbers come from `training.metrics` (or the tables returned next to the
figures), so a figure always shows the same values the run logs as metrics and tables.

The SHAP figures are drawn by the shap library (`shap.plots`). Some of its plots draw through
pyplot; `shap_canvas` lends them a figure for the time they draw and takes it back from pyplot
(see there), so their figures are standalone too.

Units: SHAP contributions of an XGBoost binary model are in log-odds (the model's margin); a
positive contribution raises the churn risk.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from churn_risk.models.bundle import high_risk_from
from churn_risk.models.portfolio import QUADRANT_LABELS, QUADRANTS, ValueSettings, money
from churn_risk.training.metrics import (
    MISSING_SEGMENT,
    _check,
    _segment_names,
    calibration_table,
    expected_calibration_error,
    gains_curve,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "calibration_figure",
    "calibration_limits",
    "gains_figure",
    "count_axis",
    "key_drivers_figure",
    "money",
    "money_axis",
    "precision_recall_figure",
    "roc_figure",
    "shap_beeswarm_figure",
    "shap_canvas",
    "shap_importance_figure",
    "threshold_table",
]

FIGSIZE = (7.0, 5.0)
DPI = 100
MODEL_COLOR = "tab:blue"
REFERENCE_COLOR = "0.55"
#: Probability thresholds of the threshold table (the caller may add its own: risk bands, ...).
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.02, 0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50)
#: The currency of amounts when the caller has none (the policy's `ValueSettings.currency`).
CURRENCY = ValueSettings().currency
#: The calibration axes switch to a log scale when the 99.5th percentile of the predictions is
#: at least this many times the 0.5th (churn scores: most customers near zero, a long tail).
LOG_SCALE_RATIO = 20.0


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


def calibration_limits(p: np.ndarray, points: np.ndarray | None = None,
                       scale: str = "auto") -> tuple[str, float, float]:
    """The calibration diagram's scale ("linear" or "log") and its limits (the same on both
    axes): from the 0.5th to the 99.5th percentile of the predictions `p`, widened to cover
    `points` (the bins' mean predictions and observed rates; zeros are ignored on a log scale)
    and padded, within [0, 1]. "auto" is a log scale when the predictions span a factor of
    `LOG_SCALE_RATIO` or more, so the many low scores are not squeezed into a corner."""
    p = np.asarray(p, dtype=float)
    low, high = (float(q) for q in np.quantile(p, [0.005, 0.995]))
    points = np.asarray(points if points is not None else [], dtype=float)
    points = points[np.isfinite(points)]
    if scale == "auto":
        scale = "log" if low > 0 and high >= LOG_SCALE_RATIO * low else "linear"
    if scale == "log":
        positive = points[points > 0]
        low = min([low, *positive]) if low > 0 else min([*positive, high, 1.0])
        high = max([high, *positive])
        low, high = max(low / 1.25, 1e-6), min(high * 1.25, 1.0)
    elif scale == "linear":
        low, high = min([low, *points]), max([high, *points])
        pad = max(0.05 * (high - low), 0.01)
        low, high = max(low - pad, 0.0), min(high + pad, 1.0)
    else:
        raise ValueError(f"scale must be 'auto', 'linear' or 'log', not {scale!r}")
    return scale, low, high


def _percent_axis(axis, scale: str) -> None:
    """Ticks as percentages; on a log axis at 1-2-5 steps (0.5%, 1%, 2%, 5%, ...)."""
    if scale == "log":
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_minor_formatter(NullFormatter())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.3g}%"))


def calibration_figure(y: np.ndarray, p: np.ndarray, bins: int = 10,
                       scale: str = "auto") -> Figure:
    """Reliability diagram (observed churn rate against mean predicted probability in
    equal-frequency bins, with ±2 standard-error bars and the diagonal) above a histogram of
    `p`; ECE in the title.

    The axes cover where the predictions are (`calibration_limits`: 0.5th to 99.5th
    percentile, the bins' points included), on a log scale when they span more than a factor
    of `LOG_SCALE_RATIO`; predictions outside the limits are counted in the histogram's edge
    bars, bins with an observed rate of 0 on a log scale are drawn on the bottom edge."""
    y, p = _check(y, p)
    table = calibration_table(y, p, bins)
    ece = expected_calibration_error(y, p, bins)
    observed = table["observed_rate"].to_numpy()
    predicted = table["mean_predicted"].to_numpy()
    stderr = np.sqrt(observed * (1 - observed) / table["rows"].to_numpy())
    scale, low, high = calibration_limits(p, np.r_[predicted, observed], scale)

    fig = _figure()
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    top.set_xscale(scale)
    top.set_yscale(scale)
    diagonal = np.geomspace(low, high, 50) if scale == "log" else np.array([low, high])
    top.plot(diagonal, diagonal, ls="--", lw=1, color=REFERENCE_COLOR, label="perfect calibration")
    shown = np.maximum(observed, low) if scale == "log" else observed
    lower_error = np.minimum(2 * stderr, shown - (low if scale == "log" else 0.0))
    top.errorbar(predicted, shown, yerr=(np.maximum(lower_error, 0.0), 2 * stderr), fmt="o-",
                 color=MODEL_COLOR, lw=1.5, ms=5, capsize=3,
                 label=f"model ({len(table)} equal-frequency bins, ±2 s.e.)")
    clipped = observed < low
    if clipped.any():
        top.plot(predicted[clipped], np.full(clipped.sum(), low), "v", color="tab:red", ms=7,
                 label="observed rate below the axis (e.g. no churners in the bin)")
    top.set(xlim=(low, high), ylim=(low, high), ylabel="Observed churn rate",
            title=f"Calibration: ECE = {ece:.4f} ({len(y):,} customers, {scale} axes)")
    _percent_axis(top.yaxis, scale)
    top.grid(alpha=0.3, which="both" if scale == "log" else "major")
    top.legend(loc="upper left", fontsize=8)

    edges = np.geomspace(low, high, 41) if scale == "log" else np.linspace(low, high, 41)
    bottom.hist(np.clip(p, low, high), bins=edges, color=MODEL_COLOR, alpha=0.7)
    below, above = int(np.sum(p < low)), int(np.sum(p > high))
    xlabel = "Predicted churn probability"
    outside = [f"{n:,} {side} {edge:.3g}" for n, side, edge in
               ((below, "below", low), (above, "above", high)) if n]
    if outside:
        xlabel += f" ({' and '.join(outside)} counted in the edge bars)"
    bottom.set(xlim=(low, high), xlabel=xlabel, ylabel="Customers")
    _percent_axis(bottom.xaxis, scale)
    count_axis(bottom.yaxis)
    bottom.grid(alpha=0.3)
    return fig


def threshold_table(
    y: np.ndarray,
    p: np.ndarray,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    notes: Mapping[float, str] | None = None,
) -> pd.DataFrame:
    """What contacting every customer with `p >= threshold` gives, for each threshold
    (ascending): `flagged` customers and their `share_flagged`, `churners_flagged`, `precision`
    (churn rate among the flagged), `recall` (share of churners flagged) and `lift` (precision /
    overall churn rate); NaN where undefined (nobody flagged, no churners). `notes` names some
    thresholds (a risk band, the risk matrix's threshold) in a `note` column."""
    y, p = _check(y, p)
    churners = float(y.sum())
    rate = churners / len(y)
    notes = dict(notes or {})
    rows = []
    for threshold in sorted({float(t) for t in thresholds}):
        flagged = p >= threshold
        n = int(flagged.sum())
        hits = float(y[flagged].sum())
        precision = hits / n if n else np.nan
        rows.append({
            "threshold": threshold,
            "flagged": n,
            "share_flagged": n / len(y),
            "churners_flagged": int(hits),
            "precision": precision,
            "recall": hits / churners if churners else np.nan,
            "lift": precision / rate if rate > 0 and n else np.nan,
            "note": notes.get(threshold, ""),
        })
    return pd.DataFrame(rows)


def precision_recall_figure(y: np.ndarray, p: np.ndarray,
                            table: pd.DataFrame | None = None) -> Figure:
    """Precision against recall (average precision in the legend, the churn rate as the random
    baseline), with the thresholds of `table` (`threshold_table`'s output; its default
    thresholds when None) marked and labelled on the curve."""
    y, p = _check(y, p)
    table = threshold_table(y, p) if table is None else table
    rate = float(y.mean())
    fig = _figure()
    ax = fig.subplots()
    ax.axhline(rate, ls="--", lw=1, color=REFERENCE_COLOR,
               label=f"random (precision = churn rate {rate:.1%})")
    if 0 < rate < 1:
        precision, recall, _ = precision_recall_curve(y, p)
        ap = average_precision_score(y, p)
        ax.plot(recall, precision, lw=2, color=MODEL_COLOR, drawstyle="steps-post",
                label=f"churn model (average precision = {ap:.3f})")
        marked = table.dropna(subset=["precision", "recall"])
        ax.plot(marked["recall"], marked["precision"], "o", color="tab:red", ms=5,
                label="thresholds (p ≥ t)")
        for row in marked.itertuples():
            ax.annotate(f"{row.threshold:.3g}", (row.recall, row.precision), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    else:
        ax.text(0.5, 0.5, "precision-recall undefined: only one class in y", ha="center",
                va="center")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Recall (share of churners flagged)",
           ylabel="Precision (churn rate among the flagged)",
           title=f"Precision-recall ({len(y):,} customers, {int(y.sum()):,} churners)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
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


_PYPLOT_LOCK = threading.RLock()


@contextmanager
def shap_canvas(figsize: tuple[float, float] = FIGSIZE) -> Iterator[Figure]:
    """A standalone Figure for a `shap.plots` function to draw on.

    Some shap plots draw through pyplot (`plt.gca()`, `plt.gcf()`, `plt.sca()`, `plt.ioff()`)
    and shuffle points with NumPy's global random state. Inside this context the figure, on an
    Agg canvas whatever the backend, is pyplot's current figure and the random state is seeded
    (the same picture every run); on exit pyplot forgets the figure and the interactive mode
    and random state are restored. A lock keeps threads from drawing through pyplot at once."""
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib import _pylab_helpers
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with _PYPLOT_LOCK:
        fig = Figure(figsize=figsize, dpi=DPI)
        manager = FigureCanvasAgg.new_manager(fig, max(plt.get_fignums(), default=0) + 1)
        interactive = matplotlib.is_interactive()
        state = np.random.get_state()
        np.random.seed(0)
        _pylab_helpers.Gcf._set_new_active_manager(manager)
        try:
            yield fig
        finally:
            _pylab_helpers.Gcf.destroy(manager)
            matplotlib.interactive(interactive)
            np.random.set_state(state)


def _beeswarm_input(explanation):
    """`explanation` with its display values (category names) as data: shap's beeswarm colours
    numeric features by value and draws text-valued (categorical) features grey."""
    import shap

    if explanation.display_data is None:
        return explanation
    return shap.Explanation(explanation.values, base_values=explanation.base_values,
                            data=explanation.display_data,
                            feature_names=explanation.feature_names)


def shap_beeswarm_figure(explanation, max_display: int = 20, title: str | None = None
                         ) -> Figure:
    """shap's beeswarm (`shap.plots.beeswarm`) of a `shap.Explanation` (rows x features):
    each customer's contribution per feature, coloured by the feature's value (grey for
    categorical features and missing values), features by mean |SHAP|, the largest on top; the
    remaining features summed in the last row."""
    import shap

    n_rows, n_features = explanation.shape
    shown = min(max_display, n_features)
    with shap_canvas((9.0, 0.4 * shown + 1.8)) as fig:
        ax = fig.subplots()
        shap.plots.beeswarm(_beeswarm_input(explanation), max_display=max_display, ax=ax,
                            plot_size=None, show=False, s=10)
        ax.set_xlabel("SHAP value (log-odds); > 0 raises the churn risk", fontsize=11)
        ax.tick_params("y", labelsize=9)
        ax.set_title(title or f"What drives the churn score: top {shown - (shown < n_features)} "
                     f"of {n_features} features, {n_rows:,} customers", fontsize=11)
        fig.set_layout_engine("tight")
    return fig


def shap_importance_figure(explanation, max_display: int = 20, title: str | None = None
                           ) -> Figure:
    """shap's bar chart (`shap.plots.bar`) of the mean |SHAP| per feature of a
    `shap.Explanation` (rows x features), the largest on top, the rest summed in the last
    bar."""
    import shap

    n_rows, n_features = explanation.shape
    shown = min(max_display, n_features)
    with shap_canvas((9.0, 0.4 * shown + 1.8)) as fig:
        ax = fig.subplots()
        mean_abs = shap.Explanation(np.abs(np.asarray(explanation.values)).mean(axis=0),
                                    feature_names=list(explanation.feature_names))
        shap.plots.bar(mean_abs, max_display=max_display, ax=ax, show=False)
        ax.set_xlabel("Mean |SHAP value| (log-odds)", fontsize=11)
        ax.tick_params("y", labelsize=9)
        ax.set_title(title or f"SHAP summary: mean |SHAP| per feature, {n_rows:,} customers",
                     fontsize=11)
        fig.set_layout_engine("tight")
    return fig


def key_drivers_figure(group_contributions: pd.DataFrame, segments: pd.Series) -> Figure:
    """Heatmap of the mean signed contribution of each driver group (columns, the largest mean
    |SHAP| overall first) in each segment (rows): what the group adds to (red) or removes from
    (blue) the segment's churn risk on average, in log-odds, on a colour scale centred at 0 so
    both directions read at a glance. Groups are named in words (`serving.wording.human`, as on the
    customer page).

    `group_contributions` holds, per customer, the sum of the SHAP contributions of each
    group's features (log-odds); `segments` is aligned with it by position (missing values form
    the segment "(missing)").
    """
    from churn_risk.serving.wording import human, signed

    if group_contributions.shape[1] == 0 or len(group_contributions) == 0:
        raise ValueError("group_contributions has no rows or no group columns")
    names = _segment_names(segments, len(group_contributions))
    contributions = group_contributions.astype(float).reset_index(drop=True)
    by_segment = contributions.groupby(names, sort=True).mean()
    sizes = pd.Series(names).value_counts()
    order = contributions.abs().mean().sort_values(ascending=False, kind="stable").index
    by_segment = by_segment[order]
    segment_order = [s for s in by_segment.index if s != MISSING_SEGMENT]
    segment_order += [s for s in by_segment.index if s == MISSING_SEGMENT]
    by_segment = by_segment.loc[segment_order]
    values = by_segment.to_numpy()

    n_rows, n_cols = values.shape
    fig = _figure((7.5, min(12.0, max(5.0, 1.8 + 0.45 * n_rows))))
    ax = fig.subplots()
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    image = ax.imshow(values, cmap=colormaps["RdBu_r"], norm=norm, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            ax.text(j, i, signed(v), ha="center", va="center", fontsize=8,
                    color="white" if abs(v) > 0.6 * limit else "black")
    ax.set_xticks(np.arange(n_cols), [human(c) for c in by_segment.columns], rotation=35,
                  ha="right", fontsize=9)
    ax.set_yticks(np.arange(n_rows),
                  [f"{s}\n(n={sizes[s]:,})" for s in by_segment.index], fontsize=9)
    ax.set_xlabel("Driver group (largest mean |contribution| overall first)")
    ax.set_ylabel("Segment")
    ax.set_title("Key drivers by segment")
    colorbar = fig.colorbar(image, ax=ax, pad=0.02)
    colorbar.set_label("Mean contribution to the churn score (log-odds)", fontsize=8)
    colorbar.ax.set_title("raises\nrisk", fontsize=8, color=colormaps["RdBu_r"](1.0))
    colorbar.ax.set_xlabel("lowers\nrisk", fontsize=8, color=colormaps["RdBu_r"](0.0))
    return fig


# ---------------------------------------------------------------------------- portfolio figures

QUADRANT_COLORS = {
    "protect_first": "tab:red",
    "keep": "tab:blue",
    "grow": "tab:green",
    "let_go": "tab:orange",
}


def money_axis(axis, currency: str = CURRENCY) -> None:
    """Ticks as `money`: no "1e6" offset, the currency on every tick."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: money(v, currency)))


def count_axis(axis) -> None:
    """Ticks of a count with thousands separators (12,000, not 12000 or 1.2e4)."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def risk_matrix_figure(
    quadrant: np.ndarray | pd.Series,
    value_at_risk: np.ndarray | pd.Series,
    risk_bands: tuple[tuple[str, float], ...],
    value_threshold: float | None = None,
    currency: str = CURRENCY,
) -> Figure:
    """The value × risk matrix as a 2×2 heatmap: customers and value at risk in each quadrant
    (cells shaded by their share of the portfolio's value at risk).

    `quadrant` holds each customer's quadrant name (`portfolio.QUADRANTS`; missing when there is
    no value model) and `value_at_risk` their churn probability × lifetime value. The risk
    columns are named after the API's risk bands (`risk_bands`, the bundle's), whose `high`
    band's lower edge is the quadrants' risk split; `value_threshold` (the bundle's policy)
    labels the value rows."""
    from churn_risk.serving.wording import band_name

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

    fig = _figure((7.5, 5.5))
    ax = fig.subplots()
    image = ax.imshow(shares, cmap=colormaps["Reds"], vmin=0, vmax=max(shares.max(), 1e-9))
    for i, row in enumerate(layout):
        for j, q in enumerate(row):
            n = int(counts.get(q, 0))
            share = n / max(len(names), 1)
            text = (f"{QUADRANT_LABELS[q]}\n{n:,} customer{'' if n == 1 else 's'} ({share:.0%})\n"
                    f"value at risk {money(sums.get(q, 0.0), currency)} ({shares[i, j]:.0%})")
            ax.text(j, i, text, ha="center", va="center", fontsize=10,
                    color="white" if shares[i, j] > 0.6 * shares.max() else "black")
    split = high_risk_from(risk_bands)
    below = [band_name(name) for name, low in risk_bands if low < split]
    above = [band_name(name) for name, low in risk_bands if low >= split]
    ax.set_xticks([0, 1], [f"{', '.join(below)}\n(below {split:.1%})",
                           f"{', '.join(above)}\n(from {split:.1%})"])
    value = f" (from {money(value_threshold, currency)})" if value_threshold is not None else ""
    ax.set_yticks([0, 1], [f"high value{value}", "low value"], rotation=90, va="center")
    ax.set_xlabel("Churn probability: risk band (as in the API)")
    ax.set_ylabel("Lifetime value")
    unplaced = int(names.isna().sum())
    note = f"; {unplaced:,} without a value" if unplaced else ""
    ax.set_title(f"Risk matrix: {len(names):,} customers, value at risk "
                 f"{money(total, currency)}{note}")
    colorbar = fig.colorbar(image, ax=ax, pad=0.02, fraction=0.05)
    colorbar.set_label("Share of the portfolio's value at risk", fontsize=8)
    return fig


def value_at_risk_by_segment_figure(
    value_at_risk: np.ndarray | pd.Series,
    segments: np.ndarray | pd.Series,
    quadrant: np.ndarray | pd.Series | None = None,
    currency: str = CURRENCY,
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
    order = [q for q in QUADRANTS if q in table.columns] + [
        q for q in table.columns if q not in QUADRANTS]
    for q in order:
        values = table[q].to_numpy()
        ax.barh(rows, values, left=left, height=0.7, label=QUADRANT_LABELS.get(q, q),
                color=QUADRANT_COLORS.get(q, MODEL_COLOR), alpha=0.85)
        left += values
    for row, (segment, total) in zip(rows, totals.items(), strict=True):
        ax.text(total, row, f"  {money(total, currency)} (n={sizes[segment]:,})", va="center",
                fontsize=8)
    ax.set_yticks(rows, [str(s) for s in table.index], fontsize=9)
    ax.set_xlim(0, float(totals.max()) * 1.4 if len(totals) and totals.max() > 0 else 1.0)
    money_axis(ax.xaxis, currency)
    ax.set_xlabel("Value at risk (churn probability × lifetime value)")
    ax.set_title(f"Value at risk by segment (total {money(totals.sum(), currency)})")
    ax.grid(alpha=0.3, axis="x")
    if len(order) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="quadrant",
                  title_fontsize=8)
    return fig


def score_distribution_figure(
    churn_probability: np.ndarray | pd.Series,
    risk_bands: tuple[tuple[str, float], ...],
    bins: int = 60,
) -> Figure:
    """Histogram of the churn probability with the risk bands shaded and counted (the risk
    matrix's high-risk column starts where the `high` band does). Scores beyond the 99.5th
    percentile are counted in the last bar so a few extreme customers do not squash the rest."""
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
    beyond = int(np.sum(p > upper))
    xlabel = "Churn probability (calibrated)"
    if beyond:
        xlabel += f"; {beyond:,} above {upper:.1%} counted in the last bar"
    ax.set(xlim=(0, upper), ylim=(0, top * 1.1), xlabel=xlabel, ylabel="Customers",
           title=f"Score distribution: {len(p):,} customers, mean {p.mean():.1%}")
    _percent_axis(ax.xaxis, "linear")
    count_axis(ax.yaxis)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper right", fontsize=8, title="risk band: customers", title_fontsize=8)
    return fig


__all__ += ["risk_matrix_figure", "score_distribution_figure", "value_at_risk_by_segment_figure"]
