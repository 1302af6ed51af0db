"""Campaign figures (matplotlib Figure, never pyplot; see training/plots.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from churn_risk.training.plots import DPI, MODEL_COLOR, REFERENCE_COLOR

if TYPE_CHECKING:
    from churn_risk.training.campaigns.effects import CampaignEvaluation
    from churn_risk.training.campaigns.uplift import UpliftModel

__all__ = ["forest_figure", "qini_figure"]


def _figure(figsize: tuple[float, float]) -> Figure:
    return Figure(figsize=figsize, dpi=DPI, layout="tight")


def forest_figure(evaluation: CampaignEvaluation) -> Figure:
    """Uplift (left) and relative churn reduction (right) with their intervals: one row per
    campaign (circles; a not-evaluable campaign shows its reason) and per pooled offer
    (diamonds)."""
    rows = [(f"{r.campaign_id} ({r.offer})", r, "o") for r in
            evaluation.campaigns.itertuples(index=False)]
    rows += [(f"pooled: {r.offer}", r, "D") for r in evaluation.offers.itertuples(index=False)]
    fig = _figure((10.0, max(3.5, 1.4 + 0.42 * len(rows))))
    left, right = fig.subplots(1, 2, sharey=True)
    ys = np.arange(len(rows))[::-1]
    pct = int(round(evaluation.confidence * 100))
    for ax, column, title in (
        (left, "uplift", "Retention uplift, treatment - control (pp)"),
        (right, "relative_churn_reduction", "Relative churn reduction (%)"),
    ):
        for y, (_, r, marker) in zip(ys, rows, strict=True):
            _forest_point(ax, y, r, column, marker)
        ax.axvline(0, color=REFERENCE_COLOR, ls="--", lw=1)
        ax.set_xlabel(f"{title}, {pct}% CI")
        ax.grid(alpha=0.3, axis="x")
    left.set_yticks(ys, [label for label, _, _ in rows], fontsize=8)
    fig.suptitle(f"Campaign effects over {evaluation.horizon_days} days "
                 f"({evaluation.churn_definition} churn definition)", fontsize=11)
    return fig


def _forest_point(ax, y: float, r, column: str, marker: str, scale: float = 100.0) -> None:
    """One estimate of `column` with its interval (in percent), or the reason there is none."""
    value = getattr(r, column)
    if not np.isfinite(value):
        ax.text(0, y, f"not evaluable: {r.reason}", va="center", ha="center",
                fontsize=7, color=REFERENCE_COLOR)
        return
    low, high = getattr(r, f"{column}_low"), getattr(r, f"{column}_high")
    ax.errorbar(scale * value, y, xerr=[[scale * (value - low)], [scale * (high - value)]],
                fmt=marker, color=MODEL_COLOR if marker == "o" else "tab:orange",
                ms=6, capsize=3, lw=1.5)


def qini_figure(uplift: UpliftModel) -> Figure:
    """Qini curves of the uplift model and of the baseline ranking on the holdout, and the
    observed uplift per decile of each ranking."""
    fig = _figure((11.0, 4.8))
    left, right = fig.subplots(1, 2)
    colors = {"uplift_model": MODEL_COLOR, "baseline": "tab:orange"}
    for name, (x, y) in uplift.curves.items():
        left.plot(x, 100 * y, lw=2, color=colors[name],
                  label=f"{name.replace('_', ' ')} (Qini {uplift.qini[name]:+.4f})")
    x, y = next(iter(uplift.curves.values()))
    left.plot([0, 1], [0, 100 * y[-1]], ls="--", lw=1, color=REFERENCE_COLOR, label="random")
    left.set(xlabel="Share of customers targeted (highest score first)",
             ylabel="Incremental retention (pp of the treated group)",
             title=f"Qini curves ({len(uplift.holdout):,} out-of-fold rows)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8, loc="best")
    width = 0.4
    for i, (name, part) in enumerate(uplift.deciles.groupby("ranking", sort=False)):
        right.bar(part["decile"] + (i - 0.5) * width, 100 * part["observed_uplift"], width,
                  color=colors.get(name, MODEL_COLOR), alpha=0.8, label=name.replace("_", " "))
    right.axhline(0, color=REFERENCE_COLOR, lw=1)
    right.set(xticks=np.arange(1, 11), xlabel="Decile of the ranking (1 = highest score)",
              ylabel="Observed uplift (pp)", title="Observed uplift by decile")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8)
    return fig
