"""Statistics of treatment / control counts: pure functions, no data frames.

Which implementation computes what:

- `wilson_interval`: `statsmodels.stats.proportion.proportion_confint(method="wilson")`, the score
  interval without continuity correction.
- `newcombe_interval`: `statsmodels.stats.proportion.confint_proportions_2indep(method="newcomb")`,
  Newcombe's hybrid score interval of a difference (Newcombe 1998, method 10: the Wilson
  intervals of both proportions combined; well behaved for the small control groups campaigns
  keep, unlike Wald).
- `risk_ratio_interval`: `confint_proportions_2indep(compare="ratio")`, the log (Katz) interval;
  its "log-adjusted" variant (0.5 added to every count and total) when there is no treated event.
- `mantel_haenszel`: the pooled risk ratio is `statsmodels.stats.contingency_tables.
  StratifiedTable.riskratio_pooled`. The rest is ours, as statsmodels has no equivalent:
  `StratifiedTable` pools odds ratios (with an interval) and risk ratios (point estimate only),
  and `meta_analysis.combine_effects` pools with inverse-variance, not Mantel-Haenszel, weights.
  So the Mantel-Haenszel risk difference with its Greenland-Robins (1985) variance and the
  Greenland-Robins variance of the log risk ratio are computed here.
- `qini_curve`, `qini_coefficient`: ours (neither SciPy nor statsmodels evaluates uplift
  rankings).

Every interval is two-sided at `confidence`, with normal quantiles from `scipy.stats.norm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

# statsmodels is imported where it is used: the service learns success rates from reported
# outcomes with these functions and should not load statsmodels (and SciPy) until it does.

__all__ = [
    "EFFECT_COLUMNS",
    "effect",
    "mantel_haenszel",
    "newcombe_interval",
    "qini_coefficient",
    "qini_curve",
    "risk_ratio_interval",
    "wilson_interval",
    "z_value",
]

NAN = float("nan")


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of `confidence`; ValueError outside (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _alpha(confidence: float) -> float:
    """statsmodels' `alpha` of a two-sided interval at `confidence` (validated)."""
    z_value(confidence)
    return 1.0 - confidence


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (no continuity correction); NaNs when n == 0."""
    if n <= 0:
        return NAN, NAN
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=_alpha(confidence), method="wilson")
    return float(low), float(high)


def newcombe_interval(
    x1: float, n1: float, x2: float, n2: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(p1 - p2, low, high): Newcombe's hybrid score interval for a difference of independent
    proportions (Newcombe 1998, method 10). NaNs when a group is empty."""
    if n1 <= 0 or n2 <= 0:
        return NAN, NAN, NAN
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff",
                                           alpha=_alpha(confidence))
    return float(x1 / n1 - x2 / n2), float(low), float(high)


def risk_ratio_interval(
    a: float, n1: float, c: float, n0: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(risk ratio, low, high) of a/n1 over c/n0 with the log (Katz) interval.

    When a is zero, 0.5 is added to every count for the interval (the point estimate stays 0).
    NaNs when a group is empty or c == 0 (the ratio is undefined)."""
    if n1 <= 0 or n0 <= 0 or c <= 0:
        return NAN, NAN, NAN
    # "log-adjusted" adds 0.5 to a, n1, c and n0 alike: our zero-count rule
    method = "log-adjusted" if a == 0 else "log"
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(a, n1, c, n0, method=method, compare="ratio",
                                           alpha=_alpha(confidence))
    return float((a / n1) / (c / n0)), float(low), float(high)


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
    out = dict.fromkeys(("risk_difference", "risk_difference_low", "risk_difference_high",
                         "risk_ratio", "risk_ratio_low", "risk_ratio_high"), NAN)
    if not len(a):
        return out
    z = z_value(confidence)
    rd, se_rd = _pooled_risk_difference(a, n1, c, n0)
    out.update(risk_difference=rd, risk_difference_low=rd - z * se_rd,
               risk_difference_high=rd + z * se_rd)
    out.update(_pooled_risk_ratio(a, n1, c, n0, z))
    return out


def _pooled_risk_difference(a: np.ndarray, n1: np.ndarray, c: np.ndarray,
                            n0: np.ndarray) -> tuple[float, float]:
    """Mantel-Haenszel risk difference and its Greenland-Robins standard error (not in
    statsmodels: see the module docstring)."""
    w = n1 * n0 / (n1 + n0)
    p1, p0 = a / n1, c / n0
    rd = float(np.sum(w * (p1 - p0)) / np.sum(w))
    se = float(np.sqrt(np.sum(w**2 * (p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0))) / np.sum(w))
    return rd, se


def _pooled_risk_ratio(a: np.ndarray, n1: np.ndarray, c: np.ndarray, n0: np.ndarray,
                       z: float) -> dict[str, float]:
    """Mantel-Haenszel risk ratio (statsmodels) with the interval from the Greenland-Robins
    variance of its log (ours: statsmodels only has the variance of the pooled log odds ratio).
    Only the keys that are defined: no ratio without control events, no interval without
    treated events."""
    big_n = n1 + n0
    r = float(np.sum(a * n0 / big_n))
    s = float(np.sum(c * n1 / big_n))
    if s <= 0:
        return {}
    # rows: treated / control; columns: event / no event; one 2x2 table per stratum
    tables = np.array([[a, n1 - a], [c, n0 - c]])
    from statsmodels.stats.contingency_tables import StratifiedTable

    rr = float(StratifiedTable(tables, shift_zeros=False).riskratio_pooled)
    if r <= 0:
        return {"risk_ratio": rr}
    var_log = float(np.sum((n1 * n0 * (a + c) - a * c * big_n) / big_n**2)) / (r * s)
    se = np.sqrt(max(var_log, 0.0))
    return {"risk_ratio": rr, "risk_ratio_low": float(np.exp(np.log(rr) - z * se)),
            "risk_ratio_high": float(np.exp(np.log(rr) + z * se))}


def effect(n_t: int, churned_t: int, n_c: int, churned_c: int,
           confidence: float) -> dict[str, float]:
    """Every figure of a treatment / control comparison from its four counts: retention per
    group, `uplift` (retention difference, Newcombe interval) and `relative_churn_reduction`
    (1 - churn risk ratio, Katz interval), each with `_low` / `_high` bounds."""
    uplift, low, high = newcombe_interval(n_t - churned_t, n_t, n_c - churned_c, n_c, confidence)
    rr, rr_low, rr_high = risk_ratio_interval(churned_t, n_t, churned_c, n_c, confidence)
    return {
        "n_treatment": int(n_t),
        "n_control": int(n_c),
        "churned_treatment": int(churned_t),
        "churned_control": int(churned_c),
        "retention_treatment": 1 - churned_t / n_t if n_t else NAN,
        "retention_control": 1 - churned_c / n_c if n_c else NAN,
        "uplift": uplift,
        "uplift_low": low,
        "uplift_high": high,
        "relative_churn_reduction": 1 - rr,
        "relative_churn_reduction_low": 1 - rr_high,
        "relative_churn_reduction_high": 1 - rr_low,
    }


EFFECT_COLUMNS = list(effect(0, 0, 0, 0, 0.95))


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
