"""`POST /events`: new CRM records into the store, validated by the data contract against what
the store holds, all of a batch or none of it, stored (committed) before the answer."""

from __future__ import annotations

import threading

import pandas as pd

from churn_risk.features.validation import DataContractError
from churn_risk.serving.problems import Problem

#: Offending records listed per broken rule (the problem lists at most `MAX_ERRORS` in all).
ROWS_PER_RULE = 5


class Ingestion:
    """The worker's writer to the store (one connection pool, opened on first use)."""

    def __init__(self, store_url: str | None) -> None:
        self.store_url = store_url
        self._store = None
        self._lock = threading.Lock()

    def _opened(self, what: str = "events"):
        from churn_risk.features.store import Store

        if self.store_url is None:
            raise Problem("no-store", f"this server reads CRM files; {what} need a store: "
                                      "start it with `churn serve --store URL`")
        with self._lock:
            if self._store is None:
                self._store = Store(self.store_url)
        return self._store

    def ingest(self, request) -> dict:
        store = self._opened()
        frame = pd.DataFrame.from_records(request.records)
        try:
            written = store.ingest({request.table: frame})
        except DataContractError as exc:
            raise Problem("invalid-events", f"{len(exc.problems)} rule(s) broken: nothing of "
                          "this batch is stored", record_errors(exc)) from None
        ids = (frame["customer_id"].dropna().drop_duplicates().tolist()
               if "customer_id" in frame.columns else [])
        watermark = store.watermark()
        return {"table": request.table, "received": written.received[request.table],
                "stored": written.stored[request.table],
                "already_stored": written.duplicates[request.table],
                "customer_ids": ids,
                "watermark": f"{watermark:%Y-%m-%dT%H:%M:%S.%f}Z"}

    def report_outcomes(self, request, prediction_log=None) -> dict:
        """`POST /outcomes` (`serving.outcomes`); `prediction_log`: this worker's, flushed when
        a quoted prediction is not in the store yet."""
        from churn_risk.serving.outcomes import OutcomeErrors, checked_outcomes

        store = self._opened("outcome reports")
        try:
            rows = checked_outcomes(request.records, store, wait_for_log=lambda: _wait_for_log(
                prediction_log))
            stored = store.record_outcomes(rows)
        except OutcomeErrors as exc:
            raise Problem("invalid-outcomes", f"{len(exc.errors)} problem(s): nothing of this "
                          "batch is stored", exc.errors) from None
        return {"received": len(rows), "stored": stored, "already_stored": len(rows) - stored}


def _wait_for_log(prediction_log) -> None:
    """Until a prediction given out a moment ago is in the store: this worker's log written,
    and another worker's (which writes within `FLUSH_SECONDS`) given the time to."""
    import time

    from churn_risk.serving.predlog import FLUSH_SECONDS

    started = time.monotonic()
    if prediction_log is not None:
        prediction_log.flush()
    time.sleep(max(0.0, FLUSH_SECONDS + 0.3 - (time.monotonic() - started)))


def record_errors(exc: DataContractError) -> list[dict]:
    """Each broken rule as `records[i].column` errors (the first few records breaking it)."""
    errors = []
    for problem in exc.problems:
        column = problem.column or "table"
        rows = problem.examples["row"].tolist() if "row" in problem.examples else []
        for row in rows[:ROWS_PER_RULE] or [None]:
            where = f"records[{row}].{column}" if row is not None else f"records.{column}"
            errors.append({"field": where, "message": problem.message})
    return errors
