"""Live scoring from the store: load, start-up, lookups, ingestion and the time from an accepted
event to its fresh score, each next to its floor measured in the same run.

    .venv/bin/python benchmarks/live.py [--customers 20000] [--months 24] [--store URL]

Demo data ending now are generated (and loaded into a new SQLite store, or the given one), a
quick model is trained and promoted in a temporary project, and a real server (`churn serve
--store`, two workers) is measured over HTTP:

- load: records per second into the store (`churn store load`'s code path);
- scored into the store: the portfolio scored as of now into `served_scores` (`churn store
  score`), and the peak memory of that process;
- ready: seconds from start to `/readyz` 200 on the scored portfolio, and the resident memory
  of all server processes (after start, and at the end);
- by id: `/score` of one customer, p50/p99, against a primary-key read of the store's served
  scores and the bundle's predict + explain of one row in this process;
- ingestion: `POST /events` of 100 tickets (for customers drawn from the whole store) per
  request over `--senders` connections, sustained events per second; then how long until
  every customer they touched has been re-scored (the refresher's throughput);
- fresh: on a caught-up server, from an accepted event to the first `/score` answer whose
  data include it.

`--work DIR` keeps the store, the model and the scored portfolio for the next run (only the
server is measured again).

The issue's targets (at 1,000,000 customers) are printed next to the figures.
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_arguments  # noqa: E402

console = Console()
KEY = "bench-key-0123456789abcdef"


def post(base: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{base}{path}", method="POST", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = sorted(s * 1000 for s in seconds)
    return statistics.median(ms), ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]


def server_rss_mib(root_pid: int) -> float:
    import psutil

    root = psutil.Process(root_pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def main() -> None:
    parser = data_arguments(__doc__.splitlines()[0])
    parser.set_defaults(customers=20_000, months=24)
    parser.add_argument("--store", default=None, help="a store URL (default: a new SQLite file)")
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--event-batches", type=int, default=50)
    parser.add_argument("--fresh", type=int, default=40)
    parser.add_argument("--senders", type=int, default=4,
                        help="concurrent connections posting events")
    parser.add_argument("--work", default=None,
                        help="a folder to work in; a store it holds already is reused")
    parser.add_argument("--train-customers", type=int, default=20_000,
                        help="customers of the (separate) data the model is trained on")
    args = parser.parse_args()

    import pandas as pd

    from churn_risk.demo import write_demo
    from churn_risk.features.io import DataSource
    from churn_risk.features.live import live_now
    from churn_risk.features.store import Store
    from churn_risk.features.validation import load_crm
    from churn_risk.jobs import promote, train
    from churn_risk.serving import launch
    from churn_risk.training.config import SearchSpace, TrainConfig

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-live-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    rows: list[tuple[str, str, str, str]] = []
    url = args.store or f"sqlite:///{work / 'store.db'}"

    if args.work and (work / "store.db").exists():  # loaded by an earlier run: not measured
        console.print(f"Reusing the store loaded in {work}")
        with Store(url) as store, store.engine.connect() as conn:
            ids = [row[0] for row in conn.exec_driver_sql("SELECT customer_id FROM customers")]
    else:
        console.print(f"Demo data: {args.customers:,} customers x {args.months} months, "
                      "ending now")
        write_demo(work / "data", customers=args.customers, months=args.months, seed=1,
                   end=live_now())
        crm = load_crm(work / "data")
        records = sum(len(f) for f in crm.tables.values())
        started = time.perf_counter()
        with Store(url) as store:
            store.write(crm)
        ids = crm.tables["customers"]["customer_id"].tolist()
        del crm  # the server and `churn store score` read the store
        seconds = time.perf_counter() - started
        rows.append(("load into the store", f"{records:,} records in {seconds:.1f} s",
                     f"{records / seconds:,.0f} records/s", "-"))

    scored = _scored_before(work, url) if args.work else None
    if scored is not None:  # trained and scored by an earlier run: not measured
        console.print(f"Reusing the model and the portfolio scored in {work}")
        run = scored
    else:
        console.print(f"Training a quick model on {args.train_customers:,} customers of the "
                      "same generator and promoting it")
        write_demo(work / "train-data", customers=min(args.customers, args.train_customers),
                   months=max(args.months, 24), seed=2, end=live_now())  # a year + horizon
        quick = TrainConfig(search=SearchSpace(max_depth=(3,), num_boost_round=150),
                            figures=False, propensity=False)
        train.run(work / "train-data", quick, project_dir=work)
        promote.run(work / "train-data")

        console.print("Scoring the portfolio into the store (churn store score)")
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("churn")), "store", "score",
                        "--store", url], check=True)  # as a user runs it: its own process
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        run = _scored_before(work, url)
        rows.append(("portfolio scored into the store", f"{run['customers']:,} customers in "
                     f"{seconds:.1f} s", f"{run['customers'] / seconds:,.0f} customers/s, peak "
                     f"{peak:,.0f} MiB", "-"))

    env = launch.server_env(DataSource(url, store=True), project_dir=work,
                            keys=f"read+ingest:{KEY}")
    started = time.perf_counter()
    process, base = launch.start(env)
    try:
        launch.wait_ready(base, process, timeout=600)
        ready = time.perf_counter() - started
        rss = server_rss_mib(process.pid)
        rows.append(("ready after start", f"{ready:.1f} s", "-", "<= 30 s at 1M"))
        rows.append(("memory of all server processes", f"{rss:,.0f} MiB", "-",
                     "<= 2,048 MiB at 1M"))

        served = [r["customer_id"] for r in post(base, "/score", {
            "customer_ids": ids[:1000], "top_k": 0})["results"]]
        rng = random.Random(1)
        times = []
        for _ in range(args.lookups):
            customer = rng.choice(served)
            t = time.perf_counter()
            post(base, "/score", {"customer_ids": [customer]})
            times.append(time.perf_counter() - t)
        p50, p99 = percentiles(times)
        times = []
        for _ in range(300):
            t = time.perf_counter()
            urllib.request.urlopen(f"{base}/livez", timeout=30).read()
            times.append(time.perf_counter() - t)
        http50, _ = percentiles(times)
        floor = (f"GET /livez p50 {http50:.2f} ms; "
                 + _floors(url, served, work, rng, run["model_version"]))
        rows.append(("by id, one customer", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                     floor, "p50 <= 5 ms, p99 <= 20 ms"))

        now = live_now()
        touched: dict = {}  # customer -> the watermark of the last write touching them

        def send(batch: int) -> float:  # seconds the request took
            opened = now - pd.Timedelta(seconds=batch + 1)
            records = [{"customer_id": rng.choice(ids),  # anyone: most are cold on disk
                        "opened_at": f"{opened:%Y-%m-%dT%H:%M:%S}", "category": "billing"}
                       for _ in range(100)]
            t = time.perf_counter()
            answer = post(base, "/events", {"table": "tickets", "records": records})
            seconds = time.perf_counter() - t
            for customer in answer["customer_ids"]:
                touched[customer] = max(touched.get(customer, ""), answer["watermark"])
            return seconds

        started = time.perf_counter()
        with ThreadPoolExecutor(args.senders) as pool:  # a CRM pushing over a few connections
            times = list(pool.map(send, range(args.event_batches)))
        seconds = time.perf_counter() - started
        rate = 100 * len(times) / seconds
        p50, p99 = percentiles(times)
        rows.append((f"ingestion, 100 events per request, {args.senders} senders",
                     f"{rate:,.0f} events/s", f"request p50 {p50:.0f} ms, p99 {p99:.0f} ms",
                     ">= 2,000 events/s"))

        # The refresher re-scores every touched customer: how long until the last is fresh.
        waiting = sorted(touched, key=str)
        while waiting and time.perf_counter() - started < 900:
            results = [r for i in range(0, len(waiting), 1000) for r in post(
                base, "/score", {"customer_ids": waiting[i:i + 1000], "top_k": 0})["results"]]
            waiting = [r["customer_id"] for r in results
                       if r["data_watermark"] < touched[r["customer_id"]]]
            time.sleep(0.05)
        drained = time.perf_counter() - started
        rows.append(("ingested customers all re-scored",
                     f"{len(touched):,} customers {drained:.1f} s after the first event"
                     + (f" ({len(waiting):,} still not)" if waiting else ""),
                     f"{len(touched) / drained:,.0f} customers/s re-featured, re-scored and "
                     "re-explained", "-"))

        delays = []
        for n in range(args.fresh):
            customer = rng.choice(served)
            contact = live_now() - pd.Timedelta(seconds=n + 1)
            accepted = post(base, "/events", {"table": "interactions", "records": [{
                "customer_id": customer, "timestamp": f"{contact:%Y-%m-%dT%H:%M:%S}",
                "channel": "contact_center", "kind": "complaint"}]})
            t = time.perf_counter()
            while True:  # until an answer's data include the event
                answer = post(base, "/score", {"customer_ids": [customer], "top_k": 0})
                if answer["results"][0]["data_watermark"] >= accepted["watermark"]:
                    break
                if time.perf_counter() - t > 10:
                    break
                time.sleep(0.01)
            delays.append(time.perf_counter() - t)
        p50, p99 = percentiles(delays)
        rows.append(("accepted event → fresh score", f"p50 {p50:.0f} ms, p99 {p99:.0f} ms",
                     "one event at a time, on a caught-up server", "p99 <= 1,000 ms"))
        rows.append(("memory of all server processes, at the end",
                     f"{server_rss_mib(process.pid):,.0f} MiB", "-", "<= 2,048 MiB at 1M"))
    finally:
        launch.stop(process)

    table = Table(title=f"Live scoring, {args.customers:,} customers x {args.months} months, "
                        f"{url.split('://')[0]} store, 2 workers")
    for column in ("measure", "ours", "floor / detail", "target"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _scored_before(work: Path, url: str) -> dict | None:
    """The store's newest run of the champion registered in `work`, if any."""
    if not (work / "mlflow.db").exists():
        return None
    import mlflow

    from churn_risk.features.store import Store
    from churn_risk.models.pyfunc import resolve_model

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{work / 'mlflow.db'}")
    try:
        version = resolve_model("models:/churn-risk@champion")[1]
    except LookupError:  # nothing registered yet
        return None
    with Store(url) as store:
        return store.latest_run("churn-risk", version)


def _floors(url: str, ids: list, work: Path, rng: random.Random, version: str) -> str:
    """A primary-key read of the store's served scores, and predict + explain of one row in
    this process."""
    import sqlalchemy as sa

    from churn_risk.features.labels import scoring_as_of  # noqa: F401 - warm imports
    from churn_risk.models.pyfunc import load_bundle

    engine = sa.create_engine(url)
    times = []
    with engine.connect() as conn:
        for _ in range(500):
            customer = rng.choice(ids)
            t = time.perf_counter()
            conn.execute(sa.text("SELECT payload FROM served_scores WHERE model_name = "
                                 "'churn-risk' AND model_version = :v AND customer_key = :c"),
                         {"c": str(customer), "v": version}).all()
            times.append(time.perf_counter() - t)
    engine.dispose()
    read50, _ = percentiles(times)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{work / 'mlflow.db'}")
    bundle = load_bundle("models:/churn-risk@champion")
    import pandas as pd

    row = pd.DataFrame([{f: 0.0 for f in bundle.feature_names}])
    for spec in bundle.specs:
        if spec.kind == "categorical":
            row[spec.name] = pd.Categorical([None], categories=bundle.categories.get(
                spec.name, []))
    times = []
    for _ in range(300):
        t = time.perf_counter()
        bundle.predict_and_explain(row)
        times.append(time.perf_counter() - t)
    model50, _ = percentiles(times)
    return f"store read p50 {read50:.2f} ms; predict+explain p50 {model50:.2f} ms"


if __name__ == "__main__":
    main()
