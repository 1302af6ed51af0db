"""Splitting stacked snapshots into train / validation / test, by time.

Test is the latest snapshot; validation the latest one at least `gap` months before it;
training every snapshot at least `gap` months before validation. With the gap equal to the label
horizon, no training label is observed during the validation period, and no validation label
during the test period. Never a random row split: when the data hold too few snapshots for that,
the split falls back to a customer-level holdout and says so.
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
    to two sides)."""
    customers = pd.unique(frame["customer_id"])
    rng = np.random.default_rng(seed)
    draw = rng.random(len(customers))
    side = pd.Series(
        np.where(draw < holdout_share, "test",
                 np.where(draw < 2 * holdout_share, "validation", "train")),
        index=customers,
    )
    where = side.reindex(frame["customer_id"].to_numpy()).to_numpy()
    return Split(
        "customer_holdout",
        frame.loc[where == "train"],
        frame.loc[where == "validation"],
        frame.loc[where == "test"],
        f"customer-level holdout ({holdout_share:.0%} of customers for validation and for test):"
        f" the data hold {n_snapshots} labelled snapshot(s), too few for a time split with "
        f"{gap}-month gaps",
    )
