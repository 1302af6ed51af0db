"""Writing the demo data: the nine tables, and the ground truth with its README."""

from __future__ import annotations

from pathlib import Path

from churn_risk.demo.readme import truth_readme
from churn_risk.demo.simulation import DemoData, Progress, generate
from churn_risk.features.io import atomic_write, write_frame, write_tables


def write_demo(
    out: str | Path,
    customers: int,
    months: int,
    seed: int,
    fmt: str = "parquet",
    start: str = "2023-01-01",
    *,
    progress: Progress | None = None,
) -> DemoData:
    """Generate the demo data and write it: the nine tables to `out/<table>.<fmt>` and the ground
    truth to `out/ground_truth/` (Parquet, plus a README explaining the mechanism)."""
    data = generate(customers, months, seed, start, progress=progress)
    out = Path(out)
    write_tables(data.tables, out, fmt)
    truth_dir = out / "ground_truth"
    for name, frame in data.truth.items():
        write_frame(frame, truth_dir / f"{name}.parquet")
    readme = truth_readme(data, customers=customers, months=months, seed=seed, start=start)
    atomic_write(truth_dir / "README.md", readme)
    return data
