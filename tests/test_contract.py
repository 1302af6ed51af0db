"""Contract fuzzing: schemathesis against the live service's own schema, every operation, every
check (no server errors, response schemas, status codes, content types, headers, negative data
rejected, positive data accepted, methods, auth). `benchmarks/contract.py` runs more cases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve import running

pytestmark = pytest.mark.slow

KEY = "contract-key-0123456789"
CONFIG = Path(__file__).with_name("schemathesis.toml")


def run_schemathesis(base: str, max_examples: int, workdir: Path, seed: int = 7
                     ) -> tuple[int, str]:
    """(exit code, output) of `st run` on the server's schema: all checks, one worker (the
    coverage phase trips a CPython 3.11.7 parser bug in worker threads)."""
    st = Path(sys.executable).with_name("st")
    done = subprocess.run(
        [str(st), "--config-file", str(CONFIG), "run", f"{base}/openapi.json",
         "-H", f"Authorization: Bearer {KEY}", "--checks", "all", "-n", str(max_examples),
         "--workers", "1", "--seed", str(seed), "--no-color", "--generation-database", "none"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "NO_COLOR": "1"},
        cwd=workdir)  # its caches go there, not into the repository
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def served(champion_project, demo_folder):
    with running(demo_folder, champion_project, KEY) as base:
        yield base


def test_schemathesis_finds_no_failure(served, tmp_path):
    code, output = run_schemathesis(served, max_examples=15, workdir=tmp_path)
    generated = [line for line in output.splitlines() if " generated" in line]
    assert code == 0, output[-6000:]
    assert generated and "passed" in generated[-1], output[-3000:]
    count = int(generated[-1].split()[0])
    assert count >= 300, generated  # a few hundred cases at least
