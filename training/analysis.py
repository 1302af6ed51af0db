"""SHAP analysis of the churn model with the shap library, for training runs and reports.

Serving explains with XGBoost's native TreeSHAP (`ChurnBundle.explain`: `pred_contribs`, in
log-odds); this module turns those same contributions into a `shap.Explanation` and draws the
standard shap views of it, each with the numbers behind it:

- the beeswarm and the mean |SHAP| per feature (`importance`);
- dependence plots (`shap.plots.scatter`) of the top features by mean |SHAP|, with the partial
  dependence on top; for features with a monotone constraint (`FeatureSpec.monotone`) the
  constraint is checked on a grid of the feature holding everything else fixed
  (`monotonicity`);
- the strongest interactions, from XGBoost's SHAP interaction values (`pred_interactions`, on a
  small sample: they cost about 2 x features times the contributions) (`interactions`);
- waterfalls (`shap.plots.waterfall`) of three customers: the highest, median and lowest churn
  probability (`waterfalls`).

`shap_analysis` returns a `ShapAnalysis`: the figures by MLflow file stem and the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import shap
import xgboost as xgb
from matplotlib import colormaps
from matplotlib.figure import Figure

from churn_risk.models.bundle import ChurnBundle, Explanation
from churn_risk.training import plots

__all__ = ["ShapAnalysis", "labels_of", "monotonicity_check", "shap_analysis",
           "shap_explanation"]

#: Rows drawn in the beeswarm and the dependence plots (a seeded sample).
SAMPLE_ROWS = 2000
#: Rows of the interaction values (XGBoost's `pred_interactions` costs ~16 ms per row for a
#: 300-tree depth-6 model on 69 features: 200 rows take ~3 s on one core).
INTERACTION_ROWS = 200
#: Dependence plots drawn (the top features by mean |SHAP|; numeric features only).
TOP_FEATURES = 6
#: Pairs in the interaction bar chart.
TOP_PAIRS = 10
#: The monotone check: customers and grid points per feature.
GRID_ROWS = 200
GRID_POINTS = 25
#: A margin that falls by more than this against the constraint counts as a violation
#: (XGBoost's margins are float32).
TOLERANCE = 1e-6
WATERFALL_CUSTOMERS = ("highest", "median", "lowest")
MISSING = "(missing)"


@dataclass
class ShapAnalysis:
    """The shap views of a bundle's explanations on one frame, and the numbers behind them."""

    #: The sample drawn (rows x features; values = the bundle's contributions, in log-odds).
    explanation: shap.Explanation
    #: feature, label, group, monotone, mean_abs_shap (over the sample), rank: the beeswarm's
    #: order, the largest first.
    importance: pd.DataFrame
    #: feature, label, constraint (+1 / -1), rows, grid_points, max_violation (log-odds),
    #: rows_monotone_share, pd_monotone, holds, shap_spearman: one row per numeric feature with a
    #: monotone constraint.
    monotonicity: pd.DataFrame
    #: Per dependence plot (feature name): the grid and the partial dependence on it
    #: (mean margin over the grid rows, log-odds) - the line drawn over the SHAP values.
    partial_dependence: dict[str, pd.DataFrame]
    #: feature_a, feature_b, label_a, label_b, strength (mean |phi_ab + phi_ba| in log-odds),
    #: mean (signed): every pair, the strongest first.
    interactions: pd.DataFrame
    #: features x features: mean |phi_ij| over the interaction rows (symmetric; the diagonal is
    #: the mean |main effect|).
    interaction_matrix: pd.DataFrame
    #: XGBoost's raw `pred_interactions` of the interaction rows: (rows, features + 1,
    #: features + 1), the last index the bias; summed over the last axis it gives
    #: `pred_contribs`.
    interaction_values: np.ndarray
    #: Positions (in the frame) of the rows of `interaction_values`.
    interaction_rows: np.ndarray
    #: customer (highest / median / lowest), position, churn_probability, margin, base_value,
    #: feature, label, value, contribution: every feature of each waterfall customer, largest
    #: |contribution| first.
    waterfalls: pd.DataFrame
    figures: dict[str, Figure] = field(default_factory=dict)

    def tables(self, top_pairs: int = 30) -> dict[str, pd.DataFrame]:
        """The tables to log (by file stem), the interaction pairs cut to `top_pairs`."""
        return {
            "shap_importance": self.importance,
            "shap_monotonicity": self.monotonicity,
            "shap_interactions": self.interactions.head(top_pairs),
            "shap_waterfalls": self.waterfalls,
        }


def labels_of(bundle: ChurnBundle) -> list[str]:
    """The human-readable label of each feature (the name added where two labels clash)."""
    labels = [s.label for s in bundle.specs]
    clashes = {label for label in labels if labels.count(label) > 1}
    return [f"{s.label} ({s.name})" if s.label in clashes else s.label for s in bundle.specs]


def _display_values(bundle: ChurnBundle, frame: pd.DataFrame) -> np.ndarray:
    """Feature values as shown to people: numbers, category names ("(missing)" when unknown)."""
    out = np.empty((len(frame), len(bundle.specs)), dtype=object)
    for j, spec in enumerate(bundle.specs):
        values = frame[spec.name]
        if spec.kind == "categorical":
            text = values.astype(object)
            known = text.isin(bundle.categories[spec.name])
            out[:, j] = text.where(known, MISSING).astype(str).to_numpy()
        else:
            out[:, j] = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
    return out


def shap_explanation(bundle: ChurnBundle, frame: pd.DataFrame,
                     explanation: Explanation | None = None) -> shap.Explanation:
    """The bundle's TreeSHAP of `frame` as a `shap.Explanation`: values = the contributions
    (log-odds), base_values = the bundle's base value, data = the model input (categories as
    the codes of their training levels, missing as NaN), display_data = the values with
    category names, feature_names = the features' labels."""
    explanation = bundle.explain(frame) if explanation is None else explanation
    return shap.Explanation(
        values=explanation.contributions.to_numpy(),
        base_values=np.full(len(frame), explanation.base_value),
        data=bundle.array(frame),
        display_data=_display_values(bundle, frame),
        feature_names=labels_of(bundle),
    )


def _dmatrix(bundle: ChurnBundle, array: np.ndarray) -> xgb.DMatrix:
    return xgb.DMatrix(array, feature_names=bundle.feature_names, enable_categorical=True,
                       feature_types=["c" if s.kind == "categorical" else "float"
                                      for s in bundle.specs], nthread=1)


def _grid(values: np.ndarray, points: int) -> np.ndarray:
    """The observed distinct values, or `points` quantiles of them (min and max included)."""
    known = np.unique(values[np.isfinite(values)])
    if len(known) <= points:
        return known
    return np.unique(np.quantile(known, np.linspace(0, 1, points)))


def _ice(bundle: ChurnBundle, rows: np.ndarray, j: int, grid: np.ndarray) -> np.ndarray:
    """Margins (rows x grid) with feature `j` set to each grid value, the rest as they are."""
    stacked = np.repeat(rows, len(grid), axis=0)
    stacked[:, j] = np.tile(grid, len(rows))
    return bundle.churn_margin(_dmatrix(bundle, stacked)).reshape(len(rows), len(grid))


def monotonicity_check(bundle: ChurnBundle, frame: pd.DataFrame, contributions: np.ndarray,
                       rows: int = GRID_ROWS, points: int = GRID_POINTS,
                       seed: int = 0) -> pd.DataFrame:
    """Does every monotone constraint hold? For each numeric feature with
    `FeatureSpec.monotone` != 0: the margin of `rows` customers of `frame` on a grid of the
    feature (`points` quantiles of its observed values) holding their other features fixed.

    Columns: feature, label, constraint, rows, grid_points, `max_violation` (the largest fall
    of a margin against the constraint between neighbouring grid points, log-odds; 0 when it
    holds), `rows_monotone_share`, `pd_monotone` (the partial dependence, the mean over the
    rows, is monotone), `holds` (max_violation <= TOLERANCE) and `shap_spearman` (the rank
    correlation of the feature's value and its SHAP value in `contributions`, aligned with
    `frame`: its sign follows the constraint when the feature acts mostly on its own)."""
    from scipy.stats import spearmanr

    array = bundle.array(frame)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(frame), min(rows, len(frame)), replace=False))
    labels = labels_of(bundle)
    out = []
    for j, spec in enumerate(bundle.specs):
        if spec.monotone == 0 or spec.kind == "categorical":
            continue
        grid = _grid(array[:, j], points)
        record = {"feature": spec.name, "label": labels[j], "constraint": int(spec.monotone),
                  "rows": len(chosen), "grid_points": len(grid)}
        if len(grid) < 2 or len(chosen) == 0:
            out.append({**record, "max_violation": 0.0, "rows_monotone_share": 1.0,
                        "pd_monotone": True, "holds": True, "shap_spearman": np.nan})
            continue
        ice = _ice(bundle, array[chosen], j, grid)
        steps = np.sign(spec.monotone) * np.diff(ice, axis=1)
        violation = float(max(0.0, -steps.min()))
        partial = np.sign(spec.monotone) * np.diff(ice.mean(axis=0))
        known = np.isfinite(array[:, j])
        rho = (float(spearmanr(array[known, j], contributions[known, j]).statistic)
               if known.sum() > 2 and np.ptp(array[known, j]) > 0
               and np.ptp(contributions[known, j]) > 0 else np.nan)
        out.append({**record, "max_violation": violation,
                    "rows_monotone_share": float(np.mean(steps.min(axis=1) >= -TOLERANCE)),
                    "pd_monotone": bool(partial.min() >= -TOLERANCE),
                    "holds": violation <= TOLERANCE, "shap_spearman": rho})
    columns = ["feature", "label", "constraint", "rows", "grid_points", "max_violation",
               "rows_monotone_share", "pd_monotone", "holds", "shap_spearman"]
    return pd.DataFrame(out, columns=columns)


def _interactions(bundle: ChurnBundle, array: np.ndarray, labels: list[str]
                  ) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """XGBoost's SHAP interaction values of the rows of `array`, the mean |phi_ij| matrix and
    every pair (i < j) by strength: mean |phi_ij + phi_ji| (the whole interaction, split
    evenly between the two features' rows)."""
    names = bundle.feature_names
    values = bundle.churn.predict(_dmatrix(bundle, array), pred_interactions=True,
                                  validate_features=False)
    phi = values[:, :-1, :-1].astype(np.float64)
    matrix = pd.DataFrame(np.abs(phi).mean(axis=0), index=names, columns=names)
    a, b = np.triu_indices(len(names), k=1)
    pair = phi[:, a, b] + phi[:, b, a]
    pairs = pd.DataFrame({
        "feature_a": np.array(names)[a], "feature_b": np.array(names)[b],
        "label_a": np.array(labels)[a], "label_b": np.array(labels)[b],
        "strength": np.abs(pair).mean(axis=0), "mean": pair.mean(axis=0),
    }).sort_values("strength", ascending=False, kind="stable").reset_index(drop=True)
    return values, matrix, pairs


def _interaction_figure(matrix: pd.DataFrame, pairs: pd.DataFrame, labels: dict[str, str],
                        importance: pd.Series, rows: int, top: int = TOP_PAIRS,
                        max_heat: int = 10) -> Figure:
    """The strongest pairs (bars) next to a heatmap of the pair strengths among their first
    `max_heat` features, by importance (the diagonal, each feature's main effect, left
    blank)."""
    top_pairs = pairs.head(top)
    fig = Figure(figsize=(15.0, 0.4 * max(len(top_pairs), 10) + 3.0), dpi=plots.DPI,
                 layout="tight")
    bars, heat = fig.subplots(1, 2, gridspec_kw={"width_ratios": (1, 1.15)})
    y = np.arange(len(top_pairs))[::-1]
    bars.barh(y, top_pairs["strength"], color=plots.MODEL_COLOR, alpha=0.85, height=0.7)
    bars.set_yticks(y, [f"{a}\n× {b}" for a, b in zip(top_pairs["label_a"],
                                                      top_pairs["label_b"], strict=True)],
                    fontsize=7)
    for yy, v in zip(y, top_pairs["strength"], strict=True):
        bars.text(v, yy, f" {v:.3f}", va="center", fontsize=7)
    bars.set_xlim(0, float(top_pairs["strength"].max() or 1.0) * 1.25)
    bars.set_xlabel("Mean |SHAP interaction| of the pair (log-odds)")
    bars.set_title(f"Strongest interactions ({rows:,} customers)", fontsize=10)
    bars.grid(alpha=0.3, axis="x")

    pairwise = zip(top_pairs["feature_a"], top_pairs["feature_b"], strict=True)
    features = list(dict.fromkeys(f for pair in pairwise for f in pair))[:max_heat]
    features.sort(key=lambda f: -importance.get(f, 0.0))
    strength = 2 * matrix.loc[features, features].to_numpy()  # |phi_ij| + |phi_ji|
    np.fill_diagonal(strength, np.nan)
    vmax = float(np.nanmax(strength)) if np.isfinite(strength).any() else 1.0
    image = heat.imshow(strength, cmap=colormaps["Reds"], vmin=0, vmax=vmax or 1.0)
    for i in range(len(features)):
        for j in range(len(features)):
            if i != j:
                heat.text(j, i, f"{strength[i, j]:.3f}", ha="center", va="center", fontsize=6,
                          color="white" if strength[i, j] > 0.6 * vmax else "black")
    names = [labels.get(f, f) for f in features]
    heat.set_xticks(np.arange(len(features)), names, rotation=45, ha="right", fontsize=7)
    heat.set_yticks(np.arange(len(features)), names, fontsize=7)
    heat.set_title("Pair strengths among these features (diagonal: main effect)", fontsize=10)
    fig.colorbar(image, ax=heat, pad=0.02, fraction=0.045).set_label(
        "Mean |SHAP interaction| (log-odds)", fontsize=8)
    total = matrix.to_numpy().sum()
    share = 1 - np.trace(matrix.to_numpy()) / total if total > 0 else 0.0
    fig.suptitle(f"SHAP interaction values (XGBoost pred_interactions): interactions carry "
                 f"{share:.0%} of the mean |SHAP|", fontsize=11)
    return fig


def _dependence_figure(explanation: shap.Explanation, j: int, partner: int | None,
                       grid: np.ndarray, partial: np.ndarray, check: dict | None) -> Figure:
    """shap's scatter of feature `j` (coloured by `partner`'s value when given) with the
    centred partial dependence on the grid drawn over it."""
    label = explanation.feature_names[j]

    def column(i: int) -> shap.Explanation:
        # built from the arrays: slicing an Explanation with object display data is slow
        return shap.Explanation(values=explanation.values[:, i], data=explanation.data[:, i],
                                feature_names=explanation.feature_names[i])

    color = column(partner) if partner is not None else plots.MODEL_COLOR
    with plots.shap_canvas((8.0, 5.0)) as fig:
        ax = fig.subplots()
        shap.plots.scatter(column(j), color=color, ax=ax, show=False, dot_size=9, alpha=0.6,
                           xmin="percentile(0.5)", xmax="percentile(99.5)",
                           ylabel="SHAP value (log-odds)")
        if len(grid) > 1:
            ax.plot(grid, partial, color="black", lw=2, zorder=5,
                    label="partial dependence (centred, log-odds)")
        if check is not None:
            direction = "increasing" if check["constraint"] > 0 else "decreasing"
            verdict = ("holds" if check["holds"] else
                       f"VIOLATED (by up to {check['max_violation']:.3g} log-odds)")
            title = (f"{label}: constrained {direction}, {verdict} for "
                     f"{check['rows']} customers on a {check['grid_points']}-point grid")
        else:
            title = f"{label}: no monotone constraint"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(label, fontsize=11)
        ax.set_ylabel("SHAP value (log-odds); > 0 raises risk", fontsize=11)
        if len(grid) > 1:
            ax.legend(loc="best", fontsize=8)
        fig.set_layout_engine("tight")
    return fig


def _waterfall_figure(row: shap.Explanation, which: str, probability: float, margin: float,
                      who: str, max_display: int = 12) -> Figure:
    with plots.shap_canvas((8.0, 6.0)) as fig:
        shap.plots.waterfall(row, max_display=max_display, show=False)
        # shap sizes the figure for short names: widen it for the labels (bars and their
        # values are placed in data coordinates, so they only gain room)
        fig.set_size_inches(12.0, fig.get_size_inches()[1])
        fig.suptitle(f"{which.capitalize()} risk: {who}, churn probability {probability:.1%} "
                     f"(margin {margin:+.2f} log-odds; bars in log-odds)", fontsize=10)
        fig.set_layout_engine("tight")
    return fig


def _waterfall_rows(p: np.ndarray) -> dict[str, int]:
    order = np.argsort(p, kind="stable")
    return {"highest": int(order[-1]), "median": int(order[(len(order) - 1) // 2]),
            "lowest": int(order[0])}


def shap_analysis(
    bundle: ChurnBundle,
    frame: pd.DataFrame,
    explanation: Explanation | None = None,
    *,
    sample_rows: int = SAMPLE_ROWS,
    interaction_rows: int = INTERACTION_ROWS,
    top_features: int = TOP_FEATURES,
    figures: bool = True,
    seed: int = 0,
) -> ShapAnalysis:
    """The shap views of the bundle's TreeSHAP on `frame` (feature rows; `explanation`:
    `bundle.explain(frame)` when already computed), with the numbers behind them. Figures by
    MLflow file stem: shap_beeswarm, shap_summary (mean |SHAP| bars),
    shap_dependence_<feature>, shap_interactions, shap_waterfall_<1..3> (highest, median,
    lowest risk)."""
    if len(frame) == 0:
        raise ValueError("frame has no rows")
    explanation = bundle.explain(frame) if explanation is None else explanation
    names = bundle.feature_names
    labels = labels_of(bundle)
    label_of = dict(zip(names, labels, strict=True))
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(frame), min(sample_rows, len(frame)), replace=False))
    rows = frame.iloc[sample]
    contributions = explanation.contributions.to_numpy()
    sampled = shap.Explanation(
        values=contributions[sample],
        base_values=np.full(len(sample), explanation.base_value),
        data=bundle.array(rows),
        display_data=_display_values(bundle, rows),
        feature_names=labels,
    )

    mean_abs = np.abs(sampled.values).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")
    importance = pd.DataFrame({
        "feature": np.array(names)[order], "label": np.array(labels)[order],
        "group": [bundle.specs[i].group for i in order],
        "monotone": [bundle.specs[i].monotone for i in order],
        "mean_abs_shap": mean_abs[order], "rank": np.arange(1, len(order) + 1),
    })

    # Interactions, on a subsample of the drawn rows.
    inter_pos = np.sort(rng.choice(sample, min(interaction_rows, len(sample)), replace=False))
    if len(inter_pos):
        values, matrix, pairs = _interactions(bundle, bundle.array(frame.iloc[inter_pos]),
                                              labels)
    else:
        values = np.zeros((0, len(names) + 1, len(names) + 1), dtype=np.float32)
        matrix = pd.DataFrame(0.0, index=names, columns=names)
        pairs = pd.DataFrame(columns=["feature_a", "feature_b", "label_a", "label_b",
                                      "strength", "mean"])

    monotonicity = monotonicity_check(bundle, rows, sampled.values, seed=seed)
    checks = {r["feature"]: r for r in monotonicity.to_dict("records")}

    # Dependence plots: the top numeric features, and the most important constrained feature.
    numeric = [i for i in order if bundle.specs[i].kind != "categorical"]
    plotted = numeric[:top_features]
    constrained = [i for i in numeric if bundle.specs[i].monotone != 0]
    if constrained and not any(i in constrained for i in plotted):
        plotted.append(constrained[0])
    partial_dependence: dict[str, pd.DataFrame] = {}
    array = sampled.data
    grid_rows = array[np.sort(rng.choice(len(array), min(GRID_ROWS, len(array)), replace=False))]
    for j in plotted:
        grid = _grid(array[:, j], GRID_POINTS)
        if len(grid) > 1:
            curve = _ice(bundle, grid_rows.copy(), j, grid).mean(axis=0)
            known = np.isfinite(array[:, j])
            centre = float(np.mean(np.interp(array[known, j], grid, curve))) if known.any() \
                else float(curve.mean())
            curve = curve - centre
        else:
            curve = np.zeros(len(grid))
        partial_dependence[names[j]] = pd.DataFrame({"value": grid, "partial_dependence": curve})

    p = bundle.calibrator(explanation.margin)
    picks = _waterfall_rows(p)
    records = []
    for which, pos in picks.items():
        row_values = contributions[pos]
        display = _display_values(bundle, frame.iloc[[pos]])[0]
        for j in np.argsort(-np.abs(row_values), kind="stable"):
            records.append({
                "customer": which, "position": pos,
                "customer_id": frame["customer_id"].iloc[pos] if "customer_id" in frame else None,
                "churn_probability": float(p[pos]), "margin": float(explanation.margin[pos]),
                "base_value": explanation.base_value, "feature": names[j], "label": labels[j],
                "value": display[j], "contribution": float(row_values[j]),
            })
    waterfalls = pd.DataFrame(records)

    result = ShapAnalysis(sampled, importance, monotonicity, partial_dependence, pairs, matrix,
                          values, inter_pos, waterfalls)
    if not figures:
        return result

    figs = result.figures
    figs["shap_beeswarm"] = plots.shap_beeswarm_figure(sampled)
    figs["shap_summary"] = plots.shap_importance_figure(sampled)
    for j in plotted:
        partners = matrix.iloc[j].drop(index=names[j])
        partners = partners[[bundle.specs[names.index(f)].kind != "categorical"
                             for f in partners.index]]
        partner = (names.index(partners.idxmax())
                   if len(partners) and partners.max() > 0 else None)
        curve = partial_dependence[names[j]]
        figs[f"shap_dependence_{names[j]}"] = _dependence_figure(
            sampled, j, partner, curve["value"].to_numpy(),
            curve["partial_dependence"].to_numpy(), checks.get(names[j]))
    if len(pairs):
        figs["shap_interactions"] = _interaction_figure(
            matrix, pairs, label_of, importance.set_index("feature")["mean_abs_shap"],
            len(inter_pos))
    for n, (which, pos) in enumerate(picks.items(), start=1):
        row = shap.Explanation(
            values=contributions[pos], base_values=explanation.base_value,
            data=bundle.array(frame.iloc[[pos]])[0],
            display_data=np.array([MISSING if isinstance(v, float) and np.isnan(v) else v
                                   for v in _display_values(bundle, frame.iloc[[pos]])[0]],
                                  dtype=object),
            feature_names=labels)
        who = (f"customer {frame['customer_id'].iloc[pos]}" if "customer_id" in frame
               else f"row {pos}")
        figs[f"shap_waterfall_{n}"] = _waterfall_figure(
            row, which, float(p[pos]), float(explanation.margin[pos]), who)
    return result
