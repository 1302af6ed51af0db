"""Reading CRM tables from a folder of Parquet/CSV files or from a SQL database.

Readers only read: they return the raw tables by name and never coerce or judge them; that is
`validation.validate`'s job. Files and tables whose names are not in the contract are ignored (the
demo generator's `ground_truth/` folder, for instance, is never read here).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from churn_risk.errors import UsageError, first_line
from churn_risk.features.contract import TABLES

_SUFFIXES = (".parquet", ".csv", ".csv.gz")
#: Separators recognised in a header that has no comma.
_OTHER_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "pipes"}


class DataSourceError(UsageError):
    """The data source itself cannot be read (missing folder, unreadable or empty file, ...)."""


@dataclass(frozen=True)
class DataSource:
    """Where CRM tables are (a folder or a SQLAlchemy URL) and, for exports in their own
    shape, the mapping file that turns them into the contract (`mapping.py`)."""

    location: str
    mapping: object | None = None  # mapping.DataMapping
    #: The product's own store (`--store`, `store.py`): it may be written to, not only read.
    store: bool = False

    def __str__(self) -> str:
        if self.mapping is None:
            return self.location
        return f"{self.location} (mapping {self.mapping.path})"

    @property
    def folder(self) -> Path | None:
        return None if is_sql_url(self.location) else Path(self.location)


DataSourceLike = str | os.PathLike | DataSource


def data_source(data: str | os.PathLike | None, mapping: str | os.PathLike | None = None,
                default: str = "demo-data") -> DataSource:
    """The source the CLI options name: `--data` (else the mapping's `source`, else the
    mapping file's folder, else `default`) read through `--mapping` when given."""
    from churn_risk.features.mapping import load_mapping

    parsed = load_mapping(mapping) if mapping else None
    location = (str(data) if data is not None
                else parsed.location() if parsed is not None and parsed.source
                else str(Path(mapping).resolve().parent) if mapping else default)
    return DataSource(location, parsed)


def as_source(source: DataSourceLike) -> DataSource:
    return source if isinstance(source, DataSource) else DataSource(str(source))


def source_name(source: DataSourceLike) -> str:
    """A short name for run names and titles: the folder's name or the URL's database."""
    location = as_source(source).location
    if is_sql_url(location):
        return location.split("://", 1)[0] + ":" + location.rsplit("/", 1)[-1]
    return Path(location).name or location


def shown_url(url: str) -> str:
    """A database URL as a message may show it: its password masked (messages reach logs)."""
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: nothing to mask in it
        return url


def is_sql_url(source: str | os.PathLike) -> bool:
    return "://" in str(source)


def read_tables(source: DataSourceLike) -> dict[str, pd.DataFrame]:
    """Read every contract table present in `source` (a folder or a SQLAlchemy URL), as the
    files or tables hold them (a mapping only says where and how to read; `mapping.
    apply_mapping` renames and types afterwards)."""
    source = as_source(source)
    if is_sql_url(source.location):
        return _read_sql(source)
    return _read_folder(source)


def table_files(source: DataSource) -> dict[str, Path]:
    """The file of each contract table present in the folder `source` (the mapping's file if
    it names one, else `<table>.parquet|.csv|...`); tables the mapping derives are absent."""
    folder = Path(source.location)
    mapping = source.mapping
    if not folder.is_dir():
        raise DataSourceError(f"data folder {str(folder)!r} does not exist or is not a folder")
    files: dict[str, Path] = {}
    for name in TABLES:
        declared = mapping.table(name) if mapping is not None else None
        if declared is not None and declared.derive:
            continue
        if declared is not None and (declared.table or declared.query):
            raise DataSourceError(f"--mapping {mapping.path}: tables.{name} names a SQL table or "
                                  f"query, but the data are a folder ({folder})")
        if declared is not None and declared.file:
            path = folder / declared.file
            if not path.exists():
                raise DataSourceError(f"{path}: no such file (tables.{name}.file in the mapping "
                                      f"{mapping.path})")
        else:
            found = [folder / f"{name}{s}" for s in _SUFFIXES if (folder / f"{name}{s}").exists()]
            if len(found) > 1:
                raise DataSourceError(f"table {name!r} is present twice in {folder}: "
                                      + ", ".join(p.name for p in found) + " (keep one)")
            if not found:
                continue
            path = found[0]
        files[name] = path
    return files


def _read_folder(source: DataSource) -> dict[str, pd.DataFrame]:
    mapping = source.mapping
    tables: dict[str, pd.DataFrame] = {}
    for name, path in table_files(source).items():
        declared = mapping.table(name) if mapping is not None else None
        tables[name] = read_file(path, mapping.dialect(name) if mapping is not None else None,
                                 declared.names if declared is not None else None)
    return tables


def check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DataSourceError(f"{path}: the file is empty (0 bytes); remove it if the table "
                              "has no rows, or export it again")


def read_file(path: Path, dialect=None, names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One table file: Parquet, or delimited text (every value as text: the contract decides
    the types). Empty, truncated or mis-separated files get a `DataSourceError` naming them."""
    check_not_empty(path)
    if path.suffix == ".parquet":
        import pyarrow as pa

        try:
            frame = pd.read_parquet(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataSourceError(f"{path}: cannot be read as Parquet ({first_line(exc)}); the "
                                  "file may be truncated or not Parquet: export it again") from None
    else:
        from churn_risk.features.mapping import CsvDialect

        dialect = dialect or CsvDialect()
        options = dialect.read_csv_options()
        try:
            # Strings in, types decided by the contract: pandas' own guessing would turn ids
            # like 00123 into integers and leave bad dates as silent NaT.
            frame = pd.read_csv(path, dtype=str, keep_default_na=True,
                                header=None if names else "infer",
                                names=list(names) if names else None, **options)
        except UnicodeDecodeError as exc:
            raise DataSourceError(
                f"{path}: not {dialect.encoding} text ({exc.reason} at byte {exc.start}); say "
                "its encoding in a mapping file ([csv] encoding = \"latin-1\", for example)"
            ) from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataSourceError(f"{path}: cannot be read as {_dialect_name(dialect)} "
                                  f"({first_line(exc)})") from None
        if names is None:
            _check_separator(path, frame, dialect)
    if not len(frame):
        raise DataSourceError(f"{path}: the file has a header but no rows; remove it if the "
                              "table is empty, or export it again")
    return frame


def _check_separator(path: Path, frame: pd.DataFrame, dialect) -> None:
    """A header read as one column that holds another separator: say which one it seems to be."""
    if frame.shape[1] != 1:
        return
    header = str(frame.columns[0])
    sep = dialect.read_csv_options()["sep"]
    for char, plural in _OTHER_SEPARATORS.items():
        if char != sep and header.count(char) >= 1:
            shown = "tab" if char == "\t" else char
            raise DataSourceError(
                f"{path}: the header has no {_dialect_name(dialect)} separator but "
                f"{header.count(char)} {plural}: the file seems to use {shown!r} as its separator; "
                f"say so in a mapping file ([csv] delimiter = \"{shown}\") and pass --mapping FILE")


def _dialect_name(dialect) -> str:
    sep = dialect.delimiter or ","
    return {"tab": "tab-separated", "whitespace": "whitespace-separated"}.get(
        sep, f"{sep!r}-separated" if sep != "," else "comma")


#: Columns of the store's tables that are bookkeeping, not data (`store.py`): readers drop them.
BOOKKEEPING = ("_store_key", "_store_write")


@dataclass(frozen=True)
class SqlTable:
    """Where one table of a SQL source is: a table (and schema) or a query."""

    url: str
    table: str | None = None
    schema: str | None = None
    query: str | None = None
    key: str | None = None  # the customer id column ranged reads split on (Dask engine)


@contextlib.contextmanager
def sql_tables(source: DataSource) -> Iterator[tuple[object, dict[str, SqlTable]]]:
    """An open connection to the database `source` and where each contract table present is
    (the mapping's table or query, else the table of the contract's name); database errors
    inside the block become a `DataSourceError` naming the URL."""
    import sqlalchemy as sa

    url, mapping = source.location, source.mapping
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise DataSourceError(f"--data {shown_url(url)!r}: not a usable database URL ({exc})"
                              ) from None
    try:
        present = set(sa.inspect(engine).get_table_names())
        found: dict[str, SqlTable] = {}
        with engine.connect() as conn:
            for name in TABLES:
                declared = mapping.table(name) if mapping is not None else None
                if declared is not None and declared.derive:
                    continue
                if declared is not None and declared.file:
                    raise DataSourceError(f"--mapping {mapping.path}: tables.{name} names a file, "
                                          f"but the data are a database ({shown_url(url)})")
                if declared is not None and declared.query:
                    found[name] = SqlTable(url, query=declared.query)
                elif declared is not None and declared.table:
                    schema, _, table = declared.table.rpartition(".")
                    found[name] = SqlTable(url, table=table, schema=schema or None)
                elif name in present:
                    found[name] = SqlTable(url, table=name)
            yield conn, found
    except sa.exc.SQLAlchemyError as exc:
        raise DataSourceError(f"cannot read tables from {shown_url(url)!r}: "
                              f"{first_line(exc)}") from None
    finally:
        engine.dispose()


def _read_sql(source: DataSource) -> dict[str, pd.DataFrame]:
    import sqlalchemy as sa

    tables = {}
    with sql_tables(source) as (conn, found):
        for name, spec in found.items():
            if spec.query is not None:
                frame = pd.read_sql_query(sa.text(spec.query), conn)
            else:
                frame = pd.read_sql_table(spec.table, conn, schema=spec.schema)
            if len(frame):  # an empty table is an absent one (a store keeps every table)
                tables[name] = frame.drop(columns=[c for c in BOOKKEEPING if c in frame.columns])
    return tables


def write_tables(
    tables: dict[str, pd.DataFrame], folder: str | os.PathLike, fmt: str = "parquet"
) -> None:
    """Write tables to `folder` as `<name>.parquet` or `<name>.csv`, each file atomically."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"unknown format {fmt!r}: use 'parquet' or 'csv'")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        target = folder / f"{name}.{fmt}"
        write_frame(frame, target)


def read_toml(path: str | os.PathLike, where: str, what: str = "the file") -> dict:
    """A TOML file a person wrote (a byte-order mark tolerated); `UsageError` starting with
    `where` when it cannot be read or is not TOML."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"{where}: cannot read {what} ({exc.strerror})") from None
    return parse_toml(text, where)


def parse_toml(text: str, where: str) -> dict:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where}: not valid TOML ({exc})") from None


def atomic_write(target: str | os.PathLike, content: bytes | str, mode: int | None = None
                 ) -> Path:
    """Write a whole file or nothing (temp file in the same folder + rename): a failure or a
    kill never leaves a truncated file, and an old one stays until the new one is complete.
    `mode`: the file's permissions (less the umask; default as `open()`: 0644), set from its
    first byte (0600 for secrets)."""
    target = Path(target)
    with _replacing(target, mode) as tmp, open(tmp, "wb") as handle:
        handle.write(content.encode() if isinstance(content, str) else content)
    return target


def write_frame(frame: pd.DataFrame, target: str | os.PathLike) -> None:
    """Write one frame atomically (temp file + rename), so a failure never truncates an old file.

    The format follows the suffix: .parquet or .csv.
    """
    target = Path(target)
    if target.suffix not in (".parquet", ".csv"):
        raise ValueError(f"cannot write {target.name!r}: use a .parquet or .csv file name")
    with _replacing(target) as tmp:
        if target.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)


@contextlib.contextmanager
def _replacing(target: Path, mode: int | None = None) -> Iterator[Path]:
    """A new, empty temp file beside `target` that replaces it when the block succeeds and is
    removed when it fails.

    The temp file is created as `open()` creates files (mode 0666 less the umask, so 0644 by
    default), not private as `mkstemp` makes them (0600): what we write is read by people and
    by other programs (a CRM import, a web server), and the rename keeps the temp file's mode.
    `mode` instead (less the umask): 0600 for a secret, private from its first byte.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o666 if mode is None else mode))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
