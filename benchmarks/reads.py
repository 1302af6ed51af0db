"""How many times each `churn` command reads its data source, and how long it takes.

Every read of tables goes through `features.io.read_tables`; the script counts its calls in this
process while it runs each command through `churn_risk.cli.main` on a small demo project (the
service `churn demo` starts is a separate process and reads its own copy; it is not counted).

    .venv/bin/python benchmarks/reads.py [--customers 2000] [--months 24]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def counting_reads() -> list[str]:
    from churn_risk.features import io as data_io
    from churn_risk.features import validation

    reads: list[str] = []
    real = data_io.read_tables

    def counted(source):
        reads.append(str(source))
        return real(source)

    data_io.read_tables = counted
    validation.read_tables = counted
    return reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--months", type=int, default=24)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from churn_risk.cli import main as churn

    reads = counting_reads()
    table = Table(title=f"Reads of the data source per command ({args.customers:,} customers, "
                        f"{args.months} months)")
    for column in ("command", "reads", "seconds", "exit"):
        table.add_column(column, justify="left" if column == "command" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        data = str(Path(tmp) / "demo-data")
        commands = [
            ["demo", "--out", data, "--customers", str(args.customers), "--months",
             str(args.months)],
            ["train", "--data", data],
            ["promote", "--data", data, "--force"],
            ["evaluate", "--data", data],
            ["score", "--data", data, "--out", "scores.parquet"],
            ["campaigns", "evaluate", "--data", data, "--no-uplift"],
        ]
        for argv in commands:
            reads.clear()
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(
                    io.StringIO()):
                code = churn(argv)
            table.add_row(f"churn {' '.join(argv[:2] if argv[0] == 'campaigns' else argv[:1])}",
                          str(len(reads)), f"{time.perf_counter() - started:.1f}", str(code))
    Console().print(table)


if __name__ == "__main__":
    main()
