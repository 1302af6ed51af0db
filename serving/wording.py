"""Numbers, amounts, percentages, counts, periods and names in words: the one place that says
them, for the page's filters (`page.py`), the sentences of the channel views (`views.py`), the
exports and the figures. No dependency on any of them, so all can import it."""

from __future__ import annotations

import math


def finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def number(x, missing: str = "—") -> str:
    """1,843 / 74 / 12.5 / 0.25."""
    if not finite(x):
        return missing
    if abs(x) >= 100 or float(x).is_integer():
        text = f"{x:,.0f}"
    elif abs(x) >= 10:
        text = f"{x:.1f}"
    else:
        text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "-0.0", "") else text


def tenure(days) -> str | None:
    """812 days -> "2 years 2 months"."""
    if not finite(days) or days < 0:
        return None
    if days < 60:
        return plural(round(days), "day")
    months = int(days / 30.4375)
    if months < 12:
        return f"{months} months"
    years, months = divmod(months, 12)
    return plural(years, "year") + (f" {plural(months, 'month')}" if months else "")


def plural(n, one: str, many: str | None = None) -> str:
    return f"{number(n)} {_noun(n, one, many)}"


def counted(n, one: str, many: str | None = None) -> str:
    """`plural` as said aloud: "two late deliveries", "no open tickets", "12 tickets"."""
    return f"{spelled(n)} {_noun(n, one, many)}"


def _noun(n, one: str, many: str | None) -> str:
    return one if n == 1 else many or one + "s"


NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten")


def spelled(n) -> str:
    """A small whole count in words (zero is "no"), any other number in figures: how an agent
    reads counts aloud without stumbling over "2.0"."""
    if finite(n) and float(n).is_integer() and 0 <= n < len(NUMBER_WORDS):
        return NUMBER_WORDS[int(n)]
    return number(n)


def period(days) -> str:
    """A window in days as people say it: 30 -> "month", 90 -> "three months", 365 -> "year",
    730 -> "two years", 45 -> "45 days"."""
    for length, one in ((365.25, "year"), (30.4375, "month")):
        n = round(days / length)
        if n >= 1 and abs(days - n * length) <= 0.03 * n * length:
            return one if n == 1 else counted(n, one)
    return plural(days, "day")


def human(name) -> str:
    """home_energy -> Home energy."""
    text = str(name).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def words(name) -> str:
    """contact_center -> contact center."""
    return str(name).replace("_", " ")


def feature_value(value, share: bool = False, scale: float | None = None) -> str:
    """A feature value as an account manager reads it: a survey score with its scale."""
    if value is None:
        return "not available"
    if isinstance(value, str):
        return value
    if share and 0.0 <= value <= 1.0:
        return f"{value * 100:.0f}%"
    if scale is not None:
        return f"{number(value)} out of {number(scale)}"
    return number(value)


BANDS = {"low": "Low risk", "medium": "Medium risk", "high": "High risk",
         "very_high": "Very high risk"}
CHANNEL_NAMES = {"sales": "Sales", "contact_center": "Contact center", "web": "Web",
                 "service": "Service", "campaign": "Campaign"}


def thousands(x) -> str:
    """A count or an amount to the unit: 12,345."""
    return f"{x:,.0f}" if finite(x) else "—"


def signed_count(x) -> str:
    """+123 / −45 / +0.4 / 0: leavers a driver adds or keeps (tenths below ten)."""
    if not finite(x):
        return "—"
    text = f"{abs(x):,.0f}" if abs(x) >= 10 else f"{abs(x):.1f}"
    if float(text.replace(",", "")) == 0:
        return "0"
    return f"+{text}" if x > 0 else f"−{text}"


def money(x, currency: str) -> str:
    """An amount in the model's currency (`ValueSettings.currency`), as the figures write it."""
    from churn_risk.models import portfolio

    return portfolio.money(x, currency) if finite(x) else "not available"


def pct(p, digits: int = 1) -> str:
    """A probability or share as a percentage: 23.1%, <0.1% for tiny ones."""
    if not finite(p):
        return "—"
    x = min(max(p, 0.0), 1.0) * 100
    if 0 < x < 10 ** -digits:
        return f"<{10 ** -digits:.{digits}f}%"
    return f"{x:.{digits}f}%"


def signed(x, digits: int = 2) -> str:
    """+0.85, −0.12 (a true minus sign), 0.00."""
    text = f"{abs(x):.{digits}f}"
    if float(text) == 0:
        return f"{0:.{digits}f}"
    return ("+" if x > 0 else "−") + text


def band_name(band) -> str:
    return BANDS.get(band) or (f"{human(band)} risk" if band else "Risk band unknown")


def channel_name(channel) -> str:
    return CHANNEL_NAMES.get(channel) or human(channel)
