"""Measured campaign effects from the CRM data: per campaign, per segment and pooled per offer.

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

The statistics themselves (intervals, pooling) are in `campaigns.stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn_risk.features.config import FeatureConfig
from churn_risk.features.labels import (
    DataLike,
    churn_labels,
    data_end,
    outcome_target,
    population,
    resolve_target,
)
from churn_risk.features.lifecycle import DAY, PreparedData, to_timestamp
from churn_risk.features.target import Target, TargetKind
from churn_risk.training.campaigns.stats import EFFECT_COLUMNS, effect, mantel_haenszel, z_value

__all__ = [
    "MISSING_OFFER",
    "POOLING_METHOD",
    "CampaignEvaluation",
    "campaign_target",
    "campaign_contacts",
    "campaign_sends",
    "campaign_statistics",
    "combine_contacts",
    "combine_sends",
    "evaluate_campaigns",
    "evaluate_campaigns_dask",
    "group_counts",
    "log_risk_ratio",
    "outcome_success_rates",
    "success_rates",
]

#: The offer name under which campaigns without an `offer` are pooled (never a success rate).
MISSING_OFFER = "(missing)"
POOLING_METHOD = (
    "Mantel-Haenszel, stratified by campaign (risk difference: Greenland-Robins variance; "
    "risk ratio: Greenland-Robins variance of log RR)"
)
CAMPAIGN_COLUMNS = ["campaign_id", "offer", "sent_at", "as_of", "horizon_end", "targeted",
                    "excluded", *EFFECT_COLUMNS, "evaluable", "reason"]
SEGMENT_COLUMNS = ["campaign_id", "offer", "segment_column", "segment", *EFFECT_COLUMNS,
                   "evaluable", "reason"]
OFFER_COLUMNS = ["offer", "campaigns", "n_campaigns", "n_treatment", "n_control",
                 "churned_treatment", "churned_control", "retention_treatment",
                 "retention_control", "uplift", "uplift_low", "uplift_high",
                 "relative_churn_reduction", "relative_churn_reduction_low",
                 "relative_churn_reduction_high", "evaluable", "reason", "method"]
OUTCOME_COLUMNS = ["customer_id", "campaign_id", "offer", "group", "sent_at", "as_of",
                   "churned", "_pos"]
SEND_COLUMNS = ["campaign_id", "sent_at", "offer", "offer_at", "targeted", "grouped"]
CONTACT_COLUMNS = ["campaign_id", "customer_id", "group", "churned", "_pos"]

Counts = tuple[int, int, int, int]


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
        return [_summary_row(level, r, pct) for r in frames[level].itertuples(index=False)]


def _summary_row(level: str, r, pct: int) -> dict[str, str]:
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
    row["retention T / C"] = f"{_pct(r.retention_treatment)} / {_pct(r.retention_control)}"
    row[f"uplift [{pct}% CI]"] = _with_ci(r.uplift, r.uplift_low, r.uplift_high, "pp")
    row[f"churn reduction [{pct}% CI]"] = _with_ci(
        r.relative_churn_reduction, r.relative_churn_reduction_low,
        r.relative_churn_reduction_high, "%",
    )
    row["status"] = "ok" if r.evaluable else f"not evaluable: {r.reason}"
    return row


def _pct(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.1%}"


def _with_ci(x: float, low: float, high: float, unit: str) -> str:
    if not np.isfinite(x):
        return "-"
    if unit == "pp":
        return f"{100 * x:+.1f} pp [{100 * low:+.1f}, {100 * high:+.1f}]"
    return f"{x:.0%} [{low:.0%}, {high:.0%}]"


def campaign_target(prep: DataLike, horizon_days: int = 90) -> Target:
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
    see `labels.outcome_target`).

    In three steps, so that the Dask engine can run the first two per customer partition on its
    workers: `campaign_sends` (one row per campaign), `campaign_contacts` (one row per compared
    customer of each campaign) and `campaign_statistics` (the figures, from those rows only)."""
    z_value(confidence)
    target = outcome_target(prep, target) if target is not None else campaign_target(prep)
    end = data_end(prep)
    sends = campaign_sends(prep)
    contacts = campaign_contacts(prep, sends, target, end, segment_columns)
    return campaign_statistics(sends, contacts, target, end, confidence)


def evaluate_campaigns_dask(
    data,
    target: Target | None = None,
    segment_columns: Sequence[str] = ("segment",),
    confidence: float = 0.95,
) -> CampaignEvaluation:
    """`evaluate_campaigns` of data prepared on Dask workers (`dask_engine.DaskData`): the sends
    and the contacts are computed per customer partition where it is; the driver adds them up
    and computes the figures. Equal to the pandas result, except that `outcomes._pos` is -1
    (there is no `prep.customers` on the driver for it to point into) and the outcomes of a
    campaign are ordered by customer_id."""
    z_value(confidence)
    facts = data.facts
    target = outcome_target(facts, target) if target is not None else campaign_target(facts)
    sends = combine_sends(data.map(campaign_sends))
    contacts = data.map(campaign_contacts, sends=sends, target=target, end=facts.end,
                        segment_columns=segment_columns)
    return campaign_statistics(sends, combine_contacts(contacts, sends), target, facts.end,
                               confidence)


def _campaign_table(prep: PreparedData) -> pd.DataFrame:
    if not prep.has("campaigns"):
        return pd.DataFrame(columns=["customer_id", "campaign_id", "timestamp", "group", "offer",
                                     "_pos"])
    frame = prep.events["campaigns"]
    for optional in ("group", "offer"):
        if optional not in frame:
            frame = frame.assign(**{optional: None})
    return frame


def campaign_sends(prep: PreparedData) -> pd.DataFrame:
    """One row per campaign, in the order of their first records (`SEND_COLUMNS`):
    `campaign_id`, `sent_at` (its earliest timestamp), `offer` (the first offer recorded, None
    when none is) and `offer_at` (when it was recorded), `targeted` (distinct customers) and
    `grouped` (whether any row records a treatment/control group). The sends of customer
    partitions add up to those of the whole data set (`combine_sends`)."""
    rows = []
    for campaign_id, rows_of in _campaign_table(prep).groupby("campaign_id", sort=False):
        known = rows_of["offer"].dropna()
        rows.append({
            "campaign_id": campaign_id,
            "sent_at": rows_of["timestamp"].min(),
            "offer": known.iloc[0] if len(known) else None,
            "offer_at": rows_of.loc[known.index[0], "timestamp"] if len(known) else pd.NaT,
            "targeted": int(rows_of["customer_id"].nunique()),
            "grouped": bool(rows_of["group"].notna().any()),
        })
    return pd.DataFrame(rows, columns=SEND_COLUMNS).astype({"offer": object})


def combine_sends(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """`campaign_sends` of the whole data set from those of its customer partitions: the
    earliest send, the offer recorded first, the targeted customers added up (no customer is in
    two partitions), grouped when any partition records a group. Campaigns come in the order of
    their send times (the first partition's order for equal times)."""
    both = pd.concat([p.astype({"offer": object}) for p in parts], ignore_index=True)
    if not len(both):
        return pd.DataFrame(columns=SEND_COLUMNS).astype({"offer": object})
    rows = []
    for campaign_id, part in both.groupby("campaign_id", sort=False):
        offered = part.loc[part["offer"].notna()]
        first = offered.sort_values("offer_at", kind="stable").iloc[0] if len(offered) else None
        rows.append({
            "campaign_id": campaign_id,
            "sent_at": part["sent_at"].min(),
            "offer": None if first is None else first["offer"],
            "offer_at": pd.NaT if first is None else first["offer_at"],
            "targeted": int(part["targeted"].sum()),
            "grouped": bool(part["grouped"].any()),
        })
    sends = pd.DataFrame(rows, columns=SEND_COLUMNS).astype({"offer": object})
    return sends.sort_values("sent_at", kind="stable").reset_index(drop=True)


def _outcome_date(sent_at: object) -> np.datetime64:
    """The as-of date of a campaign's outcome: the day after its send day."""
    return to_timestamp(pd.Timestamp(to_timestamp(sent_at)).normalize() + pd.Timedelta(days=1))


def campaign_contacts(
    prep: PreparedData,
    sends: pd.DataFrame,
    target: Target,
    end: np.datetime64,
    segment_columns: Sequence[str] = ("segment",),
) -> pd.DataFrame:
    """One row per customer of each campaign of `sends` who is in one treatment/control group
    of it and still a customer at its outcome date (`population`): `campaign_id`,
    `customer_id`, `group`, `churned` (NaN: not known), `_pos` (the customer's row in
    `prep.customers`) and `segment.<column>` for each of `segment_columns` the customers table
    has. Campaigns in the order of `sends`, customers in the order of `prep.customers`. Each
    row reads one customer's data only, so the contacts of customer partitions (each given the
    sends of the whole data set) add up to those of the whole data set."""
    segment_columns = [s for s in segment_columns if s in prep.customers]
    by_campaign = dict(tuple(_campaign_table(prep).groupby("campaign_id", sort=False)))
    frames = []
    for campaign_id, sent_at in zip(sends["campaign_id"], sends["sent_at"], strict=True):
        rows_of = by_campaign.get(campaign_id)
        if rows_of is None:
            continue
        as_of = _outcome_date(sent_at)
        groups = rows_of.groupby("customer_id", sort=False)["group"].agg(
            lambda g: g.iloc[0] if g.nunique(dropna=False) == 1 else "ambiguous"
        )
        groups = groups.loc[groups.isin(("treatment", "control"))]
        eligible = population(prep, as_of, target)
        customers = eligible.loc[eligible["customer_id"].isin(groups.index)]
        ids = customers["customer_id"].to_numpy()
        pos = customers["_pos"].to_numpy()
        frames.append(pd.DataFrame({
            "campaign_id": np.full(len(customers), campaign_id, dtype=object),
            "customer_id": ids,
            "group": groups.reindex(ids).to_numpy(),
            "churned": churn_labels(prep, customers, as_of, target, end),
            "_pos": pos,
            **{f"segment.{column}": prep.customers[column].astype(object).to_numpy()[pos]
               for column in segment_columns},
        }))
    if not frames:  # typed like the rows would be
        return pd.DataFrame({
            "campaign_id": np.array([], dtype=object),
            "customer_id": prep.customers["customer_id"].to_numpy()[:0],
            "group": np.array([], dtype=object),
            "churned": np.array([], dtype=float),
            "_pos": np.array([], dtype=np.int64),
            **{f"segment.{column}": np.array([], dtype=object) for column in segment_columns},
        })
    return pd.concat(frames, ignore_index=True)


def combine_contacts(parts: Sequence[pd.DataFrame], sends: pd.DataFrame) -> pd.DataFrame:
    """The `campaign_contacts` of customer partitions as one table: campaigns in the order of
    `sends`, then by customer_id; `_pos` is -1 (it points into a partition's customers)."""
    filled = [p for p in parts if len(p)] or list(parts[:1])
    contacts = pd.concat(filled, ignore_index=True) if len(filled) > 1 else filled[0]
    order = pd.Series(np.arange(len(sends)), index=sends["campaign_id"].to_numpy())
    position = order.reindex(contacts["campaign_id"].to_numpy()).to_numpy()
    contacts = contacts.assign(_order=position).sort_values(["_order", "customer_id"],
                                                            kind="stable")
    return contacts.drop(columns="_order").reset_index(drop=True).assign(_pos=np.int64(-1))


def campaign_statistics(
    sends: pd.DataFrame,
    contacts: pd.DataFrame,
    target: Target,
    end: np.datetime64,
    confidence: float = 0.95,
) -> CampaignEvaluation:
    """The `CampaignEvaluation` of the campaigns `sends` from their `contacts` (see
    `campaign_sends` and `campaign_contacts`; `target` is the outcome's, `end` the data end):
    nothing here reads the data themselves."""
    z_value(confidence)
    segment_columns = [c.removeprefix("segment.") for c in contacts.columns
                       if c.startswith("segment.")]
    by_campaign = dict(tuple(contacts.groupby("campaign_id", sort=False)))
    rows, segment_rows, outcome_frames = [], [], []
    for send in sends.to_dict("records"):
        campaign_id = send["campaign_id"]
        contacted = by_campaign.get(campaign_id, contacts.iloc[:0])
        row, outcome, values = _evaluate_campaign(send, contacted, segment_columns, target, end,
                                                  confidence)
        rows.append(row)
        outcome_frames.append(outcome.assign(
            campaign_id=campaign_id, offer=row["offer"], sent_at=row["sent_at"],
            as_of=row["as_of"],
        ))
        segment_rows += _segment_rows(row, outcome, values, confidence)
    campaigns = _campaign_frame(rows)
    return CampaignEvaluation(
        campaigns=campaigns,
        segments=pd.DataFrame(segment_rows, columns=SEGMENT_COLUMNS),
        offers=_pool_offers(campaigns, confidence),
        outcomes=(pd.concat(outcome_frames, ignore_index=True)[OUTCOME_COLUMNS]
                  if outcome_frames else pd.DataFrame(columns=OUTCOME_COLUMNS)),
        confidence=confidence,
        horizon_days=target.horizon_days,
        churn_definition=target.kind.value,
    )


def _evaluate_campaign(
    send: dict,
    contacted: pd.DataFrame,
    segment_columns: Sequence[str],
    target: Target,
    end: np.datetime64,
    confidence: float,
) -> tuple[dict, pd.DataFrame, dict[str, np.ndarray]]:
    """The campaign's row of `CampaignEvaluation.campaigns`, its compared customers (those
    with a known outcome) and their values of each segment column."""
    sent_at = to_timestamp(send["sent_at"])
    as_of = _outcome_date(sent_at)
    offer = send["offer"]
    outcome, excluded, reason = _outcomes(send, contacted, as_of, target, end)
    figures, reason = _figures(group_counts(outcome), reason, confidence)
    known = contacted["churned"].notna().to_numpy()
    row = {
        "campaign_id": send["campaign_id"],
        "offer": MISSING_OFFER if offer is None or offer is pd.NA or (
            isinstance(offer, float) and np.isnan(offer)) else str(offer),
        "sent_at": pd.Timestamp(sent_at),
        "as_of": pd.Timestamp(as_of),
        "horizon_end": pd.Timestamp(as_of + target.horizon_days * DAY),
        "targeted": int(send["targeted"]),
        "excluded": excluded,
        **figures,
        "evaluable": reason is None,
        "reason": reason or "",
    }
    values = {c: contacted[f"segment.{c}"].to_numpy(dtype=object)[known]
              for c in segment_columns}
    return row, outcome, values


def _segment_rows(campaign: dict, outcome: pd.DataFrame, values: dict[str, np.ndarray],
                  confidence: float) -> list[dict]:
    """The campaign's rows of `CampaignEvaluation.segments`: one per value of each column (not
    evaluable when the campaign is not, or when a group of the segment is empty)."""
    from churn_risk.training.metrics import MISSING_SEGMENT  # (scikit-learn: not on import)

    rows = []
    for column, of_column in values.items():
        names = pd.Series(of_column).where(pd.notna(of_column), MISSING_SEGMENT).astype(str)
        for name in sorted(names.unique()):
            counts = group_counts(outcome.loc[(names == name).to_numpy()])
            figures, reason = _figures(counts, campaign["reason"], confidence)
            rows.append({
                "campaign_id": campaign["campaign_id"], "offer": campaign["offer"],
                "segment_column": column, "segment": name, **figures,
                "evaluable": reason is None, "reason": reason or "",
            })
    return rows


def _campaign_frame(rows: list[dict]) -> pd.DataFrame:
    campaigns = pd.DataFrame(rows, columns=CAMPAIGN_COLUMNS)
    if len(campaigns):
        campaigns = campaigns.sort_values(["sent_at", "campaign_id"], kind="stable")
        campaigns = campaigns.reset_index(drop=True)
    return campaigns


def _outcomes(
    send: dict,
    contacted: pd.DataFrame,
    as_of: np.datetime64,
    target: Target,
    end: np.datetime64,
) -> tuple[pd.DataFrame, int, str | None]:
    """(customer_id, group, churned, _pos) of the campaign's customers still customers at
    `as_of` with a known outcome; the number excluded; a reason when nothing can be measured."""
    churned = contacted["churned"].to_numpy(dtype=float)
    known = ~np.isnan(churned)
    outcome = pd.DataFrame({
        "customer_id": contacted["customer_id"].to_numpy()[known],
        "group": contacted["group"].to_numpy()[known],
        "churned": churned[known],
        "_pos": contacted["_pos"].to_numpy()[known],
    })
    excluded = int(send["targeted"] - len(outcome))
    reason = None
    horizon_end = as_of + target.horizon_days * DAY
    if not horizon_end <= end:  # labels.horizon_complete
        reason = (f"horizon incomplete: the outcome needs data until "
                  f"{pd.Timestamp(horizon_end):%Y-%m-%d}, "
                  f"the data end at {pd.Timestamp(end):%Y-%m-%d}")
    elif len(contacted) and not known.any():
        reason = f"no churn outcome known at {pd.Timestamp(as_of):%Y-%m-%d} ({target.kind})"
    elif not send["grouped"]:
        reason = "no treatment/control groups recorded"
    return outcome, excluded, reason


def group_counts(outcome: pd.DataFrame) -> Counts:
    """(n_treatment, churned_treatment, n_control, churned_control) of compared customers."""
    treated = (outcome["group"] == "treatment").to_numpy()
    churned = outcome["churned"].to_numpy(dtype=float) == 1.0
    return (int(treated.sum()), int((churned & treated).sum()),
            int((~treated).sum()), int((churned & ~treated).sum()))


def _figures(counts: Counts, reason: str | None,
             confidence: float) -> tuple[dict[str, float], str | None]:
    """The effect figures of `counts` and the reason they are not evaluable (the given one, else
    an empty group): figures other than the counts are NaN when not evaluable."""
    reason = reason or _not_evaluable(counts)
    figures = effect(*counts, confidence)
    if reason is not None:
        figures = _blank(figures)
    return figures, reason


def _not_evaluable(counts: Counts) -> str | None:
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
    rows = [_pool_offer(offer, group.loc[group["evaluable"]], confidence)
            for offer, group in campaigns.groupby("offer", sort=True)]
    return pd.DataFrame(rows, columns=OFFER_COLUMNS)


def _pool_offer(offer: str, ok: pd.DataFrame, confidence: float) -> dict:
    """The row of `CampaignEvaluation.offers` pooling the evaluable campaigns `ok`."""
    n_t, n_c = ok["n_treatment"].to_numpy(), ok["n_control"].to_numpy()
    ch_t, ch_c = ok["churned_treatment"].to_numpy(), ok["churned_control"].to_numpy()
    # pooled on churn (a = churners among treated); uplift = - churn risk difference
    mh = mantel_haenszel(ch_t, n_t, ch_c, n_c, confidence)
    return {
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
            **log_risk_ratio(1 - r.relative_churn_reduction, 1 - r.relative_churn_reduction_high,
                             1 - r.relative_churn_reduction_low, evaluation.confidence),
            "campaigns": [c for c in str(r.campaigns).split(", ") if c],
            "n_treatment": int(r.n_treatment),
            "n_control": int(r.n_control),
            "confidence": evaluation.confidence,
            "method": r.method,
        }
    return out


def log_risk_ratio(rr: float, low: float, high: float, confidence: float) -> dict[str, float]:
    """``log_rr`` and its standard error ``log_rr_se`` from a risk ratio's interval (symmetric
    on the log scale): what `models.portfolio.with_measured_success` combines with the prior.
    Empty when the interval is not defined (no churner in a group)."""
    if not all(np.isfinite(v) and v > 0 for v in (rr, low, high)):
        return {}
    return {"log_rr": float(np.log(rr)),
            "log_rr_se": float((np.log(high) - np.log(low)) / (2 * z_value(confidence)))}


#: The response of a report that counts as treated (`outcome_success_rates`); "declined" is the
#: comparison group.
TAKEN, DECLINED = "taken", "declined"
OUTCOME_METHOD = ("reported outcomes: customers who took the action against customers offered it "
                  "who declined, Mantel-Haenszel risk ratio stratified by predicted churn "
                  "probability (quintiles)")


def outcome_success_rates(reports: pd.DataFrame, confidence: float = 0.95,
                          strata: int = 5) -> dict[str, dict]:
    """Per action, the success rate measured from the channels' outcome reports.

    `reports`: one row per prediction with a matured outcome: ``action``, ``response``
    (`TAKEN` or `DECLINED`), ``stayed`` (bool; unknown rows are dropped) and
    ``churn_probability`` (the prediction's, before the action). Customers who took the action
    are compared with comparable customers who declined it: within bands of predicted churn
    probability (`strata` quantile bands of the action's reports), pooled with Mantel-Haenszel
    weights, so that an action offered mostly to risky customers is not blamed for their risk.
    Each value has the keys of `success_rates` (``campaigns`` empty) plus ``reports``."""
    out: dict[str, dict] = {}
    known = reports.loc[reports["stayed"].notna() & reports["response"].isin([TAKEN, DECLINED])]
    for action, part in known.groupby("action", sort=True):
        p = part["churn_probability"].to_numpy(dtype=float)
        edges = np.unique(np.quantile(p, np.linspace(0, 1, strata + 1)[1:-1]))
        band = np.searchsorted(edges, p, side="right")
        treated = (part["response"] == TAKEN).to_numpy()
        churned = ~part["stayed"].astype(bool).to_numpy()
        n1, n0 = (np.bincount(band, weights=w, minlength=strata) for w in (treated, ~treated))
        a, c = (np.bincount(band, weights=w, minlength=strata)
                for w in (churned & treated, churned & ~treated))
        pooled = mantel_haenszel(a, n1, c, n0, confidence)
        measured = log_risk_ratio(pooled["risk_ratio"], pooled["risk_ratio_low"],
                                  pooled["risk_ratio_high"], confidence)
        if not measured:
            continue
        out[str(action)] = {
            "rate": float(np.clip(1 - pooled["risk_ratio"], 0.0, 1.0)),
            "low": float(np.clip(1 - pooled["risk_ratio_high"], 0.0, 1.0)),
            "high": float(np.clip(1 - pooled["risk_ratio_low"], 0.0, 1.0)),
            **measured,
            "campaigns": [],
            "reports": int(len(part)),
            "n_treatment": int(treated.sum()),
            "n_control": int((~treated).sum()),
            "confidence": confidence,
            "method": OUTCOME_METHOD,
        }
    return out
