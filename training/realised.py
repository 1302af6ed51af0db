"""Realised performance of the predictions the product gave out, once their horizon has passed.

Every score the service or a batch job gives out is logged to the store's `prediction_log`
(`features.store.PREDICTION_COLUMNS`). A prediction **matures** when its horizon has passed
within the data: ``label_as_of + horizon_days <= end``, `end` being the data's newest moment
(`labels.data_end`, the rule of `labels.horizon_complete`). For every matured prediction the
realised churn label is computed by the repository's one label definition
(`labels.churn_labels`) for that customer, as of the prediction's `label_as_of`, with that
prediction's target (kind and horizon), and the predictions are judged against it: ROC-AUC,
calibration (ECE over equal-frequency bins and the reliability curve,
`training.metrics`) and top-decile lift, overall, by month of `features_as_of` and by segment
(the customers table's `segment` attribute, when the data have one).

`label_as_of` is the prediction's `features_as_of` when that is a day (batch scores, as of
midnight), else the next midnight (live scores, as of a moment): the horizon then starts after
everything the features saw, so the event that made the service re-score a customer (a
purchase, say) never counts as the outcome, and the labels of a day's live scores are computed
together (one `churn_labels` call per target and day, not per moment).

What counts once: a customer scored several times on one day by one model version (a batch run
repeated, the service re-scoring after each event) was given one prediction that day, the newest
logged (`logged_at`, then the log's `id`); the others are superseded. A customer scored by two
model versions counts once per version (`by_model` keeps versions apart; filter with
`model_name` / `model_version` to judge one model).

Left out, and counted in `RealisedPerformance.counts`: predictions without a customer (what-if
records), of customers the data do not hold, with an unreadable date or target, not yet
matured, and those whose label is unknown (the `labels` target at a date the company's labels
table does not cover).

Pure computation on data already loaded (`PreparedData`, as the other jobs read it:
`jobs.common.prepared`) and the prediction log as a frame (`Store.predictions()`): no I/O, no
MLflow; `realised_figures` returns standalone figures for `mlflow.log_figure`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from churn_risk.features.labels import churn_labels, data_end
from churn_risk.features.lifecycle import PreparedData, to_timestamp
from churn_risk.features.target import Target
from churn_risk.training import plots
from churn_risk.training.metrics import (
    MISSING_SEGMENT,
    _segment_names,
    calibration_table,
    ece_noise,
    expected_calibration_error,
    top_decile_lift,
)

__all__ = [
    "METRIC_COLUMNS",
    "RealisedPerformance",
    "realised_by_month_figure",
    "realised_figures",
    "realised_metrics",
    "realised_performance",
]

#: The segment of every customer when the data have no segment attribute.
ALL_CUSTOMERS = "all customers"
#: Equal-frequency bins of the ECE and the reliability curve (as `training.metrics`).
BINS = 10
#: The columns of `by_month`, `by_segment` and `by_model` after their key columns, and the keys
#: of `overall`.
METRIC_COLUMNS = ("n", "churners", "churn_rate", "mean_predicted", "roc_auc", "roc_auc_se",
                  "ece", "ece_noise", "top_decile_lift")
#: The columns of `RealisedPerformance.rows`.
ROW_COLUMNS = ("prediction_id", "customer_id", "model_name", "model_version", "target",
               "horizon_days", "features_as_of", "label_as_of", "month", "segment", "source",
               "channel", "churn_probability", "churned")
RELIABILITY_COLUMNS = ("scope", "group", "bin", "mean_predicted", "observed_rate", "rows")
#: Why predictions were left out, in the order they are checked (`RealisedPerformance.counts`).
COUNT_KEYS = ("logged", "no_customer", "unknown_customer", "unreadable", "superseded",
              "immature", "unlabelled", "evaluated")


def _none_if_nan(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUC: how far a month's AUC may move by
    chance alone, so a monitor can tell a drop from noise."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2)
                + (negatives - 1) * (q2 - auc**2)) / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def realised_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | int | None]:
    """The realised metrics of one group of matured predictions (keys `METRIC_COLUMNS`).

    `n` predictions, `churners`, `churn_rate` (observed), `mean_predicted`; `roc_auc` and
    `roc_auc_se` (Hanley-McNeil) — None with a single class; `ece` and `ece_noise`
    (`training.metrics`, 10 equal-frequency bins); `top_decile_lift` — None without churners.
    All None but `n` and `churners` (0) when there are no rows."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if not len(y):
        return {"n": 0, "churners": 0, **{k: None for k in METRIC_COLUMNS[2:]}}
    churners = int(y.sum())
    two_classes = 0 < churners < len(y)
    auc = float(roc_auc_score(y, p)) if two_classes else None
    return {
        "n": int(len(y)),
        "churners": churners,
        "churn_rate": float(y.mean()),
        "mean_predicted": float(p.mean()),
        "roc_auc": auc,
        "roc_auc_se": (_auc_standard_error(auc, churners, len(y) - churners)
                       if auc is not None else None),
        "ece": expected_calibration_error(y, p, BINS),
        "ece_noise": ece_noise(y, p, BINS),
        "top_decile_lift": _none_if_nan(top_decile_lift(y, p)),
    }


@dataclass(frozen=True)
class RealisedPerformance:
    """What `realised_performance` found (see the module doc)."""

    #: The data's newest moment the predictions were judged at.
    end: pd.Timestamp
    #: One row per evaluated prediction (`ROW_COLUMNS`): `features_as_of` and `label_as_of`
    #: Timestamps (see the module doc), `month`
    #: "YYYY-MM" of it, `segment` the customer's (`ALL_CUSTOMERS` without the attribute,
    #: `MISSING_SEGMENT` when missing), `churned` the realised label (0.0 / 1.0).
    rows: pd.DataFrame
    #: `realised_metrics` of all rows.
    overall: dict[str, float | int | None]
    #: One row per month of `features_as_of` (oldest first): `month`, then `METRIC_COLUMNS`.
    by_month: pd.DataFrame
    #: One row per segment (largest first): `segment`, then `METRIC_COLUMNS`.
    by_segment: pd.DataFrame
    #: One row per model version: `model_name`, `model_version`, `target`, `horizon_days`,
    #: then `METRIC_COLUMNS`.
    by_model: pd.DataFrame
    #: The reliability curves (`RELIABILITY_COLUMNS`): `scope` "overall" (group "all"),
    #: "month" or "segment" (group: the month or segment), then `calibration_table`'s points.
    reliability: pd.DataFrame
    #: Predictions in (`logged`), left out by each reason and `evaluated` (`COUNT_KEYS`).
    counts: dict[str, int]
    #: When the next logged prediction not yet matured will mature (None: none waiting).
    next_maturity: pd.Timestamp | None = None
    #: The segment attribute read (None: the data have none).
    segment_column: str | None = field(default=None)

    @property
    def empty(self) -> bool:
        """No matured, labelled prediction: nothing can be judged yet."""
        return self.counts["evaluated"] == 0

    @property
    def summary(self) -> str:
        """One or two sentences for the monitor's verdict."""
        c = self.counts
        waiting = (f"; the next matures on {self.next_maturity:%Y-%m-%d}"
                   if self.next_maturity is not None else "")
        if self.empty:
            return (f"no matured prediction to judge at {self.end:%Y-%m-%d}: {c['logged']:,} "
                    f"logged, {c['immature']:,} not yet past their horizon{waiting}")
        o = self.overall
        auc = "undefined (one class)" if o["roc_auc"] is None else f"{o['roc_auc']:.3f}"
        lift = "undefined" if o["top_decile_lift"] is None else f"{o['top_decile_lift']:.2f}"
        months = self.by_month["month"]
        span = months.iloc[0] if len(months) == 1 else f"{months.iloc[0]} to {months.iloc[-1]}"
        return (f"{c['evaluated']:,} matured predictions ({span}): realised ROC-AUC {auc}, "
                f"ECE {o['ece']:.4f}, top-decile lift {lift}, churn rate "
                f"{o['churn_rate']:.1%} against {o['mean_predicted']:.1%} predicted; "
                f"{c['immature']:,} not yet matured{waiting}")

    def mlflow_metrics(self, prefix: str = "realised") -> dict[str, float]:
        """The finite metrics as flat MLflow metric names: `<prefix>.<metric>`,
        `<prefix>.month.<YYYY-MM>.<metric>`, `<prefix>.segment.<segment>.<metric>`, and the
        counts as `<prefix>.count.<reason>`."""
        out = {f"{prefix}.count.{k}": float(v) for k, v in self.counts.items()}
        out.update(_finite(self.overall, prefix))
        for scope, key, table in (("month", "month", self.by_month),
                                  ("segment", "segment", self.by_segment)):
            for row in table.to_dict("records"):
                out.update(_finite(row, f"{prefix}.{scope}.{_metric_name(row[key])}"))
        return out


def _finite(metrics: dict, prefix: str) -> dict[str, float]:
    return {f"{prefix}.{k}": float(metrics[k]) for k in METRIC_COLUMNS
            if metrics.get(k) is not None and np.isfinite(metrics[k])}


def _metric_name(value: object) -> str:
    """A segment or month as part of an MLflow metric name (letters, digits, _ - . / space)."""
    return re.sub(r"[^\w\-. /]", "_", str(value))


def _times(values: pd.Series) -> pd.Series:
    """Log dates (ISO text, or timestamps) as naive UTC timestamps; NaT where unreadable."""
    if not len(values):
        return pd.Series(pd.to_datetime([]), index=values.index)
    parsed = pd.to_datetime(values.astype(object).where(values.notna(), None).map(
        lambda v: None if v is None else str(v)), format="ISO8601", utc=True, errors="coerce")
    return parsed.dt.tz_localize(None)


def _newest_first(log: pd.DataFrame) -> np.ndarray:
    """Row positions of `log` in the order they were logged (`logged_at`, then `id`, then the
    frame's order)."""
    keys = [np.arange(len(log))]
    if "id" in log:
        keys.insert(0, pd.to_numeric(log["id"], errors="coerce").fillna(-1).to_numpy())
    if "logged_at" in log:
        logged = _times(log["logged_at"])
        keys.insert(0, logged.fillna(pd.Timestamp.min).to_numpy().astype("datetime64[ns]")
                    .astype(np.int64))
    return np.lexsort(keys[::-1])


def _targets(log: pd.DataFrame) -> pd.Series:
    """Each row's `Target` (kind and horizon; None where unreadable)."""
    out = pd.Series([None] * len(log), index=log.index, dtype=object)
    pairs = pd.DataFrame({"kind": log["target"].astype(object),
                          "horizon": pd.to_numeric(log["horizon_days"], errors="coerce")})
    for (kind, horizon), rows in pairs.groupby(["kind", "horizon"], dropna=True).groups.items():
        try:
            target = Target(kind=kind, horizon_days=int(horizon))
        except ValueError:
            continue
        out.loc[rows] = [target] * len(rows)
    return out


def _metrics_table(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    records = []
    for key, group in rows.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        records.append({**dict(zip(keys, key, strict=True)),
                        **realised_metrics(group["churned"].to_numpy(),
                                           group["churn_probability"].to_numpy())})
    return pd.DataFrame(records, columns=[*keys, *METRIC_COLUMNS])


def _reliability(rows: pd.DataFrame) -> pd.DataFrame:
    parts = []
    groups = [("overall", "all", rows)]
    groups += [("month", m, g) for m, g in rows.groupby("month", sort=True)]
    groups += [("segment", s, g) for s, g in rows.groupby("segment", sort=True)]
    for scope, name, group in groups:
        if not len(group):
            continue
        table = calibration_table(group["churned"].to_numpy(),
                                  group["churn_probability"].to_numpy(), BINS)
        table.insert(0, "group", str(name))
        table.insert(0, "scope", scope)
        parts.append(table)
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("scope", "group") else float)
                             for c in RELIABILITY_COLUMNS})
    return pd.concat(parts, ignore_index=True)


def realised_performance(
    prep: PreparedData,
    predictions: pd.DataFrame,
    end: str | pd.Timestamp | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    segment_column: str | None = "segment",
) -> RealisedPerformance:
    """The realised performance of the matured predictions of `predictions` (see the module
    doc).

    `prep`: the CRM data, validated and prepared (`jobs.common.prepared(source)`); they must
    reach past the predictions' horizons. `predictions`: the prediction log as
    `Store.predictions()` returns it (columns of `PREDICTION_COLUMNS`, with `id`; at least
    `customer_id`, `model_name`, `model_version`, `target`, `horizon_days`, `features_as_of`
    and `churn_probability`). `end`: the data's newest moment (default `labels.data_end(prep)`,
    the latest event); a prediction matures when `label_as_of + horizon_days <= end` (its
    `features_as_of`, or the next midnight for a moment within a day).
    `model_name` / `model_version`: judge only that model's predictions. `segment_column`: the
    customers' attribute to split by (None, or absent from the data: one segment,
    `ALL_CUSTOMERS`).

    Never raises for an empty or immature log: `RealisedPerformance.empty` says nothing could
    be judged, and `summary` says why.
    """
    end_ts = pd.Timestamp(data_end(prep) if end is None else to_timestamp(end))
    log = predictions.reset_index(drop=True)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    if model_name is not None:
        log = log.loc[log["model_name"].astype(str) == str(model_name)]
    if model_version is not None:
        log = log.loc[log["model_version"].astype(str) == str(model_version)]
    counts["logged"] = len(log)

    # whose prediction: customers of the data (the log keeps ids as text)
    customer_text = log["customer_id"].astype(object)
    has_customer = customer_text.notna().to_numpy()
    counts["no_customer"] = int((~has_customer).sum())
    position_of = pd.Series(np.arange(len(prep.customers)),
                            index=prep.customers["customer_id"].astype(str).to_numpy())
    position_of = position_of[~position_of.index.duplicated()]
    pos = position_of.reindex(customer_text.where(has_customer, "").astype(str).to_numpy())
    known = has_customer & pos.notna().to_numpy()
    counts["unknown_customer"] = int((has_customer & ~known).sum())
    log = log.loc[known].assign(_pos=pos.to_numpy()[known].astype(np.int64))

    # readable dates, probabilities and targets
    as_of = _times(log["features_as_of"])
    probability = pd.to_numeric(log["churn_probability"], errors="coerce")
    targets = _targets(log)
    readable = (as_of.notna() & probability.between(0.0, 1.0) & targets.notna()).to_numpy()
    counts["unreadable"] = int((~readable).sum())
    log = log.loc[readable].assign(_as_of=as_of[readable], _target=targets[readable],
                                   churn_probability=probability[readable])

    # one prediction per customer, day and model version: the newest logged
    log = log.iloc[_newest_first(log)]
    day = log["_as_of"].dt.normalize()
    superseded = pd.DataFrame({"c": log["_pos"], "d": day,
                               "n": log["model_name"].astype(str),
                               "v": log["model_version"].astype(str)}).duplicated(keep="last")
    counts["superseded"] = int(superseded.sum())
    log = log.loc[~superseded.to_numpy()]

    # matured: the horizon has passed within the data
    log = log.assign(_label_as_of=log["_as_of"].dt.ceil("D"))
    horizon_end = log["_label_as_of"] + pd.to_timedelta(
        pd.to_numeric(log["horizon_days"]).astype(np.int64), unit="D")
    matured = (horizon_end <= end_ts).to_numpy()
    counts["immature"] = int((~matured).sum())
    next_maturity = pd.Timestamp(horizon_end[~matured].min()) if (~matured).any() else None
    log = log.loc[matured]

    # the realised label: the repository's definition, one call per (target, label day)
    churned = np.full(len(log), np.nan)
    customers = prep.customers.assign(_pos=np.arange(len(prep.customers)))
    end_np = to_timestamp(end_ts)
    keys = pd.DataFrame({"t": log["_label_as_of"].to_numpy(),
                         "k": [str(t) for t in log["_target"]]})
    for _, where in keys.groupby(["t", "k"], sort=False).indices.items():
        first = log.iloc[where[0]]
        churned[where] = churn_labels(prep, customers.iloc[log["_pos"].to_numpy()[where]],
                                      to_timestamp(first["_label_as_of"]), first["_target"],
                                      end_np)
    labelled = ~np.isnan(churned)
    counts["unlabelled"] = int((~labelled).sum())
    log = log.loc[labelled].assign(churned=churned[labelled])
    counts["evaluated"] = len(log)

    use_segment = segment_column is not None and segment_column in prep.customers
    positions = log["_pos"].to_numpy()
    segments = (_segment_names(prep.customers[segment_column].to_numpy()[positions], len(log))
                if use_segment else np.full(len(log), ALL_CUSTOMERS, dtype=object))

    def column(name):
        return log[name].to_numpy() if name in log else np.full(len(log), None, dtype=object)

    rows = pd.DataFrame({
        "prediction_id": column("prediction_id"),
        "customer_id": prep.customers["customer_id"].to_numpy()[positions],
        "model_name": column("model_name"), "model_version": column("model_version"),
        "target": column("target"),
        "horizon_days": pd.to_numeric(log["horizon_days"]).astype(np.int64).to_numpy(),
        "features_as_of": log["_as_of"].to_numpy(),
        "label_as_of": log["_label_as_of"].to_numpy(),
        "month": log["_as_of"].dt.strftime("%Y-%m").to_numpy(dtype=object),
        "segment": segments,
        "source": column("source"), "channel": column("channel"),
        "churn_probability": log["churn_probability"].to_numpy(dtype=float),
        "churned": log["churned"].to_numpy(dtype=float),
    }, columns=list(ROW_COLUMNS))
    rows = rows.sort_values(["features_as_of", "customer_id"], kind="stable",
                            ignore_index=True)

    by_segment = _metrics_table(rows, ["segment"])
    if len(by_segment):
        order = by_segment["segment"].ne(MISSING_SEGMENT).map({True: 0, False: 1})
        by_segment = by_segment.assign(_o=order).sort_values(
            ["_o", "n", "segment"], ascending=[True, False, True], kind="stable"
        ).drop(columns="_o").reset_index(drop=True)
    return RealisedPerformance(
        end=end_ts,
        rows=rows,
        overall=realised_metrics(rows["churned"].to_numpy(), rows["churn_probability"].to_numpy()),
        by_month=_metrics_table(rows, ["month"]),
        by_segment=by_segment,
        by_model=_metrics_table(rows, ["model_name", "model_version", "target", "horizon_days"]),
        reliability=_reliability(rows),
        counts=counts,
        next_maturity=next_maturity,
        segment_column=segment_column if use_segment else None,
    )


# ------------------------------------------------------------------------------------ figures


def realised_by_month_figure(perf: RealisedPerformance,
                             reference_auc: float | None = None) -> Figure:
    """Realised ROC-AUC by month of `features_as_of` (±2 standard errors, predictions per
    month annotated; `reference_auc`, e.g. the model's AUC on its test snapshot, as a line)
    above the observed churn rate against the mean predicted probability per month."""
    table = perf.by_month
    fig = plots._figure((7.5, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 2)})
    x = np.arange(len(table))
    auc = pd.to_numeric(table["roc_auc"], errors="coerce").to_numpy(dtype=float)
    se = pd.to_numeric(table["roc_auc_se"], errors="coerce").to_numpy(dtype=float)
    top.axhline(0.5, ls="--", lw=1, color=plots.REFERENCE_COLOR, label="random (AUC = 0.500)")
    if reference_auc is not None and np.isfinite(reference_auc):
        top.axhline(reference_auc, ls=":", lw=1.5, color="tab:green",
                    label=f"reference (AUC = {reference_auc:.3f})")
    if np.isfinite(auc).any():
        top.errorbar(x, auc, yerr=2 * np.nan_to_num(se), fmt="o-", color=plots.MODEL_COLOR,
                     lw=1.5, ms=5, capsize=3, label="realised AUC (±2 s.e.)")
    for xi, a, n, churners in zip(x, auc, table["n"], table["churners"], strict=True):
        text = f"n={n:,}\n{churners:,} churned"
        top.text(xi, 0.97, text if np.isfinite(a) else f"{text}\nAUC undefined", fontsize=7,
                 ha="center", va="top", transform=top.get_xaxis_transform())
    low = np.nanmin(np.r_[auc - 2 * np.nan_to_num(se), 0.5, reference_auc or 0.5]) \
        if np.isfinite(auc).any() else 0.4
    top.set(xlim=(-0.5, len(x) - 0.5), ylim=(max(0.0, low - 0.08), 1.1), ylabel="ROC-AUC")
    top.set_title(f"Realised ROC-AUC by month: {perf.counts['evaluated']:,} matured "
                  f"predictions, data to {perf.end:%Y-%m-%d}", fontsize=10)
    top.grid(alpha=0.3)
    top.legend(loc="lower left", fontsize=8)

    observed = pd.to_numeric(table["churn_rate"], errors="coerce").to_numpy(dtype=float)
    predicted = pd.to_numeric(table["mean_predicted"], errors="coerce").to_numpy(dtype=float)
    bottom.plot(x, observed, "o-", color="tab:red", lw=1.5, ms=4, label="observed churn rate")
    bottom.plot(x, predicted, "s--", color=plots.MODEL_COLOR, lw=1.5, ms=4,
                label="mean predicted probability")
    bottom.set(ylabel="Churn rate", xlabel="Month of the features' as-of date")
    highest = np.nanmax(np.r_[observed, predicted, 0.0])
    bottom.set_ylim(0, highest * 1.4 if highest > 0 else 1.0)
    plots._percent_axis(bottom.yaxis, "linear")
    bottom.set_xticks(x, [str(m) for m in table["month"]], rotation=45 if len(x) > 8 else 0,
                      ha="right" if len(x) > 8 else "center", fontsize=8)
    bottom.grid(alpha=0.3)
    bottom.legend(loc="upper left", fontsize=8)
    return fig


def realised_figures(perf: RealisedPerformance,
                     reference_auc: float | None = None) -> dict[str, Figure]:
    """The realised-performance figures by MLflow file stem (`mlflow.log_figure(fig,
    f"plots/{name}.png")`): `realised_by_month` (`realised_by_month_figure`),
    `realised_calibration` (the reliability diagram, `plots.calibration_figure`) and
    `realised_gains` (`plots.gains_figure`) of all matured predictions. Empty when nothing
    has matured."""
    if perf.empty:
        return {}
    y = perf.rows["churned"].to_numpy()
    p = perf.rows["churn_probability"].to_numpy()
    return {
        "realised_by_month": realised_by_month_figure(perf, reference_auc),
        "realised_calibration": plots.calibration_figure(y, p, BINS),
        "realised_gains": plots.gains_figure(y, p),
    }
