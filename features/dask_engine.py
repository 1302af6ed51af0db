"""The same feature functions, run on Dask and partitioned by customer; the data stay on the
workers.

Reading, on the workers: a folder's files with `dask.dataframe` (Parquet by row groups, delimited
text in 64 MB blocks, in the mapping file's dialect when there is one; the driver reads only
Parquet footers and the first 256 kB of a text file, for its columns); a SQL source table by
table, each in ranges of its customer id whose bounds the database gives (the driver asks for
`COUNT(*)`, the column names and one `ORDER BY id LIMIT 1 OFFSET n` id per bound, and reads no
row).

Partitioning: every per-customer table is shuffled on its customer id into the same number of
partitions (integer ids as they are when every table has them, any other ids as canonical text,
so that ids validation will find equal always meet), so partition *i* of every table holds the
complete history of the same customers. The small `products` table is read by one task and
replicated to every worker: it never passes through the driver nor goes into a graph.

Preparation: each partition is mapped (`mapping.apply_mapping`: renames, value maps, dates and
numbers are row by row, and a customers table derived from first activity is derived from the
customer's own rows, which are all in the partition), validated and prepared where it is, by the
functions the pandas path uses, and stays there (`DaskData.parts`, futures). What the driver
decides from the data (the target, the snapshot dates, the scoring date) reads their
`labels.DataFacts`, added up from the partitions' (`DataFacts.combine`), so the driver never
reads a table.

Features: each partition's snapshots are built where it is (`DaskData.frames`, futures); they
come to the driver only when asked (`DaskData.frame`): batch scoring scores them in place. No
feature depends on other customers, so the result equals the pandas path row for row (a test
holds it to that). No graph holds data: the largest the client sends is the plan that reads and
shuffles the tables (about 40 kB for nine tables, whatever their size).

Where a partition is not the whole:

- validation runs per partition: its examples name rows of the partition, and the kind of an
  attribute column decided from its values (categorical or numeric) may come out differently in
  two partitions (`DaskData.specs` then says so and names the pandas engine);
- a mapping's decimal-mark conversion leaves a column whose values are not all numbers to
  validation, per partition: the error is the same, its examples may differ;
- delimited text in an encoding that is not ASCII-compatible (UTF-16, ...) and gzipped text are
  read whole by one task each, not in blocks; a text file with a header and no rows is an empty
  table here (the pandas engine refuses it).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from churn_risk.features.config import FeatureConfig
from churn_risk.features.contract import TABLES
from churn_risk.features.io import (
    BOOKKEEPING,
    DataSource,
    DataSourceError,
    DataSourceLike,
    SqlTable,
    as_source,
    is_sql_url,
    sql_tables,
)
from churn_risk.features.labels import DataFacts
from churn_risk.features.target import Target

PER_CUSTOMER = tuple(
    name for name, t in TABLES.items() if any(c.name == "customer_id" for c in t.columns)
)
#: The column every per-customer table is shuffled on (dropped before validation).
KEY = "__customer_key__"
#: Rows of a SQL table one task reads (one range of customer ids).
SQL_ROWS_PER_PART = 500_000
CSV_BLOCKSIZE = "64MB"
_WHOLE_NUMBER = r"-?(?:0|[1-9]\d{0,17})(?:\.0*)?"  # as `validation._INTEGER_TEXT`, stripped


#: Dask's warning about a graph above its threshold, with the size it sent.
_LARGE_GRAPH = re.compile(r"Sending large graph of size ([0-9.]+ [A-Za-z]+)")


@contextlib.contextmanager
def graph_sizes() -> Iterator[list[int]]:
    """The size in bytes of every graph a client sends while the block runs (Dask states it
    only for graphs above a threshold: the threshold is 1 byte meanwhile)."""
    import warnings

    import dask
    from dask.utils import parse_bytes

    sizes: list[int] = []
    with (dask.config.set({"distributed.admin.large-graph-warning-threshold": "1B"}),
          warnings.catch_warnings(record=True) as caught):
        warnings.simplefilter("always")
        yield sizes
    sizes += [parse_bytes(m.group(1)) for w in caught
              if (m := _LARGE_GRAPH.search(str(w.message)))]


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int = 2) -> Iterator[object]:
    """A client on `scheduler`, or on a LocalCluster of `n_workers` single-threaded processes."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        # Workers import the feature code once, as part of starting the cluster.
        client.run(_import_feature_code)
        yield client


def _import_feature_code() -> None:
    import churn_risk.features.snapshots  # noqa: F401
    import churn_risk.features.validation  # noqa: F401


# --------------------------------------------------------------------------------------------
# The data on the workers


@dataclass
class DaskData:
    """A data source read, mapped, validated and prepared on the workers of `client`: one
    `PreparedData` per customer partition (`parts`, futures), and the `facts` of the whole."""

    client: object
    parts: list
    facts: DataFacts

    def map(self, fn: Callable, **kwargs) -> list:
        """`fn(prep, **kwargs)` of every partition, computed where it is, gathered (keep what
        `fn` returns small)."""
        return self.client.gather(self.client.map(fn, self.parts, **kwargs, pure=False))

    def frames(self, as_ofs: Sequence[str | pd.Timestamp], cfg: FeatureConfig, target: Target,
               labelled: bool = False) -> list:
        """Futures of each partition's snapshots at `as_ofs` (with their labels, rows without a
        churn label dropped, when `labelled`): they stay on the workers."""
        as_ofs = [pd.Timestamp(a) for a in as_ofs]
        end = self.facts.end if labelled else None
        return self.client.map(_partition_frame, self.parts, as_ofs=as_ofs, cfg=cfg,
                               target=target, labelled=labelled, end=end, pure=False)

    def specs(self, cfg: FeatureConfig) -> list:
        """The feature specs (every partition must agree on them)."""
        from churn_risk.features.lifecycle import feature_specs

        found = self.map(feature_specs, cfg=cfg)
        if any(other != found[0] for other in found[1:]):
            raise ValueError(
                "customer partitions disagree on the feature set (an attribute column looks "
                "categorical in one partition and not in another); declare it or use the "
                "pandas engine"
            )
        return found[0]

    def frame(self, as_ofs: Sequence[str | pd.Timestamp], cfg: FeatureConfig, target: Target,
              labelled: bool = False, progress: Callable[[int, int], None] | None = None
              ) -> tuple[pd.DataFrame, list]:
        """The snapshots (see `frames`) brought to the driver, sorted by (as_of, customer_id),
        and their feature specs."""
        from dask.distributed import as_completed

        specs = self.specs(cfg)
        futures = self.frames(as_ofs, cfg, target, labelled)
        if progress is not None:
            for done, _ in enumerate(as_completed(futures), 1):
                progress(done, len(futures))
        frames = self.client.gather(futures)
        filled = [f for f in frames if len(f)] or frames[:1]
        frame = pd.concat(filled, ignore_index=True) if len(filled) > 1 else filled[0]
        frame = frame.sort_values(["as_of", "customer_id"], kind="stable")
        return frame.reset_index(drop=True), specs


def prepare_dask(source: DataSourceLike, client, npartitions: int | None = None,
                 sql_rows_per_part: int = SQL_ROWS_PER_PART) -> DaskData:
    """Read `source` on the workers of `client`, partition it by customer into `npartitions`
    (default: two per worker), and map, validate and prepare each partition where it is.
    Bad data raise `validation.DataContractError` here, as `validation.load_crm` does."""
    import dask

    source = as_source(source)
    tables = _read(source, sql_rows_per_part)
    nparts = npartitions or max(2, 2 * len(client.scheduler_info()["workers"]))
    shared = {}
    for name, ddf in tables.items():
        if name not in PER_CUSTOMER:
            shared[name] = client.compute(ddf)
            client.replicate([shared[name]])  # one copy per worker, worker to worker
    per_customer = _partitioned({n: t for n, t in tables.items() if n in PER_CUSTOMER},
                                source.mapping, nparts)
    names = list(per_customer)
    shared_names = list(shared)
    tasks = [
        dask.delayed(_prepare_partition)(
            names, shared_names, source.mapping,
            *(per_customer[name][i] for name in names), *shared.values(),
        )
        for i in range(nparts)
    ]
    parts = client.compute(tasks)
    facts = DataFacts.combine(client.gather(client.map(DataFacts.of, parts)))
    return DaskData(client, parts, facts)


def _prepare_partition(names: list[str], shared_names: list[str], mapping, *frames):
    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.mapping import apply_mapping
    from churn_risk.features.validation import validate

    per_customer = {name: frame.drop(columns=KEY).reset_index(drop=True)
                    for name, frame in zip(names, frames[:len(names)], strict=True)}
    present = {**per_customer, **dict(zip(shared_names, frames[len(names):], strict=True))}
    raw = {name: present[name] for name in TABLES if name in present}  # as `io.read_tables`
    tables, problems = apply_mapping(raw, mapping)
    return prepare(validate(tables, problems))


def _partition_frame(prep, as_ofs: Sequence[pd.Timestamp], cfg: FeatureConfig, target: Target,
                     labelled: bool, end: np.datetime64 | None) -> pd.DataFrame:
    from churn_risk.features.snapshots import (
        CHURN_LABEL,
        build_labelled_snapshot,
        build_snapshot,
    )

    frames = []
    for as_of in as_ofs:
        if labelled:
            frame = build_labelled_snapshot(prep, as_of, cfg, target, end)
            frames.append(frame.loc[frame[CHURN_LABEL].notna()])
        else:
            frames.append(build_snapshot(prep, as_of, cfg, target))
    return pd.concat(frames, ignore_index=True)


def build_frame_dask(
    source: DataSourceLike,
    as_ofs: Sequence[str | pd.Timestamp],
    cfg: FeatureConfig,
    target: Target,
    labelled: bool = False,
    scheduler: str | None = None,
    n_workers: int = 2,
    npartitions: int | None = None,
) -> tuple[pd.DataFrame, list]:
    """Snapshots (labelled or not) for `as_ofs`, computed per customer partition on Dask (a
    client on `scheduler`, else a local cluster), and the specs of their features.

    Rows come back sorted by (as_of, customer_id)."""
    with dask_client(scheduler, n_workers) as client:
        data = prepare_dask(source, client, npartitions)
        return data.frame(as_ofs, cfg, target, labelled)


# --------------------------------------------------------------------------------------------
# Partitioning by customer


def _key_column(mapping, name: str) -> str:
    """The name of the customer id column of table `name` as the source holds it."""
    declared = mapping.table(name) if mapping is not None else None
    return declared.columns.get("customer_id", "customer_id") if declared else "customer_id"


def _partitioned(tables: dict[str, object], mapping, npartitions: int) -> dict[str, list]:
    """Shuffle each per-customer table on its customer id; its partitions as delayed.

    Integer ids in every table are shuffled as they are; otherwise every table's ids are
    shuffled as canonical text (`_canonical_ids`), so that equal ids hash alike everywhere."""
    value_maps = {name: (mapping.table(name).values.get("customer_id")
                         if mapping is not None and mapping.table(name) is not None else None)
                  for name in tables}
    keys = {name: _key_column(mapping, name) for name in tables}
    as_text = any(value_maps.values()) or not all(
        keys[name] in ddf.columns and pd.api.types.is_integer_dtype(ddf[keys[name]].dtype)
        for name, ddf in tables.items()
    )
    out = {}
    for name, ddf in tables.items():
        column = keys[name] if keys[name] in ddf.columns else None
        meta = ddf._meta.assign(**{KEY: pd.Series([], dtype=object if as_text else np.int64)})
        keyed = ddf.map_partitions(_with_key, column, value_maps[name], as_text, meta=meta)
        # The task-based shuffle measured 3x faster than p2p for these sizes on 2 workers.
        shuffled = keyed.shuffle(on=KEY, npartitions=npartitions, method="tasks")
        out[name] = shuffled.to_delayed()
    return out


def _with_key(frame: pd.DataFrame, column: str | None, values: dict | None,
              as_text: bool) -> pd.DataFrame:
    """`frame` with the partition key of its rows: the customer id (through the mapping's value
    map when it has one). A table without the id column goes whole to one partition, whose
    validation reports the missing column."""
    if column is None:
        key = pd.Series("" if as_text else 0, index=frame.index,
                        dtype=object if as_text else np.int64)
    else:
        ids = frame[column]
        if values:
            from churn_risk.features.mapping import _map_values

            ids = _map_values(ids, values)
        key = _canonical_ids(ids) if as_text else ids
    return frame.assign(**{KEY: key})


def _canonical_ids(ids: pd.Series) -> pd.Series:
    """Ids as text in one form for each id validation could find equal: whole numbers (ints,
    floats, text like " 12.0") as their digits, any other text stripped."""
    if ids.dtype.kind in "iu":
        return ids.astype(str).astype(object)
    if ids.dtype.kind == "f":
        known = ids.dropna()
        if (known == np.trunc(known)).all():
            return ids.astype("Int64").astype(str).astype(object)
        return ids.astype(str).astype(object)
    text = ids.astype("string").str.strip()
    whole = text.str.fullmatch(_WHOLE_NUMBER).fillna(False).to_numpy(dtype=bool)
    digits = text.str.replace(r"\.0*$", "", regex=True)
    return text.where(~whole, digits).fillna("").astype(object)


# --------------------------------------------------------------------------------------------
# Reading, lazily: nothing here reads a row on the driver


def _read(source: DataSource, sql_rows_per_part: int = SQL_ROWS_PER_PART) -> dict[str, object]:
    """Each table present in `source`, as the source holds it (the mapping is applied per
    partition), as a lazy dask DataFrame. A customers table the mapping derives is absent."""
    if is_sql_url(source.location):
        return _read_sql(source, sql_rows_per_part)
    return _read_folder(source)


def _read_folder(source: DataSource) -> dict[str, object]:
    import dask.dataframe as dd

    from churn_risk.features.io import check_not_empty, table_files
    from churn_risk.features.mapping import CsvDialect

    mapping = source.mapping
    tables: dict[str, object] = {}
    for name, path in table_files(source).items():
        declared = mapping.table(name) if mapping is not None else None
        check_not_empty(path)
        if path.suffix == ".parquet":
            tables[name] = dd.read_parquet(path)
        else:
            dialect = mapping.dialect(name) if mapping is not None else CsvDialect()
            tables[name] = _read_text(path, dialect, declared.names if declared else None)
    return tables


def _read_text(path: Path, dialect, names: tuple[str, ...] | None):
    """A delimited text file, every value as text (as `io.read_file`), in blocks."""
    import dask.dataframe as dd

    from churn_risk.errors import first_line
    from churn_risk.features.io import _check_separator, _dialect_name

    options = dialect.read_csv_options()
    whole = path.suffix == ".gz" or "\na".encode(options["encoding"])[-2:] != b"\na"
    try:
        ddf = dd.read_csv(path, dtype=str, keep_default_na=True,
                          header=None if names else "infer", names=list(names) if names else None,
                          blocksize=None if whole else CSV_BLOCKSIZE,
                          compression="gzip" if path.suffix == ".gz" else None, **options)
    except UnicodeDecodeError as exc:
        raise DataSourceError(
            f"{path}: not {dialect.encoding} text ({exc.reason} at byte {exc.start}); say its "
            "encoding in a mapping file ([csv] encoding = \"latin-1\", for example)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataSourceError(f"{path}: cannot be read as {_dialect_name(dialect)} "
                              f"({first_line(exc)})") from None
    if names is None:
        _check_separator(path, ddf._meta, dialect)
    return ddf


def _sql_from(conn, spec: SqlTable):
    import sqlalchemy as sa

    if spec.query is not None:
        columns = conn.execute(sa.text(f"SELECT * FROM ({spec.query}) AS q LIMIT 0")).keys()
        return sa.text(spec.query).columns(*(sa.column(c) for c in columns)).subquery("q")
    return sa.Table(spec.table, sa.MetaData(), schema=spec.schema, autoload_with=conn)


def _read_sql(source: DataSource, rows_per_part: int) -> dict[str, object]:
    """Each table present (an empty one is absent, as in `io.read_tables`) as ranges of its
    customer ids, read by the workers; the driver asks only for counts, column names and the
    range bounds."""
    import dask.dataframe as dd
    import sqlalchemy as sa

    mapping = source.mapping
    tables: dict[str, object] = {}
    with sql_tables(source) as (conn, found):
        for name, spec in found.items():
            source_table = _sql_from(conn, spec)
            rows = conn.execute(sa.select(sa.func.count()).select_from(source_table)).scalar_one()
            if not rows:
                continue
            columns = [c.name for c in source_table.c if c.name not in BOOKKEEPING]
            key = _key_column(mapping, name)
            bounds: list = [(None, None)]
            if name in PER_CUSTOMER and key in columns:
                spec = replace(spec, key=key)
                bounds = _id_ranges(conn, source_table.c[key], rows, rows_per_part)
            meta = pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
            tables[name] = dd.from_map(partial(_read_sql_range, spec), bounds, meta=meta,
                                       enforce_metadata=False)
    return tables


def _id_ranges(conn, column, rows: int, rows_per_part: int) -> list[tuple]:
    """[lower, upper) bounds of customer ids splitting `rows` into parts of about
    `rows_per_part` rows (None: open; the first part also holds null ids), from the database."""
    import sqlalchemy as sa

    parts = max(1, math.ceil(rows / rows_per_part))
    cuts = []
    for i in range(1, parts):
        offset = i * rows // parts
        cuts.append(conn.execute(sa.select(column).where(column.is_not(None)).order_by(column)
                                 .limit(1).offset(offset)).scalar())
    cuts = sorted({c for c in cuts if c is not None})
    edges = [None, *cuts, None]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _read_sql_range(spec: SqlTable, bounds: tuple) -> pd.DataFrame:
    """The rows of one range of customer ids (on a worker)."""
    import sqlalchemy as sa

    engine = sa.create_engine(spec.url)
    try:
        with engine.connect() as conn:
            table = _sql_from(conn, spec)
            select = sa.select(*(c for c in table.c if c.name not in BOOKKEEPING))
            low, high = bounds
            if spec.key is not None and (low is not None or high is not None):
                column = table.c[spec.key]
                within = sa.and_(*([column >= low] if low is not None else []),
                                 *([column < high] if high is not None else []))
                select = select.where(sa.or_(within, column.is_(None)) if low is None
                                      else within)
            return pd.read_sql_query(select, conn)
    finally:
        engine.dispose()
