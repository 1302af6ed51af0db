"""Feature pipeline benchmark: wall time and peak memory, pandas and Dask, vs just reading.

    .venv/bin/python benchmarks/features.py                 # 100k customers x 36 months
    .venv/bin/python benchmarks/features.py --customers 20000

Each measurement runs in a fresh process so its peak memory (max RSS) is its own; for Dask the
driver's and every worker's peaks are added. Every pipeline measurement includes reading and
validating the files, so "x read" is the whole pipeline over the bare `pd.read_parquet` of the
same files in the same run (the floor, median of three reads). For Dask, "wall s" runs on an
already started LocalCluster (2 single-threaded workers); starting it is shown on its own.
Targets (2-core machine, 100k x 36): one snapshot <= 10 s, 12 snapshots <= 60 s, peak memory
<= 4 GiB, pipeline <= 5x read time.
"""

from __future__ import annotations

import sys
import time

from common import data_arguments, demo_data, demo_target, in_child, peak_mib
from rich.console import Console
from rich.table import Table

TARGET_ONE_S, TARGET_TWELVE_S, TARGET_MEM_MIB, TARGET_RATIO = 10.0, 60.0, 4096.0, 5.0



def _read_only(folder: str) -> dict:
    from churn_risk.features.io import read_tables

    t = time.perf_counter()
    tables = read_tables(folder)
    return {"seconds": time.perf_counter() - t, "peak_mib": peak_mib(),
            "events": sum(len(f) for n, f in tables.items() if n not in ("customers", "products"))}


def _as_ofs(folder: str) -> dict:
    """The latest month start, and the 12 latest with a complete label horizon."""
    from churn_risk.features.config import FeatureConfig
    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.snapshots import monthly_as_ofs
    from churn_risk.features.validation import load_crm

    prep = prepare(load_crm(folder))
    cfg = FeatureConfig()
    return {1: monthly_as_ofs(prep, cfg)[-1:], 12: monthly_as_ofs(prep, cfg, demo_target())[-12:]}


def _pandas(folder: str, as_ofs: list) -> dict:
    from churn_risk.features.config import FeatureConfig
    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.snapshots import build_snapshot, build_training_frame
    from churn_risk.features.validation import load_crm

    cfg, target = FeatureConfig(), demo_target()
    t = time.perf_counter()
    prep = prepare(load_crm(folder))
    if len(as_ofs) == 1:
        rows = len(build_snapshot(prep, as_ofs[0], cfg, target))
    else:
        rows = len(build_training_frame(prep, as_ofs, cfg, target))
    return {"seconds": time.perf_counter() - t, "peak_mib": peak_mib(), "rows": rows}


def _dask(folder: str, as_ofs: list) -> dict:
    from churn_risk.features.config import FeatureConfig
    from churn_risk.features.dask_engine import build_frame_dask, dask_client

    started = time.perf_counter()
    with dask_client() as client:
        t = time.perf_counter()
        frame, _ = build_frame_dask(folder, as_ofs, FeatureConfig(), demo_target(),
                                    labelled=len(as_ofs) > 1,
                                 scheduler=client.scheduler.address)
        seconds = time.perf_counter() - t
        worker_peaks = client.run(peak_mib)
    return {"seconds": seconds, "startup": t - started,
            "peak_mib": peak_mib() + sum(worker_peaks.values()), "rows": len(frame)}


def main(argv: list[str] | None = None) -> int:
    parser = data_arguments(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    console = Console(width=120)
    folder = demo_data(console, args.customers, args.months, args.data)

    reads = [in_child(_read_only, str(folder)) for _ in range(3)]
    read = sorted(reads, key=lambda r: r["seconds"])[1]  # the median of three
    as_ofs = in_child(_as_ofs, str(folder))
    runs = [("pandas", 1), ("pandas", 12)]
    if not args.skip_dask:
        runs += [("dask", 1), ("dask", 12)]
    table = Table(title=f"Feature pipeline, {args.customers:,} customers x {args.months} months, "
                        f"{read['events']:,} events in")
    for col in ("engine", "snapshots", "rows out", "wall s", "cluster start s", "peak MiB",
                "x read", "targets"):
        table.add_column(col, justify="right")
    table.add_row("read only", "-", "-", f"{read['seconds']:.2f}", "-",
                  f"{read['peak_mib']:.0f}", "1.0", "floor")
    for engine, months in runs:
        result = in_child(_pandas if engine == "pandas" else _dask, str(folder), as_ofs[months])
        ratio = result["seconds"] / read["seconds"]
        limit = TARGET_ONE_S if months == 1 else TARGET_TWELVE_S
        checks = [result["seconds"] <= limit, result["peak_mib"] <= TARGET_MEM_MIB]
        if months == 1:
            checks.append(ratio <= TARGET_RATIO)
        startup = f"{result['startup']:.2f}" if "startup" in result else "-"
        table.add_row(engine, str(months), f"{result['rows']:,}", f"{result['seconds']:.2f}",
                      startup, f"{result['peak_mib']:.0f}", f"{ratio:.1f}",
                      "met" if all(checks) else "[red]missed[/red]")
    console.print(table)
    console.print(f"targets: 1 snapshot <= {TARGET_ONE_S:.0f} s and <= {TARGET_RATIO:.0f}x read; "
                  f"12 snapshots <= {TARGET_TWELVE_S:.0f} s; peak <= {TARGET_MEM_MIB:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
