"""The scored portfolio kept in the store, read by customer id: how live workers serve a million
customers without holding them.

`materialise` scores the whole portfolio as of a moment with one model version, in chunks, and
writes one row per customer to the store's `served_scores` (`Store.save_scores`): the score, the
reasons, the next products, the action and what the channel views show, as a payload a lookup
turns back into exactly the answer the in-memory snapshot gives (`ScoringState.stored_rows` and
`ScoringState.restored`). A `StoredState` answers from those rows: one primary-key read per
request, whichever worker answers, and the rows the service's refresher rewrites after each
event (`Scorer.follow`) are seen by every worker at once. Pages and explain-change load their
customer's records from the store (`StoreLoader`).

`churn store score` runs `materialise` ahead of a start (a server on a scored portfolio is
ready in seconds); the service runs it itself when the portfolio is missing or older than its
re-score period.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable

import pandas as pd

from churn_risk.features.dates import as_of_text
from churn_risk.features.lifecycle import PreparedData
from churn_risk.features.store import Store
from churn_risk.features.validation import CrmData
from churn_risk.models.bundle import ChurnBundle
from churn_risk.serving.scorer import (
    History,
    ModelRef,
    ScoringState,
    _date_limit,
    _key,
    customer_names,
)

logger = logging.getLogger(__name__)

#: Customers scored and written per step of `materialise` (bounds its memory).
CHUNK = 50_000


def data_shape(crm: CrmData) -> str:
    """What a worker needs to re-feature a few customers as the whole data set is featured:
    each table's columns and types, the customer attributes and the survey drivers."""
    return json.dumps({
        "tables": {name: {c: str(t) for c, t in frame.dtypes.items()}
                   for name, frame in crm.tables.items()},
        "attributes": crm.attributes,
        "survey_drivers": list(crm.survey_drivers),
    })


def shape_data(shape: str) -> CrmData:
    """`data_shape` back as empty tables (`features.live.customer_data`'s `like`)."""
    spec = json.loads(shape)
    tables = {name: pd.DataFrame({c: pd.Series([], dtype=t) for c, t in columns.items()})
              for name, columns in spec["tables"].items()}
    return CrmData(tables, spec["attributes"], tuple(spec["survey_drivers"]))


def materialise(store: Store, bundle: ChurnBundle, model: ModelRef, as_of: pd.Timestamp,
                progress: Callable[[int, int], None] | None = None, chunk: int = CHUNK) -> dict:
    """Score every customer of the store as of `as_of` with `bundle` and write their rows;
    the run as `Store.latest_run` returns it. `progress(done, total)` after each chunk."""
    from churn_risk.features.io import DataSource
    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.snapshots import build_snapshot
    from churn_risk.features.validation import load_crm
    from churn_risk.serving.home import driver_churn
    from churn_risk.serving.worklist import channel_candidates, top_candidates

    started = time.perf_counter()
    watermark = store.watermark()  # read first: the data include at least it
    crm = load_crm(DataSource(store.url, store=True))
    shape = data_shape(crm)
    prep = prepare(crm)
    del crm
    frame = build_snapshot(prep, as_of, bundle.feature_config, bundle.target)
    frame = frame.reset_index(drop=True)
    history = History(prep, as_of, keep_frames=False)
    names = customer_names(prep)
    del prep
    total = len(frame)
    drivers, candidates = [], None
    for start in range(0, total, chunk):
        part = ScoringState(bundle, model, None, as_of, quiet=True, watermark=watermark,
                            frame=frame.iloc[start:start + chunk], history=history,
                            names=names)
        store.save_scores(model.name, model.version, part.stored_rows())
        drivers.append(driver_churn(part))
        candidates = top_candidates([candidates, channel_candidates(part)])
        if progress is not None:
            progress(min(start + chunk, total), total)
    store.record_run(model.name, model.version, as_of, total, shape)
    if drivers:  # the home page's "where churn comes from", summed over the chunks
        store.save_portfolio_drivers(model.name, model.version, pd.concat(drivers).groupby(
            ["segment", "region", "group"], dropna=False).sum().reset_index())
    if candidates is not None:  # the home page's worklists, as of this scoring
        store.save_worklist_candidates(model.name, model.version, candidates)
    logger.info("model %s v%s: %d customers as of %s scored into the store in %.1f s",
                model.name, model.version, total, as_of_text(as_of),
                time.perf_counter() - started)
    return store.latest_run(model.name, model.version)


class StoreLoader:
    """One customer's full state (their records, for pages and explain-change) as of a given
    moment, from the store; the last few kept (a page and its explain-change ask twice)."""

    def __init__(self, store: Store, like: CrmData, bundle: ChurnBundle, model: ModelRef):
        self.store, self.like, self.bundle, self.model = store, like, bundle, model
        self._cache: dict[tuple, ScoringState | None] = {}

    def __call__(self, customer_id, as_of: pd.Timestamp, watermark: str | None
                 ) -> ScoringState | None:
        from churn_risk.features.live import customer_data

        key = (_key(customer_id), as_of)
        if key not in self._cache:
            prep = customer_data(self.store, [customer_id], like=self.like)
            if len(self._cache) >= 64:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = None if prep is None else ScoringState(
                self.bundle, self.model, prep, as_of, quiet=True,
                watermark=None if watermark is None else pd.Timestamp(watermark.rstrip("Z")))
        return self._cache[key]


class StoredState(ScoringState):
    """One model version's portfolio, scored into the store: every lookup reads its customers'
    rows (`Store.read_scores`); this process holds the model and no customer data."""

    def __init__(self, bundle: ChurnBundle, model: ModelRef, store: Store, run: dict):
        self.bundle, self.model, self.model_dict = bundle, model, model.as_dict()
        self.target = bundle.target.as_dict()
        self.store, self.run = store, run
        self.as_of = run["as_of"]
        self.features_as_of = as_of_text(self.as_of)
        self.scored_at = f"{pd.Timestamp(run['finished_at']):%Y-%m-%dT%H:%M:%S}Z"
        self.data_watermark = None
        self.customers = int(run["customers"])
        self.specs, self.families = bundle.specs, bundle.families
        self.like = shape_data(run["data_shape"])
        self.loader = StoreLoader(store, self.like, bundle, model)
        self.prep = None
        self.date_limit = _date_limit(None, self.as_of)
        self.history = History.empty(self.as_of)
        example = store.any_score(model.name, model.version)
        self.row_of, self.ids = {}, [] if example is None else [json.loads(example)["id"]]
        self.seconds_to_build = 0.0

    def owners(self, customer_ids: Iterable) -> dict[str, ScoringState]:
        keys = list(dict.fromkeys(_key(c) for c in customer_ids))
        rows = self.store.read_scores(self.model.name, self.model.version, keys)
        return {key: ScoringState.restored(self.bundle, self.model, payload, self.loader)
                for key, payload in rows.items()}

    def _records_of(self, customer_id) -> PreparedData | None:
        """The customer's own records, from the store (a former customer has no row)."""
        from churn_risk.features.live import customer_data

        return customer_data(self.store, [customer_id], like=self.like)

    def owner(self, customer_id) -> ScoringState:
        return self.owners([customer_id]).get(_key(customer_id), self)
