"""Dates given by people (CLI options, API fields, config): ISO 8601 only, never guessed.

`01/06/2025` is 1 June in most of the world and 6 January in the United States; a product that
guesses gets one of them silently wrong. Everything a person types is therefore read as ISO 8601
(`2025-06-01`, optionally with a time `2025-06-01T14:05:00` or `2025-06-01 14:05`, and an offset
`+02:00` / `Z`), and anything else is refused with a message showing the ISO forms of the possible
readings. CRM files in another format say so in their mapping file (`features/mapping.py`).
"""

from __future__ import annotations

import re

import pandas as pd

from churn_risk.errors import UsageError

_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)(?P<offset>Z|[+-]\d{2}:?\d{2})?)?"
)
_NUMERIC = re.compile(r"(\d{1,4})[./-](\d{1,2})[./-](\d{1,4})")


class DateError(UsageError):
    """A date that is not ISO 8601 (or not a real calendar date)."""


def parse_date(value: object, what: str = "date") -> pd.Timestamp:
    """`value` as a tz-naive timestamp (an offset is converted to UTC). Raises `DateError`
    naming `what` (an option or field) and showing the ISO form to use."""
    if isinstance(value, pd.Timestamp):
        return _naive(value)
    text = str(value).strip() if value is not None else ""
    match = _ISO.fullmatch(text)
    if match is None:
        raise DateError(
            f"{what}: {text!r} is not a date in ISO 8601 form (YYYY-MM-DD){_hint(text)}")
    try:
        ts = pd.Timestamp(text)
    except (ValueError, OverflowError):
        raise DateError(f"{what}: {text!r} is not a calendar date (YYYY-MM-DD)") from None
    return _naive(ts)


def parse_day(value: object, what: str = "date") -> pd.Timestamp:
    """`parse_date`, at midnight: the as-of dates of features and scores are days."""
    return parse_date(value, what).normalize()


def moment_or_none(value: object) -> pd.Timestamp | None:
    """A time sent in ISO 8601 or read back from a store, as a tz-naive UTC timestamp; None
    when it is missing or not such a time (the caller says what that means)."""
    if value is None or value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    if not isinstance(value, str):
        try:
            return _naive(pd.Timestamp(value))
        except (TypeError, ValueError):
            return None
    try:
        return parse_date(value)
    except DateError:
        return None


def _naive(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _hint(text: str) -> str:
    """For day/month forms, the ISO spelling of each possible reading."""
    m = _NUMERIC.fullmatch(text)
    if m is None:
        return ""
    a, b, c = (int(x) for x in m.groups())
    if len(m.group(1)) == 4:  # 2025/06/01: year first, only the separator is wrong
        return f"; write {a:04d}-{b:02d}-{c:02d}"
    year = c if c >= 100 else 2000 + c
    readings = []
    for day, month, name in ((a, b, "day first"), (b, a, "month first")):
        if 1 <= month <= 12 and 1 <= day <= 31:
            readings.append(f"{year:04d}-{month:02d}-{day:02d} ({name})")
    if len(readings) == 2 and readings[0][:10] != readings[1][:10]:
        return "; it is ambiguous: write " + " or ".join(readings)
    return f"; write {readings[0][:10]}" if readings else ""


def as_of_text(as_of: pd.Timestamp) -> str:
    """A date for a day's snapshot; the time too for a live one (features as of a moment)."""
    if as_of == as_of.normalize():
        return f"{as_of:%Y-%m-%d}"
    return f"{as_of:%Y-%m-%dT%H:%M:%S}"
