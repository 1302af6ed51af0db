"""Bring your own data: a mapping file turns a CRM export into the data contract.

Real exports do not use the contract's names, separators or date formats. A data-source file
(TOML, passed as `--mapping FILE` to every command that reads data) says, per table, where it is
and how to read it; nothing is guessed. A complete example (`churn validate --mapping` shows the
mapped tables):

```toml
# Where the tables are: a folder (relative to this file) or a SQLAlchemy URL.
# `--data` on the command line wins over it; default: this file's folder.
source = "exports"

# How CSV files are written (each table may override any of these)
[csv]
delimiter = ";"           # one character, "tab", or "whitespace" (runs of blanks)
decimal = ","             # decimal mark of numbers: 1.234,50
thousands = "."           # optional thousands separator
encoding = "utf-8-sig"    # the default: UTF-8, with or without a byte-order mark
date_format = "%d/%m/%Y"  # strftime format of every date, or `day_first = true`

[tables.customers]
file = "clients.csv"      # SQL sources: `table = "crm.clients"` or `query = "SELECT ..."`
drop = ["email"]          # columns to leave out
[tables.customers.columns]    # contract (or attribute) name = column in the file
customer_id = "ClientNo"
signup_date = "Since"
segment = "Type"
[tables.customers.values.segment]   # value maps: value in the file = value to use
"P" = "consumer"
"B" = "small_business"

[tables.transactions]
file = "CDNOW_master.txt"
names = ["customer_id", "date", "cds", "dollars"]   # the file has no header row
delimiter = "whitespace"
date_format = "%Y%m%d"
[tables.transactions.columns]
timestamp = "date"
amount = "dollars"
quantity = "cds"

[tables.labels]
file = "churn_flags.csv"
[tables.labels.columns]
churned = "Churn"
[tables.labels.values.churned]
"Yes" = true
"No" = false
[tables.labels.constants]  # a column with one value in every row (ISO 8601 dates)
as_of = "2024-01-01"
```

A table with `derive = "first_activity"` instead of a file is built from the activity tables:
one row per customer, `signup_date` = their first transaction or subscription (exports of
purchases often have no customer table). Columns not named in `columns` keep their names, so a
file already in the contract's names needs no entry. Values of numeric columns are read with the
table's decimal mark; dates with its format (a value that does not match is reported with the
file's own column name and row, like every other contract problem).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from churn_risk.errors import UsageError
from churn_risk.features.contract import ACTIVITY_TABLES, TABLES

TableName = Literal[tuple(TABLES)]  # type: ignore[valid-type]
Scalar = str | bool | int | float
_FIELDS = ConfigDict(frozen=True, extra="forbid")


class CsvDialect(BaseModel):
    """How a CSV (or other delimited text) file is written."""

    model_config = _FIELDS

    delimiter: str | None = None  # None: "," (and a clear error when the file uses another)
    decimal: str = Field(".", min_length=1, max_length=1)
    thousands: str | None = Field(None, min_length=1, max_length=1)
    encoding: str = "utf-8-sig"
    quotechar: str = Field('"', min_length=1, max_length=1)
    date_format: str | None = None
    day_first: bool | None = None

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value):
        if value is None or value in ("tab", "whitespace") or len(value) == 1:
            return value
        raise ValueError('one character, "tab" or "whitespace"')

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value):
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    def read_csv_options(self) -> dict:
        sep = {"tab": "\t", "whitespace": r"\s+", None: ","}.get(self.delimiter, self.delimiter)
        return {"sep": sep, "encoding": self.encoding, "quotechar": self.quotechar}


class TableMapping(BaseModel):
    """Where one contract table comes from and how its columns and values map."""

    model_config = _FIELDS

    file: str | None = None
    table: str | None = None
    query: str | None = None
    derive: Literal["first_activity"] | None = None
    #: The file has no header row: these are its columns, in order.
    names: tuple[str, ...] | None = None
    columns: dict[str, str] = {}
    values: dict[str, dict[str, Scalar]] = {}
    constants: dict[str, Scalar | dt.date | dt.datetime] = {}
    drop: tuple[str, ...] = ()
    # dialect overrides (None: the file-wide [csv] settings)
    delimiter: str | None = None
    decimal: str | None = None
    thousands: str | None = None
    encoding: str | None = None
    quotechar: str | None = None
    date_format: str | None = None
    day_first: bool | None = None

    @field_validator("names", "drop", mode="before")
    @classmethod
    def _lists(cls, value):
        return tuple(value) if isinstance(value, list) else value

    def dialect(self, defaults: CsvDialect) -> CsvDialect:
        own = {k: getattr(self, k) for k in CsvDialect.model_fields if getattr(self, k) is not None}
        return CsvDialect.model_validate({**defaults.model_dump(), **own})


class DataMapping(BaseModel):
    """A parsed mapping file (see the module doc)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    source: str | None = None
    csv: CsvDialect = CsvDialect()
    tables: dict[TableName, TableMapping] = {}  # type: ignore[valid-type]
    #: The mapping file itself (for relative paths and messages).
    path: Path = Path("mapping.toml")

    def location(self) -> str | None:
        """`source` resolved against the mapping file's folder (URLs as they are)."""
        if self.source is None:
            return None
        if "://" in self.source:
            return self.source
        return str((self.path.parent / self.source).resolve())

    def table(self, name: str) -> TableMapping | None:
        return self.tables.get(name)

    def dialect(self, name: str) -> CsvDialect:
        mapping = self.tables.get(name)
        return mapping.dialect(self.csv) if mapping is not None else self.csv


def load_mapping(path: str | os.PathLike) -> DataMapping:
    """Parse and check a mapping file; `UsageError` naming the file and key otherwise."""
    from churn_risk.features.io import read_toml
    from churn_risk.models.portfolio import settings_error

    path = Path(path)
    where = f"--mapping {path}"
    raw = read_toml(path, where)
    try:
        mapping = DataMapping.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise UsageError(settings_error(exc, where)) from None
    for name, table in mapping.tables.items():
        places = [k for k in ("file", "table", "query", "derive") if getattr(table, k)]
        if len(places) > 1:
            raise UsageError(f"{where}: tables.{name}: give one of file, table, query or derive "
                             f"(got {', '.join(places)})")
        if table.derive and name != "customers":
            raise UsageError(f"{where}: tables.{name}.derive: only the customers table can be "
                             "derived (from the activity tables)")
        spec = TABLES[name]
        for column in (*table.values, *table.constants):
            if column not in spec.column_names and not (spec.extra_columns != "ignore"):
                raise UsageError(f"{where}: tables.{name}: {column!r} is not a column of the "
                                 f"{name} table ({', '.join(spec.column_names)})")
    return mapping


# ------------------------------------------------------------------------------------------------
# Applying a mapping to the tables as read


def apply_mapping(raw: Mapping[str, pd.DataFrame], mapping: DataMapping | None
                  ) -> tuple[dict[str, pd.DataFrame], list]:
    """The tables renamed, value-mapped and typed as the mapping says, and the problems found
    (`validation.Problem`, e.g. dates that do not match the declared format). Tables without a
    mapping entry pass unchanged, except that a CSV's numbers follow the file-wide decimal mark."""
    from churn_risk.features.validation import Problem

    if mapping is None:
        return dict(raw), []
    out: dict[str, pd.DataFrame] = {}
    problems: list[Problem] = []
    for name, frame in raw.items():
        table = mapping.table(name) or TableMapping()
        out[name] = _map_table(name, frame, table, mapping.dialect(name), mapping.path, problems)
    customers = mapping.table("customers")
    if customers is not None and customers.derive == "first_activity":
        out["customers"] = derive_customers(out)
    return out, problems


def _map_table(name: str, frame: pd.DataFrame, table: TableMapping, dialect: CsvDialect,
               path: Path, problems: list) -> pd.DataFrame:
    from churn_risk.features.validation import Problem, _examples, _rows, _sample

    spec = TABLES[name]
    where = f"(mapping {path.name})"
    missing = [column for column in (*table.columns.values(), *table.drop)
               if column not in frame.columns]
    if missing:
        problems.append(Problem(
            name, missing[0], "required_column",
            f"{name}.{missing[0]}: the mapping names a column the file does not have {where}; "
            f"columns present: {', '.join(map(str, frame.columns))}",
            _examples(frame.iloc[:0], np.array([], dtype=int), [])))
        return frame
    original = frame.reset_index(drop=True)
    frame = original.drop(columns=list(table.drop))
    renames = {source: target for target, source in table.columns.items()}
    frame = frame.rename(columns=renames)
    for column, value in table.constants.items():
        frame[column] = _constant(value, len(frame))
    for column, values in table.values.items():
        if column in frame:
            frame[column] = _map_values(frame[column], values)
    numeric = {c.name for c in spec.columns if c.kind in ("float", "int")}
    for column in frame.columns:
        kind = spec.column(column).kind if column in spec.column_names else None
        if kind == "datetime" and column not in table.constants and (
                dialect.date_format or dialect.day_first is not None):
            typed, bad = _parse_dates(frame[column], dialect)
            if bad.any():
                positions = np.flatnonzero(bad)
                file_column = table.columns.get(column, column)
                form = (f"the date format {dialect.date_format!r}" if dialect.date_format
                        else f"a {'day' if dialect.day_first else 'month'}-first date")
                problems.append(Problem(
                    name, column, "type",
                    f"{name}.{column}: {_rows(len(positions), 'does', 'do')} not match {form} "
                    f"{where}, e.g. {_sample(original[file_column], positions)} (rule type: "
                    "datetime)",
                    _examples(original, positions, [file_column])))
            frame[column] = typed
        elif (dialect.decimal != "." or dialect.thousands) and (
                column in numeric or (kind is None and spec.extra_columns != "ignore")):
            frame[column] = _numbers(frame[column], dialect)
    return frame


def _constant(value, n: int) -> pd.Series:
    if isinstance(value, dt.datetime | dt.date):
        return pd.Series(pd.Timestamp(value), index=range(n))
    return pd.Series([value] * n, dtype=object)


def _map_values(column: pd.Series, values: dict[str, Scalar]) -> pd.Series:
    """File values → contract values (text keys; booleans become true/false)."""
    mapped = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()}
    text = column.astype("string")
    out = text.map(mapped)
    return out.where(out.notna(), column.astype(object)).astype(object).where(column.notna(), None)


def _parse_dates(column: pd.Series, dialect: CsvDialect) -> tuple[pd.Series, np.ndarray]:
    if column.dtype.kind == "M":
        return column, np.zeros(len(column), dtype=bool)
    text = column.astype("string").str.strip()
    text = text.mask(text == "")
    if dialect.date_format:
        parsed = pd.to_datetime(text, format=dialect.date_format, errors="coerce")
    else:
        parsed = pd.to_datetime(text, dayfirst=bool(dialect.day_first), format="mixed",
                                errors="coerce")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = text.notna().to_numpy() & parsed.isna().to_numpy()
    return parsed.astype("datetime64[ns]"), bad


def _numbers(column: pd.Series, dialect: CsvDialect) -> pd.Series:
    """Text numbers written with another decimal mark (and thousands separator) as plain
    `1234.5` text; anything else unchanged (validation judges it)."""
    if not pd.api.types.is_string_dtype(column.dtype) and column.dtype != object:
        return column
    text = column.astype("string").str.strip()
    if dialect.thousands:
        text = text.str.replace(dialect.thousands, "", regex=False)
    if dialect.decimal != ".":
        text = text.str.replace(dialect.decimal, ".", regex=False)
    looks = text.str.fullmatch(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?").fillna(False).to_numpy()
    known = column.notna().to_numpy()
    if not looks[known].all():  # not a numeric column after all: leave it to validation
        return column
    return text.astype(object).where(column.notna(), None)


def derive_customers(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per customer of the activity tables, `signup_date` = their first record."""
    firsts = []
    for name in ACTIVITY_TABLES:
        if name not in tables:
            continue
        frame = tables[name]
        time = TABLES[name].event_time
        if "customer_id" not in frame or time not in frame:
            continue
        when = frame[time] if frame[time].dtype.kind == "M" else pd.to_datetime(
            frame[time], errors="coerce", format="ISO8601")
        firsts.append(pd.DataFrame({"customer_id": frame["customer_id"], "signup_date": when}))
    if not firsts:
        raise UsageError("tables.customers.derive: no transactions or subscriptions table to "
                         "derive customers from")
    both = pd.concat(firsts, ignore_index=True).dropna(subset=["customer_id"])
    first = both.groupby("customer_id", sort=True)["signup_date"].min()
    return pd.DataFrame({"customer_id": first.index.to_numpy(),
                         "signup_date": first.to_numpy()})
