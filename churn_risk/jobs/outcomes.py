"""`churn outcomes load` and `churn outcomes rates`: what channels did with the scores given
out (`serving.outcomes`), and the success rates learned from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from churn_risk.errors import DataError
from churn_risk.features.io import read_file
from churn_risk.features.store import Store

#: The columns a file of outcome reports must have (`serving.outcomes.FIELDS` may; each row is
#: checked for what it needs: a report of whether customers stayed may be prediction_id, stayed).
REQUIRED = ("prediction_id",)
#: Text a file may hold for `stayed`.
_TRUTH = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def load(path: Path, store_url: str) -> tuple[int, int]:
    """Validate the reports of a CSV or Parquet file (the fields of `POST /outcomes`) and store
    them, all or none; (received, new)."""
    from churn_risk.serving.outcomes import FIELDS, OutcomeErrors, checked_outcomes

    if not path.is_file():
        raise DataError(f"{path}: no such file (a CSV or Parquet file of outcome reports)")
    frame = read_file(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    unknown = [str(c) for c in frame.columns if c not in FIELDS]
    if missing or unknown:  # one line for the file, not one per row
        problem = (f"no column {', '.join(missing)}" if missing else
                   f"unknown column {', '.join(unknown)}")
        raise DataError(f"{path}: {problem} (the columns of an outcome report: "
                        f"{', '.join(FIELDS)}; {', '.join(REQUIRED)} required); nothing stored")
    records = _records(frame)
    with Store(store_url) as store:
        try:
            rows = checked_outcomes(records, store)
        except OutcomeErrors as exc:
            lines = [f"{e['field'].replace('records[', 'row ').replace('].', ', ', 1)}: "
                     f"{e['message']}" for e in exc.errors[:10]]
            more = len(exc.errors) - len(lines)
            raise DataError(f"{path}: {len(exc.errors)} problem(s), nothing stored (rows count "
                            "from 0 after the header):\n  " + "\n  ".join(lines)
                            + (f"\n  ... and {more} more" if more > 0 else "")) from None
        return len(rows), store.record_outcomes(rows)


def _records(frame: pd.DataFrame) -> list[dict]:
    """A file's rows as reports: empty cells left out, `stayed` as true/false when it says so
    (anything else is left for the validation to name)."""
    records = []
    for row in frame.to_dict("records"):
        record = {k: v for k, v in row.items() if not (v is None or v != v or v == "")}
        if isinstance(record.get("stayed"), str):
            record["stayed"] = _TRUTH.get(record["stayed"].strip().lower(), record["stayed"])
        if isinstance(record.get("occurred_at"), pd.Timestamp):
            record["occurred_at"] = record["occurred_at"].isoformat()
        records.append(record)
    return records


@dataclass(frozen=True)
class LearnedRate:
    action: str
    kind: str
    before: float  # the champion's rate (prior and campaigns)
    rate: float
    low: float | None
    high: float | None
    reports: int
    source: str


def rates(store_url: str, model_uri: str) -> list[LearnedRate]:
    """Each action's success rate: the model's (catalogue prior and campaigns) and after the
    store's matured outcome reports."""
    from churn_risk.jobs.common import registered_bundle
    from churn_risk.serving.outcomes import with_reported_outcomes
    from churn_risk.training.tracking import configure_tracking

    configure_tracking()
    bundle, _, _ = registered_bundle(model_uri)
    before = {a.name: a.success_rate for a in bundle.policy.actions}
    with Store(store_url) as store:
        reported = with_reported_outcomes(bundle, store)
    return [LearnedRate(a.name, a.kind, before[a.name], a.success_rate, a.success_low,
                        a.success_high, reported.get(a.name, {}).get("reports", 0),
                        a.success_source) for a in bundle.policy.actions]
