"""Why did a customer's risk change between two dates.

`explain_change` builds one customer's features as of two dates with the same feature functions
as training and scoring (`labels.population` + `lifecycle.build_features`, i.e. what
`snapshots.build_snapshot` does, restricted to that customer's rows so one call costs
milliseconds, not a portfolio snapshot), explains both with the bundle's TreeSHAP and breaks the
change of the churn model's score into driver groups.

Exactness: both explanations come from the same booster, so their base values are equal and

    margin_to - margin_from == sum over groups of (contribution_to - contribution_from)

up to float rounding (the margins are summed here from the float64 contributions). The change
in churn probability is calibrate(margin_to) - calibrate(margin_from).

Bad requests raise a `ChangeRequestError` naming the field, what is wrong and an example of a
valid value; the service maps `status` to the HTTP answer (404 unknown customer, 422 otherwise)
and the CLI to a usage error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn_risk.features.dates import DateError, parse_day
from churn_risk.features.labels import population, scoring_as_of
from churn_risk.features.lifecycle import PreparedData, build_features, to_timestamp
from churn_risk.features.target import Target
from churn_risk.models.bundle import ChurnBundle
from churn_risk.serving.jsonable import plain

#: Feature-level changes listed (the largest |change| first).
TOP_FEATURES = 10
#: Tolerance of the exactness check: group changes sum to the margin change.
EXACTNESS_TOLERANCE = 1e-6
#: The page compares the snapshot with this many months earlier.
PAGE_MONTHS_BACK = 3


class ChangeRequestError(ValueError):
    """A request `explain_change` cannot answer: `field` names the input, `example` a valid
    value; `status` is the HTTP status the service answers with."""

    status = 422

    def __init__(self, field: str, message: str, example: str | None = None):
        self.field = field
        self.problem = message
        self.example = example
        text = f"{field}: {message}"
        if example is not None:
            text += f" (e.g. {example})"
        super().__init__(text)


class CustomerNotFound(ChangeRequestError):
    """The customer id is not in the data."""

    status = 404


class InvalidDates(ChangeRequestError):
    """A date that cannot be read, `to_date` not after `from_date`, or after the data end."""


class NotACustomer(ChangeRequestError):
    """The customer had not signed up yet, or was already gone, at one of the dates."""


def explain_change(bundle: ChurnBundle, prep: PreparedData, customer_id,
                   from_date, to_date, limit: pd.Timestamp | None = None) -> dict:
    """The change of one customer's churn risk from `from_date` to `to_date`, by driver group.

    Returns a JSON-ready dict: `customer_id`, `from_date`, `to_date`, `base_value`,
    `margin_from`, `margin_to`, `margin_change` (log-odds), `churn_probability_from`,
    `churn_probability_to`, `probability_change`, `risk_band_from`, `risk_band_to`, `groups`
    (per driver group: `contribution_from`, `contribution_to`, `change`; sorted by |change|)
    and `features` (the `TOP_FEATURES` largest feature-level changes with the feature's value
    at both dates). `limit`: the latest date that may be asked (default: the day after the
    last record of `prep`; a live service passes its own, as `prep` may hold one customer)."""
    t_from = _parse_date(from_date, "from_date")
    t_to = _parse_date(to_date, "to_date")
    limit = scoring_as_of(prep) if limit is None else limit
    for field, t in (("from_date", t_from), ("to_date", t_to)):
        if t > limit:
            raise InvalidDates(
                field, f"{t:%Y-%m-%d} is after the end of the data (the last record is of "
                f"{limit - pd.Timedelta(days=1):%Y-%m-%d}); use a date up to {limit:%Y-%m-%d}",
                f"{limit:%Y-%m-%d}")
    if t_to <= t_from:
        raise InvalidDates(
            "to_date", f"{t_to:%Y-%m-%d} is not after from_date {t_from:%Y-%m-%d}",
            f"{min(t_from + pd.DateOffset(months=PAGE_MONTHS_BACK), limit):%Y-%m-%d}")

    cfg, target = bundle.feature_config, bundle.target
    one = customer_data(prep, customer_id, target)
    rows = []
    for field, t in (("from_date", t_from), ("to_date", t_to)):
        customers = population(one, to_timestamp(t), target)
        if not len(customers):
            raise _not_a_customer(one, field, t, target)
        rows.append(build_features(one, to_timestamp(t), customers, cfg))
    frame = pd.concat(rows, ignore_index=True)

    explanation = bundle.explain(frame)
    contributions = explanation.contributions.to_numpy(dtype=np.float64)
    groups = explanation.groups.to_numpy(dtype=np.float64)
    base = explanation.base_value  # the booster's bias: one value for every row
    margin = base + contributions.sum(axis=1)
    margin_change = float(margin[1] - margin[0])
    group_change = groups[1] - groups[0]
    gap = abs(float(group_change.sum()) - margin_change)
    if gap > EXACTNESS_TOLERANCE:  # cannot happen with one booster; never answer if it does
        raise RuntimeError(f"group changes sum to {group_change.sum():.8f}, the margin changed "
                           f"by {margin_change:.8f}")
    probability = bundle.calibrator(margin)
    bands = bundle.risk_band(probability)

    group_names = list(explanation.groups.columns)
    group_order = np.argsort(-np.abs(group_change), kind="stable")
    feature_change = contributions[1] - contributions[0]
    feature_order = np.argsort(-np.abs(feature_change), kind="stable")[:TOP_FEATURES]
    values = frame[bundle.feature_names].to_numpy(dtype=object)
    return {
        "customer_id": plain(one.customers["customer_id"].iloc[0]),
        "from_date": f"{t_from:%Y-%m-%d}",
        "to_date": f"{t_to:%Y-%m-%d}",
        "base_value": float(base),
        "margin_from": float(margin[0]),
        "margin_to": float(margin[1]),
        "margin_change": margin_change,
        "churn_probability_from": float(probability[0]),
        "churn_probability_to": float(probability[1]),
        "probability_change": float(probability[1] - probability[0]),
        "risk_band_from": str(bands[0]),
        "risk_band_to": str(bands[1]),
        "groups": [
            {"driver_group": group_names[j], "contribution_from": float(groups[0, j]),
             "contribution_to": float(groups[1, j]), "change": float(group_change[j])}
            for j in group_order
        ],
        "features": [
            {"feature": spec.name, "label": spec.label, "driver_group": spec.group,
             "value_from": plain(values[0, j]), "value_to": plain(values[1, j]),
             "contribution_from": float(contributions[0, j]),
             "contribution_to": float(contributions[1, j]),
             "change": float(feature_change[j])}
            for j in feature_order
            for spec in (bundle.specs[j],)
        ],
    }


def customer_data(prep: PreparedData, customer_id, target: Target) -> PreparedData:
    """`prep` restricted to one customer: their `customers` row and their event rows (every
    table kept, possibly empty, so no feature block disappears). Event tables stay sorted by
    event time; `_pos` becomes 0. Raises CustomerNotFound (its example: a current customer)."""
    ids = prep.customers["customer_id"]
    match = np.flatnonzero((ids == customer_id).to_numpy()) if _comparable(ids, customer_id) \
        else np.array([], dtype=int)
    if not len(match):  # ids arrive as JSON numbers or strings: both find the customer
        match = np.flatnonzero((ids.astype(str) == str(customer_id)).to_numpy())
    if not len(match):
        now = to_timestamp(scoring_as_of(prep))
        current = population(prep, now, target)["customer_id"]
        example = current.iloc[0] if len(current) else ids.iloc[0] if len(ids) else None
        raise CustomerNotFound("customer_id", f"no customer {customer_id!r} in the data",
                               None if example is None else str(plain(example)))
    pos = int(match[0])
    events = {}
    for name, frame in prep.events.items():
        rows = frame.loc[frame["_pos"].to_numpy() == pos]
        events[name] = rows.assign(_pos=np.zeros(len(rows), dtype=np.int64)).reset_index(
            drop=True)
    customers = prep.customers.iloc[[pos]].reset_index(drop=True)
    return PreparedData(data=prep.data, customers=customers, events=events,
                        families=prep.families)


def _comparable(ids: pd.Series, customer_id) -> bool:
    if isinstance(customer_id, str):
        return ids.dtype == object or pd.api.types.is_string_dtype(ids)
    return not isinstance(customer_id, bool) and pd.api.types.is_numeric_dtype(ids)


def _parse_date(value, field: str) -> pd.Timestamp:
    example = "2024-06-01"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidDates(field, "a date is required (YYYY-MM-DD)", example)
    if not isinstance(value, str | pd.Timestamp):
        raise InvalidDates(field, f"{value!r} is not a date (use YYYY-MM-DD)", example)
    try:
        return parse_day(value, field)
    except DateError as exc:
        raise InvalidDates(field, str(exc).partition(": ")[2], example) from None


def _not_a_customer(one: PreparedData, field: str, t: pd.Timestamp, target: Target
                    ) -> NotACustomer:
    customer = one.customers.iloc[0]
    cid = plain(customer["customer_id"])
    signup = pd.Timestamp(customer["signup_date"])
    if signup >= t:
        candidates = [signup.normalize() + pd.Timedelta(days=1)]
        candidates += [d + pd.Timedelta(days=1) for d in _first_activity(one)]
        example = _first_member(one, sorted(c for c in candidates if c > t), target)
        return NotACustomer(field, f"customer {cid} had not signed up yet on {t:%Y-%m-%d} "
                            f"(signed up {signup:%Y-%m-%d}); use a later date", example)
    example = _first_member(one, sorted((c for c in _last_activity(one) if c < t),
                                        reverse=True), target)
    return NotACustomer(field, f"customer {cid} was no longer a customer on {t:%Y-%m-%d} "
                        "(already gone); use a date when they still were", example)


def _first_activity(one: PreparedData) -> list[pd.Timestamp]:
    out = []
    if "subscriptions" in one.events and len(one.events["subscriptions"]):
        out.append(pd.Timestamp(one.events["subscriptions"]["start_date"].min()).normalize())
    if "transactions" in one.events and len(one.events["transactions"]):
        out.append(pd.Timestamp(one.events["transactions"]["timestamp"].min()).normalize())
    return out


def _last_activity(one: PreparedData) -> list[pd.Timestamp]:
    """Dates at which a customer who left was last a customer, to try as examples."""
    out = []
    subs = one.events.get("subscriptions")
    if subs is not None and len(subs) and "end_date" in subs and subs["end_date"].notna().any():
        out.append(pd.Timestamp(subs["end_date"].max()).normalize())
    tx = one.events.get("transactions")
    if tx is not None and len(tx):
        out.append(pd.Timestamp(tx["timestamp"].max()).normalize() + pd.Timedelta(days=1))
    return out


def _first_member(one: PreparedData, candidates: list[pd.Timestamp], target: Target
                  ) -> str | None:
    """The first candidate date at which the customer is in the scored population."""
    for candidate in candidates:
        if len(population(one, to_timestamp(candidate), target)):
            return f"{candidate:%Y-%m-%d}"
    return None


