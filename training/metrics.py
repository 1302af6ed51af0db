"""Evaluation metrics for the churn and next-product models.

Pure functions of labels and scores (numpy, pandas, scikit-learn): no I/O, no global state, so
training, the promotion job and the tests compute every number the same way.

Conventions shared by all functions:

- `y` is the realised binary label (1 = churned / adopted), as 0/1 integers, floats or booleans;
  `p` the predicted probability in [0, 1]. Both are 1-D and positionally aligned (a pandas Series
  is read by position, never aligned on its index). Invalid input (different lengths, no rows,
  labels other than 0/1, NaN or out-of-range probabilities) raises `ValueError`.
- A metric that is undefined for the data (an AUC with a single class, a lift without churners)
  is `nan`, never an exception, so one degenerate holdout slice cannot stop a training run.
- **Ties in scores are shared, never broken by row order**: the gains curve, the top-decile lift
  and the calibration bins treat tied customers as one block, so the results do not depend on how
  the rows happen to be sorted (a constant score has a lift of exactly 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

__all__ = [
    "MISSING_SEGMENT",
    "calibration_table",
    "classification_metrics",
    "expected_calibration_error",
    "gains_curve",
    "precision_at_k",
    "reason_group_hit_rate",
    "segment_auc",
    "top_decile_lift",
]

#: The segment name under which rows with a missing segment value are reported.
MISSING_SEGMENT = "(missing)"


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`y` as a float 0/1 array and `p` as a float array in [0, 1], or `ValueError`."""
    y_arr = np.asarray(y)
    p_arr = np.asarray(p, dtype=float)
    if y_arr.ndim != 1 or p_arr.ndim != 1:
        raise ValueError(f"y and p must be 1-D, got shapes {y_arr.shape} and {p_arr.shape}")
    if len(y_arr) != len(p_arr):
        raise ValueError(f"y and p have different lengths: {len(y_arr)} and {len(p_arr)}")
    if len(y_arr) == 0:
        raise ValueError("y and p are empty")
    try:
        y_arr = y_arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"y must hold 0/1 labels: {exc}") from exc
    bad = ~np.isin(y_arr, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"y must hold 0/1 labels; found e.g. {y_arr[bad][:5].tolist()}")
    bad = ~((p_arr >= 0.0) & (p_arr <= 1.0))  # also catches NaN
    if bad.any():
        raise ValueError(
            f"p must hold probabilities in [0, 1]; found e.g. {p_arr[bad][:5].tolist()}"
        )
    return y_arr, p_arr


def _quantile_bins(p: np.ndarray, bins: int) -> np.ndarray:
    """Equal-frequency bin index (0, 1, ...) of each probability.

    Bin edges are the 1/bins, 2/bins, ... quantiles of `p`; a value equal to an edge goes to the
    upper bin, so tied probabilities always share a bin. With many ties some bins are empty (and
    then simply absent) and the others hold more than n / bins rows.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    inner = np.quantile(p, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.searchsorted(inner, p, side="right")


def _bin_summary(
    y: np.ndarray, p: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bin index, mean predicted, observed rate, rows) of each non-empty quantile bin."""
    index = _quantile_bins(p, bins)
    rows = np.bincount(index, minlength=bins)
    keep = rows > 0
    n = np.maximum(rows, 1)
    mean_predicted = np.bincount(index, weights=p, minlength=bins) / n
    observed = np.bincount(index, weights=y, minlength=bins) / n
    return np.flatnonzero(keep), mean_predicted[keep], observed[keep], rows[keep]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over `bins` equal-frequency bins of `p`.

    ``ECE = sum_b (n_b / n) * |mean(y in b) - mean(p in b)|``.

    Why equal-frequency (quantile) rather than equal-width bins: churn probabilities are
    concentrated near the base rate (a few percent), so equal-width bins on [0, 1] would put
    nearly every customer into the first bin and hide miscalibration where the customers are,
    while leaving the upper bins almost empty and noisy. Quantile bins give every bin the same
    weight and the same statistical noise. Ties share a bin (see `calibration_table`).

    Because each bin's observed rate is an estimate, a perfectly calibrated model still has an
    ECE of order ``sqrt(rate * (1 - rate) * bins / n)``; compare models on the same holdout.
    """
    y, p = _check(y, p)
    _, mean_predicted, observed, rows = _bin_summary(y, p, bins)
    return float(np.sum(rows / len(y) * np.abs(observed - mean_predicted)))


def ece_noise(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """The standard error of a perfectly calibrated model's ECE on this holdout:
    ``sqrt(sum_b (n_b / n)^2 * p_b (1 - p_b) / n_b)`` with ``p_b`` the bin's mean prediction.

    Promotion uses it so that a difference in ECE smaller than sampling noise on a small test
    snapshot is not taken for a worse calibration."""
    y, p = _check(y, p)
    _, mean_predicted, _, rows = _bin_summary(y, p, bins)
    share = rows / len(y)
    variance = mean_predicted * (1 - mean_predicted) / np.maximum(rows, 1)
    return float(np.sqrt(np.sum(share**2 * variance)))


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """The reliability table behind `expected_calibration_error`: one row per non-empty bin.

    Columns: `bin` (0 = lowest probabilities), `mean_predicted`, `observed_rate`, `rows`. Bins
    are equal-frequency bins of `p`; tied probabilities share a bin, so with many ties fewer than
    `bins` rows come back.
    """
    y, p = _check(y, p)
    index, mean_predicted, observed, rows = _bin_summary(y, p, bins)
    return pd.DataFrame(
        {
            "bin": index.astype(np.int64),
            "mean_predicted": mean_predicted,
            "observed_rate": observed,
            "rows": rows.astype(np.int64),
        }
    )


def gains_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative gains: (share of customers contacted, share of churners captured).

    Customers are contacted in order of decreasing `p`. The curve starts at (0, 0), ends at
    (1, 1) and has one point after each block of tied scores, so a tied block is a straight
    segment (its expected gain when the order inside the block is random) and the curve does not
    depend on row order. Interpolate (`np.interp`) to read it at a given share. Without any
    churner the captured share is undefined and is all `nan`.
    """
    y, p = _check(y, p)
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    # last position of each block of equal scores
    ends = np.r_[np.flatnonzero(np.diff(p_sorted) != 0), len(p_sorted) - 1]
    contacted = np.r_[0.0, (ends + 1) / len(y)]
    positives = y.sum()
    captured_counts = np.r_[0.0, np.cumsum(y_sorted)[ends]]
    if positives == 0:
        return contacted, np.full_like(contacted, np.nan)
    return contacted, captured_counts / positives


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Churn rate among the 10% of customers with the highest `p`, over the overall churn rate.

    Equivalently the share of churners captured by contacting the top 10% (read off
    `gains_curve`) divided by 0.1. When 10% of the customers is not a whole number of rows, or
    the cut falls inside a block of tied scores, the boundary rows count fractionally (their
    expected contribution under random ordering). The best possible value is
    ``min(10, 1 / positive_rate)``; a random or constant score gives 1; `nan` without churners.
    """
    contacted, captured = gains_curve(y, p)
    if np.isnan(captured).any():
        return float("nan")
    return float(np.interp(0.1, contacted, captured) / 0.1)


def _auc_or_nan(y: np.ndarray, p: np.ndarray) -> float:
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, p))


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The headline metrics of a binary model on one holdout, as MLflow-ready floats.

    - `roc_auc`: ranking quality (`nan` with a single class)
    - `pr_auc`: average precision (`nan` without positives)
    - `log_loss`, `brier`: proper scoring rules (lower is better)
    - `ece`: `expected_calibration_error` with 10 equal-frequency bins; `ece_noise` its
      sampling noise on this holdout (`ece_noise`)
    - `top_decile_lift`: see `top_decile_lift`
    - `positive_rate`: share of positive labels; `rows`: number of rows
    """
    y, p = _check(y, p)
    has_positive = bool(y.max() == 1.0)
    return {
        "roc_auc": _auc_or_nan(y, p),
        "pr_auc": float(average_precision_score(y, p)) if has_positive else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "ece_noise": ece_noise(y, p),
        "top_decile_lift": top_decile_lift(y, p),
        "positive_rate": float(y.mean()),
        "rows": float(len(y)),
    }


def _segment_names(segments: np.ndarray | pd.Series, n: int) -> np.ndarray:
    """Segment values as strings (missing values as `MISSING_SEGMENT`), positionally."""
    values = pd.Series(np.asarray(segments, dtype=object))
    if len(values) != n:
        raise ValueError(f"segments has {len(values)} rows, y and p have {n}")
    return values.astype(str).where(values.notna(), MISSING_SEGMENT).to_numpy()


def segment_auc(
    y: np.ndarray,
    p: np.ndarray,
    segments: np.ndarray | pd.Series,
    min_positives: int = 10,
) -> dict[str, float]:
    """ROC AUC within each segment value, keyed by the segment value as a string.

    A segment is **left out** (absent from the result, not `nan`) when it has fewer than
    `min_positives` positives or fewer than `min_positives` negatives: an AUC from a handful of
    churners is noise that would only trigger false alarms. A segment with a single class is
    always left out (its AUC is undefined), whatever `min_positives`. Rows with a missing
    segment value form the segment `MISSING_SEGMENT`. `segments` is read by position, like `y`
    and `p`. Keys are sorted.
    """
    y, p = _check(y, p)
    names = _segment_names(segments, len(y))
    result: dict[str, float] = {}
    for name in sorted(set(names)):
        inside = names == name
        positives = int(y[inside].sum())
        negatives = int(inside.sum()) - positives
        if min(positives, negatives) < max(min_positives, 1):
            continue
        result[name] = float(roc_auc_score(y[inside], p[inside]))
    return result


def precision_at_k(labels: pd.DataFrame, scores: pd.DataFrame, k: int = 3) -> float:
    """Mean precision of each customer's top-`k` recommended product families.

    `labels` and `scores` have one row per customer and one column per product family, with the
    same index and columns (`scores` is reindexed to `labels`). A label is 1 (adopted within the
    horizon), 0 (eligible, not adopted) or NaN (not eligible, e.g. already held: never
    recommended, never counted).

    For each customer with at least one eligible family **and** at least one adoption, the
    recommendation is the `min(k, eligible families)` eligible families with the highest scores
    (a missing score ranks last, ties go to the earlier column); its precision is the share of
    them that were adopted. The result is the mean over those customers, `nan` when there are
    none. Customers who adopted nothing are left out because no ranking can be right for them;
    including them would mostly measure the adoption rate, not the ranking.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if set(labels.index) != set(scores.index):
        raise ValueError("labels and scores must have the same customers (index)")
    if set(labels.columns) != set(scores.columns):
        raise ValueError(
            "labels and scores must have the same product families (columns); "
            f"got {sorted(map(str, labels.columns))} and {sorted(map(str, scores.columns))}"
        )
    scores = scores.reindex(index=labels.index, columns=labels.columns)
    lab = labels.to_numpy(dtype=float, na_value=np.nan)
    sco = scores.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isnan(lab) & ~np.isin(lab, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"labels must be 1, 0 or NaN; found e.g. {lab[bad][:5].tolist()}")
    eligible = ~np.isnan(lab)
    n_eligible = eligible.sum(axis=1)
    adopted = np.nansum(lab, axis=1)
    counted = (n_eligible > 0) & (adopted > 0)
    if not counted.any():
        return float("nan")
    lab, sco = lab[counted], sco[counted]
    eligible, n_eligible = eligible[counted], n_eligible[counted]
    # ascending sort key: best score first, eligible-without-score next, ineligible last
    key = np.where(np.isnan(sco), np.finfo(float).max, -sco)
    key = np.where(eligible, key, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(lab, order, axis=1)
    m = np.minimum(k, n_eligible)
    in_top = np.arange(top.shape[1])[None, :] < m[:, None]
    hits = np.where(in_top, np.nan_to_num(top), 0.0).sum(axis=1)
    return float(np.mean(hits / m))


def reason_group_hit_rate(
    true_driver: Sequence[str],
    group_contributions: pd.DataFrame,
    k: int = 3,
) -> float:
    """Share of customers whose true churn driver is among their top-`k` explained groups.

    `group_contributions` has one row per customer, aligned by position with `true_driver`, and
    one column per driver group holding the sum of the SHAP contributions of that group's
    features. The explained groups are ranked by contribution, largest (most risk-raising)
    first; ties go to the earlier column, like a stable sort of the explanation; a NaN
    contribution ranks last. A true driver that is not a column is a miss (the model cannot name
    it). Customers whose true driver is missing (None / NaN) are left out; `nan` when no customer
    is left.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    drivers = pd.Series(np.asarray(true_driver, dtype=object))
    if len(drivers) != len(group_contributions):
        raise ValueError(
            f"true_driver has {len(drivers)} rows, group_contributions has "
            f"{len(group_contributions)}"
        )
    known = drivers.notna().to_numpy()
    if not known.any():
        return float("nan")
    values = group_contributions.to_numpy(dtype=float, na_value=np.nan)[known]
    columns = np.asarray([str(c) for c in group_contributions.columns], dtype=object)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]  # NaN sorts last
    top = columns[order]
    hits = (top == drivers[known].astype(str).to_numpy()[:, None]).any(axis=1)
    return float(hits.mean())
