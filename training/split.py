"""Splitting stacked snapshots into train / validation / test, by time.

Test is the latest snapshot; validation the latest one at least `gap` months before it;
training every snapshot at least `gap` months before validation. With the gap equal to the label
horizon, no training label is observed during the validation period, and no validation label
during the test period. Never a random row split: when the snapshots are too few for that (the
company's labels at a single date, or a short history), whole customers are held out instead,
stratified by outcome (each side keeps the churn rate), and the split says so. The held-out
customers travel with the model (`Split.holdout`), so `churn promote` judges every model only on
customers none of them was fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    method: str  # "time" | "customer_holdout"
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    description: str
    #: customer_id, side ("train" / "validation" / "test") for a customer-level holdout.
    holdout: pd.DataFrame | None = None

    def as_params(self) -> dict[str, str]:
        def span(frame: pd.DataFrame) -> str:
            dates = sorted(pd.to_datetime(frame["as_of"].unique()))
            return f"{dates[0]:%Y-%m-%d}..{dates[-1]:%Y-%m-%d} ({len(dates)})" if dates else "-"

        return {
            "split.method": self.method,
            "split.train_as_of": span(self.train),
            "split.validation_as_of": span(self.validation),
            "split.test_as_of": span(self.test),
            "split.rows": f"{len(self.train)}/{len(self.validation)}/{len(self.test)}",
        }


def gap_months(horizon_days: int) -> int:
    return max(1, math.ceil(horizon_days / 30.4))


def split_by_time(frame: pd.DataFrame, gap: int, holdout_share: float = 0.2,
                  seed: int = 42) -> Split:
    dates = sorted(pd.to_datetime(frame["as_of"].unique()))
    if dates:
        test_date = dates[-1]
        val_candidates = [d for d in dates if d <= test_date - pd.DateOffset(months=gap)]
        if val_candidates:
            val_date = val_candidates[-1]
            train_dates = [d for d in dates if d <= val_date - pd.DateOffset(months=gap)]
            if train_dates:
                as_of = pd.to_datetime(frame["as_of"])
                return Split(
                    "time",
                    frame.loc[as_of.isin(train_dates).to_numpy()],
                    frame.loc[(as_of == val_date).to_numpy()],
                    frame.loc[(as_of == test_date).to_numpy()],
                    f"time split: train on {len(train_dates)} snapshot(s) "
                    f"{train_dates[0]:%Y-%m-%d}..{train_dates[-1]:%Y-%m-%d}, validate on "
                    f"{val_date:%Y-%m-%d}, test on {test_date:%Y-%m-%d} "
                    f"({gap}-month gaps so labels never overlap)",
                )
    return split_by_customer(frame, holdout_share, seed, len(dates), gap)


def split_by_customer(frame: pd.DataFrame, holdout_share: float, seed: int,
                      n_snapshots: int, gap: int) -> Split:
    """Fallback: whole customers go to train, validation or test (never rows of one customer
    to two sides), stratified by whether the customer churned in any snapshot, so each side
    keeps the churn rate of the whole."""
    from churn_risk.features.snapshots import CHURN_LABEL

    outcome = frame.groupby("customer_id", sort=True)[CHURN_LABEL].max()
    rng = np.random.default_rng(seed)
    side = pd.Series("train", index=outcome.index, dtype=object)
    for value in sorted(outcome.unique()):
        members = outcome.index[(outcome == value).to_numpy()]
        members = members[rng.permutation(len(members))]
        n_holdout = int(round(holdout_share * len(members)))
        side.loc[members[:n_holdout]] = "test"
        side.loc[members[n_holdout:2 * n_holdout]] = "validation"
    where = side.reindex(frame["customer_id"].to_numpy()).to_numpy()
    why = ("the labels have a single as_of date" if n_snapshots == 1 else
           f"the data hold {n_snapshots} labelled snapshot(s), too few for a time split with "
           f"{gap}-month gaps")
    return Split(
        "customer_holdout",
        frame.loc[where == "train"],
        frame.loc[where == "validation"],
        frame.loc[where == "test"],
        f"customer-level holdout, stratified by outcome ({holdout_share:.0%} of customers for "
        f"validation and for test): {why}",
        holdout=pd.DataFrame({"customer_id": side.index.to_numpy(), "side": side.to_numpy()}),
    )
