"""Plumbing shared by the benchmark scripts: fresh measurement processes, peak memory, and the
demo data they run on."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import cloudpickle
from rich.console import Console

# Dask workers do not have benchmarks/ on their path: ship this module's functions (e.g.
# `peak_mib` for client.run) by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def peak_mib() -> float:
    """This process's peak resident memory (max RSS), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(conn, fn, args) -> None:
    conn.send(fn(*args))
    conn.close()


def in_child(fn, *args):
    """Run `fn(*args)` in a fresh (non-daemon, so it may start Dask workers) process, so its
    peak memory is its own."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(child, fn, args))
    process.start()
    try:
        result = parent.recv()
    except EOFError:
        process.join()
        raise SystemExit(f"{fn.__name__} failed (exit code {process.exitcode})") from None
    process.join()
    return result


def data_arguments(description: str) -> argparse.ArgumentParser:
    """The options every data-sized benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with the data (generated there when missing)")
    parser.add_argument("--skip-dask", action="store_true")
    return parser


#: The demo generator's churn definition: no active subscription 90 days on.
DEMO_TARGET = {"kind": "subscription_end", "horizon_days": 90}


def demo_target():
    from churn_risk.features.target import Target

    return Target.model_validate(DEMO_TARGET)


def demo_data(console: Console, customers: int, months: int, folder: Path | None = None,
              seed: int = 1) -> Path:
    """The benchmark's demo data folder, generated on first use."""
    folder = folder or Path(".bench-data") / f"crm-{customers}x{months}"
    if not (folder / "customers.parquet").exists():
        from churn_risk.demo import write_demo

        console.print(f"Generating {customers:,} customers x {months} months in {folder}")
        t = time.perf_counter()
        write_demo(folder, customers=customers, months=months, seed=seed)
        console.print(f"  generated in {time.perf_counter() - t:.1f} s")
    return folder
