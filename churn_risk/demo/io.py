"""Writing the demo data: the nine tables, and the ground truth with its README."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churn_risk.demo.readme import truth_readme
from churn_risk.demo.simulation import DemoData, Progress, first_month, generate
from churn_risk.features.io import atomic_write, write_frame, write_tables


def write_demo(
    out: str | Path,
    customers: int,
    months: int,
    seed: int,
    fmt: str = "parquet",
    start: str = "2023-01-01",
    *,
    end: str | pd.Timestamp | None = None,
    progress: Progress | None = None,
    drifts: dict[str, str | pd.Timestamp] | None = None,
) -> DemoData:
    """Generate the demo data and write it: the nine tables to `out/<table>.<fmt>` and the ground
    truth to `out/ground_truth/` (Parquet, plus a README explaining the mechanism). `end`: the
    data end at that moment (see `generate`). `drifts`: simulated drift (see `generate`),
    recorded in `out/ground_truth/drifts.parquet` and the README."""
    data = generate(customers, months, seed, start, end=end, progress=progress, drifts=drifts)
    start = first_month(months, start, end)
    out = Path(out)
    write_tables(data.tables, out, fmt)
    truth_dir = out / "ground_truth"
    for name, frame in data.truth.items():
        write_frame(frame, truth_dir / f"{name}.parquet")
    readme = truth_readme(data, customers=customers, months=months, seed=seed, start=start)
    atomic_write(truth_dir / "README.md", readme)
    return data
