"""Serving benchmark: the real BentoML server on loopback against the bundle in-process.

    .venv/bin/python benchmarks/serving.py

Set-up (outside the timings): demo data (20k customers x 36 months), one training run and a
promotion in a temporary project, then `bentoml serve` of the service on a free port with an API
key. Loads are bounded in requests and seconds and go to 127.0.0.1 only.

Prints p50/p99 of a single-customer `score` with top-5 reasons at concurrency 1 (by id, and an
inline what-if record), customers per second at concurrency 8 with batches of 1 and 100, and
the same work in-process (the floor): `ScoringState.score_ids` for by-id lookups, and
`ScoringState.score_records` (features → predict → TreeSHAP → reasons) for a what-if record.
Targets (2-core machine): by-id p50 <= 5 ms and p99 <= 20 ms; what-if p99 <= 1.5x the
in-process time + 10 ms; by-id throughput with batches of 100 >= half the in-process floor;
a channel view costs <= 0.2 ms per customer (1,000 ids with `channel=contact_center` against
none).

Then a bounded 60 s load at concurrency 8 (batches of 10 ids) with a champion switch in the
middle (a second version, trained during set-up, promoted with --force at 30 s): errors (target
0), p50/p99, the resident memory of every server process at the start and the end, and how long
answers of both versions were given at once (the workers switch together).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

KEY = "benchmark-key-0123456789"
MAX_SECONDS = 20.0


def _connection(base: str) -> http.client.HTTPConnection:
    host, port = base.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)


def _post(conn: http.client.HTTPConnection, path: str, body: dict) -> dict:
    payload = json.dumps(body)
    conn.request("POST", path, payload, {"Content-Type": "application/json",
                                         "Authorization": f"Bearer {KEY}"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {data[:200]!r}")
    return json.loads(data)


def latencies(base: str, bodies: list[dict], n: int) -> np.ndarray:
    """Sequential requests over one keep-alive connection (concurrency 1), bounded."""
    conn = _connection(base)
    for body in bodies[:20]:  # warm-up
        _post(conn, "/score", body)
    out = []
    deadline = time.monotonic() + MAX_SECONDS
    for i in range(n):
        started = time.perf_counter()
        _post(conn, "/score", bodies[i % len(bodies)])
        out.append(time.perf_counter() - started)
        if time.monotonic() > deadline:
            break
    conn.close()
    return np.array(out) * 1000


def _worker(base: str, bodies: list[dict], seconds: float, queue) -> None:
    conn = _connection(base)
    done = customers = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = bodies[done % len(bodies)]
        answer = _post(conn, "/score", body)
        customers += len(answer["results"])
        done += 1
    queue.put(customers)


def throughput(base: str, bodies: list[dict], concurrency: int = 8,
               seconds: float = 10.0) -> float:
    """Customers per second with `concurrency` client processes, each keep-alive."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(base, bodies, seconds, queue))
               for _ in range(concurrency)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    total = sum(queue.get() for _ in workers)
    for w in workers:
        w.join()
    return total / (time.perf_counter() - started)


def _load_worker(base: str, bodies: list[dict], seconds: float, queue) -> None:
    """One client of the load: (time, status, version, latency ms) per request."""
    conn = _connection(base)
    out = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        body = json.dumps(bodies[i % len(bodies)])
        i += 1
        started = time.perf_counter()
        try:
            conn.request("POST", "/score", body, {"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {KEY}"})
            response = conn.getresponse()
            data = response.read()
            version = json.loads(data)["model"]["version"] if response.status == 200 else None
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = _connection(base)
            status, version = 0, None
        out.append((time.time(), status, version, (time.perf_counter() - started) * 1000))
    queue.put(out)


def server_rss_mib(process) -> float:
    """Resident memory of the server: the arbiter and its children (the workers)."""
    def rss(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return 0
        return 0

    pids = {process.pid}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == process.pid:
                pids.add(int(entry.name))
    return sum(rss(p) for p in pids) / 1024


def load_with_switch(base: str, process, bodies: list[dict], project: Path, version: str,
                     seconds: float = 60.0, concurrency: int = 8) -> dict:
    """`concurrency` clients for `seconds`; the champion alias moves to `version` halfway."""
    import mlflow
    from mlflow import MlflowClient

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    clients = [ctx.Process(target=_load_worker, args=(base, bodies, seconds, queue))
               for _ in range(concurrency)]
    rss_start = server_rss_mib(process)
    for c in clients:
        c.start()
    time.sleep(seconds / 2)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    switched_at = time.time()
    MlflowClient().set_registered_model_alias("churn-risk", "champion", version)
    records = [r for _ in clients for r in queue.get()]
    for c in clients:
        c.join()
    rss_end = server_rss_mib(process)
    ok = [r for r in records if r[1] == 200]
    new = [r[0] for r in ok if r[2] == version]
    old = [r[0] for r in ok if r[2] != version]
    overlap = max(0.0, max(old) - min(new)) if new and old else float("nan")
    latency = np.array([r[3] for r in ok])
    return {"requests": len(records), "errors": len(records) - len(ok),
            "p50": float(np.percentile(latency, 50)), "p99": float(np.percentile(latency, 99)),
            "rss_start": rss_start, "rss_end": rss_end, "overlap": overlap,
            "switch_seconds": (min(new) - switched_at) if new else float("nan")}


def channel_cost(base: str, ids: list, repeats: int = 5) -> tuple[float, float]:
    """ms per customer of 1,000 ids with and without `channel=contact_center`."""
    conn = _connection(base)
    batch = (ids * (1000 // len(ids) + 1))[:1000]
    out = []
    for channel in (None, "contact_center"):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            _post(conn, "/score", {"customer_ids": batch, "top_k": 3, "channel": channel})
            times.append(time.perf_counter() - started)
        out.append(min(times) * 1000 / len(batch))
    conn.close()
    return out[0], out[1]


def set_up(folder: Path, project: Path, customers: int) -> None:
    from churn_risk.demo import write_demo
    from churn_risk.jobs.common import prepared
    from churn_risk.jobs.train import run as train
    from churn_risk.training.evaluate import HoldoutEvaluator
    from churn_risk.training.registry import promote

    if not (folder / "customers.parquet").exists():
        write_demo(folder, customers=customers, months=36, seed=42)
    train(folder, project_dir=project)
    judge = HoldoutEvaluator(prepared(folder))
    promote(judge, target_of=judge.target_of, begin=judge.begin)
    train(folder, project_dir=project)  # version 2: the champion the load switches to


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    console = Console(width=120)

    from churn_risk.serving import launch
    from churn_risk.serving.scorer import Scorer

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        folder = Path(".bench-data") / f"demo-{args.customers}x36"
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        console.print("set-up: demo data, training and promotion (not timed)")
        set_up(folder, project, args.customers)

        # The floor: the same work in-process.
        scorer = Scorer(folder)
        state = scorer.state
        ids = state.ids
        rng = np.random.default_rng(0)
        sample = [ids[i] for i in rng.integers(0, len(ids), 5000)]
        started = time.perf_counter()
        for customer in sample:
            state.score_ids([customer], top_k=5)
        lookup_ms = (time.perf_counter() - started) * 1000 / len(sample)
        what_if = [{"customer_id": c, "tickets_open": 2.0} for c in sample[:300]]
        for record in what_if[:20]:
            state.score_records([record], top_k=5)
        times = []
        for record in what_if:
            t = time.perf_counter()
            state.score_records([record], top_k=5)
            times.append((time.perf_counter() - t) * 1000)
        what_if_ms = float(np.percentile(times, 99))
        batch_floor = 100 / (lookup_ms * 100 / 1000)  # customers/s of 100-customer lookups

        env = launch.server_env(folder, project_dir=project, keys=KEY)
        process, base = launch.start(env)
        try:
            launch.wait_ready(base, process, timeout=180)
            by_id = latencies(base, [{"customer_ids": [c], "top_k": 5} for c in sample],
                              args.requests)
            inline = latencies(base, [{"records": [r], "top_k": 5} for r in what_if],
                               min(args.requests, 1000))
            single = throughput(base, [{"customer_ids": [c], "top_k": 5} for c in sample])
            batches = [{"customer_ids": sample[i:i + 100], "top_k": 5}
                       for i in range(0, 2000, 100)]
            hundred = throughput(base, batches)
            plain, with_view = channel_cost(base, sample[:500])
            load = load_with_switch(base, process,
                                    [{"customer_ids": sample[i:i + 10], "top_k": 3}
                                     for i in range(0, 2000, 10)], project, "2",
                                    args.load_seconds)
        finally:
            launch.stop(process)

    p50, p99 = np.percentile(by_id, [50, 99])
    q50, q99 = np.percentile(inline, [50, 99])
    table = Table(title=f"Serving: BentoML on 127.0.0.1, {len(ids):,} customers in the snapshot")
    for column in ("measure", "served", "in-process floor", "ratio", "target", ""):
        table.add_column(column, justify="right")

    def row(name, served, floor, target, ok):
        ratio = f"{served / floor:.1f}x" if floor else "-"
        table.add_row(name, served_fmt(served, name), served_fmt(floor, name) if floor else "-",
                      ratio, target, "met" if ok else "[red]missed[/red]")

    def served_fmt(value, name):
        return f"{value:,.0f}/s" if "/s" in name else f"{value:.2f} ms"

    row("by id, 1 customer, p50", p50, lookup_ms, "<= 5 ms", p50 <= 5)
    row("by id, 1 customer, p99", p99, lookup_ms, "<= 20 ms", p99 <= 20)
    row("what-if, 1 record, p50", q50, what_if_ms, "-", True)
    row("what-if, 1 record, p99", q99, what_if_ms, f"<= {1.5 * what_if_ms + 10:.1f} ms",
        q99 <= 1.5 * what_if_ms + 10)
    row("by id, batches of 1, customers/s", single, 1000 / lookup_ms, "-", True)
    row("by id, batches of 100, customers/s", hundred, batch_floor,
        f">= {batch_floor / 2:,.0f}/s", hundred >= batch_floor / 2)
    view = with_view - plain
    table.add_row("channel view, ms per customer", f"{view:.3f} ms", f"{plain:.3f} ms (none)",
                  "-", "<= 0.2 ms", "met" if view <= 0.2 else "[red]missed[/red]")
    console.print(table)
    console.print(f"{len(by_id)} + {len(inline)} sequential requests; throughput: 8 client "
                  f"processes x {10:.0f} s; max single latency {by_id.max():.1f} ms")
    switch = Table(title=f"{args.load_seconds:.0f} s at concurrency 8 (10 ids per request), "
                         "champion switched to version 2 halfway")
    for column in ("requests", "errors", "p50", "p99", "RSS start", "RSS end",
                   "first v2 answer after the switch", "both versions answered for"):
        switch.add_column(column, justify="right")
    switch.add_row(f"{load['requests']:,}", f"{load['errors']}", f"{load['p50']:.1f} ms",
                   f"{load['p99']:.1f} ms", f"{load['rss_start']:,.0f} MiB",
                   f"{load['rss_end']:,.0f} MiB", f"{load['switch_seconds']:.1f} s",
                   f"{load['overlap']:.2f} s")
    console.print(switch)
    return 0 if load["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
