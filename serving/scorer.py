"""What the service does, without the web: the champion model, the latest snapshot, lookups.

A `ScoringState` is one model version and one snapshot of features with everything precomputed:
scores, propensities and the full TreeSHAP contributions of every customer of the snapshot
(explanations cost far more than scores, so they are computed once per (model version,
snapshot) and looked up), and the portfolio view of each customer: value (`horizon_margin`,
`lifetime_value`, `value_at_risk`), the value × risk `quadrant` and the `recommended_action`
(the bundle's policy applied to the same explanation). Inline what-if records get the same
fields computed on the fly. "Why did risk change" (`change.py`) is computed per request from the
prepared data the state keeps.

A `Scorer` holds the current state and swaps it for a new one when the `champion` alias moves
(polled, or on demand): the new state is built aside while requests keep being answered by the
old one, then replaced in one assignment. Every answer names the model version that gave it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn_risk.errors import first_line
from churn_risk.features.dates import as_of_text
from churn_risk.features.io import DataSourceLike
from churn_risk.features.labels import scoring_as_of
from churn_risk.features.lifecycle import PreparedData, prepare
from churn_risk.features.snapshots import build_snapshot
from churn_risk.features.validation import load_crm
from churn_risk.models.bundle import ChurnBundle, Explanation
from churn_risk.models.portfolio import NO_ACTION, PortfolioPolicy
from churn_risk.serving import change, deadline, views
from churn_risk.serving.jsonable import plain
from churn_risk.serving.problems import quote

if TYPE_CHECKING:
    from churn_risk.serving.pagemodel import CustomerPage

logger = logging.getLogger(__name__)

HISTORY_DAYS = 365


class UnknownCustomer(KeyError):
    """A customer id that is not in the loaded snapshot."""


class BadRecord(ValueError):
    """An inline record that cannot be scored; `errors` name the fields."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    alias: str | None

    def as_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "alias": self.alias}


def utc_now_text() -> str:
    return f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%dT%H:%M:%S}Z"


def _key(customer_id) -> str:
    """Ids arrive as JSON numbers or strings; both find the same customer."""
    return str(customer_id)


class History:
    """The last year of a customer's relationship, for the page and the channel views.

    What the channel views show per customer (open tickets, delivery issues, a campaign in the
    last month) is computed here once for the whole snapshot, vectorised, so a view is a
    lookup: a 1,000-customer request with any channel costs the same as without one."""

    def __init__(self, prep: PreparedData, as_of: pd.Timestamp, keep_frames: bool = True):
        self.as_of = as_of
        self.start = start = as_of - pd.Timedelta(days=HISTORY_DAYS)
        self.frames: dict[str, pd.DataFrame] = {}
        self.rows: dict[str, dict[str, np.ndarray]] = {}
        for table, column in (("tickets", "opened_at"), ("deliveries", "promised_date"),
                              ("interactions", "timestamp"), ("surveys", "timestamp"),
                              ("campaigns", "timestamp")):
            if not prep.has(table):
                continue
            frame = prep.events[table]
            times = frame[column].to_numpy(dtype="datetime64[ns]")
            lo, hi = np.searchsorted(times, [start.to_datetime64(), as_of.to_datetime64()])
            window = frame.iloc[lo:hi].reset_index(drop=True)
            self.frames[table] = window
            self.rows[table] = {
                _key(k): v for k, v in window.groupby("customer_id", sort=False).indices.items()
            }
        self.open_tickets = _by_customer(views.open_ticket_rows(self.frames.get("tickets"),
                                                                as_of))
        self.delivery_issues = _by_customer(
            views.delivery_issue_rows(self.frames.get("deliveries"), as_of), last=10)
        campaigns = self.frames.get("campaigns")
        recent = (campaigns.loc[campaigns["timestamp"] >= as_of - pd.Timedelta(
            days=views.CAMPAIGN_REST_DAYS), "customer_id"] if campaigns is not None else [])
        self.recently_campaigned = {_key(c) for c in recent}
        if not keep_frames:  # what the channel views read per customer is kept
            self.frames, self.rows = {}, {}

    @classmethod
    def empty(cls, as_of: pd.Timestamp) -> History:
        history = cls.__new__(cls)
        history.as_of, history.frames, history.rows = as_of, {}, {}
        history.open_tickets, history.delivery_issues = {}, {}
        history.recently_campaigned = set()
        return history

    def of(self, table: str, customer_id) -> pd.DataFrame:
        if table not in self.frames:
            return pd.DataFrame()
        index = self.rows[table].get(_key(customer_id))
        frame = self.frames[table]
        return frame.iloc[index] if index is not None else frame.iloc[:0]


def _by_customer(rows: tuple[pd.Series, list[dict]] | None, last: int | None = None
                 ) -> dict[str, list[dict]]:
    """JSON-ready rows grouped by customer key, in time order (the `last` ones)."""
    if rows is None:
        return {}
    ids, records = rows
    out: dict[str, list[dict]] = {}
    for customer_id, record in zip(ids.tolist(), records, strict=True):
        out.setdefault(_key(customer_id), []).append(record)
    if last is not None:
        out = {k: v[-last:] for k, v in out.items()}
    return out


class ScoringState:
    """One model version and one snapshot, with every score and explanation precomputed."""

    def __init__(self, bundle: ChurnBundle, model: ModelRef, prep: PreparedData | None,
                 as_of: pd.Timestamp, quiet: bool = False,
                 watermark: pd.Timestamp | None = None, frame: pd.DataFrame | None = None,
                 history: History | None = None, names: pd.Series | None = None):
        """`prep` featured as of `as_of`; or, given, the customers' feature rows `frame` and
        their `history` (without `prep`: for the store, `stored_rows`); `names`: the customers'
        names by key (default: `prep`'s customers table's, when it has them)."""
        self.bundle = bundle
        self.model = model
        self.model_dict = model.as_dict()
        #: What every probability here is a probability of (in every answer).
        self.target = bundle.target.as_dict()
        self.as_of = as_of
        self.features_as_of = as_of_text(as_of)
        #: Provenance of every score here: when computed, the newest store write included.
        self.scored_at = utc_now_text()
        self.data_watermark = (None if watermark is None
                               else f"{watermark:%Y-%m-%dT%H:%M:%S.%f}Z")
        started = time.perf_counter()
        if frame is None:
            frame = build_snapshot(prep, as_of, bundle.feature_config, bundle.target)
        self.frame = frame.reset_index(drop=True)
        self.row_of = {_key(c): i for i, c in enumerate(self.frame["customer_id"].tolist())}
        self.ids = self.frame["customer_id"].tolist()
        #: How many customers the snapshot scored.
        self.customers = len(self.ids)
        scores, explanation = bundle.predict_and_explain(self.frame)
        self.probability = scores["churn_probability"].to_numpy()
        self.band = scores["risk_band"].to_numpy()
        self.families = bundle.families
        self.propensity = (
            scores[[f"propensity_{f}" for f in self.families]].to_numpy()
            if self.families else np.zeros((len(self.frame), 0))
        )
        self.base_value = explanation.base_value
        self.contributions = explanation.contributions.to_numpy()
        self.portfolio = portfolio_fields(bundle, scores, explanation)
        self.prep: PreparedData | None = prep
        #: The latest date `explain_change` may be asked about: the day after the last record,
        #: or for a live snapshot (as of a moment) the day after that moment.
        self.date_limit = _date_limit(prep, as_of)
        #: Live: loads one customer's records (pages, explain-change) as of a moment, when
        #: this state has none (`serving.stored.StoreLoader`).
        self.loader: Callable[[object, pd.Timestamp, str | None], ScoringState | None] | None \
            = None
        self.values = self.frame[bundle.feature_names].to_numpy(dtype=object)
        self.history = History(prep, as_of) if history is None else history
        self.names = names if names is not None else customer_names(prep)
        self.specs = bundle.specs
        self.seconds_to_build = time.perf_counter() - started
        (logger.debug if quiet else logger.info)(
            "model %s v%s: %d customers of %s scored and explained in %.1f s", model.name,
            model.version, len(self.frame), self.features_as_of, self.seconds_to_build)

    # ------------------------------------------------------------------ the store

    def stored_rows(self) -> list[tuple]:
        """This state's customers as rows of the store's served scores (`Store.save_scores`):
        (customer key, features_as_of, payload, then `Store.SCORE_SUMMARY`'s values), the payload
        holding everything a lookup answers from (`restored` turns it back into the same
        answers, bit for bit)."""
        h = self.history
        common = {"as_of": f"{self.as_of:%Y-%m-%dT%H:%M:%S.%f}", "scored_at": self.scored_at,
                  "data_watermark": self.data_watermark, "base_value": float(self.base_value),
                  "dtype": str(self.contributions.dtype)}
        as_of = self.as_of.to_pydatetime()
        contributions = np.ascontiguousarray(self.contributions)
        summary = self.summary_rows()
        rows = []
        for i, customer_id in enumerate(self.ids):
            key = _key(customer_id)
            payload = {**common, "id": plain(customer_id),
                       "probability": float(self.probability[i]), "band": str(self.band[i]),
                       "values": [_json_value(v) for v in self.values[i]],
                       "contributions": base64.b64encode(contributions[i].tobytes()).decode(),
                       "propensity": [float(p) for p in self.propensity[i]],
                       "portfolio": list(self.portfolio[i]),
                       "open_tickets": h.open_tickets.get(key, []),
                       "delivery_issues": h.delivery_issues.get(key, []),
                       "recently_campaigned": key in h.recently_campaigned}
            rows.append((key, as_of, json.dumps(payload), *summary[i]))
        return rows

    def summary_rows(self) -> list[tuple]:
        """Per customer, the `SCORE_SUMMARY` values (probability, band, value at risk,
        quadrant, recommended action, segment, region, name): what lists and aggregates
        read."""
        segment = (self.frame["segment"] if "segment" in self.frame
                   else pd.Series(None, index=self.frame.index))
        region = (self.frame["region"] if "region" in self.frame
                  else pd.Series(None, index=self.frame.index))
        names = getattr(self, "names", None)
        named = ([None] * len(self.ids) if names is None
                 else names.reindex([_key(c) for c in self.ids]).tolist())
        return [(float(p), str(b), var, quadrant, action["action"] if action else NO_ACTION,
                 _text(s), _text(r), _text(n))
                for p, b, (_, _, var, quadrant, action), s, r, n in zip(
                    self.probability, self.band, self.portfolio, segment.tolist(),
                    region.tolist(), named, strict=True)]

    @classmethod
    def restored(cls, bundle: ChurnBundle, model: ModelRef, payload: str,
                 loader: Callable | None = None) -> ScoringState:
        """One customer's state from their stored row (`stored_rows`)."""
        p = json.loads(payload)
        self = cls.__new__(cls)
        self.bundle, self.model, self.model_dict = bundle, model, model.as_dict()
        self.target = bundle.target.as_dict()
        self.as_of = pd.Timestamp(p["as_of"])
        self.features_as_of = as_of_text(self.as_of)
        self.scored_at, self.data_watermark = p["scored_at"], p["data_watermark"]
        key = _key(p["id"])
        self.frame = None
        self.ids, self.row_of, self.customers = [p["id"]], {key: 0}, 1
        self.probability = np.array([p["probability"]])
        self.band = np.array([p["band"]], dtype=object)
        self.families, self.specs = bundle.families, bundle.specs
        self.propensity = np.array(p["propensity"], dtype=float).reshape(1, len(self.families))
        self.base_value = p["base_value"]
        self.contributions = np.frombuffer(base64.b64decode(p["contributions"]),
                                           dtype=p["dtype"]).reshape(1, -1)
        self.portfolio = [tuple(p["portfolio"])]
        self.values = np.empty((1, len(p["values"])), dtype=object)
        self.values[0, :] = p["values"]
        self.prep, self.loader = None, loader
        self.date_limit = _date_limit(None, self.as_of)
        self.history = History.empty(self.as_of)
        self.history.open_tickets = {key: p["open_tickets"]}
        self.history.delivery_issues = {key: p["delivery_issues"]}
        self.history.recently_campaigned = {key} if p["recently_campaigned"] else set()
        self.seconds_to_build = 0.0
        return self

    def owners(self, customer_ids: Iterable) -> dict[str, ScoringState]:
        """Customer key -> the state holding their newest scores (`owner`), for many at once."""
        return {_key(c): self.owner(c) for c in customer_ids}

    def owner(self, customer_id) -> ScoringState:
        """The state that holds the customer's newest scores: this one (a `StoredState` reads
        the customer's row)."""
        return self

    def detailed(self, customer_id) -> ScoringState:
        """`owner`, with the customer's records for pages and explain-change: for a state
        without them (read from the store), one customer's state loaded from the store as of
        the same moment (the same features, bit for bit)."""
        owner = self.owner(customer_id)
        if owner.prep is not None or owner.loader is None:
            return owner
        one = owner.loader(customer_id, owner.as_of, owner.data_watermark)
        return owner if one is None else one  # None: the store does not know them

    # ------------------------------------------------------------------ formatting

    def _reasons(self, contributions: np.ndarray, values: np.ndarray, top_k: int) -> list[dict]:
        if top_k <= 0:
            return []
        k = min(top_k, len(contributions))
        top = np.argpartition(-contributions, k - 1)[:k]
        top = top[np.argsort(-contributions[top], kind="stable")]
        return [self._reason(j, contributions[j], values[j]) for j in top]

    def _reason(self, j: int, contribution: float, value) -> dict:
        spec = self.specs[j]
        return {
            "feature": spec.name,
            "label": spec.label,
            "driver_group": spec.group,
            "value": plain(value),
            "contribution": float(contribution),
            "direction": "raises_risk" if contribution > 0 else "lowers_risk",
            "actionable": spec.actionable,
        }

    def _products(self, propensity: np.ndarray) -> list[dict]:
        order = np.argsort(-propensity, kind="stable")[:3]
        return [{"family": self.families[i], "propensity": float(propensity[i])} for i in order]

    def _result(self, customer_id, probability, band, contributions, values, propensity,
                portfolio: tuple, top_k: int, channel: str | None,
                features_as_of: str | None) -> dict:
        horizon_margin, lifetime_value, value_at_risk, quadrant, action = portfolio
        result = {
            "customer_id": customer_id,
            "churn_probability": float(probability),
            "target": self.target,
            "risk_band": band,
            "top_reasons": self._reasons(contributions, values, top_k),
            "next_products": self._products(propensity),
            "model": self.model_dict,
            "features_as_of": features_as_of,
            "scored_at": self.scored_at,
            "data_watermark": self.data_watermark,
            "horizon_margin": horizon_margin,
            "lifetime_value": lifetime_value,
            "value_at_risk": value_at_risk,
            "quadrant": quadrant,
            "recommended_action": action,
            "channel_view": None,
            "warnings": [],
        }
        if channel is not None:
            result["channel_view"] = views.channel_view(channel, result, self, customer_id)
        return result

    # ------------------------------------------------------------------ lookups

    def score_ids(self, customer_ids: Iterable, top_k: int = 5, channel: str | None = None
                  ) -> tuple[list[dict], list]:
        results, unknown = [], []
        owners = self.owners(customer_ids)
        for n, customer_id in enumerate(customer_ids):
            if n % 64 == 0:
                deadline.check()  # a request out of time stops here (504), not after the work
            state = owners.get(_key(customer_id), self)
            i = state.row_of.get(_key(customer_id))
            if i is None:
                unknown.append(customer_id)
                continue
            results.append(state._result(
                state.ids[i], state.probability[i], state.band[i], state.contributions[i],
                state.values[i], state.propensity[i], state.portfolio[i], top_k, channel,
                state.features_as_of,
            ))
        return results, unknown

    def features_of(self, records: list[dict], where: Callable[[int], str] = "records[{}]".format
                    ) -> tuple[pd.DataFrame, list[list[dict]]]:
        """Feature rows for inline records (a known `customer_id` supplies the defaults), and
        per record the warnings about values the model never saw in training. Raises
        `BadRecord` naming every field that breaks a rule (see `check_value`)."""
        names = self.bundle.feature_names
        known = set(names)
        rows, errors, warnings = [], [], []
        for n, record in enumerate(records):
            at = where(n)
            base = {}
            customer_id = record.get("customer_id")
            if "customer_id" in record and not isinstance(customer_id, int | str) or \
                    isinstance(customer_id, bool):
                errors.append({"field": f"{at}.customer_id",
                               "message": "a customer id is a whole number or a text (leave "
                                          "it out for a record without one)"})
                customer_id = None
            elif customer_id is not None:
                state = self.owner(customer_id)
                i = state.row_of.get(_key(customer_id))
                if i is None:
                    errors.append({"field": f"{at}.customer_id",
                                   "message": f"no customer {quote(customer_id)} in the "
                                              "loaded snapshot", "unknown_customer": True})
                else:
                    base = dict(zip(names, state.values[i], strict=True))
            for key in sorted(set(record) - known - {"customer_id"}):
                errors.append({"field": f"{at}.{key}",
                               "message": "not a feature of this model (the features are "
                                          "listed in the API schema, GET /openapi.json)"})
            row = {**base, **{k: v for k, v in record.items() if k in known}}
            missing = [f for f in names if f not in row]
            if missing and customer_id is None:
                shown = ", ".join(missing[:8]) + (f", … ({len(missing)} in all)"
                                                   if len(missing) > 8 else "")
                errors.append({"field": at,
                               "message": "missing features (or give a customer_id to start "
                                          f"from that customer's): {shown}"})
            flagged = []
            for spec in self.specs:
                if spec.name not in record:
                    continue
                problem, warning = check_value(spec, record[spec.name],
                                               self.bundle.categories.get(spec.name),
                                               self.bundle.ranges.get(spec.name))
                if problem:
                    errors.append({"field": f"{at}.{spec.name}", "message": problem})
                if warning:
                    flagged.append({"field": f"{at}.{spec.name}", "message": warning})
            rows.append(row)
            warnings.append(flagged)
        if errors:
            raise BadRecord(errors)
        return pd.DataFrame.from_records(rows, columns=names), warnings

    def score_records(self, records: list[dict], top_k: int = 5, channel: str | None = None
                      ) -> list[dict]:
        frame, warnings = self.features_of(records)
        scores, explanation = self.bundle.predict_and_explain(frame)
        contributions = explanation.contributions.to_numpy()
        values = frame.to_numpy(dtype=object)
        probability = scores["churn_probability"].to_numpy()
        band = scores["risk_band"].to_numpy()
        propensity = (scores[[f"propensity_{f}" for f in self.families]].to_numpy()
                      if self.families else np.zeros((len(frame), 0)))
        portfolio = portfolio_fields(self.bundle, scores, explanation)
        results = [
            self._result(record.get("customer_id"), probability[i], band[i], contributions[i],
                         values[i], propensity[i], portfolio[i], top_k, channel,
                         self.owner(record["customer_id"]).features_as_of
                         if record.get("customer_id") is not None else None)
            for i, record in enumerate(records)
        ]
        now = utc_now_text()  # computed for this request, not with the snapshot
        for result, flagged in zip(results, warnings, strict=True):
            result["warnings"] = flagged
            result["scored_at"] = now
        return results

    def examples(self) -> dict:
        """A customer of this snapshot and dates `explain_change` can compare for them (the
        snapshot and three months before, when they were a customer then too)."""
        earlier = self.as_of - pd.DateOffset(months=change.PAGE_MONTHS_BACK)
        customer = self.ids[0] if self.ids else None
        try:
            one = change.customer_data(self.detailed(customer).prep, customer,
                                       self.bundle.target)
            from churn_risk.features.labels import population
            from churn_risk.features.lifecycle import to_timestamp

            if not len(population(one, to_timestamp(earlier), self.bundle.target)):
                earlier = self.as_of - pd.Timedelta(days=7)
        except change.ChangeRequestError:
            pass
        return {"customer_id": plain(customer), "from_date": f"{earlier:%Y-%m-%d}",
                "to_date": self.features_as_of}

    def record_schema(self) -> dict:
        """The JSON schema of a what-if record for this model: its features (and
        `customer_id`), each with the values it may take (`check_value`'s rules)."""
        properties: dict[str, dict] = {"customer_id": {
            "oneOf": [{"type": "integer"}, {"type": "string", "minLength": 1, "maxLength": 64}],
            "description": "a customer of the snapshot: the record starts from their features"}}
        for spec in self.specs:
            if spec.kind == "categorical":
                value = {"type": "string", "enum": list(self.bundle.categories.get(spec.name, []))}
            else:
                low, high = spec.bounds
                value = {"type": "number",
                         "minimum": -FLOAT32_MAX if low is None else low,
                         "maximum": FLOAT32_MAX if high is None else high}
            properties[spec.name] = {"anyOf": [value, {"type": "null"}],
                                     "description": spec.label}
        return {"type": "object", "properties": properties, "additionalProperties": False,
                "anyOf": [{"required": ["customer_id"]},
                          {"required": list(self.bundle.feature_names)}],
                "description": "feature name -> value; with a customer_id, the given features "
                               "override that customer's, else every feature is needed"}

    def former(self, customer_id):
        """A customer the data know but the snapshot no longer scores, as they were when they
        left (`pagemodel.FormerCustomer`); None for anyone else."""
        from churn_risk.features.labels import left_on
        from churn_risk.serving.pagemodel import former_customer

        prep = self._records_of(customer_id)
        if prep is None:
            return None
        left = left_on(prep, self.as_of.to_datetime64(), self.bundle.target, customer_id)
        return None if left is None else former_customer(prep, customer_id,
                                                         pd.Timestamp(left).date())

    def _records_of(self, customer_id) -> PreparedData | None:
        """The data this state was built from (a snapshot of files)."""
        return self.prep

    def page_model(self, customer_id) -> CustomerPage:
        """The account manager's page of one customer (`pagemodel.CustomerPage`), built from
        this state's arrays; `UnknownCustomer` when the id is not in the snapshot."""
        from churn_risk.serving.pagemodel import CustomerPage

        return CustomerPage.build(self.detailed(customer_id), customer_id)

    def explain_change(self, customer_id, from_date, to_date) -> dict:
        """Why the customer's risk changed between two dates (see `change.py`); raises
        `change.ChangeRequestError` subclasses for bad input."""
        state = self.detailed(customer_id)
        if state.prep is None:  # the store does not know them
            raise change.CustomerNotFound("customer_id", "no such customer in the snapshot",
                                          plain(self.ids[0]) if self.ids else None)
        return {**change.explain_change(self.bundle, state.prep, customer_id, from_date,
                                        to_date, limit=max(self.date_limit, state.date_limit)),
                "target": self.target, "model": self.model_dict}

    def explain(self, customer_id=None, record: dict | None = None) -> dict:
        if record is not None:
            frame, _ = self.features_of([record], where=lambda _: "record")
            explanation = self.bundle.explain(frame)
            contributions = explanation.contributions.to_numpy()[0]
            values = frame.to_numpy(dtype=object)[0]
            base = explanation.base_value
            customer_id = record.get("customer_id")
            as_of = self.features_as_of if customer_id is not None else None
        else:
            owner = self.owner(customer_id)
            if owner is not self:
                return owner.explain(customer_id)
            i = self.row_of.get(_key(customer_id))
            if i is None:
                raise UnknownCustomer(customer_id)
            contributions, values, base = self.contributions[i], self.values[i], self.base_value
            customer_id, as_of = self.ids[i], self.features_as_of
        margin = base + float(contributions.sum())
        groups: dict[str, float] = {}
        for spec, c in zip(self.specs, contributions, strict=True):
            groups[spec.group] = groups.get(spec.group, 0.0) + float(c)
        order = np.argsort(-np.abs(contributions), kind="stable")
        return {
            "customer_id": customer_id,
            "base_value": float(base),
            "contributions": [
                {k: v for k, v in self._reason(j, contributions[j], values[j]).items()
                 if k in ("feature", "label", "driver_group", "value", "contribution")}
                for j in order
            ],
            "groups": groups,
            "margin": margin,
            "churn_probability": float(self.bundle.calibrator(np.array([margin]))[0]),
            "target": self.target,
            "model": self.model_dict,
            "features_as_of": as_of,
            "scored_at": self.scored_at if record is None else utc_now_text(),
            "data_watermark": self.data_watermark if as_of is not None else None,
        }


#: The largest magnitude a feature value may have: XGBoost computes in float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_value(spec, value, levels: list[str] | None, seen: tuple[float, float] | None
                ) -> tuple[str | None, str | None]:
    """(why `value` cannot be scored, or None; a warning when it can but the model never saw
    anything like it, or None) for one what-if feature value. Null means unknown, always
    allowed. Numbers: finite, within float32 and the feature's bounds (`FeatureSpec.bounds`: a
    count is never negative, a share lies in [0, 1]); outside the range seen in training they
    are flagged. Categories: one of the levels seen in training."""
    if value is None:
        return None, None
    if spec.kind == "categorical":
        if not isinstance(value, str):
            return f"expected text (one of {', '.join(levels or [])}), got {quote(value)}", None
        if levels is not None and value not in levels:
            shown = ", ".join(levels[:12]) + (" …" if len(levels) > 12 else "")
            return f"{quote(value)} is not one of the known values: {shown}", None
        return None, None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number, got {quote(value)}", None
    number = float(value)
    if not np.isfinite(number) or abs(number) > FLOAT32_MAX:
        return f"{quote(value)} is not a finite number the model can use (|x| <= 3.4e38)", None
    low, high = spec.bounds
    if low is not None and number < low:
        return f"{number:g} is impossible: {spec.label.lower()} is never below {low:g}", None
    if high is not None and number > high:
        return f"{number:g} is impossible: {spec.label.lower()} is never above {high:g}", None
    if seen is not None and not seen[0] <= number <= seen[1]:
        return None, (f"{number:g} is outside the range seen in training ({seen[0]:g} to "
                      f"{seen[1]:g}): scored like the nearest value the model knows")
    return None, None


def portfolio_fields(bundle: ChurnBundle, scores: pd.DataFrame, explanation: Explanation
                     ) -> list[tuple]:
    """Per row of `bundle.predict`'s `scores`: (horizon_margin, lifetime_value, value_at_risk,
    quadrant, recommended_action), JSON-ready. Value fields are None without a value model; the
    action is None when no action pays (NO_ACTION). One vectorised pass of the bundle's policy
    over the batch, reusing its explanation."""
    recommended = bundle.recommend(scores, explanation.groups)
    actions = [
        None if name == NO_ACTION else _action(bundle.policy, name, channel, cost, rate, profit,
                                               reason)
        for name, channel, cost, rate, profit, reason in zip(
            recommended["recommended_action"].tolist(),
            recommended["action_channel"].tolist(),
            recommended["action_cost"].tolist(),
            recommended["action_success_rate"].tolist(),
            recommended["expected_profit"].tolist(),
            recommended["action_reason"].tolist(),
            strict=True,
        )
    ]
    return list(zip(
        _floats(scores["horizon_margin"]), _floats(scores["lifetime_value"]),
        _floats(scores["value_at_risk"]),
        [str(q) if isinstance(q, str) else None for q in scores["quadrant"].tolist()],
        actions, strict=True,
    ))


def _action(policy: PortfolioPolicy, name: str, channel, cost, rate, profit, reason) -> dict:
    action = policy.action(name)
    return {
        "action": name,
        "label": action.label,
        "kind": action.kind,
        "channel": str(channel),
        "cost": float(cost),
        "success_rate": float(rate),
        "success_rate_low": action.success_low,
        "success_rate_high": action.success_high,
        "success_source": action.success_source,
        "expected_profit": float(profit),
        "reason": str(reason) if isinstance(reason, str) else None,
    }


def _floats(column: pd.Series) -> list[float | None]:
    return [None if v != v else float(v) for v in column.to_numpy(dtype=float).tolist()]


def _date_limit(prep: PreparedData | None, as_of: pd.Timestamp) -> pd.Timestamp:
    """The latest date `explain_change` may be asked about: the day after the last record, or
    for a live snapshot (as of a moment) the day after that moment."""
    moment = as_of.normalize() + pd.Timedelta(days=1) if as_of != as_of.normalize() else as_of
    return moment if prep is None else max(scoring_as_of(prep), moment)


def customer_names(prep: PreparedData | None) -> pd.Series | None:
    """Customer key -> name, when the customers table has names (None otherwise)."""
    if prep is None or "name" not in prep.customers:
        return None
    customers = prep.customers
    return pd.Series(customers["name"].to_numpy(),
                     index=[_key(c) for c in customers["customer_id"].tolist()])


def _text(value) -> str | None:
    return None if value is None or (isinstance(value, float) and value != value) else str(value)


def _json_value(value):
    """A feature value as JSON keeps it (NaN stays NaN: `json` writes and reads it)."""
    if value is None or value is pd.NA:
        return None
    return value.item() if isinstance(value, np.generic) else value


class Scorer:
    """The service's model and data: loads `models:/<name>@<alias>` and the latest snapshot of
    `data`, and follows the alias. A champion that cannot be loaded leaves the current one in
    service; `problem` says why until the alias is servable again.

    Live (the data are a store, features as of the wall clock): the portfolio is scored into
    the store (`serving.stored`) and read by id; the `refresher` (one process of a server)
    scores it when missing or `rescore_seconds` old, and re-scores the customers of each new
    write (`follow`); the other processes only read."""

    def __init__(self, data: DataSourceLike, model_name: str = "churn-risk",
                 alias: str = "champion", as_of: str | None = None,
                 on_switch: Callable[[], None] | None = None,
                 before_switch: Callable[[str, bool], bool] | None = None,
                 rescore_seconds: float = 86_400.0, refresher: bool = True):
        from churn_risk.features.io import as_source

        self.data = as_source(data)
        self.on_switch = on_switch
        #: `before_switch(version, built)`: told whether the new state could be built; returns
        #: whether to switch now (the service's barrier lets all workers switch together).
        self.before_switch = before_switch
        self.model_name = model_name
        self.alias = alias
        self.rescore_seconds = rescore_seconds
        self.refresher = refresher
        self.live = self.data.store and as_of is None
        self.feed = None
        self._pending: set = set()
        self.prep = None
        if self.live:
            from churn_risk.features.store import ChangeFeed, Store

            self.feed = ChangeFeed(Store(self.data.location))  # before any read: none missed
        else:
            self.prep = prepare(load_crm(self.data))
            # Default: the day after the last recorded event.
            self.as_of = pd.Timestamp(as_of) if as_of else scoring_as_of(self.prep)
        self._lock = threading.Lock()
        self.state = self._build(self._alias_version())
        self.problem: str | None = None

    @staticmethod
    def _now() -> pd.Timestamp:
        from churn_risk.features.live import live_now

        return live_now()

    def follow(self) -> int:
        """Live: re-feature, re-score and re-explain the customers of the store's writes since
        the last call (as of now) into the store, and everyone when the portfolio is
        `rescore_seconds` old, unless another process (`churn store score` from a scheduler)
        scored it since: that run is answered from. Requests keep being answered meanwhile.
        How many customers were re-scored. A process that is not the refresher picks up the
        refresher's new runs."""
        if not self.live:
            return 0
        if not self.refresher:
            self._pick_up_run()
            return 0
        if self._old(self.state.as_of):
            self._pick_up_run()  # scored by `churn store score` from a scheduler: not again
            if self._old(self.state.as_of):
                return self.rescore()
        self._pending.update(self.feed.poll())  # kept until re-scored (a failure retries)
        if not self._pending:
            return 0
        from churn_risk.features.live import customer_data

        customers = sorted(self._pending, key=str)
        with self._lock:
            state, store = self.state, self.feed.store
            now = self._now()
            watermark = store.watermark()  # read first: the data include at least it
            prep = customer_data(store, customers, like=state.like)
            rows = [] if prep is None else ScoringState(  # None: none of them is stored (yet)
                state.bundle, state.model, prep, now, quiet=True, watermark=watermark
            ).stored_rows()
            scored = {row[0] for row in rows}
            store.save_scores(state.model.name, state.model.version, rows,
                              gone=[_key(c) for c in customers if _key(c) not in scored])
        self._pending.clear()
        logger.debug("re-scored %d customers as of %s", len(customers), now)
        return len(customers)

    def rescore(self) -> int:
        """Live: the whole portfolio re-read from the store and re-scored as of now (time moves
        features: days since the last purchase, windows)."""
        from churn_risk.serving.outcomes import with_reported_outcomes

        with self._lock:  # success rates learn from the outcomes reported since
            with_reported_outcomes(self.state.bundle, self.feed.store)
            self.state = self._stored(self.state.bundle, self.state.model, rescore=True)
        logger.info("portfolio re-scored as of %s (%d customers)", self.state.features_as_of,
                    self.state.customers)
        return self.state.customers

    def _old(self, as_of: pd.Timestamp) -> bool:
        """Whether a portfolio scored as of `as_of` is due to be scored again."""
        return (self._now() - as_of).total_seconds() >= self.rescore_seconds

    def _pick_up_run(self) -> bool:
        """Answer from this version's newest run in the store when another process scored
        it (the refresher, or `churn store score`); whether there was one."""
        state = self.state
        run = self.feed.store.latest_run(state.model.name, state.model.version)
        if run is None or run["id"] == state.run["id"]:
            return False
        from churn_risk.serving.stored import StoredState

        self.state = StoredState(state.bundle, state.model, self.feed.store, run)
        return True

    def _alias_version(self) -> str:
        from churn_risk.models.pyfunc import resolve_model

        return resolve_model(f"models:/{self.model_name}@{self.alias}")[1]

    def _build(self, version: str) -> ScoringState:
        from churn_risk.models.pyfunc import load_bundle

        bundle = load_bundle(f"models:/{self.model_name}/{version}")
        model = ModelRef(self.model_name, version, self.alias)
        if self.live:
            from churn_risk.serving.outcomes import with_reported_outcomes

            with_reported_outcomes(bundle, self.feed.store)
            return self._stored(bundle, model)
        return ScoringState(bundle, model, self.prep, self.as_of)

    def _stored(self, bundle: ChurnBundle, model: ModelRef, rescore: bool = False,
                wait_seconds: float = 3600.0) -> ScoringState:
        """Live: the portfolio of this model version in the store, scored as of now first
        when it is missing or old (`rescore`: in any case) by the refresher; another process
        waits for the refresher's run."""
        from churn_risk.serving.stored import StoredState, materialise

        store = self.feed.store
        run = store.latest_run(model.name, model.version)
        old = run is None or rescore or self._old(run["as_of"])
        if old and self.refresher:
            self.feed.poll()  # what is written from here on is re-scored after the run
            run = materialise(store, bundle, model, self._now())
        deadline = time.monotonic() + wait_seconds
        while run is None:  # only the refresher scores a portfolio
            if time.monotonic() > deadline or getattr(self.before_switch, "failed",
                                                      lambda _: False)(model.version):
                raise RuntimeError(f"no portfolio scored by v{model.version} in the store "
                                   "(the refresher process did not score it)")
            time.sleep(0.5)
            run = store.latest_run(model.name, model.version)
        return StoredState(bundle, model, store, run)

    def refresh(self) -> bool:
        """Switch to the version the alias points at now, if it moved and can be loaded. True
        when switched; on failure the current version keeps serving, `problem` says why and one
        line is logged."""
        with self._lock:  # one rebuild at a time; requests read `self.state` without waiting
            version = self._alias_version()
            current = self.state.model.version
            if version == current:
                self.problem = None
                return False
            try:
                new = self._build(version)  # live: scored into the store, as of now
            except Exception as exc:  # a broken version must never take the service down
                self.problem = (f"champion v{version} cannot be loaded ({first_line(exc)}); "
                                f"still serving v{current}")
                logger.error("%s", self.problem)
                if self.before_switch is not None:
                    self.before_switch(version, False)
                return False
            if self.before_switch is not None and not self.before_switch(version, True):
                self.problem = (f"champion v{version} could not be loaded by every worker; "
                                f"still serving v{current}")
                logger.error("%s", self.problem)
                return False
            before = self.state.bundle.target
            self.state = new
            self.problem = None
            after = new.bundle.target
            if after != before:  # a forced promotion: every answer's meaning changes
                logger.warning("now serving %s version %s (was v%s): its probabilities are the "
                               "%s (the previous version's were the %s)", self.model_name,
                               version, current, after.description, before.description)
            else:
                logger.info("now serving %s version %s (was v%s)", self.model_name, version,
                            current)
            if self.on_switch is not None:
                self.on_switch()
            return True
