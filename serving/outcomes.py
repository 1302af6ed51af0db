"""Outcomes from the channels: what was done with a score given out (`POST /outcomes`,
`churn outcomes load`).

A report quotes the `prediction_id` of a score in the prediction log and says whether the
customer `taken` or `declined` the recommended action (or the `action` it names), by which
`channel`, when (`occurred_at`) and, once the prediction's horizon has passed, whether the
customer `stayed`. Reports are validated all together (one bad report rejects them all, each
error naming `records[i].field`, the rule and an example) and stored idempotently: a report's
key is its `outcome_id` when given, else a digest of its values, so a resend stores nothing.
A prediction's outcome is the newest report of each field (`Store.outcome_state`): "taken" now,
"stayed: true" three months later (a correction of a report sent before needs an `outcome_id`:
without one, a report with the same values as an earlier one is that report sent again).
`customer_id` may be left out (the prediction names the
customer), and a report of whether the customer stayed may give only `prediction_id` and
`stayed` once a report of what was done is stored (or comes earlier in the same batch).
Success rates learn from them (`training.campaigns.outcome_success_rates`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pandas as pd

from churn_risk.features.contract import CHANNELS
from churn_risk.features.dates import moment_or_none

FIELDS = ("outcome_id", "prediction_id", "customer_id", "action", "response", "channel",
          "occurred_at", "stayed")
RESPONSES = ("taken", "declined")
#: How far ahead of this server's clock a report's `occurred_at` may be (clocks differ).
CLOCK_SKEW = pd.Timedelta(minutes=5)
EXAMPLE = {"prediction_id": "3f2a9c0e8b7d4e61a5c2f0d9e8b7a6c5", "customer_id": 100123,
           "response": "taken", "channel": "contact_center",
           "occurred_at": "2026-12-02T10:15:00Z"}


class OutcomeErrors(ValueError):
    """Reports that break a rule: `errors` as `{field, message}` (`records[i].field`)."""

    def __init__(self, errors: list[dict]):
        super().__init__(f"{len(errors)} problem(s) in the outcome reports")
        self.errors = errors


def checked_outcomes(records: list[dict], store, now: pd.Timestamp | None = None,
                     wait_for_log: Callable[[], None] | None = None) -> list[dict]:
    """The store's rows of valid reports (`Store.record_outcomes`), or `OutcomeErrors` naming
    every broken rule. `wait_for_log`: called once when a quoted prediction is not in the log
    yet (a score given out a moment ago is logged behind its answer)."""
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    if now.tzinfo is not None:
        now = now.tz_convert("UTC").tz_localize(None)
    ids = sorted({str(r["prediction_id"]) for r in records
                  if isinstance(r.get("prediction_id"), str | int) and r.get("prediction_id")})
    logged = store.predictions_by_id(ids)
    if wait_for_log is not None and len(logged) < len(ids):
        wait_for_log()
        logged = store.predictions_by_id(ids)
    # a report saying only whether the customer stayed follows one saying what was done
    follow_ups = [r for r in records if r.get("response") is None and r.get("stayed") is not None]
    responded = store.responded(str(r["prediction_id"]) for r in follow_ups
                                if str(r.get("prediction_id")) in logged) if follow_ups else set()
    errors: list[dict] = []
    answered: set[str] = set()  # predictions a report of this batch says what was done with
    rows = []
    for i, record in enumerate(records):
        def bad(field: str, message: str, i: int = i) -> None:
            errors.append({"field": f"records[{i}].{field}", "message": message})

        for field in sorted(set(record) - set(FIELDS)):
            bad(field, f"not a field of an outcome report (fields: {', '.join(FIELDS)})")
        prediction_id = record.get("prediction_id")
        prediction = logged.get(str(prediction_id)) if prediction_id else None
        if not prediction_id:
            bad("prediction_id", "required: the id of the score given out (`prediction_id` "
                f"of /score or of a batch row), e.g. {EXAMPLE['prediction_id']}")
        elif prediction is None:
            bad("prediction_id", f"no score was given out with this id (got "
                f"{str(prediction_id)[:80]!r})")
        customer = record.get("customer_id")
        if customer == "":
            bad("customer_id", "the customer the prediction was about, or left out")
        elif customer is None and prediction is not None:
            customer = prediction["customer_id"]  # the prediction says whom it was about
        elif prediction is not None and str(customer) != str(prediction["customer_id"]):
            bad("customer_id", f"prediction {prediction_id} was about customer "
                f"{prediction['customer_id']}, not {customer}")
        response = record.get("response")
        follow_up = (response is None and record.get("stayed") is not None
                     and (str(prediction_id) in responded or str(prediction_id) in answered))
        if response not in RESPONSES and not follow_up:
            bad("response", 'must be "taken" or "declined" (got '
                f"{response!r}); a later report saying only whether the customer stayed may "
                "leave it out")
        elif response in RESPONSES:
            answered.add(str(prediction_id))
        action = record.get("action")
        if action is not None and (not isinstance(action, str) or not action.strip()):
            bad("action", f"the name of an action of the catalogue (got {action!r})")
        # left out: stored so (`Store.outcome_state` reads it as the one recommended), so a
        # later report saying only whether the customer stayed keeps an action named before
        elif action is None and prediction is not None and not follow_up and \
                prediction.get("recommended_action") in (None, "none"):
            bad("action", "the prediction recommended no action: name the action taken "
                "or declined, e.g. \"service_recovery\"")
        channel = record.get("channel")
        if channel is not None and channel not in CHANNELS:
            bad("channel", f"one of {', '.join(CHANNELS)} (got {channel!r})")
        occurred = moment_or_none(record.get("occurred_at"))
        if occurred is None and follow_up and record.get("occurred_at") is None:
            pass  # the earlier report's moment stays the outcome's
        elif occurred is None:
            bad("occurred_at", "required: when the action was taken or declined, an ISO 8601 "
                f"time, e.g. {EXAMPLE['occurred_at']} (got {record.get('occurred_at')!r})")
        elif occurred > now + CLOCK_SKEW:
            bad("occurred_at", f"in the future (got {record['occurred_at']}; now is "
                f"{now:%Y-%m-%dT%H:%M:%S}Z)")
        elif prediction is not None and prediction.get("scored_at") and \
                occurred < moment_or_none(prediction["scored_at"]) - CLOCK_SKEW:
            bad("occurred_at", f"before the prediction was given out "
                f"({prediction['scored_at']}; got {record['occurred_at']})")
        stayed = record.get("stayed")
        if stayed is not None and not isinstance(stayed, bool):
            bad("stayed", f"true or false, or left out until it is known (got {stayed!r})")
        outcome_id = record.get("outcome_id")
        if outcome_id is not None and not (isinstance(outcome_id, str | int)
                                           and 0 < len(str(outcome_id)) <= 150):
            bad("outcome_id", "your id of the report: a text of 1 to 150 characters")
        if errors:
            continue
        row = {"prediction_id": str(prediction_id), "customer_id": str(customer),
               "action": None if action is None else str(action), "response": response,
               "channel": channel,
               "occurred_at": None if occurred is None else occurred.to_pydatetime(),
               "stayed": stayed}
        rows.append({"outcome_key": _key(outcome_id, row), **row})
    if errors:
        raise OutcomeErrors(errors)
    return rows


def _key(outcome_id, row: dict) -> str:
    """The report's identity: the sender's `outcome_id`, else a digest of its values."""
    if outcome_id is not None:
        return f"id:{outcome_id}"
    moment = row["occurred_at"]
    text = json.dumps({**row, "occurred_at": None if moment is None else
                       f"{moment:%Y-%m-%dT%H:%M:%S.%f}"}, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:40]


def with_reported_outcomes(bundle, store) -> dict[str, dict]:
    """Teach `bundle`'s actions what channels reported: its policy's success rates become the
    posterior of the catalogue's prior, the campaigns measured at training and the store's
    matured outcome reports (`models.portfolio.with_measured_success`). Returns the measured
    effect of the reports per action (empty: nothing to learn from yet)."""
    from dataclasses import replace

    from churn_risk.models.portfolio import with_measured_success
    from churn_risk.training.campaigns.effects import outcome_success_rates

    reported = outcome_success_rates(store.outcome_state())
    bundle.policy = replace(bundle.policy, actions=with_measured_success(
        bundle.policy.actions, bundle.info.get("measured_success", {}), reported))
    return reported
