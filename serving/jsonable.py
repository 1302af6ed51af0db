"""The one conversion of a scalar from the scorer's arrays and frames to a JSON value."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd


def plain(value):
    """A JSON-ready scalar: missing (None, NaN, NA, NaT) as None, numbers as int or float,
    booleans as bool, dates as YYYY-MM-DD, text as text."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, pd.Timestamp | np.datetime64 | dt.date):
        return f"{pd.Timestamp(value):%Y-%m-%d}"
    if isinstance(value, np.generic):
        return value.item()
    return value
