"""How fast the portfolio home and the customer lists answer from a large store.

Fills a SQLite store's `served_scores` with N synthetic customers (the summary columns the
pages read, and a small payload), then times what each page asks: the matrix and bands (GROUP
BY), the first page of the whole list and of a quadrant, a segment-limited page (an account
manager), an id prefix search, and a worklist's candidates, against the floor of reading one
customer by primary key in the same run.

    .venv/bin/python benchmarks/home.py [--customers 800000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table


def fill(store, n: int, rng: np.random.Generator) -> None:
    from churn_risk.models.portfolio import QUADRANTS

    as_of = pd.Timestamp("2026-12-01")
    p = rng.beta(1, 12, n)
    bands = np.select([p >= 0.3, p >= 0.15, p >= 0.05], ["very_high", "high", "medium"], "low")
    var = p * rng.gamma(2.0, 400.0, n)
    quadrant = np.asarray(QUADRANTS)[rng.integers(0, 4, n)]
    segment = np.asarray(["consumer", "small_business", "enterprise"])[rng.integers(0, 3, n)]
    region = np.asarray(["north", "south", "east", "west", "central"])[rng.integers(0, 5, n)]
    action = np.asarray(["none", "service_recovery", "loyalty_discount"])[rng.integers(0, 3, n)]
    for start in range(0, n, 50_000):
        rows = [(str(100_000 + i), as_of.to_pydatetime(), f'{{"id": {i}}}', float(p[i]),
                 str(bands[i]), float(var[i]), str(quadrant[i]), str(action[i]),
                 str(segment[i]), str(region[i]), f"Customer {i}")
                for i in range(start, min(n, start + 50_000))]
        store.save_scores("churn-risk", "1", rows)
    candidates = pd.DataFrame({
        "channel": "contact_center", "customer_id": [str(100_000 + i) for i in range(5_000)],
        "recommended_action": "service_recovery", "action_channel": "contact_center",
        "action_cost": 20.0, "expected_profit": rng.gamma(2.0, 50.0, 5_000),
        "churn_probability": p[:5_000], "risk_band": bands[:5_000], "value_at_risk": var[:5_000],
        "segment": segment[:5_000], "region": region[:5_000]})
    store.save_worklist_candidates("churn-risk", "1", candidates)


def timed(fn, repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=800_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from churn_risk.features.store import Store
    from churn_risk.serving.home import CUBE, StoreRows

    console = Console()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'store.db'}"
        with Store(url) as store:
            started = time.perf_counter()
            fill(store, args.customers, np.random.default_rng(0))
            console.print(f"{args.customers:,} served customers written in "
                          f"{time.perf_counter() - started:.0f} s")
            rows = StoreRows(store, "churn-risk", "1")
            manager = {"segment": {"consumer"}}
            cases = [
                ("floor: one customer by primary key",
                 lambda: store.read_scores("churn-risk", "1", ["100123"])),
                ("home: every count, one GROUP BY (once a minute a worker)",
                 lambda: store.served_counts("churn-risk", "1", CUBE)),
                ("home: customers per quadrant (from the kept counts)",
                 lambda: rows.counts("quadrant", {})),
                ("home: top 10 by value at risk", lambda: rows.listing({}, None, 10, 0)),
                ("list: a quadrant, first page", lambda: rows.listing(
                    {"quadrant": {"grow"}}, None, 50, 0)),
                ("list: a quadrant, page 100", lambda: rows.listing(
                    {"quadrant": {"grow"}}, None, 50, 4_950)),
                ("manager: quadrants of one segment (kept counts)",
                 lambda: rows.counts("quadrant", manager)),
                ("search: id prefix", lambda: rows.listing({}, "10012", 50, 0)),
                ("search: part of a name", lambda: rows.listing({}, "omer 4242", 50, 0)),
                ("search: exact id", lambda: rows.has("100123")),
                ("worklist: a channel's candidates", lambda: rows.candidates(
                    "contact_center", {})),
            ]
            table = Table(title=f"Home and lists on SQLite, {args.customers:,} customers "
                                f"(median of {args.repeat})")
            table.add_column("what a page asks")
            table.add_column("ms", justify="right")
            table.add_column("× floor", justify="right")
            floor = None
            for name, fn in cases:
                ms = timed(fn, args.repeat)
                floor = floor or ms
                table.add_row(name, f"{ms:,.1f}", f"{ms / floor:,.0f}")
            console.print(table)


if __name__ == "__main__":
    main()
