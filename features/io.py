"""Reading CRM tables from a folder of Parquet/CSV files or from a SQL database.

Readers only read: they return the raw tables by name and never coerce or judge them; that is
`validation.validate`'s job. Files and tables whose names are not in the contract are ignored (the
demo generator's `ground_truth/` folder, for instance, is never read here).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from churn_risk.features.contract import TABLES

_SUFFIXES = (".parquet", ".csv", ".csv.gz")


class DataSourceError(ValueError):
    """The data source itself cannot be read (missing folder, unknown format, ...)."""


def is_sql_url(source: str | os.PathLike) -> bool:
    return "://" in str(source)


def read_tables(source: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Read every contract table present in `source` (a folder or a SQLAlchemy URL)."""
    if is_sql_url(source):
        return _read_sql(str(source))
    return _read_folder(Path(source))


def _read_folder(folder: Path) -> dict[str, pd.DataFrame]:
    if not folder.is_dir():
        raise DataSourceError(f"data folder {str(folder)!r} does not exist or is not a folder")
    tables: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        found = [folder / f"{name}{s}" for s in _SUFFIXES if (folder / f"{name}{s}").exists()]
        if len(found) > 1:
            raise DataSourceError(
                f"table {name!r} is present twice in {folder}: "
                + ", ".join(p.name for p in found)
                + " (keep one)"
            )
        if not found:
            continue
        path = found[0]
        if path.suffix == ".parquet":
            tables[name] = pd.read_parquet(path)
        else:
            # Strings in, types decided by the contract: pandas' own guessing would turn ids
            # like 00123 into integers and leave bad dates as silent NaT.
            tables[name] = pd.read_csv(path, dtype=str, keep_default_na=True)
    return tables


def _read_sql(url: str) -> dict[str, pd.DataFrame]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        present = set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {
                name: pd.read_sql_table(name, conn) for name in TABLES if name in present
            }
    except sa.exc.SQLAlchemyError as exc:  # pragma: no cover - depends on the database
        raise DataSourceError(f"cannot read tables from {url!r}: {exc}") from exc
    finally:
        engine.dispose()


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


def write_frame(frame: pd.DataFrame, target: str | os.PathLike) -> None:
    """Write one frame atomically (temp file + rename), so a failure never truncates an old file.

    The format follows the suffix: .parquet or .csv.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if target.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif target.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            raise ValueError(f"cannot write {target.name!r}: use a .parquet or .csv file name")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
