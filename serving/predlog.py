"""The prediction log of a live server: every score `/score` gives out, with its provenance,
reasons and action, appended to the store's `prediction_log` by a background thread (a request
never waits for it; at most `FLUSH_SECONDS` of entries are lost if the worker is killed)."""

from __future__ import annotations

import logging
import queue
import threading
import time

from churn_risk.features.store import new_prediction_id

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
MAX_ROWS = 5_000


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
        while True:
            batch = self._queue.get()  # waits for the first
            deadline = FLUSH_SECONDS
            while len(batch) < MAX_ROWS:
                try:
                    batch += self._queue.get(timeout=deadline)
                except queue.Empty:
                    break
                deadline = 0.05
            try:
                self.store.log_predictions(batch)
            except Exception as exc:  # the store may be briefly away: say so, keep serving
                logger.error("could not log %d predictions (%s)", len(batch), exc)
            with self._written:
                self._done += len(batch)
                self._written.notify_all()
