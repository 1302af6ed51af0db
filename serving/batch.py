"""Batch scoring of the whole portfolio: every output field per customer, from the same bundle
the service loads.

`score_portfolio` builds the point-in-time snapshot at `as_of` (pandas: `load_crm` → `prepare` →
`build_snapshot`; dask: `dask_engine.prepare_dask`, then each customer partition's snapshot is
built and scored on the worker that holds it, and only the scores come to the driver) and
scores it in chunks with `ChurnBundle.score` (one model input and one TreeSHAP pass per chunk),
so memory stays bounded by the feature frame, the output and one chunk's intermediates, and a
progress callback moves once per chunk (dask: once per partition). Each row also carries the
keys a channel needs to trust it: `customer_id`, `features_as_of`, `model_name`,
`model_version` and what the probability is of: `target`, `horizon_days` and
`target_description` ("chance of leaving within 90 days ...").

The default `as_of` is the day after the data end, as in the service (`serving/scorer.py`).
Local scoring lets XGBoost use every core (the service keeps one thread per request); on Dask
each worker scores its partitions with one thread per worker thread.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from churn_risk.features.dates import as_of_text, parse_day
from churn_risk.features.io import DataSourceLike, as_source
from churn_risk.features.labels import check_scoring_date, scoring_as_of
from churn_risk.models.bundle import ChurnBundle

#: Rows scored at once: the TreeSHAP output of a chunk is rows x (features + 1) float32, and
#: ~50k rows keep every intermediate of `score` in the tens of MiB.
DEFAULT_CHUNK_ROWS = 50_000
ENGINES = ("pandas", "dask")
OUTPUT_SUFFIXES = (".parquet", ".csv")
#: Customer attributes carried into the output when the feature frame has them.
CARRIED = ("segment",)

Progress = Callable[[int, int], None]


def check_output_path(out: str | os.PathLike) -> Path:
    """The output file, or `UsageError` (--out) when its extension is not .parquet or .csv."""
    from churn_risk.errors import UsageError

    out = Path(out)
    if out.suffix not in OUTPUT_SUFFIXES:
        raise UsageError(f"--out: cannot write to {out.name!r}: use a .parquet or .csv file name")
    return out


def portfolio_frame(source: DataSourceLike, as_of: str | pd.Timestamp | None, bundle: ChurnBundle,
                    prep=None) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The features (the bundle's feature set) of every customer of the bundle's population at
    `as_of`, sorted by customer_id, and that moment: `as_of` a day, checked against the data;
    None: now for a store (it follows the CRM; taken before the read, so nothing read later
    counts), else the day after the data end. `prep`: the data already prepared from `source`."""
    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.snapshots import build_snapshot
    from churn_risk.features.validation import load_crm

    live = _live_moment(source, as_of)
    prep = prepare(load_crm(source)) if prep is None else prep
    as_of = _scoring_moment(as_of, live, prep)
    frame = build_snapshot(prep, as_of, bundle.feature_config, bundle.target)
    return frame.sort_values("customer_id", kind="stable").reset_index(drop=True), as_of


def _live_moment(source: DataSourceLike, as_of) -> pd.Timestamp | None:
    """Now, for a store asked for no day (it follows the CRM), taken before the data are read;
    else None."""
    if as_of is not None or not as_source(source).store:
        return None
    from churn_risk.features.live import live_now

    return live_now()


def _scoring_moment(as_of, live: pd.Timestamp | None, facts) -> pd.Timestamp:
    """The moment a portfolio is featured as of: `live`; else `as_of` (a day the data can
    score); else the day after the data end (`scoring_as_of`)."""
    if live is not None:
        return live
    if as_of is None:
        return scoring_as_of(facts)
    as_of = parse_day(as_of, "--as-of")
    check_scoring_date(facts, as_of)
    return as_of


def score_portfolio(
    source: DataSourceLike,
    as_of: str | pd.Timestamp | None,
    bundle: ChurnBundle,
    model_name: str,
    model_version: str,
    engine: str = "pandas",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Progress | None = None,
    scheduler: str | None = None,
    prep=None,
) -> pd.DataFrame:
    """Every output field for every customer of the population at `as_of` (None: now for a
    store, else the day after the data end), one row per customer sorted by customer_id.
    `prep`: the data already loaded and prepared from `source` (pandas engine), so a caller
    that needs them too reads them once."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if engine == "pandas":
        frame, as_of = portfolio_frame(source, as_of, bundle, prep)
        del prep
        with all_cores(bundle):
            return score_frame(frame, bundle, model_name, model_version, as_of, chunk_rows,
                               progress)

    from churn_risk.features.dask_engine import dask_client, prepare_dask

    live = _live_moment(source, as_of)
    with dask_client(scheduler) as client:
        data = prepare_dask(source, client)
        # the same definition, from facts added up on the workers
        as_of = _scoring_moment(as_of, live, data.facts)
        frames = data.frames([as_of], bundle.feature_config, bundle.target)
        return score_partitions(frames, bundle, model_name, model_version, as_of, client,
                                chunk_rows, progress)


def score_frame(
    frame: pd.DataFrame,
    bundle: ChurnBundle,
    model_name: str,
    model_version: str,
    as_of: str | pd.Timestamp,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Score a feature frame in chunks of `chunk_rows` (in this process)."""
    starts = range(0, len(frame), chunk_rows) if len(frame) else range(1)
    parts = []
    for done, start in enumerate(starts, 1):
        rows = frame.iloc[start:start + chunk_rows]
        parts.append(_score_rows(rows, bundle, model_name, model_version, as_of))
        if progress is not None:
            progress(done, len(starts))
    return _concat(parts)


def score_partitions(
    frames: list,
    bundle: ChurnBundle,
    model_name: str,
    model_version: str,
    as_of: str | pd.Timestamp,
    client,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Score feature frames that are on the Dask workers (`frames`: futures, one per customer
    partition) where they are, in chunks of `chunk_rows`: the bundle is sent to every worker
    once, and only the scores come back, sorted by customer_id (as `score_portfolio`'s pandas
    path sorts its frame)."""

    on_workers = client.scatter(bundle, broadcast=True)
    futures = client.map(_score_partition, frames, bundle=on_workers, model_name=model_name,
                         model_version=model_version, as_of=as_of, chunk_rows=chunk_rows,
                         pure=False)
    parts = [p for p in _gather(client, futures, progress) if p is not None]
    if not parts:  # nobody to score: the table's columns, from an empty frame
        empty = client.submit(lambda frame: frame.iloc[:0], frames[0]).result()
        return score_frame(empty, bundle, model_name, model_version, as_of)
    scores = _concat(parts)
    return scores.sort_values("customer_id", kind="stable").reset_index(drop=True)


def _gather(client, futures: list, progress: Progress | None) -> list:
    """The futures' results in their order, reporting progress as each one completes."""
    from dask.distributed import as_completed

    for done, _ in enumerate(as_completed(futures), 1):
        if progress is not None:
            progress(done, len(futures))
    return client.gather(futures)


def _score_partition(frame: pd.DataFrame, bundle: ChurnBundle, model_name: str,
                     model_version: str, as_of, chunk_rows: int) -> pd.DataFrame | None:
    if not len(frame):
        return None
    frame = frame.sort_values("customer_id", kind="stable").reset_index(drop=True)
    return score_frame(frame, bundle, model_name, model_version, as_of, chunk_rows)


def _score_rows(rows: pd.DataFrame, bundle: ChurnBundle, model_name: str, model_version: str,
                as_of) -> pd.DataFrame:
    scores = bundle.score(rows).reset_index(drop=True)
    keys = {"customer_id": rows["customer_id"].to_numpy()}
    for name in CARRIED:
        if name in rows.columns and name not in scores.columns:
            keys[name] = rows[name].to_numpy()
    keys["features_as_of"] = np.full(len(rows), as_of_text(pd.Timestamp(as_of)), dtype=object)
    keys["model_name"] = np.full(len(rows), model_name, dtype=object)
    keys["model_version"] = np.full(len(rows), str(model_version), dtype=object)
    # What churn_probability is a probability of, on every row (a CRM imports rows, not files).
    keys["target"] = np.full(len(rows), bundle.target.kind.value, dtype=object)
    keys["horizon_days"] = np.full(len(rows), bundle.target.horizon_days, dtype=np.int64)
    keys["target_description"] = np.full(len(rows), bundle.target.description, dtype=object)
    return pd.concat([pd.DataFrame(keys), scores], axis=1)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


@contextlib.contextmanager
def all_cores(bundle: ChurnBundle, threads: int | None = None) -> Iterator[ChurnBundle]:
    """Let the bundle's boosters use `threads` (default: every core) while scoring a batch,
    then restore their own setting (a loaded bundle predicts on one thread, for serving)."""
    threads = threads or os.cpu_count() or 1
    boosters = [bundle.churn, *bundle.propensity.values()]
    if bundle.value is not None:
        boosters.append(bundle.value)
    before = [_nthread(b) for b in boosters]
    for b in boosters:
        b.set_param({"nthread": threads})
    try:
        yield bundle
    finally:
        for b, n in zip(boosters, before, strict=True):
            b.set_param({"nthread": n})


def _nthread(booster) -> int:
    config = json.loads(booster.save_config())
    return int(config["learner"]["generic_param"].get("nthread", 0))
