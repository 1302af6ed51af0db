"""What the Dask engine sends and reads on the driver: `churn train` and `churn score` on Dask.

    .venv/bin/python benchmarks/dask_graphs.py                    # 20k customers x 24 months
    .venv/bin/python benchmarks/dask_graphs.py --customers 5000 --months 24

For the Dask training (`jobs.train.run(engine="dask")`, MLflow into a throwaway store) and the
Dask batch scoring of the model it registered (`serving.batch.score_portfolio(engine="dask")`),
each on a 2-worker LocalCluster started once beforehand (its start-up is not in the times):

* largest graph: the biggest graph the client sent to the scheduler, MiB, as distributed itself
  measures it: `distributed.admin.large-graph-warning-threshold` is set to 1 byte, so every
  graph is reported in a "Sending large graph of size X" warning, recorded here;
* graphs: how many graphs the client sent;
* scattered: what the driver sent to the workers outside graphs (`Client.scatter`, sized with
  `dask.sizeof`), MiB;
* driver reads: raw-table reads in the driver process (calls of `features.io.read_tables`, the
  one function every reader goes through), and calls of `validation.load_crm` and
  `lifecycle.prepare` there (the workers are other processes: their reads are not counted);
* wall time.

The script only measures through public names (`dask_client`, `jobs.train.run`,
`score_portfolio`), so it runs unchanged on older versions of the engine (the before/after
figures of the change that kept the data on the workers).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from common import demo_data, in_child
from rich.console import Console
from rich.table import Table

MIB = 2**20
def driver_calls() -> dict[str, int]:
    """Count, in this process, raw-table reads and the driver-side validation and preparation."""
    from churn_risk.features import io, lifecycle, validation

    calls = {"read_tables": 0, "load_crm": 0, "prepare": 0}

    def counting(name, real):
        def counted(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return counted

    reads = counting("read_tables", io.read_tables)
    io.read_tables = reads
    validation.read_tables = reads
    validation.load_crm = counting("load_crm", validation.load_crm)
    lifecycle.prepare = counting("prepare", lifecycle.prepare)
    return calls


def scattered_bytes() -> list[int]:
    """The size of everything `Client.scatter` sends from this process from now on."""
    from dask.sizeof import sizeof
    from distributed import Client

    sent: list[int] = []
    real = Client.scatter

    def scatter(self, data, *args, **kwargs):
        sent.append(sizeof(data))
        return real(self, data, *args, **kwargs)

    Client.scatter = scatter
    return sent


def _measure(folder: str) -> dict:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID",
                 "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(name, None)
    from churn_risk.features.dask_engine import dask_client, graph_sizes
    from churn_risk.jobs.train import run as train
    from churn_risk.models.pyfunc import load_bundle
    from churn_risk.serving.batch import score_portfolio
    from churn_risk.training.tracking import MODEL_NAME

    calls = driver_calls()
    sent = scattered_bytes()
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp, dask_client() as client:
        address = client.scheduler.address
        before, scattered = dict(calls), len(sent)
        with graph_sizes() as sizes:
            started = time.perf_counter()
            result = train(folder, engine="dask", scheduler=address, project_dir=Path(tmp))
            seconds = time.perf_counter() - started
        out["train"] = {"sizes": sizes, "seconds": seconds, "rows": len(result.split.train),
                        "auc": result.metrics["test_roc_auc"], "scattered": sum(sent[scattered:]),
                        "calls": {k: calls[k] - before[k] for k in calls}}
        bundle = load_bundle(f"models:/{MODEL_NAME}/{result.version}")
        before, scattered = dict(calls), len(sent)
        with graph_sizes() as sizes:
            started = time.perf_counter()
            scores = score_portfolio(folder, None, bundle, MODEL_NAME, result.version,
                                     engine="dask", scheduler=address)
            seconds = time.perf_counter() - started
        out["score"] = {"sizes": sizes, "seconds": seconds, "rows": len(scores),
                        "scattered": sum(sent[scattered:]),
                        "calls": {k: calls[k] - before[k] for k in calls}}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with the data (generated there when missing)")
    args = parser.parse_args(argv)
    console = Console(width=150)
    folder = demo_data(console, args.customers, args.months, args.data)
    runs = in_child(_measure, str(folder))

    table = Table(title=f"Dask engine, {args.customers:,} customers x {args.months} months, "
                        "2-worker LocalCluster")
    for col in ("run", "rows", "largest graph MiB", "graphs", "all graphs MiB", "scattered MiB",
                "driver reads", "driver load_crm", "driver prepare", "wall s"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, run in (("train, dask", runs["train"]), ("score, dask", runs["score"])):
        sizes = run["sizes"]
        table.add_row(name, f"{run['rows']:,}", f"{max(sizes, default=0) / MIB:.3f}",
                      f"{len(sizes):,}", f"{sum(sizes) / MIB:.2f}",
                      f"{run['scattered'] / MIB:.2f}",
                      *(str(run["calls"][k]) for k in ("read_tables", "load_crm", "prepare")),
                      f"{run['seconds']:.1f}")
    console.print(table)
    console.print("rows: training rows (train) / customers scored (score); driver reads: calls "
                  "of features.io.read_tables in the driver process")
    console.print(f"training: {runs['train']['rows']:,} training rows, test AUC "
                  f"{runs['train']['auc']:.4f}; machine: {os.cpu_count()} cores, load average "
                  f"(1 min) {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
