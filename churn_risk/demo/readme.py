"""The ground-truth README (`templates/README.md`), rendered from the coefficient objects.

Every number in the README comes from the code: the template reads the coefficients the
generator uses (`coefficients.py`), values derived from them (mean prices, the expected share
kept after discounts) and the generated data (realised rates, the campaigns' effects).
"""

from __future__ import annotations

import calendar
import functools
import math
from collections.abc import Sequence
from importlib import resources

import jinja2

from churn_risk.demo.catalog import (
    SEASON,
    mean_accessory_price,
    mean_hardware_price,
    mean_kept_share,
)
from churn_risk.demo.coefficients import (
    ACQUISITION_CHANNELS,
    ADOPTION_FAMILIES,
    CAMPAIGNS,
    DOMINANT_DRIVERS,
    DRIFT,
    INPUTS,
    LATENT,
    MONTH_DAYS,
    POPULATION,
    PURCHASES,
    SEGMENTS,
    SURVEYS,
    AdoptionCoefficients,
    HazardCoefficients,
)
from churn_risk.demo.simulation import DemoData

TEMPLATE = "templates/README.md"

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve")
_FRACTIONS = {0.5: "half", 0.25: "a quarter of"}


def _words(n: int) -> str:
    """Small counts in words, as prose has them ("three months")."""
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def _fraction(x: float) -> str:
    return _FRACTIONS.get(x, f"{x:g} of")


def _pairs(names: Sequence[str], values: Sequence[float]) -> str:
    """``name +0.00, name -0.25, ...``."""
    return ", ".join(f"{n} {v:+.2f}" for n, v in zip(names, values, strict=True))


def _split(share: float) -> str:
    """A share as a percentage split: 0.8 -> ``80/20``."""
    return f"{round(100 * share)}/{round(100 * (1 - share))}"


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        autoescape=False,  # Markdown, not HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        fixed=lambda x, digits: f"{x:.{digits}f}",
        signed=lambda x: f"{x:+.2f}",
        g=lambda x: f"{x:g}",
        slashed=lambda xs: "/".join(f"{x:g}" for x in xs),
        words=_words,
        fraction=_fraction,
        pairs=_pairs,
        split=_split,
    )
    text = resources.files("churn_risk.demo").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return env.from_string(text)


def readme_context(
    data: DemoData, hazard: HazardCoefficients, adoption: AdoptionCoefficients
) -> dict[str, object]:
    """What the template is rendered from (besides the call's arguments)."""
    churn = data.truth["churn"]
    empty = len(churn) == 0
    return {
        "c": hazard,
        "a": adoption,
        "inputs": INPUTS,
        "latent": LATENT,
        "population": POPULATION,
        "purchases": PURCHASES,
        "surveys": SURVEYS,
        "campaigns": CAMPAIGNS,
        "segments": SEGMENTS,
        "acquisition_channels": ACQUISITION_CHANNELS,
        "adoption_families": ADOPTION_FAMILIES,
        "dominant_drivers": DOMINANT_DRIVERS,
        "segment_offsets": list(zip(SEGMENTS, adoption.segment, strict=True)),
        "window_days": int(round(INPUTS.window_months * MONTH_DAYS, -1)),
        "season": ", ".join(f"{calendar.month_abbr[k]} {v:g}" for k, v in SEASON.items()),
        "accessory_price": mean_accessory_price(),
        "hardware_price": mean_hardware_price(),
        "kept": mean_kept_share(),
        "mean_hazard": math.nan if empty else float(churn["hazard"].mean()),
        "monthly_churn": math.nan if empty else float(churn["churned_in_month"].mean()),
        "campaign_effects": list(data.truth["campaign_effects"].itertuples()),
        "drift": DRIFT,
        "drifts": list(data.truth["drifts"].itertuples()) if "drifts" in data.truth else [],
    }


def truth_readme(
    data: DemoData,
    *,
    customers: int,
    months: int,
    seed: int,
    start: str,
    hazard: HazardCoefficients | None = None,
    adoption: AdoptionCoefficients | None = None,
) -> str:
    """The ground-truth README: the mechanism with its coefficients and what each column means."""
    hazard = hazard or HazardCoefficients()
    adoption = adoption or AdoptionCoefficients()
    context = readme_context(data, hazard, adoption)
    return _template().render(
        customers=customers, months=months, seed=seed, start=start, **context
    )
