"""Batch-scoring benchmark: a whole portfolio scored with every output field and its reasons.

    .venv/bin/python benchmarks/batch.py --customers 1000000

Set-up (outside the timings, cached in .bench-data/): demo data for `--source-customers`
customers (100k), a model fitted once on the 20k demo data (a reduced search: one depth, fewer
rounds), the snapshot of the 100k customers at the day after the data end, tiled with new
customer ids to `--customers` rows. The tiled rows repeat real customers' features, so the
trees walk realistic paths.

Each measurement runs in a fresh child process, from the feature frame in memory to the output
table, and reports its own peak memory:

- floor: XGBoost alone on the same matrix: DMatrix from the float array, then `predict` of every
  model of the bundle (churn margin, value, each propensity) and the churn model's
  `pred_contribs` (TreeSHAP), all on every core;
- ours, local: `serving.batch.score_frame` (`ChurnBundle.score` over chunks, every core);
- ours, Dask: `serving.batch.score_partitions` on a 2-worker LocalCluster (one thread each),
  as `churn score --engine dask` scores: the feature partitions are on the workers (each
  worker reads its own part files, as it would have built them), are scored where they are,
  and only the scores come to the client (cluster start-up not timed; peak = client +
  workers);
- GPU (XGBoost on CUDA, GPU TreeSHAP) when XGBoost is built with CUDA and a device answers;
  otherwise the run is skipped and the reason printed.

Targets: end to end <= 1.3x the floor; peak memory <= 2x (feature matrix + output).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from common import demo_data, demo_target, in_child, peak_mib
from rich.console import Console
from rich.table import Table

BENCH = Path(".bench-data")
TIME_TARGET = 1.3
MEMORY_TARGET = 2.0


# ------------------------------------------------------------------------------ set-up


def bundle_dir(train_customers: int) -> Path:
    return BENCH / f"batch-bundle-{train_customers}"


def set_up_model(console: Console, train_customers: int) -> Path:
    """A model fitted once on the demo data (reduced search), saved as a bundle folder."""
    folder = bundle_dir(train_customers)
    if (folder / "bundle.json").exists():
        return folder
    from churn_risk.features.lifecycle import feature_specs, prepare
    from churn_risk.features.snapshots import build_training_frame, monthly_as_ofs
    from churn_risk.features.validation import load_crm
    from churn_risk.training.config import SearchSpace, TrainConfig
    from churn_risk.training.train import fit_bundle

    data = demo_data(console, train_customers, 36)
    cfg = TrainConfig(search=SearchSpace(max_depth=(4,), num_boost_round=300))
    started = time.perf_counter()
    prep = prepare(load_crm(data))
    target = demo_target()
    frame = build_training_frame(prep, monthly_as_ofs(prep, cfg.features, target),
                                 cfg.features, target)
    bundle, _, metrics, _ = fit_bundle(frame, feature_specs(prep, cfg.features), cfg, target)
    bundle.save(folder)
    console.print(f"  model fitted on {len(frame):,} rows in {time.perf_counter() - started:.0f}"
                  f" s: {metrics['model_trees']:.0f} trees of depth "
                  f"{metrics['model_max_depth']:.0f}, {len(bundle.families)} propensity models")
    return folder


def set_up_features(console: Console, source_customers: int, customers: int,
                    model: Path) -> Path:
    """The snapshot of the demo customers, tiled to `customers` rows with new ids (cached)."""
    target = BENCH / f"batch-features-{source_customers}-{customers}.parquet"
    if target.exists():
        return target
    import numpy as np
    import pandas as pd

    from churn_risk.features.io import write_frame
    from churn_risk.features.labels import scoring_as_of
    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.snapshots import build_snapshot
    from churn_risk.features.validation import load_crm
    from churn_risk.models.bundle import ChurnBundle

    bundle = ChurnBundle.load(model)
    prep = prepare(load_crm(demo_data(console, source_customers, 36)))
    started = time.perf_counter()
    snapshot = build_snapshot(prep, scoring_as_of(prep), bundle.feature_config, bundle.target)
    console.print(f"  snapshot of {len(snapshot):,} customers in "
                  f"{time.perf_counter() - started:.0f} s")
    copies = -(-customers // len(snapshot))
    tiled = pd.concat([snapshot] * copies, ignore_index=True).iloc[:customers].copy()
    tiled["customer_id"] = np.arange(1, len(tiled) + 1, dtype=np.int64)
    write_frame(tiled, target)
    for i, part in enumerate(np.array_split(np.arange(len(tiled)), PARTS)):
        write_frame(tiled.iloc[part], part_path(target, i))
    return target


#: Customer partitions of the Dask run (files the workers read: the features of a partition
#: are built on its worker and never leave it).
PARTS = 8


def part_path(features: Path, i: int) -> Path:
    return features.with_name(f"{features.stem}-part{i}.parquet")


def set_up(train_customers: int, source_customers: int, customers: int) -> tuple[str, str]:
    console = Console(width=130)
    model = set_up_model(console, train_customers)
    return str(model), str(set_up_features(console, source_customers, customers, model))


# ------------------------------------------------------------------------------ measurements


def _load(features: Path, model: Path):
    import pandas as pd

    from churn_risk.models.bundle import ChurnBundle

    return pd.read_parquet(features), ChurnBundle.load(model)


def measure_floor(features: str, model: str) -> dict:
    """XGBoost's own work on the same matrix: DMatrix + every predict + TreeSHAP."""
    import xgboost as xgb

    frame, bundle = _load(Path(features), Path(model))
    feature_bytes = int(frame.memory_usage(deep=True).sum())
    matrix = bundle.array(frame)
    del frame
    boosters = [bundle.churn, *bundle.propensity.values()]
    boosters += [bundle.value] if bundle.value is not None else []
    for b in boosters:
        b.set_param({"nthread": os.cpu_count()})
    started = time.perf_counter()
    dm = xgb.DMatrix(matrix, feature_names=bundle.feature_names,
                     feature_types=bundle._feature_types, enable_categorical=True)
    for b in boosters:
        b.predict(dm, validate_features=False, output_margin=b is bundle.churn)
    contribs = bundle.churn.predict(dm, pred_contribs=True, validate_features=False)
    wall = time.perf_counter() - started
    return {"wall": wall, "peak": peak_mib(), "rows": len(matrix), "feature_bytes": feature_bytes,
            "contribs_bytes": contribs.nbytes}


def measure_local(features: str, model: str, chunk_rows: int) -> dict:
    from churn_risk.serving.batch import all_cores, score_frame

    frame, bundle = _load(Path(features), Path(model))
    started = time.perf_counter()
    with all_cores(bundle):
        out = score_frame(frame, bundle, "bench", "1", "2025-01-01", chunk_rows)
    wall = time.perf_counter() - started
    return {"wall": wall, "peak": peak_mib(), "rows": len(out),
            "output_bytes": int(out.memory_usage(deep=True).sum()), "columns": out.shape[1]}


def measure_dask(features: str, model: str, chunk_rows: int) -> dict:
    from dask.distributed import wait

    from churn_risk.features.dask_engine import dask_client
    from churn_risk.models.bundle import ChurnBundle
    from churn_risk.serving.batch import score_partitions

    bundle = ChurnBundle.load(Path(model))
    with dask_client(n_workers=2) as client:
        client.run(_warm_up)
        frames = [client.submit(_read_part, str(part_path(Path(features), i)), pure=False)
                  for i in range(PARTS)]
        wait(frames)
        started = time.perf_counter()
        out = score_partitions(frames, bundle, "bench", "1", "2025-01-01", client, chunk_rows)
        wall = time.perf_counter() - started
        workers = sum(client.run(peak_mib).values())
    return {"wall": wall, "peak": peak_mib() + workers, "client_peak": peak_mib(),
            "rows": len(out)}


def _read_part(path: str):
    import pandas as pd

    return pd.read_parquet(path)


def _warm_up() -> None:
    import churn_risk.models.bundle  # noqa: F401


def gpu_status() -> str | None:
    """None when XGBoost can run on a CUDA device here, else why not."""
    import xgboost as xgb

    if not xgb.build_info().get("USE_CUDA"):
        return ("the installed XGBoost is built without CUDA (the xgboost-cpu wheel); install "
                "the `xgboost` wheel with CUDA on a machine with an NVIDIA GPU")
    try:
        import numpy as np

        booster = xgb.train({"device": "cuda", "tree_method": "hist"},
                            xgb.DMatrix(np.random.rand(50, 3), label=np.random.rand(50)), 1)
        booster.predict(xgb.DMatrix(np.random.rand(5, 3)))
    except xgb.core.XGBoostError as exc:
        return f"no CUDA device answered: {str(exc).splitlines()[0]}"
    return None


def measure_gpu(features: str, model: str, chunk_rows: int) -> dict:
    from churn_risk.serving.batch import score_frame

    frame, bundle = _load(Path(features), Path(model))
    for b in [bundle.churn, *bundle.propensity.values(),
              *([bundle.value] if bundle.value is not None else [])]:
        b.set_param({"device": "cuda"})
    score_frame(frame.head(1000), bundle, "bench", "1", "2025-01-01", chunk_rows)  # warm-up
    started = time.perf_counter()
    out = score_frame(frame, bundle, "bench", "1", "2025-01-01", chunk_rows)
    wall = time.perf_counter() - started
    return {"wall": wall, "peak": peak_mib(), "rows": len(out)}


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="rows to score")
    parser.add_argument("--source-customers", type=int, default=100_000,
                        help="demo customers whose snapshot is tiled to --customers rows")
    parser.add_argument("--train-customers", type=int, default=20_000,
                        help="demo customers the model is fitted on")
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args(argv)
    console = Console(width=130)

    console.print("set-up (not timed, cached in .bench-data/)")
    # in a child: a forked child starts with its parent's resident size as its peak
    model, features = map(Path, in_child(set_up, args.train_customers, args.source_customers,
                                         args.customers))
    console.print(f"  {args.customers:,} rows = the snapshot of {args.source_customers:,} demo "
                  f"customers tiled with new customer ids ({features})")

    floor = in_child(measure_floor, str(features), str(model))
    results = {"floor: XGBoost DMatrix + predict + pred_contribs": floor}
    results["ours, local (score in chunks)"] = in_child(measure_local, str(features), str(model),
                                                        args.chunk_rows)
    output_bytes = results["ours, local (score in chunks)"]["output_bytes"]
    if not args.skip_dask:
        results["ours, Dask (2 workers x 1 thread)"] = in_child(
            measure_dask, str(features), str(model), args.chunk_rows)
    gpu_skipped = gpu_status()
    if gpu_skipped is None:
        results["ours, GPU (XGBoost on CUDA)"] = in_child(measure_gpu, str(features),
                                                          str(model), args.chunk_rows)

    budget_mib = (floor["feature_bytes"] + output_bytes) / 2**20
    table = Table(title=f"Batch scoring: {args.customers:,} customers with every output field "
                        f"and 3 reasons ({os.cpu_count()} cores, chunks of {args.chunk_rows:,})")
    for column in ("run", "wall s", "customers/s", "peak MiB", "x floor", "time target",
                   "memory target", ""):
        table.add_column(column, justify="right")
    for name, r in results.items():
        is_floor = r is floor
        ratio = r["wall"] / floor["wall"]
        time_ok = is_floor or ratio <= TIME_TARGET
        memory_ok = r["peak"] <= MEMORY_TARGET * budget_mib
        table.add_row(
            name, f"{r['wall']:.1f}", f"{r['rows'] / r['wall']:,.0f}", f"{r['peak']:,.0f}",
            "1.00" if is_floor else f"{ratio:.2f}",
            "-" if is_floor else f"<= {TIME_TARGET}x",
            f"<= {MEMORY_TARGET * budget_mib:,.0f} MiB",
            "met" if time_ok and memory_ok else "[red]missed[/red]"
            + ("" if time_ok else " (time)") + ("" if memory_ok else " (memory)"),
        )
    console.print(table)
    console.print(
        f"memory target = {MEMORY_TARGET:.0f} x (feature frame "
        f"{floor['feature_bytes'] / 2**20:,.0f} MiB + output table "
        f"{output_bytes / 2**20:,.0f} MiB, "
        f"{results['ours, local (score in chunks)']['columns']} columns)"
    )
    if "ours, Dask (2 workers x 1 thread)" in results:
        dask = results["ours, Dask (2 workers x 1 thread)"]
        console.print(f"Dask peak = client {dask['client_peak']:,.0f} MiB + both workers")
    if gpu_skipped is not None:
        console.print(f"GPU run skipped: {gpu_skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
