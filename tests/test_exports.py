"""Exports a CRM can import: files others can read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from churn_risk.features.io import atomic_write, write_frame


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    before = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(before)


@pytest.mark.parametrize("umask_value, expected", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_get_the_mode_open_gives_not_a_private_one(tmp_path, umask, umask_value,
                                                                  expected):
    umask(umask_value)
    frame = pd.DataFrame({"customer_id": ["1"], "churn_probability": [0.2]})
    for name in ("scores.csv", "scores.parquet"):
        write_frame(frame, tmp_path / name)
        assert mode(tmp_path / name) == expected, name
    atomic_write(tmp_path / "report.html", "<!DOCTYPE html>")
    assert mode(tmp_path / "report.html") == expected
    write_frame(frame, tmp_path / "scores.csv")  # a replaced file too
    assert mode(tmp_path / "scores.csv") == expected
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
