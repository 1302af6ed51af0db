"""Contract fuzzing at scale: schemathesis against the real server's own schema.

    .venv/bin/python benchmarks/contract.py [--max-examples 300] [--customers 2000]

Set-up (not counted): demo data, a training run and a promotion in a temporary project, the
server on a free loopback port with an API key. Then `st run` with every check, every phase
(examples, coverage, fuzzing, stateful) and `--max-examples` cases per operation, with the
same configuration as the CI test (`tests/schemathesis.toml`). Prints schemathesis's summary and
a table: cases generated, failures, errors, seconds. Target: >= 1,000 cases, 0 failures, 0 errors.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

KEY = "contract-benchmark-key-0123"
CONFIG = Path(__file__).resolve().parents[1] / "tests" / "schemathesis.toml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=300)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    console = Console(width=120)

    from churn_risk.demo import write_demo
    from churn_risk.jobs.common import prepared
    from churn_risk.jobs.train import run as train
    from churn_risk.serving import launch
    from churn_risk.training.config import SearchSpace, TrainConfig
    from churn_risk.training.evaluate import HoldoutEvaluator
    from churn_risk.training.registry import promote

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        data = project / "data"
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        console.print("set-up: demo data, training and promotion (not timed)")
        write_demo(data, customers=args.customers, months=24, seed=3)
        train(data, TrainConfig(search=SearchSpace(max_depth=(3,), num_boost_round=200)),
              project_dir=project)
        judge = HoldoutEvaluator(prepared(data))
        promote(judge, target_of=judge.target_of, begin=judge.begin)
        env = launch.server_env(data, project_dir=project, keys=KEY)
        env.pop("MLFLOW_TRACKING_URI", None)
        process, base = launch.start(env)
        try:
            launch.wait_ready(base, process, timeout=180)
            st = Path(sys.executable).with_name("st")
            started = time.perf_counter()
            done = subprocess.run(
                [str(st), "--config-file", str(CONFIG), "run", f"{base}/openapi.json",
                 "-H", f"Authorization: Bearer {KEY}", "--checks", "all",
                 "-n", str(args.max_examples), "--workers", "1", "--seed", str(args.seed),
                 "--no-color", "--generation-database", "none"],
                capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
                cwd=tmp)  # its caches go there, not into the repository
            seconds = time.perf_counter() - started
        finally:
            launch.stop(process)
    output = done.stdout + done.stderr
    summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-3000:]
    console.print(summary, markup=False, highlight=False)
    generated = re.search(r"(\d+) generated", output)
    failures = re.search(r"(\d+) failures?", summary)
    errors = re.search(r"(\d+) errors?", summary)
    cases = int(generated.group(1)) if generated else 0
    table = Table(title="Contract fuzzing (schemathesis, all checks, all phases)")
    for column in ("cases", "failures", "errors", "seconds", "target"):
        table.add_column(column, justify="right")
    n_fail = int(failures.group(1)) if failures else 0
    n_err = int(errors.group(1)) if errors else 0
    met = cases >= 1000 and n_fail == 0 and n_err == 0 and done.returncode == 0
    table.add_row(f"{cases:,}", str(n_fail), str(n_err), f"{seconds:.0f}",
                  ">= 1,000 cases, 0 failures: " + ("met" if met else "MISSED"))
    console.print(table)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
