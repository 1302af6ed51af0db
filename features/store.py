"""The store: CRM events in a SQL database (SQLite embedded, PostgreSQL in production), one code
path through SQLAlchemy.

Each contract table is a SQL table of the contract's name with the contract's columns, typed
(plus the extra columns a data set brings, such as customer attributes), and two bookkeeping
columns every reader drops (`io.BOOKKEEPING`):

- `_store_key`: what makes a record the same record. Tables with a key in the contract
  (customers, products, labels; transactions with a `transaction_id`) use it; the others use a
  digest of every value. Re-sending a record stores nothing twice (`ON CONFLICT DO NOTHING`).
- `_store_ingested_at`: when the record was stored.

Each write also adds a row per table to `_store_writes` (when, records received, records new):
the store's watermark is the newest write that stored something.

A write is one transaction: all of a batch or none of it. Data are validated by the contract
before they reach the store (`write` takes `CrmData`), so the store holds only valid records.
SQLite runs in WAL mode with full synchronous commits: a write is on disk when `write` returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn_risk.errors import UsageError
from churn_risk.features.contract import TABLES
from churn_risk.features.io import BOOKKEEPING, DataSourceError, is_sql_url

KEY, INGESTED_AT = BOOKKEEPING
DEFAULT_STORE = "sqlite:///churn-store.db"
#: The store's log of writes: when, which table, records received and new.
WRITES = "_store_writes"

#: Rows per INSERT statement (SQLite allows 32,766 bound values per statement).
_BATCH_ROWS = 2_000


@dataclass(frozen=True)
class WriteResult:
    """Per table: records received and records new to the store (the rest were stored before)."""

    received: dict[str, int]
    stored: dict[str, int]

    @property
    def duplicates(self) -> dict[str, int]:
        return {name: self.received[name] - self.stored.get(name, 0) for name in self.received}


def check_store_url(url: str) -> str:
    """`url` if it names a database; a `UsageError` saying what a store URL looks like if not."""
    if not is_sql_url(url):
        raise UsageError(f"--store {url!r}: not a database URL (for example {DEFAULT_STORE}, or "
                         "postgresql+psycopg://user@host/db); a folder of files is --data")
    return url


class Store:
    """A CRM store at a SQLAlchemy URL (`sqlite:///path.db`, `postgresql+psycopg://...`)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = check_store_url(url)
        try:
            self.engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise DataSourceError(f"--store {url!r}: not a usable database URL ({exc})") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.metadata = sa.MetaData()

    def close(self) -> None:
        self.engine.dispose()

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
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        try:
            with self.engine.begin() as conn:
                for name in TABLES:
                    if name not in crm.tables:
                        continue
                    frame = crm.tables[name]
                    table = self._table(conn, name, frame)
                    rows = _with_bookkeeping(name, frame, now)
                    received[name] = len(rows)
                    stored[name] = self._insert_new(conn, table, rows, tick)
                self._log_write(conn, now, received, stored)
        except sa.exc.SQLAlchemyError as exc:
            raise DataSourceError(f"cannot write to the store {self.url!r}: "
                                  f"{_first_line(exc)}") from None
        return WriteResult(received, stored)

    def ingest(self, raw: Mapping[str, pd.DataFrame], problems=(),
               progress: Callable[[int, int], None] | None = None) -> WriteResult:
        """Validate a batch of new records (any contract tables, as read; `problems` found while
        mapping them) against the contract and the store, then write it: all of it, or nothing
        (a `DataContractError` names each record, column and rule broken)."""
        from churn_risk.features.validation import validate

        crm = validate(raw, problems, stored_keys=self.stored_keys())
        return self.write(crm, progress)

    def customer_tables(self, customer_ids, chunk: int = 500) -> dict[str, pd.DataFrame]:
        """Every stored record of these customers (each per-customer table, read through its
        customer index), with the products table whole: what their features are made of.
        Records come in the order they were stored, as a whole-table read returns them (so
        events with equal times keep the same order either way)."""
        import sqlalchemy as sa

        ids = [_python(i) for i in pd.unique(pd.Series(list(customer_ids)))]
        tables: dict[str, pd.DataFrame] = {}
        with self.engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            for name in TABLES:
                if name not in present:
                    continue
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
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

    def stored_keys(self) -> dict[str, pd.Series]:
        """The keys other tables refer to that the store holds (customer and product ids)."""
        import sqlalchemy as sa

        keys = {}
        with self.engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            for name, column in (("customers", "customer_id"), ("products", "product_id")):
                if name in present:
                    keys[name] = pd.read_sql_query(
                        sa.text(f'SELECT "{column}" FROM "{name}"'), conn)[column]
        return keys

    def _log_write(self, conn, at: pd.Timestamp, received: dict, stored: dict) -> None:
        """One row per table and write in `WRITES` (the watermark without scanning tables)."""
        import sqlalchemy as sa

        log = self._writes_table()
        log.create(conn, checkfirst=True)
        if received:
            conn.execute(sa.insert(log), [
                {"written_at": at.to_pydatetime(), "table_name": name, "received": n,
                 "stored": stored[name]} for name, n in received.items()])

    def _writes_table(self):
        import sqlalchemy as sa

        if WRITES not in self.metadata.tables:
            sa.Table(WRITES, self.metadata,
                     sa.Column("written_at", sa.DateTime, nullable=False, index=True),
                     sa.Column("table_name", sa.String(64), nullable=False),
                     sa.Column("received", sa.BigInteger, nullable=False),
                     sa.Column("stored", sa.BigInteger, nullable=False))
        return self.metadata.tables[WRITES]

    def _table(self, conn, name: str, frame: pd.DataFrame):
        """The SQL table for `name`, created with `frame`'s columns when absent; columns the
        table lacks are added (a data set with new attributes)."""
        import sqlalchemy as sa

        inspector = sa.inspect(conn)
        if not inspector.has_table(name):
            columns = [sa.Column(c, _sql_type(frame[c])) for c in frame.columns]
            table = sa.Table(name, sa.MetaData(), *columns,
                             sa.Column(KEY, sa.String(64), nullable=False, unique=True),
                             sa.Column(INGESTED_AT, sa.DateTime, nullable=False))
            table.create(conn)
            sa.Index(f"ix_{name}_customer", table.c.customer_id).create(conn) \
                if "customer_id" in frame.columns and name != "customers" else None
            return table
        present = {c["name"] for c in inspector.get_columns(name)}
        prep = conn.dialect.identifier_preparer
        for column in frame.columns:
            if column not in present:
                ddl = sa.schema.CreateColumn(sa.Column(column, _sql_type(frame[column])))
                conn.execute(sa.text(f"ALTER TABLE {prep.quote(name)} ADD COLUMN "
                                     f"{ddl.compile(dialect=conn.dialect)}"))
        return sa.Table(name, sa.MetaData(), autoload_with=conn)

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
        before = _count(conn, table.name)
        values = _tuples(rows)
        for start in range(0, len(values), _BATCH_ROWS):
            chunk = values[start:start + _BATCH_ROWS]
            conn.exec_driver_sql(sql, chunk)
            tick(len(chunk))
        return _count(conn, table.name) - before

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


class _Progress:
    def __init__(self, report: Callable[[int, int], None] | None, total: int) -> None:
        self.report, self.total, self.done = report, total, 0

    def __call__(self, rows: int) -> None:
        self.done += rows
        if self.report is not None:
            self.report(self.done, self.total)


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


def _with_bookkeeping(name: str, frame: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    rows = frame.copy()
    rows[KEY] = record_keys(name, frame)
    rows[INGESTED_AT] = now
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


def _count(conn, name: str) -> int:
    prep = conn.dialect.identifier_preparer
    return conn.exec_driver_sql(f"SELECT COUNT(*) FROM {prep.quote(name)}").scalar_one()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def counts_table(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in counts.items())
