"""The prediction log of a live server: every score `/score` gives out, with its provenance,
reasons and action, appended to the store's `prediction_log` by a background thread (a request
never waits for it; at most `FLUSH_SECONDS` of entries are lost if the worker is killed). While
the store is away the entries are kept and written once it is back."""

from __future__ import annotations

import logging
import queue
import threading
import time

from churn_risk.errors import first_line
from churn_risk.features.store import new_prediction_id, unreachable

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
#: Rows written in one transaction.
MAX_ROWS = 5_000
#: While the store is away: the pauses between attempts (the last repeats), and the rows kept
#: meanwhile (about 500 bytes each); beyond, the oldest are dropped, and the log says so.
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)
MAX_PENDING = 200_000


def prediction_rows(results: list[dict], source: str, channel: str | None) -> list[dict]:
    """`prediction_log` rows of scoring results (the API's `CustomerScore` dicts)."""
    rows = []
    for r in results:
        reasons = [reason["feature"] for reason in r["top_reasons"][:3]]
        reasons += [None] * (3 - len(reasons))
        action = r.get("recommended_action")
        rows.append({
            "prediction_id": r.get("prediction_id"), "source": source, "channel": channel,
            "customer_id": None if r["customer_id"] is None else str(r["customer_id"]),
            "model_name": r["model"]["name"], "model_version": str(r["model"]["version"]),
            "target": r["target"]["kind"], "horizon_days": int(r["target"]["horizon_days"]),
            "features_as_of": r["features_as_of"], "scored_at": r.get("scored_at"),
            "data_watermark": r.get("data_watermark"),
            "churn_probability": float(r["churn_probability"]), "risk_band": r["risk_band"],
            "reason_1": reasons[0], "reason_2": reasons[1], "reason_3": reasons[2],
            "recommended_action": None if action is None else action["action"],
        })
    return rows


class PredictionLog:
    def __init__(self, store) -> None:
        self.store = store
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._written = threading.Condition()
        self._queued = 0  # rows queued so far
        self._done = 0  # rows written (or given up on) so far
        threading.Thread(target=self._run, name="prediction-log", daemon=True).start()

    def record(self, results: list[dict], channel: str | None) -> list[dict]:
        """`results` each with a new `prediction_id`, queued for the log."""
        results = [{**r, "prediction_id": new_prediction_id()} for r in results]
        if results:
            with self._written:
                self._queued += len(results)
            self._queue.put(prediction_rows(results, "api", channel))
        return results

    def flush(self, timeout: float = 2.0) -> None:
        """Wait (at most `timeout` s) until what was queued before this call is written: an
        outcome may quote a prediction given out a moment ago."""
        deadline = time.monotonic() + timeout
        with self._written:
            target = self._queued
            while self._done < target and time.monotonic() < deadline:
                self._written.wait(deadline - time.monotonic())

    def _run(self) -> None:
        pending: list[dict] = []  # rows not in the store yet, oldest first
        failures = 0
        while True:
            if not pending:
                pending = self._queue.get()  # waits for the first
            self._gather(pending, FLUSH_SECONDS if not failures else 0.0)
            batch = pending[:MAX_ROWS]
            try:
                self.store.log_predictions(batch)
            except Exception as exc:
                if not unreachable(exc):  # not the store away: these rows will never go in
                    logger.error("could not log %d predictions (%s)", len(batch),
                                 first_line(exc))
                    self._settle(pending, len(batch))
                    continue
                pause = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                logger.error("the store cannot take the prediction log (%s): %d predictions "
                             "kept, retrying in %g s", first_line(exc), len(pending), pause)
                if len(pending) > MAX_PENDING:
                    logger.error("%d oldest predictions dropped from the log: the store is "
                                 "away too long", len(pending) - MAX_PENDING)
                    self._settle(pending, len(pending) - MAX_PENDING)
                time.sleep(pause)
                continue
            if failures:
                logger.warning("the store is back: logging the predictions kept meanwhile")
                failures = 0
            self._settle(pending, len(batch))

    def _gather(self, pending: list[dict], wait: float) -> None:
        """Whatever else is queued into `pending`: waiting `wait` s for more up to `MAX_ROWS`
        (a batch), then all that is queued already."""
        while len(pending) < MAX_ROWS:
            try:
                pending += self._queue.get(timeout=wait) if wait else self._queue.get_nowait()
            except queue.Empty:
                break
            wait = min(wait, 0.05)
        while True:
            try:
                pending += self._queue.get_nowait()
            except queue.Empty:
                return

    def _settle(self, pending: list[dict], n: int) -> None:
        """The `n` oldest rows of `pending` written (or given up on)."""
        del pending[:n]
        with self._written:
            self._done += n
            self._written.notify_all()
