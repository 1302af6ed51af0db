"""One retention budget spent three ways, judged by the demo generator's ground truth.

The worklist (expected profit of each customer's next-best action), the highest churn
probabilities first, and random order each spend the same budget on the newest test snapshot of
the README's default demo data; a contacted customer keeps, in expectation, true churn
probability x true lifetime value x the action's success rate.

    .venv/bin/python benchmarks/worklist.py [--customers 20000] [--months 36] [--seed 42]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from churn_risk.demo import write_demo
from churn_risk.serving.worklist import compare_targeting
from churn_risk.training.config import TrainConfig
from churn_risk.training.evaluate import true_churn_and_value
from churn_risk.training.train import build_training_data, fit_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--budgets", type=float, nargs="+", default=[1_000, 5_000, 20_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        write_demo(folder, args.customers, args.months, args.seed)
        cfg = TrainConfig()
        data = build_training_data(folder, cfg)
        bundle, split, _, _ = fit_bundle(data.frame, data.specs, cfg, data.target)
        test = split.test.reset_index(drop=True)
        scored = pd.concat([test[["customer_id"]], bundle.score(test)], axis=1)
        p_true, ltv_true = true_churn_and_value(folder, bundle, test)
    table = Table(title=f"Budget spent three ways on {len(test):,} customers "
                        f"({test['as_of'].iloc[0]:%Y-%m-%d}), value kept by the ground truth")
    for column in ("budget", "strategy", "customers", "spent", "value retained", "net",
                   "× highest probability"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for budget in args.budgets:
        result = compare_targeting(bundle, scored, p_true, ltv_true, budget)
        reference = result.loc[result["strategy"] == "highest churn probability",
                               "value_retained"].iloc[0]
        for r in result.itertuples(index=False):
            table.add_row(f"{budget:,.0f}", r.strategy, f"{r.customers:,}", f"{r.spent:,.0f}",
                          f"{r.value_retained:,.0f}", f"{r.net:,.0f}",
                          f"{r.value_retained / reference:.2f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
