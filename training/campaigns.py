"""What retention campaigns achieved, measured on their randomised treatment / control groups.

The `campaigns` table records, per campaign, who was targeted and whether they were in the
`treatment` group (received the offer) or the `control` group (held out at random). Comparing the
two groups' churn over the label horizon measures the campaign's causal effect; nothing here is a
model of who *would* have churned.

Per campaign
    The send date is the campaign's earliest timestamp; the outcome is observed as of
    ``as_of = send date (normalised) + 1 day``, over ``[as_of, as_of + horizon_days)``, with the
    churn definition training uses (`features.labels.churn_labels`: the company's `labels`
    table, else no active subscription at the horizon end, else no purchase within it).
    Customers already gone at `as_of` are excluded exactly as `features.labels.population`
    excludes them from scoring; a customer with rows in both groups of one campaign is excluded
    too (the assignment is unknown). Reported per campaign:

    - `retention_treatment`, `retention_control`: shares of each group not churned;
    - `uplift` = retention_treatment - retention_control (probability points), with the Newcombe
      hybrid-score interval (Newcombe 1998, method 10: Wilson intervals of each proportion
      combined; well behaved for the small control groups campaigns keep, unlike Wald);
    - `relative_churn_reduction` = 1 - churn_treatment / churn_control: the share of would-be
      churners the campaign kept (the action's "success rate"), with the log risk-ratio (Katz)
      interval (0.5 added to the churner counts when one of them is zero);
    - `evaluable`: False, with a `reason`, when the horizon is not complete in the data, a group
      is empty or no outcome is known. Such campaigns are listed with NaN figures, never dropped.

Per segment
    The same figures per campaign x value of each segment column (default: `segment`).

Per offer
    Campaigns with the same `offer` are pooled, stratified by campaign with Mantel-Haenszel
    weights (``n_t n_c / n`` per campaign): the risk difference with the Greenland-Robins (1985)
    large-strata variance and the Mantel-Haenszel risk ratio with the Greenland-Robins variance of
    its logarithm. Stratifying keeps campaigns with different base rates and treatment shares from
    confounding the pooled figure (Simpson's paradox). `success_rates` turns the pooled relative
    churn reduction into the success rate of the next-best-action catalogue
    (`models.portfolio.with_measured_success`).

Uplift model
    Where the pooled control groups are large enough, `fit_uplift_model` fits a two-model
    (T-learner) XGBoost on the lifecycle features at the send date (read strictly before it, so
    the campaign itself is not in them): one churn model per group, predicted uplift =
    p_control - p_treatment. It is evaluated on held-out customers (cross-fitting: every row is
    scored by models that never saw its customer) with the Qini coefficient and the observed
    uplift per decile, next to the simple ranking "baseline churn risk x pooled relative churn
    reduction of the campaign's offer". With the few hundred control customers a campaign keeps,
    the realised Qini is noisy: the bootstrap interval of the difference says whether the model
    beats the baseline at all. Customers with a predicted uplift <= 0 are
    labelled "leave alone" (the offer is not expected to help, or hurts), the others
    "persuadable".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from matplotlib.figure import Figure
from scipy.stats import norm

from churn_risk.features.config import FeatureConfig
from churn_risk.features.labels import (
    churn_labels,
    data_end,
    horizon_complete,
    outcome_target,
    population,
    resolve_target,
)
from churn_risk.features.lifecycle import (
    DAY,
    FeatureSpec,
    PreparedData,
    build_features,
    feature_specs,
    to_timestamp,
)
from churn_risk.features.target import Target, TargetKind
from churn_risk.models.bundle import encode_features
from churn_risk.training.fit import category_levels
from churn_risk.training.metrics import MISSING_SEGMENT
from churn_risk.training.plots import DPI, MODEL_COLOR, REFERENCE_COLOR

__all__ = [
    "PERSUADABLE",
    "LEAVE_ALONE",
    "CampaignEvaluation",
    "NotEnoughControls",
    "UpliftModel",
    "evaluate_campaigns",
    "fit_uplift_model",
    "forest_figure",
    "log_campaign_evaluation",
    "mantel_haenszel",
    "newcombe_interval",
    "qini_coefficient",
    "qini_curve",
    "qini_figure",
    "risk_ratio_interval",
    "success_rates",
    "wilson_interval",
]

PERSUADABLE = "persuadable"
LEAVE_ALONE = "leave alone"
#: The offer name under which campaigns without an `offer` are pooled (never a success rate).
MISSING_OFFER = "(missing)"
POOLING_METHOD = (
    "Mantel-Haenszel, stratified by campaign (risk difference: Greenland-Robins variance; "
    "risk ratio: Greenland-Robins variance of log RR)"
)

# ------------------------------------------------------------------------------------------------
# Statistics: pure functions of counts.


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (no continuity correction); NaNs when n == 0."""
    if n <= 0:
        return float("nan"), float("nan")
    z = _z(confidence)
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denominator = 1 + z * z / n
    return float((centre - half) / denominator), float((centre + half) / denominator)


def newcombe_interval(
    x1: float, n1: float, x2: float, n2: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(p1 - p2, low, high): Newcombe's hybrid score interval for a difference of independent
    proportions (Newcombe 1998, method 10). NaNs when a group is empty."""
    if n1 <= 0 or n2 <= 0:
        return float("nan"), float("nan"), float("nan")
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, confidence)
    l2, u2 = wilson_interval(x2, n2, confidence)
    d = p1 - p2
    low = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return float(d), float(low), float(high)


def risk_ratio_interval(
    a: float, n1: float, c: float, n0: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(risk ratio, low, high) of a/n1 over c/n0 with the log (Katz) interval.

    When a is zero, 0.5 is added to every count for the interval (the point estimate stays 0).
    NaNs when a group is empty or c == 0 (the ratio is undefined)."""
    if n1 <= 0 or n0 <= 0 or c <= 0:
        return float("nan"), float("nan"), float("nan")
    rr = (a / n1) / (c / n0)
    if a == 0:
        a, c, n1, n0 = a + 0.5, c + 0.5, n1 + 0.5, n0 + 0.5
    z = _z(confidence)
    se = np.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n0)
    centre = np.log((a / n1) / (c / n0))
    return float(rr), float(np.exp(centre - z * se)), float(np.exp(centre + z * se))


def mantel_haenszel(
    a: Sequence[float],
    n1: Sequence[float],
    c: Sequence[float],
    n0: Sequence[float],
    confidence: float = 0.95,
) -> dict[str, float]:
    """Pooled risk difference and risk ratio over strata (event counts a of n1 exposed, c of n0
    unexposed per stratum), Mantel-Haenszel weights ``n1 n0 / N``.

    - ``risk_difference`` = sum w (a/n1 - c/n0) / sum w, variance
      sum w^2 (p1 (1 - p1) / n1 + p0 (1 - p0) / n0) / (sum w)^2 (Greenland & Robins 1985);
    - ``risk_ratio`` = sum (a n0 / N) / sum (c n1 / N), variance of its log
      sum ((n1 n0 (a + c) - a c N) / N^2) / (sum a n0 / N * sum c n1 / N) (Greenland & Robins
      1985). NaN when there are no events in a group.

    Strata with an empty group carry no information and are skipped."""
    a, n1, c, n0 = (np.asarray(v, dtype=float) for v in (a, n1, c, n0))
    keep = (n1 > 0) & (n0 > 0)
    a, n1, c, n0 = a[keep], n1[keep], c[keep], n0[keep]
    nan = float("nan")
    out = {"risk_difference": nan, "risk_difference_low": nan, "risk_difference_high": nan,
           "risk_ratio": nan, "risk_ratio_low": nan, "risk_ratio_high": nan}
    if not len(a):
        return out
    z = _z(confidence)
    big_n = n1 + n0
    w = n1 * n0 / big_n
    p1, p0 = a / n1, c / n0
    rd = float(np.sum(w * (p1 - p0)) / np.sum(w))
    se_rd = float(np.sqrt(np.sum(w**2 * (p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0))) / np.sum(w))
    out.update(risk_difference=rd, risk_difference_low=rd - z * se_rd,
               risk_difference_high=rd + z * se_rd)
    r = float(np.sum(a * n0 / big_n))
    s = float(np.sum(c * n1 / big_n))
    if s > 0:
        out["risk_ratio"] = r / s
    if r > 0 and s > 0:
        var_log = float(np.sum((n1 * n0 * (a + c) - a * c * big_n) / big_n**2)) / (r * s)
        se = np.sqrt(max(var_log, 0.0))
        out.update(risk_ratio_low=float(np.exp(np.log(r / s) - z * se)),
                   risk_ratio_high=float(np.exp(np.log(r / s) + z * se)))
    return out


def _effect(n_t: int, churned_t: int, n_c: int, churned_c: int,
            confidence: float) -> dict[str, float]:
    """Every figure of a treatment / control comparison from its four counts."""
    nan = float("nan")
    uplift, low, high = newcombe_interval(n_t - churned_t, n_t, n_c - churned_c, n_c, confidence)
    rr, rr_low, rr_high = risk_ratio_interval(churned_t, n_t, churned_c, n_c, confidence)
    return {
        "n_treatment": int(n_t),
        "n_control": int(n_c),
        "churned_treatment": int(churned_t),
        "churned_control": int(churned_c),
        "retention_treatment": 1 - churned_t / n_t if n_t else nan,
        "retention_control": 1 - churned_c / n_c if n_c else nan,
        "uplift": uplift,
        "uplift_low": low,
        "uplift_high": high,
        "relative_churn_reduction": 1 - rr,
        "relative_churn_reduction_low": 1 - rr_high,
        "relative_churn_reduction_high": 1 - rr_low,
    }


_EFFECT_COLUMNS = list(_effect(0, 0, 0, 0, 0.95))


# ------------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class CampaignEvaluation:
    """Measured effects of the campaigns in a data set (see the module docstring).

    `campaigns`: one row per campaign (`campaign_id`, `offer`, `sent_at`, `as_of`, `horizon_end`,
    `targeted` customers, `excluded` ones (gone at `as_of`, in both groups, or without a known
    outcome), `n_treatment` / `n_control` and `churned_treatment` / `churned_control` among the
    compared, retention per group, `uplift` and `relative_churn_reduction` with `_low` / `_high`
    bounds, `evaluable`, `reason`). `segments`: the same per campaign x `segment_column` x
    `segment`. `offers`: pooled per offer (`campaigns` lists the evaluable campaigns pooled).
    `outcomes`: one row per customer x campaign compared (`customer_id`, `campaign_id`, `offer`,
    `group`, `sent_at`, `as_of`, `churned`, and `_pos`, the row of the customer in
    `prep.customers`): the customers the figures count."""

    campaigns: pd.DataFrame
    segments: pd.DataFrame
    offers: pd.DataFrame
    outcomes: pd.DataFrame
    confidence: float
    horizon_days: int
    churn_definition: str
    pooling_method: str = POOLING_METHOD

    @property
    def evaluable(self) -> pd.DataFrame:
        return self.campaigns.loc[self.campaigns["evaluable"]]

    def summary_rows(self, level: str = "campaign") -> list[dict[str, str]]:
        """Formatted rows for a printed table: `level` is "campaign", "offer" or "segment"."""
        frames = {"campaign": self.campaigns, "offer": self.offers, "segment": self.segments}
        if level not in frames:
            raise ValueError(f"level must be one of {sorted(frames)}, got {level!r}")
        pct = int(round(self.confidence * 100))
        rows = []
        for r in frames[level].itertuples(index=False):
            row: dict[str, str] = {}
            if level == "offer":
                row["offer"] = str(r.offer)
                row["campaigns"] = str(r.campaigns) or "-"
            else:
                row["campaign"] = str(r.campaign_id)
                row["offer"] = str(r.offer)
                if level == "segment":
                    row["segment"] = f"{r.segment_column}={r.segment}"
                else:
                    row["sent"] = f"{pd.Timestamp(r.sent_at):%Y-%m-%d}"
            row["treatment / control"] = f"{r.n_treatment:,} / {r.n_control:,}"
            row["retention T / C"] = (
                f"{_pct(r.retention_treatment)} / {_pct(r.retention_control)}"
            )
            row[f"uplift [{pct}% CI]"] = _with_ci(r.uplift, r.uplift_low, r.uplift_high, "pp")
            row[f"churn reduction [{pct}% CI]"] = _with_ci(
                r.relative_churn_reduction, r.relative_churn_reduction_low,
                r.relative_churn_reduction_high, "%",
            )
            row["status"] = "ok" if r.evaluable else f"not evaluable: {r.reason}"
            rows.append(row)
        return rows


def _pct(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.1%}"


def _with_ci(x: float, low: float, high: float, unit: str) -> str:
    if not np.isfinite(x):
        return "-"
    if unit == "pp":
        return f"{100 * x:+.1f} pp [{100 * low:+.1f}, {100 * high:+.1f}]"
    return f"{x:.0%} [{low:.0%}, {high:.0%}]"


def _campaign_table(prep: PreparedData) -> pd.DataFrame:
    if not prep.has("campaigns"):
        return pd.DataFrame(columns=["customer_id", "campaign_id", "timestamp", "group", "offer",
                                     "_pos"])
    frame = prep.events["campaigns"]
    for optional in ("group", "offer"):
        if optional not in frame:
            frame = frame.assign(**{optional: None})
    return frame


def _first(values: pd.Series) -> object:
    known = values.dropna()
    return known.iloc[0] if len(known) else None


def campaign_target(prep: PreparedData, horizon_days: int = 90) -> Target:
    """The default outcome of a campaign: the data's own churn definition (no active
    subscription at the end, else no purchase) over `horizon_days` after the send."""
    kind = (TargetKind.subscription_end if prep.has("subscriptions")
            else TargetKind.no_purchase)
    return resolve_target(prep, kind, horizon_days)


def evaluate_campaigns(
    prep: PreparedData,
    cfg: FeatureConfig = FeatureConfig(),
    target: Target | None = None,
    segment_columns: Sequence[str] = ("segment",),
    confidence: float = 0.95,
) -> CampaignEvaluation:
    """Treatment vs control retention of every campaign, per segment and pooled per offer,
    over `target`'s horizon and definition (default `campaign_target`; the company's labels only
    exist at their own dates, so a `labels` target is measured with the data's own definition,
    see `labels.outcome_target`)."""
    _z(confidence)
    target = outcome_target(prep, target) if target is not None else campaign_target(prep)
    table = _campaign_table(prep)
    end = data_end(prep)
    definition = target.kind.value
    horizon = target.horizon_days * DAY
    segment_columns = [s for s in segment_columns if s in prep.customers]
    rows, segment_rows, outcome_frames = [], [], []
    for campaign_id, rows_of in table.groupby("campaign_id", sort=False):
        sent_at = to_timestamp(rows_of["timestamp"].min())
        as_of = to_timestamp(pd.Timestamp(sent_at).normalize() + pd.Timedelta(days=1))
        offer = _first(rows_of["offer"])
        base = {
            "campaign_id": campaign_id,
            "offer": MISSING_OFFER if offer is None else str(offer),
            "sent_at": pd.Timestamp(sent_at),
            "as_of": pd.Timestamp(as_of),
            "horizon_end": pd.Timestamp(as_of + horizon),
        }
        outcome, excluded, reason = _outcomes(prep, rows_of, as_of, target, end)
        counts = _counts(outcome)
        figures = _effect(*counts, confidence)
        if reason is None:
            reason = _not_evaluable(counts)
        if reason is not None:
            figures = _blank(figures)
        rows.append({**base, "targeted": int(rows_of["customer_id"].nunique()),
                     "excluded": excluded, **figures, "evaluable": reason is None,
                     "reason": reason or ""})
        outcome_frames.append(outcome.assign(
            campaign_id=campaign_id, offer=base["offer"], sent_at=base["sent_at"],
            as_of=base["as_of"],
        ))
        for column in segment_columns:
            values = prep.customers[column].astype(object).to_numpy()[outcome["_pos"].to_numpy()]
            names = pd.Series(values).where(pd.notna(values), MISSING_SEGMENT).astype(str)
            for name in sorted(names.unique()):
                part = outcome.loc[(names == name).to_numpy()]
                part_counts = _counts(part)
                part_reason = reason or _not_evaluable(part_counts)
                part_figures = _effect(*part_counts, confidence)
                if part_reason is not None:
                    part_figures = _blank(part_figures)
                segment_rows.append({
                    "campaign_id": campaign_id, "offer": base["offer"], "segment_column": column,
                    "segment": name, **part_figures, "evaluable": part_reason is None,
                    "reason": part_reason or "",
                })
    campaigns = pd.DataFrame(rows, columns=[
        "campaign_id", "offer", "sent_at", "as_of", "horizon_end", "targeted", "excluded",
        *_EFFECT_COLUMNS, "evaluable", "reason",
    ])
    if len(campaigns):
        campaigns = campaigns.sort_values(["sent_at", "campaign_id"], kind="stable")
        campaigns = campaigns.reset_index(drop=True)
    segments = pd.DataFrame(segment_rows, columns=[
        "campaign_id", "offer", "segment_column", "segment", *_EFFECT_COLUMNS, "evaluable",
        "reason",
    ])
    outcome_columns = ["customer_id", "campaign_id", "offer", "group", "sent_at", "as_of",
                       "churned", "_pos"]
    outcomes = (pd.concat(outcome_frames, ignore_index=True)[outcome_columns]
                if outcome_frames else pd.DataFrame(columns=outcome_columns))
    return CampaignEvaluation(
        campaigns=campaigns,
        segments=segments,
        offers=_pool_offers(campaigns, confidence),
        outcomes=outcomes,
        confidence=confidence,
        horizon_days=target.horizon_days,
        churn_definition=definition,
    )


def _outcomes(
    prep: PreparedData,
    rows_of: pd.DataFrame,
    as_of: np.datetime64,
    target: Target,
    end: np.datetime64,
) -> tuple[pd.DataFrame, int, str | None]:
    """(customer_id, group, churned, _pos) of the campaign's customers still customers at
    `as_of` with a known outcome; the number excluded; a reason when nothing can be measured."""
    groups = rows_of.groupby("customer_id", sort=False)["group"].agg(
        lambda g: g.iloc[0] if g.nunique(dropna=False) == 1 else "ambiguous"
    )
    groups = groups.loc[groups.isin(("treatment", "control"))]
    eligible = population(prep, as_of, target)
    customers = eligible.loc[eligible["customer_id"].isin(groups.index)]
    churned = churn_labels(prep, customers, as_of, target, end)
    known = ~np.isnan(churned)
    outcome = pd.DataFrame({
        "customer_id": customers["customer_id"].to_numpy()[known],
        "group": groups.reindex(customers["customer_id"].to_numpy()[known]).to_numpy(),
        "churned": churned[known],
        "_pos": customers["_pos"].to_numpy()[known],
    })
    excluded = int(rows_of["customer_id"].nunique() - len(outcome))
    reason = None
    if not horizon_complete(prep, as_of, target, end):
        reason = (f"horizon incomplete: the outcome needs data until "
                  f"{pd.Timestamp(as_of + target.horizon_days * DAY):%Y-%m-%d}, "
                  f"the data end at {pd.Timestamp(end):%Y-%m-%d}")
    elif len(customers) and not known.any():
        reason = f"no churn outcome known at {pd.Timestamp(as_of):%Y-%m-%d} ({target.kind})"
    elif not rows_of["group"].notna().any():
        reason = "no treatment/control groups recorded"
    return outcome, excluded, reason


def _counts(outcome: pd.DataFrame) -> tuple[int, int, int, int]:
    treated = (outcome["group"] == "treatment").to_numpy()
    churned = outcome["churned"].to_numpy(dtype=float) == 1.0
    return (int(treated.sum()), int((churned & treated).sum()),
            int((~treated).sum()), int((churned & ~treated).sum()))


def _not_evaluable(counts: tuple[int, int, int, int]) -> str | None:
    n_t, _, n_c, _ = counts
    if n_t == 0 and n_c == 0:
        return "no customer left to compare"
    if n_c == 0:
        return "empty control group"
    if n_t == 0:
        return "empty treatment group"
    return None


def _blank(figures: dict[str, float]) -> dict[str, float]:
    counts = {"n_treatment", "n_control", "churned_treatment", "churned_control"}
    return {k: (v if k in counts else float("nan")) for k, v in figures.items()}


def _pool_offers(campaigns: pd.DataFrame, confidence: float) -> pd.DataFrame:
    columns = ["offer", "campaigns", "n_campaigns", "n_treatment", "n_control",
               "churned_treatment", "churned_control", "retention_treatment",
               "retention_control", "uplift", "uplift_low", "uplift_high",
               "relative_churn_reduction", "relative_churn_reduction_low",
               "relative_churn_reduction_high", "evaluable", "reason", "method"]
    rows = []
    for offer, group in campaigns.groupby("offer", sort=True):
        ok = group.loc[group["evaluable"]]
        n_t, n_c = ok["n_treatment"].to_numpy(), ok["n_control"].to_numpy()
        ch_t, ch_c = ok["churned_treatment"].to_numpy(), ok["churned_control"].to_numpy()
        # pooled on churn (a = churners among treated); uplift = - churn risk difference
        mh = mantel_haenszel(ch_t, n_t, ch_c, n_c, confidence)
        row = {
            "offer": offer,
            "campaigns": ", ".join(map(str, ok["campaign_id"])),
            "n_campaigns": len(ok),
            "n_treatment": int(n_t.sum()),
            "n_control": int(n_c.sum()),
            "churned_treatment": int(ch_t.sum()),
            "churned_control": int(ch_c.sum()),
            "retention_treatment": 1 - ch_t.sum() / n_t.sum() if len(ok) else np.nan,
            "retention_control": 1 - ch_c.sum() / n_c.sum() if len(ok) else np.nan,
            "uplift": -mh["risk_difference"],
            "uplift_low": -mh["risk_difference_high"],
            "uplift_high": -mh["risk_difference_low"],
            "relative_churn_reduction": 1 - mh["risk_ratio"],
            "relative_churn_reduction_low": 1 - mh["risk_ratio_high"],
            "relative_churn_reduction_high": 1 - mh["risk_ratio_low"],
            "evaluable": len(ok) > 0,
            "reason": "" if len(ok) else "no evaluable campaign",
            "method": POOLING_METHOD,
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def success_rates(evaluation: CampaignEvaluation, min_control: int = 100) -> dict[str, dict]:
    """Per offer, the measured success rate of the action: the pooled relative churn reduction
    (share of would-be churners kept), clipped to [0, 1], with its interval.

    Only offers with an evaluable pooled estimate, at least `min_control` control customers and a
    finite estimate get a rate; campaigns without an offer never do. Each value is the dict
    `models.portfolio.with_measured_success` reads: ``rate``, ``low``, ``high``, ``campaigns``
    (list of ids), plus ``n_treatment``, ``n_control``, ``confidence`` and ``method``."""
    out: dict[str, dict] = {}
    for r in evaluation.offers.itertuples(index=False):
        if (r.offer == MISSING_OFFER or not r.evaluable or r.n_control < min_control
                or not np.isfinite(r.relative_churn_reduction)):
            continue
        out[str(r.offer)] = {
            "rate": float(np.clip(r.relative_churn_reduction, 0.0, 1.0)),
            "low": float(np.clip(r.relative_churn_reduction_low, 0.0, 1.0)),
            "high": float(np.clip(r.relative_churn_reduction_high, 0.0, 1.0)),
            "campaigns": [c for c in str(r.campaigns).split(", ") if c],
            "n_treatment": int(r.n_treatment),
            "n_control": int(r.n_control),
            "confidence": evaluation.confidence,
            "method": r.method,
        }
    return out


# ------------------------------------------------------------------------------------------------
# Uplift model


class NotEnoughControls(ValueError):
    """Too few control customers for an uplift model (the reason is the message)."""


def qini_curve(
    score: np.ndarray, treated: np.ndarray, churned: np.ndarray,
    weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve of a ranking: (share of customers targeted, incremental retention).

    Customers are targeted by decreasing `score`. After the top k, the incremental number of
    retained customers is ``R_t(k) - R_c(k) N_t(k) / N_c(k)`` (Radcliffe 2007), reported as a
    share of all treated customers, so the curve ends at the overall uplift (retention treatment
    - control). Tied scores form one block (a straight segment); `weight` counts rows (bootstrap).
    """
    score = np.asarray(score, dtype=float)
    treated = np.asarray(treated, dtype=bool)
    retained = 1.0 - np.asarray(churned, dtype=float)
    w = np.ones(len(score)) if weight is None else np.asarray(weight, dtype=float)
    order = np.argsort(-score, kind="stable")
    s, t, r, w = score[order], treated[order], retained[order], w[order]
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1] if len(s) else np.zeros(0, int)
    n_t = np.cumsum(w * t)[ends]
    n_c = np.cumsum(w * ~t)[ends]
    r_t = np.cumsum(w * t * r)[ends]
    r_c = np.cumsum(w * ~t * r)[ends]
    with np.errstate(invalid="ignore", divide="ignore"):
        incremental = np.where(n_c > 0, r_t - r_c * n_t / np.maximum(n_c, 1e-12), 0.0)
    total_t = n_t[-1] if len(n_t) and n_t[-1] > 0 else np.nan
    x = np.r_[0.0, np.cumsum(w)[ends] / w.sum()] if len(s) else np.array([0.0])
    return x, np.r_[0.0, incremental / total_t]


def qini_coefficient(
    score: np.ndarray, treated: np.ndarray, churned: np.ndarray,
    weight: np.ndarray | None = None,
) -> float:
    """Area between the Qini curve and the random-targeting line (same end point): > 0 when the
    ranking puts the customers the campaign helps first. Units: retention points x share."""
    x, y = qini_curve(score, treated, churned, weight)
    return float(np.trapezoid(y - x * y[-1], x))


@dataclass(frozen=True)
class UpliftModel:
    """T-learner: churn models for the treatment and the control group on the lifecycle features
    at the send date; predicted uplift (retention gain) = p_control - p_treatment.

    `holdout`: every compared customer x campaign row with its out-of-fold predictions (see
    `fit_uplift_model`): `uplift`, `baseline` (baseline churn risk x the offer's pooled relative
    churn reduction measured on the fold's training customers), `label` (persuadable / leave
    alone), `group`, `churned`, `fold`. `deciles`: observed
    uplift per decile of each ranking (`ranking` = "uplift_model" | "baseline", decile 1 = highest
    score). `qini`: Qini coefficients of both rankings, their difference and its bootstrap
    interval (customers resampled)."""

    treatment: xgb.Booster
    control: xgb.Booster
    specs: list[FeatureSpec]
    categories: dict[str, list[str]]
    holdout: pd.DataFrame
    deciles: pd.DataFrame
    qini: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    notes: list[str] = field(default_factory=list)

    def predict_uplift(self, frame: pd.DataFrame) -> np.ndarray:
        dm = xgb.DMatrix(encode_features(self.specs, self.categories, frame),
                         enable_categorical=True)
        return self.control.predict(dm) - self.treatment.predict(dm)

    def label(self, frame: pd.DataFrame) -> np.ndarray:
        return np.where(self.predict_uplift(frame) > 0, PERSUADABLE, LEAVE_ALONE)


def _xgb_params(max_depth: int, nthread: int, seed: int) -> dict:
    return {
        "objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
        "max_depth": max_depth, "eta": 0.05, "min_child_weight": 10.0, "subsample": 0.8,
        "colsample_bytree": 0.8, "lambda": 5.0, "nthread": nthread, "seed": seed,
        "max_cat_to_onehot": 1,
    }


def _fit_churn(X: pd.DataFrame, y: np.ndarray, params: dict, max_rounds: int,
               seed: int) -> xgb.Booster:
    """A small churn model: the number of rounds by early stopping (log loss) on a random quarter
    of the rows, then refitted on all of them."""
    inner = np.random.default_rng(seed).random(len(y)) < 0.25
    nthread = params["nthread"]

    def matrix(mask: np.ndarray) -> xgb.DMatrix:
        return xgb.DMatrix(X.loc[mask], label=y[mask], enable_categorical=True, nthread=nthread)

    probe = xgb.train(params, matrix(~inner), num_boost_round=max_rounds,
                      evals=[(matrix(inner), "validation")], early_stopping_rounds=30,
                      verbose_eval=False)
    rounds = int(probe.best_iteration) + 1
    return xgb.train(params, matrix(np.ones(len(y), dtype=bool)), num_boost_round=rounds)


def _send_date_features(
    prep: PreparedData, outcomes: pd.DataFrame, cfg: FeatureConfig
) -> pd.DataFrame:
    """Lifecycle features of each compared customer as of the send date (normalised): only
    records strictly before the send day are read, so the campaign itself is not among them."""
    frames = []
    for (_, sent_at), part in outcomes.groupby(["campaign_id", "sent_at"], sort=False):
        customers = prep.customers.iloc[part["_pos"].to_numpy()].assign(
            _pos=part["_pos"].to_numpy()
        )
        features = build_features(prep, pd.Timestamp(sent_at).normalize(), customers, cfg)
        features = features.drop(columns=["customer_id", "as_of"])
        frames.append(pd.concat([part.reset_index(drop=True), features], axis=1))
    return pd.concat(frames, ignore_index=True)


def fit_uplift_model(
    prep: PreparedData,
    evaluation: CampaignEvaluation,
    cfg: FeatureConfig = FeatureConfig(),
    *,
    min_control: int = 500,
    folds: int = 5,
    max_depth: int = 2,
    max_rounds: int = 400,
    baseline_risk: Callable[[pd.DataFrame], np.ndarray] | None = None,
    bootstrap: int = 500,
    nthread: int = 1,
    seed: int = 42,
) -> UpliftModel:
    """Fit the T-learner on the evaluable campaigns pooled, and evaluate it on held-out customers.

    Evaluation is by cross-fitting over customers (not rows: a customer may be in several
    campaigns): the customers are split at random into `folds` parts and each part is scored by
    models fitted on the others, so every row of `holdout` is predicted by models that never saw
    its customer, and the Qini uses all compared customers rather than one small holdout (the
    control groups of campaigns are small: the Qini of even the true uplift is noisy). The
    returned boosters are then fitted on every row.

    `baseline_risk` maps a feature frame to churn probabilities (e.g. the champion bundle's);
    by default a churn model of the same size is fitted on the training rows of both groups. The
    baseline ranking multiplies it by the pooled relative churn reduction of the row's offer,
    measured on the training customers of the fold (the pooled reduction over every offer when
    the offer's own is not positive). Raises `NotEnoughControls` when the evaluable campaigns
    hold fewer than `min_control` control customers."""
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    evaluable = set(evaluation.evaluable["campaign_id"])
    outcomes = evaluation.outcomes.loc[evaluation.outcomes["campaign_id"].isin(evaluable)]
    n_control = int((outcomes["group"] == "control").sum())
    if n_control < min_control:
        raise NotEnoughControls(
            f"uplift model needs at least {min_control} control customers over the evaluable "
            f"campaigns; found {n_control} in {len(evaluable)} campaign(s)"
        )
    frame = _send_date_features(prep, outcomes, cfg)
    specs = feature_specs(prep, cfg)
    params = _xgb_params(max_depth, nthread, seed)
    rng = np.random.default_rng(seed)
    codes, customers = pd.factorize(frame["customer_id"])
    fold = rng.permutation(len(customers))[codes] % folds
    uplift = np.empty(len(frame))
    risk = np.empty(len(frame))
    reduction = np.empty(len(frame))
    for k in range(folds):
        train, test = frame.loc[fold != k], frame.loc[fold == k]
        fitted = _fit_learners(specs, train, params, max_rounds, seed, baseline_risk is None)
        inside = fold == k
        uplift[inside] = fitted.predict_uplift(test)
        risk[inside] = (fitted.predict_risk(test) if baseline_risk is None
                        else np.asarray(baseline_risk(test), dtype=float))
        rates = _offer_reductions(train)
        reduction[inside] = test["offer"].map(rates).fillna(rates[None]).to_numpy()
    final = _fit_learners(specs, frame, params, max_rounds, seed, risk_model=False)
    baseline = risk * reduction
    holdout = frame[["customer_id", "campaign_id", "offer", "group", "churned"]].assign(
        fold=fold, uplift=uplift, baseline=baseline, baseline_risk=risk,
        offer_reduction=reduction, label=np.where(uplift > 0, PERSUADABLE, LEAVE_ALONE),
    )
    treated = (holdout["group"] == "treatment").to_numpy()
    churned = holdout["churned"].to_numpy(dtype=float)
    scores = {"uplift_model": uplift, "baseline": baseline}
    qini = {name: qini_coefficient(s, treated, churned) for name, s in scores.items()}
    qini["difference"] = qini["uplift_model"] - qini["baseline"]
    low, high = _bootstrap_difference(holdout, scores, bootstrap, seed)
    qini.update(difference_low=low, difference_high=high)
    persuadable = (holdout["label"] == PERSUADABLE).to_numpy()
    for name, part in (("persuadable", persuadable), ("leave_alone", ~persuadable)):
        qini[f"observed_uplift_{name}"] = _effect(*_counts(holdout.loc[part]),
                                                  evaluation.confidence)["uplift"]
        qini[f"share_{name}"] = float(part.mean())
    notes = [
        f"T-learner (XGBoost depth {max_depth}, rounds by early stopping on a quarter of the "
        f"training rows) on {len(frame):,} rows of "
        f"{len(customers):,} customers from {len(evaluable)} campaign(s): "
        f"{int(treated.sum()):,} treatment, {int((~treated).sum()):,} control; evaluated by "
        f"{folds}-fold cross-fitting over customers (every row predicted by models that never "
        f"saw its customer); final models: treatment {final.treatment.num_boosted_rounds()} "
        f"rounds, control {final.control.num_boosted_rounds()} rounds",
        "baseline ranking: churn risk x the offer's pooled relative churn reduction (training "
        "customers of the fold); churn risk "
        + ("from an XGBoost of the same size on both groups" if baseline_risk is None
           else "given by the caller"),
        f"Qini: uplift model {qini['uplift_model']:+.4f}, baseline {qini['baseline']:+.4f}, "
        f"difference {qini['difference']:+.4f} (95% bootstrap interval {low:+.4f} to "
        f"{high:+.4f}, customers resampled, models not refitted)",
    ]
    return UpliftModel(
        treatment=final.treatment,
        control=final.control,
        specs=specs,
        categories=final.categories,
        holdout=holdout,
        deciles=pd.concat([_decile_table(name, s, treated, churned)
                           for name, s in scores.items()], ignore_index=True),
        qini=qini,
        curves={name: qini_curve(s, treated, churned) for name, s in scores.items()},
        notes=notes,
    )


@dataclass(frozen=True)
class _Learners:
    treatment: xgb.Booster
    control: xgb.Booster
    risk: xgb.Booster | None
    specs: list[FeatureSpec]
    categories: dict[str, list[str]]

    def _dmatrix(self, frame: pd.DataFrame) -> xgb.DMatrix:
        return xgb.DMatrix(encode_features(self.specs, self.categories, frame),
                           enable_categorical=True)

    def predict_uplift(self, frame: pd.DataFrame) -> np.ndarray:
        dm = self._dmatrix(frame)
        return self.control.predict(dm) - self.treatment.predict(dm)

    def predict_risk(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.risk is not None
        return self.risk.predict(self._dmatrix(frame))


def _fit_learners(specs: list[FeatureSpec], train: pd.DataFrame, params: dict, max_rounds: int,
                  seed: int, risk_model: bool) -> _Learners:
    categories = category_levels(specs, train)
    X = encode_features(specs, categories, train)
    y = train["churned"].to_numpy(dtype=float)
    treated = (train["group"] == "treatment").to_numpy()
    return _Learners(
        treatment=_fit_churn(X.loc[treated], y[treated], params, max_rounds, seed),
        control=_fit_churn(X.loc[~treated], y[~treated], params, max_rounds, seed),
        risk=_fit_churn(X, y, params, max_rounds, seed) if risk_model else None,
        specs=specs,
        categories=categories,
    )


def _offer_reductions(rows: pd.DataFrame) -> dict:
    """Pooled relative churn reduction per offer (Mantel-Haenszel over campaigns), clipped to
    [0, 1]; key None: over every offer, used where an offer's own is not positive."""
    def pooled(part: pd.DataFrame) -> float:
        strata = [_counts(p) for _, p in part.groupby("campaign_id")]
        ch_t, n_t, ch_c, n_c = zip(*[(s[1], s[0], s[3], s[2]) for s in strata], strict=True)
        rr = mantel_haenszel(ch_t, n_t, ch_c, n_c)["risk_ratio"]
        return float(np.clip(1 - rr, 0.0, 1.0)) if np.isfinite(rr) else 0.0

    overall = pooled(rows)
    rates: dict = {None: overall}
    for offer, part in rows.groupby("offer"):
        own = pooled(part)
        rates[offer] = own if own > 0 else overall
    return rates


def _bootstrap_difference(holdout: pd.DataFrame, scores: dict[str, np.ndarray], reps: int,
                          seed: int, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of Qini(model) - Qini(baseline), resampling customers."""
    if reps <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(holdout["customer_id"])
    treated = (holdout["group"] == "treatment").to_numpy()
    churned = holdout["churned"].to_numpy(dtype=float)
    diffs = np.empty(reps)
    for i in range(reps):
        weight = np.bincount(rng.integers(0, len(uniques), len(uniques)),
                             minlength=len(uniques))[codes]
        diffs[i] = (qini_coefficient(scores["uplift_model"], treated, churned, weight)
                    - qini_coefficient(scores["baseline"], treated, churned, weight))
    alpha = (1 - confidence) / 2
    return float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))


def _decile_table(name: str, score: np.ndarray, treated: np.ndarray,
                  churned: np.ndarray) -> pd.DataFrame:
    # equal-frequency deciles, 1 = highest score; tied scores share a decile
    inner = np.quantile(score, np.linspace(0.0, 1.0, 11)[1:-1])
    decile = 10 - np.searchsorted(inner, score, side="right")
    rows = []
    for d in sorted(np.unique(decile)):
        inside = decile == d
        t, c = inside & treated, inside & ~treated
        n_t, n_c = int(t.sum()), int(c.sum())
        rows.append({
            "ranking": name,
            "decile": int(d),
            "rows": int(inside.sum()),
            "n_treatment": n_t,
            "n_control": n_c,
            "mean_score": float(score[inside].mean()),
            "retention_treatment": 1 - churned[t].mean() if n_t else np.nan,
            "retention_control": 1 - churned[c].mean() if n_c else np.nan,
        })
    table = pd.DataFrame(rows)
    table["observed_uplift"] = table["retention_treatment"] - table["retention_control"]
    return table


# ------------------------------------------------------------------------------------------------
# MLflow


def _key(value: object) -> str:
    """A metric-name-safe version of a campaign id or offer."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", str(value))


def log_campaign_evaluation(
    evaluation: CampaignEvaluation, uplift: UpliftModel | None = None
) -> None:
    """Log the evaluation into the active MLflow run: per-campaign and per-offer metrics
    (`campaign.<id>.uplift`, `.uplift_low`, `.uplift_high`, `.relative_churn_reduction`, ...),
    the tables as CSV under `campaigns/`, the forest plot, and the uplift model's Qini figures."""
    if mlflow.active_run() is None:
        raise RuntimeError("log_campaign_evaluation needs an active MLflow run "
                           "(inside `with mlflow.start_run():`)")
    mlflow.log_params({
        "campaigns.confidence": evaluation.confidence,
        "campaigns.horizon_days": evaluation.horizon_days,
        "campaigns.churn_definition": evaluation.churn_definition,
        "campaigns.pooling": "mantel_haenszel_by_campaign",
    })
    names = ("uplift", "uplift_low", "uplift_high", "relative_churn_reduction",
             "relative_churn_reduction_low", "relative_churn_reduction_high", "n_treatment",
             "n_control")
    metrics: dict[str, float] = {}
    for prefix, frame, key in (("campaign", evaluation.campaigns, "campaign_id"),
                               ("offer", evaluation.offers, "offer")):
        for r in frame.to_dict("records"):
            for name in names:
                value = float(r[name])
                if np.isfinite(value):
                    metrics[f"{prefix}.{_key(r[key])}.{name}"] = value
    metrics["campaigns.evaluable"] = float(evaluation.campaigns["evaluable"].sum())
    metrics["campaigns.not_evaluable"] = float((~evaluation.campaigns["evaluable"]).sum())
    if uplift is not None:
        metrics.update({f"uplift_model.qini.{k}": float(v) for k, v in uplift.qini.items()
                        if np.isfinite(v)})
    mlflow.log_metrics(metrics)
    for name, frame in (("campaigns", evaluation.campaigns), ("segments", evaluation.segments),
                        ("offers", evaluation.offers)):
        mlflow.log_text(frame.to_csv(index=False), f"campaigns/{name}.csv")
    if len(evaluation.campaigns):
        mlflow.log_figure(forest_figure(evaluation), "campaigns/forest.png")
    if uplift is not None:
        mlflow.log_text(uplift.deciles.to_csv(index=False), "campaigns/uplift_deciles.csv")
        mlflow.log_text("\n".join(uplift.notes), "campaigns/uplift_notes.txt")
        mlflow.log_figure(qini_figure(uplift), "campaigns/qini.png")


# ------------------------------------------------------------------------------------------------
# Figures (matplotlib Figure, never pyplot; see training/plots.py)


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
    for ax, column, scale, title in (
        (left, "uplift", 100.0, "Retention uplift, treatment - control (pp)"),
        (right, "relative_churn_reduction", 100.0, "Relative churn reduction (%)"),
    ):
        for y, (_, r, marker) in zip(ys, rows, strict=True):
            value = getattr(r, column)
            if not np.isfinite(value):
                ax.text(0, y, f"not evaluable: {r.reason}", va="center", ha="center",
                        fontsize=7, color=REFERENCE_COLOR)
                continue
            low, high = getattr(r, f"{column}_low"), getattr(r, f"{column}_high")
            ax.errorbar(scale * value, y,
                        xerr=[[scale * (value - low)], [scale * (high - value)]],
                        fmt=marker, color=MODEL_COLOR if marker == "o" else "tab:orange",
                        ms=6, capsize=3, lw=1.5)
        ax.axvline(0, color=REFERENCE_COLOR, ls="--", lw=1)
        ax.set_xlabel(f"{title}, {pct}% CI")
        ax.grid(alpha=0.3, axis="x")
    left.set_yticks(ys, [label for label, _, _ in rows], fontsize=8)
    fig.suptitle(f"Campaign effects over {evaluation.horizon_days} days "
                 f"({evaluation.churn_definition} churn definition)", fontsize=11)
    return fig


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
