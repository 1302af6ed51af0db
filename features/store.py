"""The store: CRM events in a SQL database (SQLite embedded, PostgreSQL in production), one code
path through SQLAlchemy.

Each contract table is a SQL table of the contract's name with the contract's columns, typed
(plus the extra columns a data set brings, such as customer attributes), and two bookkeeping
columns every reader drops (`io.BOOKKEEPING`):

- `_store_key`: what makes a record the same record. Tables with a key in the contract
  (customers, products, labels; transactions with a `transaction_id`) use it; the others use a
  digest of every value. Re-sending a record stores nothing twice (`ON CONFLICT DO NOTHING`).
- `_store_write`: the write that stored the record, a row of `_store_writes` (its id, when,
  records received and new). The store's watermark is the newest write that stored something;
  what changed since a write is one indexed read (`changed_customers`), which is how the
  service learns which customers to re-score.

A write is one transaction: all of a batch or none of it. Data are validated by the contract
before they reach the store (`write` takes `CrmData`), so the store holds only valid records.
SQLite runs in WAL mode with full synchronous commits: a write is on disk when `write` returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn_risk.errors import UsageError, first_line
from churn_risk.features.contract import TABLES
from churn_risk.features.io import BOOKKEEPING, DataSourceError, is_sql_url, shown_url

KEY, WRITE = BOOKKEEPING
DEFAULT_STORE = "sqlite:///churn-store.db"
#: The store's log of writes: id, when, records received and new.
WRITES = "_store_writes"
#: Every score given out (live and batch), with its provenance, reasons and action.
PREDICTIONS = "prediction_log"
PREDICTION_COLUMNS = ("logged_at", "prediction_id", "source", "channel", "customer_id",
                      "model_name",
                      "model_version", "target", "horizon_days", "features_as_of", "scored_at",
                      "data_watermark", "churn_probability", "risk_band", "reason_1",
                      "reason_2", "reason_3", "recommended_action")
PREDICTION_ID_INDEX = "ix_prediction_log_prediction_id"

#: What channels report they did with a recommendation (`Store.record_outcomes`): one row per
#: report; a prediction's outcome is its newest report of each field (`Store.outcome_state`).
OUTCOMES = "outcomes"
OUTCOME_COLUMNS = ("outcome_key", "prediction_id", "customer_id", "action", "response",
                   "channel", "occurred_at", "stayed", "reported_at")

#: One row per `churn monitor` run on the store (`Store.record_check`): the verdict and the drift
#: figures the service exports as Prometheus gauges (`Store.latest_check`).
CHECKS = "monitor_checks"

#: The scored portfolio the service reads by customer id: per (model, version, customer) the
#: newest score, reasons, action and what the channel views show (a JSON payload).
SCORES = "served_scores"
#: Columns of `served_scores` beside the payload, for the portfolio in aggregate and in lists
#: (`portfolio_summary`, `served_counts`, `served_list`), in the order rows give them.
SCORE_SUMMARY = ("churn_probability", "risk_band", "value_at_risk", "quadrant",
                 "recommended_action", "segment", "region", "name")
#: Per model version, segment, region and driver group: the leavers the group accounts for in
#: the newest portfolio scoring (`serving.home.driver_churn`), for the home page.
DRIVERS = "portfolio_drivers"
#: Per model version, the served portfolio's customers and value at risk per combination of the
#: home page's columns, recounted by the service's refresher every `CHURN_GAUGE_SECONDS`.
COUNTS = "portfolio_counts"
#: Per model version, channel and customer: the channel's best action that pays, from the newest
#: portfolio scoring (`serving.worklist.channel_candidates`), what the home page's worklists fill.
CANDIDATES = "worklist_candidates"
#: Covers the summary columns, ordered by value at risk: the lists' pages and counts read it
#: alone (a scan of the table would read every payload).
SCORES_PORTFOLIO_INDEX = "ix_served_scores_portfolio"
#: One row per scoring of a whole portfolio (`Store.record_run`): when, as of, how many, and
#: the shape of the data the model read (so a worker can re-feature a few customers alike).
SCORE_RUNS = "_score_runs"

#: One writer at a time per SQLite file in a process. SQLite takes one writer at a time; writers
#: queued on a lock take their turn, where SQLite's busy handler would have them poll with
#: growing sleeps (ingestion beside the service's refresher had a 1.5 s p99).
_SQLITE_WRITERS: dict[str, threading.Lock] = {}

#: Rows per INSERT statement (SQLite allows 32,766 bound values per statement).
_BATCH_ROWS = 2_000


@dataclass(frozen=True)
class WriteResult:
    """Per table: records received and records new to the store (the rest were stored before)."""

    received: dict[str, int]
    stored: dict[str, int]
    #: The write's id in the store's log (`Store.writes_after`).
    write_id: int | None = None

    @property
    def duplicates(self) -> dict[str, int]:
        return {name: self.received[name] - self.stored.get(name, 0) for name in self.received}


def search_terms(query: str) -> tuple[str, str | None]:
    """What a search for `query` matches: ids starting with it, and, unless it is all digits
    (an id), names holding it, case aside: (id prefix, lower-case name part or None)."""
    query = query.strip()
    return query, None if query.isdigit() else query.lower()


def new_prediction_id() -> str:
    """A new id for a score given out: what a channel quotes when it reports the outcome."""
    return uuid.uuid4().hex


def check_store_url(url: str) -> str:
    """`url` if it names a database; a `UsageError` saying what a store URL looks like if not."""
    if not is_sql_url(url):
        raise UsageError(f"--store {url!r}: not a database URL (for example {DEFAULT_STORE}, or "
                         "postgresql+psycopg://user@host/db); a folder of files is --data")
    return url


#: What a SQLite error says when the file, not the statement, is the trouble.
_SQLITE_AWAY = ("locked", "unable to open", "disk i/o", "busy")


def unreachable(exc: BaseException) -> bool:
    """Whether `exc`, or what it was raised from, says the store cannot be reached just now (a
    connection refused or cut, no connection free in the pool, a SQLite file locked or
    unreadable): worth retrying, unlike a bad statement or a broken rule."""
    import sqlalchemy as sa

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sa.exc.DisconnectionError | sa.exc.TimeoutError
                      | sa.exc.InterfaceError):
            return True
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, sa.exc.OperationalError):
            if type(exc.orig).__module__ != "sqlite3":
                return True
            if any(word in str(exc.orig).lower() for word in _SQLITE_AWAY):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


class Store:
    """A CRM store at a SQLAlchemy URL (`sqlite:///path.db`, `postgresql+psycopg://...`)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = check_store_url(url)
        try:
            # a server outlives a database restart: test a pooled connection before using it
            self.engine = sa.create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise DataSourceError(f"--store {shown_url(url)!r}: not a usable database URL "
                                  f"({exc})") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.metadata = sa.MetaData()
        self._tables: dict = {}  # reflected contract tables (`_reflected`)
        self._scores_ready = False  # `served_scores` exists with every column (`_create_scores`)
        self._predictions_ready = False  # the same for `prediction_log`

    def close(self) -> None:
        self.engine.dispose()

    def _writing(self):
        """Held while writing: this process's one writer to a SQLite file (PostgreSQL takes
        concurrent writers itself)."""
        if self.engine.dialect.name != "sqlite":
            return contextlib.nullcontext()
        return _SQLITE_WRITERS.setdefault(self.url, threading.Lock())

    def _write_failed(self, exc: Exception) -> DataSourceError:
        """What a write the database refused says (its URL without the password)."""
        return DataSourceError(f"cannot write to the store {shown_url(self.url)!r}: "
                               f"{first_line(exc)}")

    def _insert_once(self, table, key: str):
        """An INSERT that skips each row whose `key` (a unique column) is stored already."""
        import sqlalchemy as sa

        dialect = (sa.dialects.postgresql if self.engine.dialect.name == "postgresql"
                   else sa.dialects.sqlite)
        return dialect.insert(table).on_conflict_do_nothing(index_elements=[key])

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- write

    def write(self, crm, progress: Callable[[int, int], None] | None = None) -> WriteResult:
        """Store the tables of validated data (`validation.CrmData`) in one transaction; records
        already stored are skipped. Tables are created on first use. `progress(done, total)`
        is called with the records written so far."""
        import sqlalchemy as sa

        received, stored = {}, {}
        total = sum(len(f) for f in crm.tables.values())
        tick = _Progress(progress, total)
        try:
            with self._writing(), self.engine.begin() as conn:
                log = self._writes_table()
                log.create(conn, checkfirst=True)
                now = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()
                write_id = conn.execute(sa.insert(log).values(
                    written_at=now, received=0, stored=0)).inserted_primary_key[0]
                for name in TABLES:
                    if name not in crm.tables:
                        continue
                    frame = crm.tables[name]
                    table = self._table(conn, name, frame)
                    rows = _with_bookkeeping(name, frame, write_id)
                    received[name] = len(frame)  # a keyed record twice in it: one is new
                    stored[name] = self._insert_new(conn, table, rows, tick)
                conn.execute(sa.update(log).where(log.c.id == write_id).values(
                    received=sum(received.values()), stored=sum(stored.values())))
        except sa.exc.SQLAlchemyError as exc:
            self._tables.clear()  # a table it altered is as it was
            raise self._write_failed(exc) from None
        return WriteResult(received, stored, write_id)

    def ingest(self, raw: Mapping[str, pd.DataFrame], problems=(),
               progress: Callable[[int, int], None] | None = None) -> WriteResult:
        """Validate a batch of new records (any contract tables, as read; `problems` found while
        mapping them) against the contract and the store, then write it: all of it, or nothing
        (a `DataContractError` names each record, column and rule broken)."""
        from churn_risk.features.validation import validate

        crm = validate(raw, problems, stored_keys=self.stored_keys(raw))
        return self.write(crm, progress)

    def customer_tables(self, customer_ids, chunk: int = 500) -> dict[str, pd.DataFrame]:
        """Every stored record of these customers (each per-customer table, read through its
        customer index), with the products table whole: what their features are made of.
        Records come in the order they were stored, as a whole-table read returns them (so
        events with equal times keep the same order either way)."""
        import sqlalchemy as sa

        wanted = pd.unique(pd.Series(list(customer_ids), dtype=object))
        tables: dict[str, pd.DataFrame] = {}
        with self.engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            ids: list = []
            if "customers" in present:  # ids as the store types them (a page asks with text)
                customers = self._reflected(conn, "customers")
                ids = _as_column_values(wanted, customers.c.customer_id.type)
            for name in TABLES:
                if name not in present:
                    continue
                table = self._reflected(conn, name)
                columns = [c for c in table.c if c.name not in BOOKKEEPING]
                if "customer_id" not in table.c:
                    parts = [pd.read_sql_query(sa.select(*columns), conn)]
                else:
                    parts = [pd.read_sql_query(
                        sa.select(*columns).where(table.c.customer_id.in_(ids[i:i + chunk])),
                        conn) for i in range(0, len(ids), chunk)]
                frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
                if len(frame):
                    tables[name] = frame
        return tables

    def stored_keys(self, raw: Mapping[str, pd.DataFrame]) -> dict[str, pd.Series]:
        """Of the customer and product ids a batch `raw` refers to, those the store holds (one
        indexed lookup per 500 ids: the cost follows the batch, not the store)."""
        import sqlalchemy as sa

        keys = {}
        with self.engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            for name, column in (("customers", "customer_id"), ("products", "product_id")):
                if name not in present:
                    continue
                wanted = [frame[column] for frame in raw.values() if column in frame.columns]
                if not wanted:
                    continue
                table = self._reflected(conn, name)
                values = _as_column_values(
                    pd.concat(wanted, ignore_index=True).dropna().unique(), table.c[column].type)
                found = []
                for part in _in_lists(values):
                    found += conn.execute(sa.select(table.c[column]).where(
                        table.c[column].in_(part))).scalars().all()
                keys[name] = pd.Series(found, dtype="int64" if values and isinstance(
                    values[0], int) else object)
        return keys

    def log_predictions(self, rows: list[dict]) -> None:
        """Append scores given out to `prediction_log` (one transaction; keys of
        `PREDICTION_COLUMNS`, `logged_at` filled in)."""
        import sqlalchemy as sa

        if not rows:
            return
        now = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()
        log = self._predictions_table()
        try:
            with self._writing(), self.engine.begin() as conn:
                self._create_predictions(conn)
                # sent again after a commit whose answer was lost: stored once
                conn.execute(self._insert_once(log, "prediction_id"), [
                    {"prediction_id": None, **row, "logged_at": now} for row in rows])
        except sa.exc.SQLAlchemyError as exc:
            raise self._write_failed(exc) from None

    def predictions(self, customer_id=None, newest: int | None = None) -> pd.DataFrame:
        """The prediction log (of one customer; only its `newest` entries), oldest first."""
        import sqlalchemy as sa

        log = self._predictions_table()
        if not self._readable_predictions():
            return pd.DataFrame(columns=["id", *PREDICTION_COLUMNS])
        with self.engine.connect() as conn:
            query = sa.select(log).order_by(log.c.id.desc())
            if customer_id is not None:
                query = query.where(log.c.customer_id == str(customer_id))
            if newest is not None:
                query = query.limit(newest)
            return pd.read_sql_query(query, conn).iloc[::-1].reset_index(drop=True)

    def predictions_by_id(self, prediction_ids: list[str]) -> dict[str, dict]:
        """Prediction id -> its `prediction_log` row, of those of `prediction_ids` logged."""
        import sqlalchemy as sa

        log = self._predictions_table()
        found: dict[str, dict] = {}
        if not self._readable_predictions():
            return found
        with self.engine.connect() as conn:
            for part in _in_lists(prediction_ids):
                for row in conn.execute(sa.select(log).where(
                        log.c.prediction_id.in_(part))).mappings():
                    found[row["prediction_id"]] = dict(row)
        return found

    # ------------------------------------------------------------------------------ outcomes

    def record_outcomes(self, rows: list[dict]) -> int:
        """Store outcome reports (keys of `OUTCOME_COLUMNS` but `reported_at`; `action` None:
        the one recommended) in one transaction; a report whose `outcome_key` is stored
        already is not stored again. How many were new."""
        import sqlalchemy as sa

        if not rows:
            return 0
        now = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()
        table = self._outcomes_table()
        insert = self._insert_once(table, "outcome_key").returning(table.c.id)
        try:
            with self._writing(), self.engine.begin() as conn:
                table.create(conn, checkfirst=True)
                # the ids of the rows inserted (a rowcount is not reported by every driver);
                # many rows per statement (SQLAlchemy's "insertmanyvalues")
                return len(conn.execute(insert, [{**row, "reported_at": now}
                                                 for row in rows]).all())
        except sa.exc.SQLAlchemyError as exc:
            raise self._write_failed(exc) from None

    def outcomes(self, customer_id=None) -> pd.DataFrame:
        """The outcome reports (of one customer), oldest first: `id` and `OUTCOME_COLUMNS`,
        as reported (`action` null: the one the prediction recommended)."""
        import sqlalchemy as sa

        table = self._outcomes_table()
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(OUTCOMES):
                return pd.DataFrame(columns=["id", *OUTCOME_COLUMNS])
            query = sa.select(table).order_by(table.c.id)
            if customer_id is not None:
                query = query.where(table.c.customer_id == str(customer_id))
            return pd.read_sql_query(query, conn)

    def contacted(self, customer_ids: Iterable | None, since: pd.Timestamp,
                  until: pd.Timestamp) -> set[str]:
        """Those of `customer_ids` (None: any customer; as text) a channel contacted in
        `[since, until)` (UTC): in a campaign (`campaigns.timestamp`) or with an action a
        channel reported taken or declined (`outcomes.occurred_at`). Contact pressure for
        worklists (`serving.worklist`)."""
        import sqlalchemy as sa

        wanted = None if customer_ids is None else list(dict.fromkeys(map(str, customer_ids)))
        start, end = (pd.Timestamp(t).to_pydatetime() for t in (since, until))
        found: set[str] = set()
        with self.engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            for name, column in (("campaigns", "timestamp"), (OUTCOMES, "occurred_at")):
                if name not in present or wanted == []:
                    continue
                table = (self._reflected(conn, name) if name != OUTCOMES
                         else self._outcomes_table())
                within = sa.select(table.c.customer_id).distinct().where(
                    table.c[column] >= start, table.c[column] < end)
                if wanted is None:
                    found.update(str(c) for c in conn.execute(within).scalars())
                    continue
                for part in _in_lists(_as_column_values(wanted, table.c.customer_id.type)):
                    found.update(str(c) for c in conn.execute(within.where(
                        table.c.customer_id.in_(part))).scalars())
        return found

    def responded(self, prediction_ids: Iterable[str]) -> set[str]:
        """Those of `prediction_ids` with a stored report saying the action was taken or
        declined (a later report may then say only whether the customer stayed)."""
        import sqlalchemy as sa

        ids = sorted(set(map(str, prediction_ids)))
        table = self._outcomes_table()
        found: set[str] = set()
        with self.engine.connect() as conn:
            if not ids or not sa.inspect(conn).has_table(OUTCOMES):
                return found
            for part in _in_lists(ids):
                found.update(conn.execute(sa.select(table.c.prediction_id).distinct().where(
                    table.c.prediction_id.in_(part),
                    table.c.response.is_not(None))).scalars())
        return found

    def outcome_state(self, customer_id=None) -> pd.DataFrame:
        """One row per prediction with a reported outcome: of its reports, the newest value of
        each of `action`, `response`, `channel`, `occurred_at` and `stayed` that one gave (a
        report of whether the customer stayed may come months after the one saying the action
        was taken; a field left out keeps the earlier value; `action` never given: the one
        recommended), how many `reports`, with the prediction's `customer_id`,
        `churn_probability`, `risk_band`, `recommended_action`, `model_name`,
        `model_version`, `target`, `horizon_days`, `features_as_of` and `scored_at` from the
        prediction log."""
        reports = self.outcomes(customer_id)
        fields = ["action", "response", "channel", "occurred_at", "stayed"]
        columns = ["prediction_id", *fields, "reports"]
        if not len(reports):
            state = pd.DataFrame(columns=columns)
        else:
            newest = reports.sort_values("id").groupby("prediction_id", sort=False)
            state = newest[fields].last().join(newest.size().rename("reports")).reset_index()
        logged = self.predictions_by_id(state["prediction_id"].tolist())
        facts = ["customer_id", "churn_probability", "risk_band", "recommended_action",
                 "model_name", "model_version", "target", "horizon_days", "features_as_of",
                 "scored_at"]
        for fact in facts:
            state[fact] = [logged.get(i, {}).get(fact) for i in state["prediction_id"]]
        state["action"] = [a if isinstance(a, str) else r for a, r in
                           zip(state["action"], state["recommended_action"], strict=True)]
        state["stayed"] = pd.array([None if v is None or v != v else bool(v)
                                    for v in state["stayed"]], dtype="boolean")
        return state

    # ------------------------------------------------------------------------ monitor checks

    def record_check(self, check: dict) -> None:
        """Keep a `churn monitor` verdict: `model_name`, `model_version`, `as_of` (the
        portfolio's day), `retraining_due`, `verdict` (its text), `score_psi`,
        `realised_roc_auc` (None: nothing matured) and `features` ({feature: {"psi": ..,
        "missing_change": ..}}, empty without a training reference)."""
        import sqlalchemy as sa

        table = self._checks_table()
        now = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()
        row = {**check, "checked_at": now, "features": json.dumps(check.get("features") or {})}
        try:
            with self._writing(), self.engine.begin() as conn:
                table.create(conn, checkfirst=True)
                conn.execute(sa.insert(table), [row])
        except sa.exc.SQLAlchemyError as exc:
            raise self._write_failed(exc) from None

    def latest_check(self, model_name: str, version: str) -> dict | None:
        """The newest `record_check` of this model version (`features` decoded), or None."""
        import sqlalchemy as sa

        table = self._checks_table()
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(CHECKS):
                return None
            row = conn.execute(sa.select(table).where(
                table.c.model_name == model_name, table.c.model_version == str(version))
                .order_by(table.c.id.desc()).limit(1)).mappings().first()
        if row is None:
            return None
        return {**row, "features": json.loads(row["features"] or "{}")}

    # --------------------------------------------------------------------- served scores

    def save_scores(self, model_name: str, version: str, rows: list[tuple],
                    gone: list[str] = ()) -> None:
        """Upsert scored customers, rows of (customer key, features_as_of, payload text, then
        the `SCORE_SUMMARY` values), in one transaction; a stored row is replaced only by one
        featured as of the same moment or later (a portfolio run that started before a fresh
        event never undoes it). `gone`: keys no longer customers (their rows are deleted)."""
        import sqlalchemy as sa

        table = self._scores_table()
        try:
            with self._writing(), self.engine.begin() as conn:
                self._create_scores(conn)
                prep = conn.dialect.identifier_preparer
                marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                name = prep.quote(SCORES)
                columns = ("features_as_of", "payload", *SCORE_SUMMARY)
                sql = (f"INSERT INTO {name} (model_name, model_version, customer_key, "
                       f"{', '.join(columns)}) VALUES ({', '.join([marker] * (3 + len(columns)))})"
                       " ON CONFLICT (model_name, model_version, customer_key) DO UPDATE SET "
                       f"{', '.join(f'{c} = excluded.{c}' for c in columns)} "
                       f"WHERE {name}.features_as_of <= excluded.features_as_of")
                moment = table.c.features_as_of.type.dialect_impl(conn.dialect)
                bind = moment.bind_processor(conn.dialect)  # SQLite: its text form
                values = [(model_name, version, key, as_of if bind is None else bind(as_of),
                           payload, *summary) for key, as_of, payload, *summary in rows]
                for start in range(0, len(values), _BATCH_ROWS):
                    conn.exec_driver_sql(sql, values[start:start + _BATCH_ROWS])
                for part in _in_lists(gone):
                    conn.execute(sa.delete(table).where(
                        table.c.model_name == model_name, table.c.model_version == version,
                        table.c.customer_key.in_(part)))
        except sa.exc.SQLAlchemyError as exc:
            raise self._write_failed(exc) from None

    def read_scores(self, model_name: str, version: str, keys: list[str]) -> dict[str, str]:
        """Customer key -> stored payload, of those of `keys` scored by this model version (a
        primary-key read per 500; plain SQL: the by-id hot path, where building a statement
        costs twice the read)."""
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            for part in _in_lists(keys):
                sql = (f"SELECT customer_key, payload FROM {SCORES} WHERE model_name = "
                       f"{marker} AND model_version = {marker} AND customer_key IN "
                       f"({', '.join([marker] * len(part))})")
                found.update(conn.exec_driver_sql(sql, (model_name, version, *part)).all())
        return found

    def portfolio_summary(self, model_name: str, version: str,
                          edges: tuple[float, ...]) -> dict | None:
        """The served portfolio of this model version in aggregate (no customer ids):
        ``customers``, ``bands`` (risk band -> customers), ``at_most`` (each of `edges` ->
        customers whose churn probability is at most it) and ``mean_probability``; None when
        nothing is scored (or only by a version that stored no probabilities)."""
        import sqlalchemy as sa

        table = self._scores_table()
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(SCORES):
                return None
            mine = (table.c.model_name == model_name) & (table.c.model_version == version) & (
                table.c.churn_probability.is_not(None))
            bands = dict(conn.execute(sa.select(table.c.risk_band, sa.func.count()).where(
                mine).group_by(table.c.risk_band)).all())
            if not bands:
                return None
            p = table.c.churn_probability
            row = conn.execute(sa.select(sa.func.avg(p), *(
                sa.func.sum(sa.case((p <= edge, 1), else_=0)) for edge in edges)).where(
                mine)).one()
        return {"customers": int(sum(bands.values())), "bands": bands,
                "mean_probability": float(row[0]),
                "at_most": {edge: int(n or 0) for edge, n in zip(edges, row[1:], strict=True)}}

    def served_counts(self, model_name: str, version: str, by: tuple[str, ...],
                      where: Mapping[str, Iterable] | None = None) -> pd.DataFrame:
        """Customers and value at risk of this model version's served portfolio per value of
        the `SCORE_SUMMARY` columns `by` (`*by`, `customers`, `value_at_risk`), of the rows
        whose columns hold one of `where`'s values (a person's portfolio)."""
        import sqlalchemy as sa

        table = self._scores_table()
        columns = [table.c[c].label(c) for c in by]
        query = (sa.select(*columns, sa.func.count().label("customers"),
                           sa.func.sum(table.c.value_at_risk).label("value_at_risk"))
                 .where(*self._served(table, model_name, version, where))
                 .group_by(*(table.c[c] for c in by)))
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(SCORES):
                return pd.DataFrame(columns=[*by, "customers", "value_at_risk"])
            return pd.read_sql_query(query, conn)

    def served_list(self, model_name: str, version: str,
                    where: Mapping[str, Iterable] | None = None, query: str | None = None,
                    limit: int = 50, offset: int = 0) -> tuple[pd.DataFrame, int]:
        """This model version's served customers (`customer_key`, `features_as_of` and
        `SCORE_SUMMARY`) whose columns hold one of `where`'s values and who match `query`
        (`search_terms`: an id starting with it, or a name holding it), the largest value at
        risk first: `limit` of them from `offset`, and how many there are."""
        import sqlalchemy as sa

        table = self._scores_table()
        conditions = self._served(table, model_name, version, where)
        if query:
            prefix, name = search_terms(query)
            by_id = table.c.customer_key.like(f"{_like_literal(prefix)}%", escape="\\")
            if self.engine.dialect.name == "sqlite":  # binary order: a range the key answers
                by_id = sa.and_(by_id, table.c.customer_key >= prefix,
                                table.c.customer_key < prefix + "\U0010ffff")
            if name is not None:  # SQLite's LIKE ignores case by itself, and then reads the index
                matching = (table.c.name.like if self.engine.dialect.name == "sqlite"
                            else table.c.name.ilike)
                by_id = sa.or_(by_id, matching(f"%{_like_literal(name)}%", escape="\\"))
            conditions.append(by_id)
        columns = [table.c.customer_key, table.c.features_as_of,
                   *(table.c[c] for c in SCORE_SUMMARY)]
        empty = pd.DataFrame(columns=[c.name for c in columns])
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(SCORES):
                return empty, 0
            total = conn.execute(sa.select(sa.func.count()).select_from(table)
                                 .where(*conditions)).scalar_one()
            rows = pd.read_sql_query(
                sa.select(*columns).where(*conditions)
                .order_by(table.c.value_at_risk.desc().nulls_last(), table.c.customer_key)
                .limit(limit).offset(offset), conn)
        return rows, int(total)

    @staticmethod
    def _served(table, model_name: str, version: str,
                where: Mapping[str, Iterable] | None) -> list:
        conditions = [table.c.model_name == model_name, table.c.model_version == str(version)]
        for column, values in (where or {}).items():
            conditions.append(table.c[column].in_([str(v) for v in values]))
        return conditions

    def any_score(self, model_name: str, version: str) -> str | None:
        """One stored payload of this model version (an example customer), or None."""
        import sqlalchemy as sa

        table = self._scores_table()
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(SCORES):
                return None
            return conn.execute(sa.select(table.c.payload).where(
                table.c.model_name == model_name, table.c.model_version == version)
                .limit(1)).scalar_one_or_none()

    def record_run(self, model_name: str, version: str, as_of: pd.Timestamp, customers: int,
                   data_shape: str) -> None:
        """Note a finished scoring of the whole portfolio as of `as_of`, drop the rows it did
        not rewrite (customers no longer customers) and every other version's rows but the
        one scored before it (still in service until the switch)."""
        import sqlalchemy as sa

        runs, scores = self._runs_table(), self._scores_table()
        now = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()
        with self._writing(), self.engine.begin() as conn:
            runs.create(conn, checkfirst=True)
            self._create_scores(conn)
            conn.execute(sa.delete(scores).where(
                scores.c.model_name == model_name, scores.c.model_version == version,
                scores.c.features_as_of < as_of.to_pydatetime()))
            conn.execute(sa.insert(runs).values(
                model_name=model_name, model_version=version, as_of=as_of.to_pydatetime(),
                finished_at=now, customers=customers, data_shape=data_shape))
            recent = conn.execute(sa.select(runs.c.model_version).where(
                runs.c.model_name == model_name).order_by(runs.c.id.desc())).scalars().all()
            keep = list(dict.fromkeys(recent))[:2]
            conn.execute(sa.delete(scores).where(scores.c.model_name == model_name,
                                                 scores.c.model_version.not_in(keep)))

    def save_portfolio_drivers(self, model_name: str, version: str, frame: pd.DataFrame) -> None:
        """Replace this model version's `portfolio_drivers` with `frame` (segment, region,
        group, customers, expected, churners)."""

        self._replace_version(self._drivers_table(), model_name, version, [
            {"segment": str(r.segment), "region": str(r.region), "driver_group": str(r.group),
             "customers": int(r.customers), "expected": float(r.expected),
             "churners": float(r.churners)} for r in frame.itertuples()])

    def portfolio_drivers(self, model_name: str, version: str) -> pd.DataFrame | None:
        """`save_portfolio_drivers`'s frame of this model version (None: none kept)."""

        table = self._drivers_table()
        return self._version_rows(table, model_name, version, [
            table.c.segment, table.c.region, table.c.driver_group.label("group"),
            table.c.customers, table.c.expected, table.c.churners])

    def save_portfolio_counts(self, model_name: str, version: str, frame: pd.DataFrame) -> None:
        """Replace this model version's `portfolio_counts` with `frame` (`served_counts` by
        quadrant, risk_band, segment and region)."""

        self._replace_version(self._counts_table(), model_name, version, [
            {c: None if v is None or v != v else v for c, v in row.items()}
            for row in frame.to_dict("records")])

    def portfolio_counts(self, model_name: str, version: str) -> pd.DataFrame | None:
        """`save_portfolio_counts`'s frame of this model version (None: never counted)."""

        table = self._counts_table()
        return self._version_rows(table, model_name, version, [
            table.c.quadrant, table.c.risk_band, table.c.segment, table.c.region,
            table.c.customers, table.c.value_at_risk])

    def _replace_version(self, table, model_name: str, version: str, rows: list[dict]) -> None:
        """Replace a model version's rows of a per-version table, in one transaction."""
        import sqlalchemy as sa

        rows = [{"model_name": model_name, "model_version": str(version), **r} for r in rows]
        with self._writing(), self.engine.begin() as conn:
            table.create(conn, checkfirst=True)
            conn.execute(sa.delete(table).where(table.c.model_name == model_name,
                                                table.c.model_version == str(version)))
            for start in range(0, len(rows), _BATCH_ROWS):
                conn.execute(sa.insert(table), rows[start:start + _BATCH_ROWS])

    def _version_rows(self, table, model_name: str, version: str,
                      columns: list) -> pd.DataFrame | None:
        """A model version's rows of a per-version table (None: none, or no table)."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(table.name):
                return None
            frame = pd.read_sql_query(sa.select(*columns).where(
                table.c.model_name == model_name, table.c.model_version == str(version)), conn)
        return frame if len(frame) else None

    def _counts_table(self):
        import sqlalchemy as sa

        if COUNTS not in self.metadata.tables:
            sa.Table(COUNTS, self.metadata,
                     sa.Column("model_name", sa.String(200), nullable=False),
                     sa.Column("model_version", sa.String(50), nullable=False),
                     sa.Column("quadrant", sa.String(40)),
                     sa.Column("risk_band", sa.String(20)),
                     sa.Column("segment", sa.Text),
                     sa.Column("region", sa.Text),
                     sa.Column("customers", sa.BigInteger, nullable=False),
                     sa.Column("value_at_risk", sa.Float(precision=53)),
                     sa.Index("ix_portfolio_counts_model", "model_name", "model_version"))
        return self.metadata.tables[COUNTS]

    def save_worklist_candidates(self, model_name: str, version: str,
                                 frame: pd.DataFrame) -> None:
        """Replace this model version's worklist candidates with `frame`
        (`serving.worklist.CANDIDATE_COLUMNS`)."""

        self._replace_version(self._candidates_table(), model_name, version,
                              frame.to_dict("records"))

    def worklist_candidates(self, model_name: str, version: str, channel: str,
                            where: Mapping[str, Iterable] | None = None,
                            limit: int = 5_000) -> pd.DataFrame | None:
        """The channel's candidates whose columns hold `where`'s values, the most expected
        profit first (at most `limit`); None when none were kept for this model version."""
        import sqlalchemy as sa

        table = self._candidates_table()
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(CANDIDATES):
                return None
            conditions = [table.c.model_name == model_name,
                          table.c.model_version == str(version), table.c.channel == channel]
            for column, values in (where or {}).items():
                conditions.append(table.c[column].in_([str(v) for v in values]))
            columns = [c for c in table.c if c.name not in ("model_name", "model_version")]
            found = pd.read_sql_query(sa.select(*columns).where(*conditions).order_by(
                table.c.expected_profit.desc(), table.c.customer_id).limit(limit), conn)
            if len(found) or conn.execute(sa.select(table.c.channel).where(
                    *conditions[:2]).limit(1)).first() is not None:
                return found
        return None

    def _candidates_table(self):
        import sqlalchemy as sa

        if CANDIDATES not in self.metadata.tables:
            sa.Table(CANDIDATES, self.metadata,
                     sa.Column("model_name", sa.String(200), primary_key=True),
                     sa.Column("model_version", sa.String(50), primary_key=True),
                     sa.Column("channel", sa.String(40), primary_key=True),
                     sa.Column("customer_id", sa.String(200), primary_key=True),
                     sa.Column("recommended_action", sa.String(200), nullable=False),
                     sa.Column("action_channel", sa.String(40), nullable=False),
                     sa.Column("action_cost", sa.Float(precision=53), nullable=False),
                     sa.Column("expected_profit", sa.Float(precision=53), nullable=False),
                     sa.Column("churn_probability", sa.Float(precision=53)),
                     sa.Column("risk_band", sa.String(20)),
                     sa.Column("value_at_risk", sa.Float(precision=53)),
                     sa.Column("segment", sa.Text),
                     sa.Column("region", sa.Text),
                     sa.Index("ix_worklist_candidates_profit", "model_name", "model_version",
                              "channel", "expected_profit"))
        return self.metadata.tables[CANDIDATES]

    def _drivers_table(self):
        import sqlalchemy as sa

        if DRIVERS not in self.metadata.tables:
            sa.Table(DRIVERS, self.metadata,
                     sa.Column("model_name", sa.String(200), primary_key=True),
                     sa.Column("model_version", sa.String(50), primary_key=True),
                     sa.Column("segment", sa.String(200), primary_key=True),
                     sa.Column("region", sa.String(200), primary_key=True),
                     sa.Column("driver_group", sa.String(40), primary_key=True),
                     sa.Column("customers", sa.BigInteger, nullable=False),
                     sa.Column("expected", sa.Float(precision=53), nullable=False),
                     sa.Column("churners", sa.Float(precision=53), nullable=False))
        return self.metadata.tables[DRIVERS]

    def latest_run(self, model_name: str, version: str) -> dict | None:
        """The newest `record_run` of this model version (None: never scored)."""
        import sqlalchemy as sa

        runs = self._runs_table()
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(SCORE_RUNS):
                return None
            row = conn.execute(sa.select(runs).where(
                runs.c.model_name == model_name, runs.c.model_version == version)
                .order_by(runs.c.id.desc()).limit(1)).mappings().first()
        return None if row is None else {**row, "as_of": pd.Timestamp(row["as_of"])}

    def _scores_table(self):
        import sqlalchemy as sa

        if SCORES not in self.metadata.tables:
            sa.Table(SCORES, self.metadata,
                     sa.Column("model_name", sa.String(200), primary_key=True),
                     sa.Column("model_version", sa.String(50), primary_key=True),
                     sa.Column("customer_key", sa.String(200), primary_key=True),
                     sa.Column("features_as_of", sa.DateTime, nullable=False),
                     sa.Column("payload", sa.Text, nullable=False),
                     # out of the payload (`SCORE_SUMMARY`), for the portfolio in aggregate
                     # and in lists
                     sa.Column("churn_probability", sa.Float(precision=53)),
                     sa.Column("risk_band", sa.String(20)),
                     sa.Column("value_at_risk", sa.Float(precision=53)),
                     sa.Column("quadrant", sa.String(40)),
                     sa.Column("recommended_action", sa.String(200)),
                     sa.Column("segment", sa.Text),
                     sa.Column("region", sa.Text),
                     sa.Column("name", sa.Text))
        return self.metadata.tables[SCORES]

    def _create_scores(self, conn) -> None:
        """`served_scores` created when absent; a store scored before it had every
        `SCORE_SUMMARY` column gets them (once per store object; their rows stay NULL until
        re-scored)."""
        import sqlalchemy as sa

        table = self._scores_table()
        if self._scores_ready:
            return
        table.create(conn, checkfirst=True)
        have = {c["name"] for c in sa.inspect(conn).get_columns(SCORES)}
        for column in SCORE_SUMMARY:
            if column not in have:
                kind = table.c[column].type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {SCORES} ADD COLUMN {column} {kind}")
        # the pages' lists and counts walk this index, never the payloads (`served_list`)
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {SCORES_PORTFOLIO_INDEX} ON {SCORES} "
                             f"(model_name, model_version, value_at_risk, "
                             f"{', '.join(c for c in SCORE_SUMMARY if c != 'value_at_risk')}, "
                             "customer_key, features_as_of)")
        self._scores_ready = True

    def _runs_table(self):
        import sqlalchemy as sa

        if SCORE_RUNS not in self.metadata.tables:
            sa.Table(SCORE_RUNS, self.metadata,
                     sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                               primary_key=True, autoincrement=True),
                     sa.Column("model_name", sa.String(200), nullable=False),
                     sa.Column("model_version", sa.String(50), nullable=False),
                     sa.Column("as_of", sa.DateTime, nullable=False),
                     sa.Column("finished_at", sa.DateTime, nullable=False),
                     sa.Column("customers", sa.BigInteger, nullable=False),
                     sa.Column("data_shape", sa.Text, nullable=False))
        return self.metadata.tables[SCORE_RUNS]

    def _reflected(self, conn, name: str):
        """A contract table as the database has it, reflected once per store object (a
        customer's read, the hot path of fresh scores, would otherwise reflect nine tables);
        a write that adds columns forgets it (`_table`)."""
        import sqlalchemy as sa

        if name not in self._tables:
            self._tables[name] = sa.Table(name, sa.MetaData(), autoload_with=conn)
        return self._tables[name]

    def _predictions_table(self):
        import sqlalchemy as sa

        if PREDICTIONS not in self.metadata.tables:
            text = {"source", "channel", "customer_id", "model_name", "model_version", "target",
                    "features_as_of", "scored_at", "data_watermark", "risk_band", "reason_1",
                    "reason_2", "reason_3", "recommended_action"}
            sa.Table(PREDICTIONS, self.metadata,
                     sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                               primary_key=True, autoincrement=True),
                     sa.Column("logged_at", sa.DateTime, nullable=False),
                     *(sa.Column(c, sa.Text, index=c == "customer_id")
                       for c in PREDICTION_COLUMNS if c in text),
                     sa.Column("horizon_days", sa.Integer),
                     sa.Column("churn_probability", sa.Float(precision=53)),
                     # what a channel quotes to report an outcome (null: logged before ids)
                     sa.Column("prediction_id", sa.String(64)),
                     sa.Index(PREDICTION_ID_INDEX, "prediction_id", unique=True))
        return self.metadata.tables[PREDICTIONS]

    def _create_predictions(self, conn) -> None:
        """`prediction_log` created when absent; a log kept before predictions had ids gets the
        column and its index (once per store object)."""
        import sqlalchemy as sa

        log = self._predictions_table()
        if self._predictions_ready:
            return
        log.create(conn, checkfirst=True)
        if "prediction_id" not in {c["name"] for c in sa.inspect(conn).get_columns(PREDICTIONS)}:
            # IF NOT EXISTS: another replica may be adding it too (PostgreSQL; SQLite has one
            # writer at a time and no such clause)
            guard = "IF NOT EXISTS " if conn.dialect.name == "postgresql" else ""
            conn.exec_driver_sql(f"ALTER TABLE {PREDICTIONS} ADD COLUMN {guard}prediction_id "
                                 "VARCHAR(64)")
            conn.exec_driver_sql(f"CREATE UNIQUE INDEX IF NOT EXISTS {PREDICTION_ID_INDEX} ON "
                                 f"{PREDICTIONS} (prediction_id)")
        self._predictions_ready = True

    def _readable_predictions(self) -> bool:
        """Whether `prediction_log` exists; a log kept before predictions had ids gets the
        column first (`_create_predictions`), so reads can select it."""
        import sqlalchemy as sa

        if self._predictions_ready:
            return True
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(PREDICTIONS):
                return False
        with self._writing(), self.engine.begin() as conn:
            self._create_predictions(conn)
        return True

    def _outcomes_table(self):
        import sqlalchemy as sa

        if OUTCOMES not in self.metadata.tables:
            sa.Table(OUTCOMES, self.metadata,
                     sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                               primary_key=True, autoincrement=True),
                     sa.Column("outcome_key", sa.String(200), nullable=False, unique=True),
                     sa.Column("prediction_id", sa.String(64), nullable=False, index=True),
                     sa.Column("customer_id", sa.Text, nullable=False, index=True),
                     sa.Column("action", sa.Text),
                     sa.Column("response", sa.String(20)),
                     sa.Column("channel", sa.String(40)),
                     sa.Column("occurred_at", sa.DateTime),
                     sa.Column("stayed", sa.Boolean),
                     sa.Column("reported_at", sa.DateTime, nullable=False))
        return self.metadata.tables[OUTCOMES]

    def _checks_table(self):
        import sqlalchemy as sa

        if CHECKS not in self.metadata.tables:
            sa.Table(CHECKS, self.metadata,
                     sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                               primary_key=True, autoincrement=True),
                     sa.Column("checked_at", sa.DateTime, nullable=False),
                     sa.Column("model_name", sa.Text, nullable=False),
                     sa.Column("model_version", sa.String(40), nullable=False),
                     sa.Column("as_of", sa.String(40)),
                     sa.Column("retraining_due", sa.Boolean, nullable=False),
                     sa.Column("verdict", sa.Text, nullable=False),
                     sa.Column("score_psi", sa.Float(precision=53)),
                     sa.Column("realised_roc_auc", sa.Float(precision=53)),
                     sa.Column("features", sa.Text),
                     sa.Index("ix_monitor_checks_model", "model_name", "model_version"))
        return self.metadata.tables[CHECKS]

    def _writes_table(self):
        import sqlalchemy as sa

        if WRITES not in self.metadata.tables:
            sa.Table(WRITES, self.metadata,
                     sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                               primary_key=True, autoincrement=True),
                     sa.Column("written_at", sa.DateTime, nullable=False),
                     sa.Column("received", sa.BigInteger, nullable=False),
                     sa.Column("stored", sa.BigInteger, nullable=False))
        return self.metadata.tables[WRITES]

    def _table(self, conn, name: str, frame: pd.DataFrame):
        """The SQL table for `name`, created with `frame`'s columns when absent; columns the
        table lacks are added (a data set with new attributes)."""
        import sqlalchemy as sa

        known = self._tables.get(name)  # the hot path of ingestion: no reflection per write
        if known is not None and all(c in known.c for c in frame.columns):
            return known
        inspector = sa.inspect(conn)
        if not inspector.has_table(name):
            columns = [sa.Column(c, _sql_type(frame[c])) for c in frame.columns]
            table = sa.Table(name, sa.MetaData(), *columns,
                             sa.Column(KEY, sa.String(64), nullable=False, unique=True),
                             sa.Column(WRITE, sa.BigInteger, nullable=False, index=True))
            if "customer_id" in frame.columns:  # every read by customer goes through it
                sa.Index(f"ix_{name}_customer", table.c.customer_id)
            table.create(conn)
            return table
        present = {c["name"] for c in inspector.get_columns(name)}
        prep = conn.dialect.identifier_preparer
        for column in frame.columns:
            if column not in present:
                self._tables.pop(name, None)
                ddl = sa.schema.CreateColumn(sa.Column(column, _sql_type(frame[column])))
                conn.execute(sa.text(f"ALTER TABLE {prep.quote(name)} ADD COLUMN "
                                     f"{ddl.compile(dialect=conn.dialect)}"))
        return self._reflected(conn, name)

    def _insert_new(self, conn, table, rows: pd.DataFrame, tick: _Progress) -> int:
        """Insert the rows whose key the table lacks; how many were new. One statement with
        `ON CONFLICT DO NOTHING`, executed by the driver over plain tuples (SQLAlchemy's
        per-row dicts cost more than the database)."""
        prep = conn.dialect.identifier_preparer
        names = list(rows.columns)
        marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        sql = (f"INSERT INTO {prep.quote(table.name)} ({', '.join(prep.quote(n) for n in names)}) "
               f"VALUES ({', '.join([marker] * len(names))}) "
               f"ON CONFLICT ({prep.quote(KEY)}) DO NOTHING")
        new = 0
        step = _BATCH_ROWS * 50  # rows turned into Python tuples at a time (bounds memory)
        for part in range(0, len(rows), step):
            values = _tuples(rows.iloc[part:part + step])
            for start in range(0, len(values), _BATCH_ROWS):
                chunk = values[start:start + _BATCH_ROWS]
                new += conn.exec_driver_sql(sql, chunk).rowcount  # the rows inserted
                tick(len(chunk))
        return new

    # ----------------------------------------------------------------------------------- read

    def counts(self) -> dict[str, int]:
        """Records per contract table present in the store."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            return {name: conn.execute(sa.text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one()
                    for name in TABLES if name in present}

    def watermark(self) -> pd.Timestamp | None:
        """When the newest record was stored (UTC; None for an empty store)."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(WRITES):
                return None
            log = self._writes_table()
            newest = conn.execute(sa.select(sa.func.max(log.c.written_at))
                                  .where(log.c.stored > 0)).scalar_one()
        return None if newest is None else pd.Timestamp(newest)

    def writes_after(self, write_id: int) -> list[tuple[int, bool]]:
        """(id, whether it stored anything) of each committed write after `write_id`."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(WRITES):
                return []
            log = self._writes_table()
            rows = conn.execute(sa.select(log.c.id, log.c.stored).where(log.c.id > write_id)
                                .order_by(log.c.id)).all()
        return [(int(i), stored > 0) for i, stored in rows]

    def changed_customers(self, write_ids: list[int]) -> list:
        """The customers the records of these writes are about (new customers included)."""
        import sqlalchemy as sa

        if not write_ids:
            return []
        found: set = set()
        with self.engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            for name, spec in TABLES.items():
                if name not in present or "customer_id" not in spec.column_names:
                    continue
                table = sa.table(name, sa.column("customer_id"), sa.column(WRITE))
                found.update(conn.execute(sa.select(table.c.customer_id).distinct()
                                          .where(table.c[WRITE].in_(write_ids))).scalars())
        return sorted(found, key=str)


class ChangeFeed:
    """Which customers the store's new writes are about, each committed write once.

    Writes are numbered as they start; on PostgreSQL two writes may commit out of order, so a
    write numbered below one already seen can still appear: the feed waits for such a gap for
    `patience` seconds (a write rolled back never appears) before it stops looking below it."""

    def __init__(self, store: Store, patience: float = 30.0) -> None:
        self.store, self.patience = store, patience
        done = store.writes_after(0)
        #: Every write up to this id has been seen.
        self.floor = done[-1][0] if done else 0
        self._seen: set[int] = set()
        self._gap_since: float | None = None

    def poll(self) -> list:
        """The customers of the writes committed since the last poll."""
        import time

        new = [(i, stored) for i, stored in self.store.writes_after(self.floor)
               if i not in self._seen]
        self._seen.update(i for i, _ in new)
        self._advance()
        if self._seen:  # a write below one seen has not committed (yet)
            now = time.monotonic()
            if self._gap_since is None:
                self._gap_since = now
            elif now - self._gap_since > self.patience:
                self.floor = min(self._seen) - 1
                self._advance()
                self._gap_since = None
        else:
            self._gap_since = None
        return self.store.changed_customers([i for i, stored in new if stored])

    def _advance(self) -> None:
        while self.floor + 1 in self._seen:
            self.floor += 1
            self._seen.discard(self.floor)


class _Progress:
    def __init__(self, report: Callable[[int, int], None] | None, total: int) -> None:
        self.report, self.total, self.done = report, total, 0

    def __call__(self, rows: int) -> None:
        self.done += rows
        if self.report is not None:
            self.report(self.done, self.total)


#: Values per `IN (...)` list: one indexed lookup each, so the cost follows the batch.
IN_LIST = 500


def _in_lists(values) -> Iterable[list]:
    """`values` (any sequence or collection) in lists of at most `IN_LIST`."""
    values = list(values)
    for start in range(0, len(values), IN_LIST):
        yield values[start:start + IN_LIST]


def _like_literal(text: str) -> str:
    """`text` matched literally by a LIKE with `escape="\\"` (its %, _ and \\ escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _as_column_values(values, sql_type) -> list:
    """Raw ids (text from a file, numbers from JSON) as the store's id column holds them;
    those that cannot be such an id are left out (the store cannot hold them)."""
    import sqlalchemy as sa

    if not isinstance(sql_type, sa.Integer):
        return [str(_python(v)) for v in values]
    out = []
    for v in values:
        try:
            number = float(v)
        except (TypeError, ValueError):
            continue
        if number.is_integer():
            out.append(int(number))
    return out


def _python(value):
    """A numpy scalar as the Python value a database driver takes."""
    return value.item() if isinstance(value, np.generic) else value


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sql_type(series: pd.Series):
    import sqlalchemy as sa

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return sa.Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Float(precision=53)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return sa.DateTime()
    return sa.Text()


def _with_bookkeeping(name: str, frame: pd.DataFrame, write_id: int) -> pd.DataFrame:
    rows = frame.copy()
    rows[KEY] = record_keys(name, frame)
    rows[WRITE] = np.int64(write_id)
    # A batch that repeats a keyed record (a customer twice) stores it once.
    return rows.drop_duplicates(KEY, keep="first")


def record_keys(name: str, frame: pd.DataFrame) -> np.ndarray:
    """What makes each record of table `name` the same record: its contract key when the table
    has one (transactions: their id, when given), else a digest of all its values and of how
    many identical records came before it in the same batch (re-sending a batch stores nothing;
    two equal deliveries in one batch are two deliveries)."""
    key = TABLES[name].key
    keyed = bool(key) and all(c in frame.columns for c in key) and \
        not frame[list(key)].isna().any().any()
    columns = list(key) if keyed else sorted(frame.columns)
    text = _canonical(frame[columns[0]])
    for column in columns[1:]:
        text = text + "\x1f" + _canonical(frame[column])
    if not keyed:  # identical records in one batch are distinct events (two equal deliveries)
        text = text + "\x1f" + text.groupby(text).cumcount().astype(str)
    return np.array([hashlib.sha256(t.encode()).hexdigest()[:40] for t in text], dtype=object)


def _canonical(series: pd.Series) -> pd.Series:
    """One text per value, the same whichever way the value arrived (file, JSON, database)."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        text = series.dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    elif pd.api.types.is_float_dtype(series.dtype):
        text = series.map(repr)
    else:
        text = series.astype(str)
    return text.where(series.notna(), "\x00").astype(str).reset_index(drop=True)


def _tuples(rows: pd.DataFrame) -> list[tuple]:
    """Rows as tuples of Python values (None for missing) for the database driver."""
    columns = []
    for name in rows.columns:
        series = rows[name]
        missing = series.isna().to_numpy()
        dtype = series.dtype
        if pd.api.types.is_datetime64_any_dtype(dtype):
            values = list(series.dt.to_pydatetime())
        elif pd.api.types.is_bool_dtype(dtype):
            values = [bool(v) for v in series.fillna(False)]
        elif pd.api.types.is_integer_dtype(dtype):
            values = [int(v) for v in series.fillna(0)]
        elif pd.api.types.is_float_dtype(dtype):
            values = [float(v) for v in series.fillna(0.0)]
        else:
            values = series.astype(object).tolist()
        columns.append([None if m else v for v, m in zip(values, missing, strict=True)])
    return list(zip(*columns, strict=True))
