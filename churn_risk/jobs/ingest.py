"""`churn ingest`: add new CRM records (a folder of tables, or one table's file) to the store,
validated against the contract and against what the store holds; all of a batch or nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from churn_risk.features.contract import TABLES
from churn_risk.features.io import DataSource, DataSourceError, read_file, read_tables
from churn_risk.features.store import Store, WriteResult


def run(source: DataSource, store_url: str, table: str | None = None,
        progress: Callable[[int, int], None] | None = None) -> WriteResult:
    """`source`: a folder (each contract table present), or one file of table `table`
    (default: the file's name, `tickets.csv` for tickets)."""
    from churn_risk.features.mapping import apply_mapping

    path = Path(source.location)
    if path.is_file():
        name = table or path.name.split(".")[0]
        if name not in TABLES:
            raise DataSourceError(f"{path}: which table? The file's name is not a contract "
                                  f"table ({', '.join(TABLES)}): say it with --table")
        dialect = source.mapping.dialect(name) if source.mapping is not None else None
        raw = {name: read_file(path, dialect)}
    else:
        if table is not None:
            raise DataSourceError("--table names the table of one file; --data is a folder")
        raw = read_tables(source)
    raw, problems = apply_mapping(raw, source.mapping)
    with Store(store_url) as store:
        return store.ingest(raw, problems, progress)
