"""Geometry of the page's charts: numbers in, coordinates and lengths out.

Each function takes page-model values (`pagemodel.py`) and returns frozen dataclasses of floats
(SVG user units, or percentages for bar widths) that the chart macros of
`templates/charts.html` draw. Nothing is formatted here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from churn_risk.models.bundle import sigmoid
from churn_risk.serving.pagemodel import (
    ContactMonth,
    Explanation,
    Factor,
    GroupChange,
    Product,
    Survey,
)

#: Contributions drawn as their own waterfall bar; the rest are summed into one "other" bar.
WATERFALL_BARS = 8
#: Driver groups listed in "why did risk change" (the largest changes; the rest are summed).
CHANGE_ROWS = 8

RAISES = "#dc2626"  # raises risk
LOWERS = "#2563eb"  # lowers risk
NEUTRAL = "#9ca3af"
UNCHANGED = "#6b7280"
CHANNEL_COLOURS = {"sales": "#6366f1", "contact_center": "#f59e0b", "web": "#10b981",
                   "service": "#0ea5e9", "campaign": "#ec4899"}
EXTRA_COLOURS = ("#84cc16", "#14b8a6", "#a855f7", "#f97316", "#64748b")
SATISFACTION_COLOUR = "#2563eb"
NPS_COLOUR = "#9333ea"




def nice_step(span: float, max_ticks: int) -> float:
    raw = max(span, 1e-9) / max(max_ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def _steps(lo: float, hi: float, step: float) -> list[float]:
    out, v = [], lo
    while v <= hi + 1e-9:
        out.append(v)
        v += step
    return out


# --------------------------------------------------------------------------------------------
# Waterfall: from the typical customer's score to this customer's
# --------------------------------------------------------------------------------------------

ROW_H = 46
BAR_H = ROW_H - 22


@dataclass(frozen=True)
class WaterfallRow:
    kind: str  # "start" | "bar" | "other" | "end"
    key: str  # the feature (data-bar), "other", or the marker's kind
    factor: Factor | None  # for a feature's bar
    top: float  # y of the row
    start: float  # log-odds
    end: float
    x: float  # left edge of the bar, or centre of the marker
    width: float
    colour: str
    connector_x: float | None  # the dashed line down to the next row

    @property
    def delta(self) -> float:
        return self.end - self.start

    @property
    def bar_y(self) -> float:
        return self.top + 11

    @property
    def label_y(self) -> float:
        return self.top + 20

    @property
    def sub_y(self) -> float:
        return self.top + 36

    @property
    def text_x(self) -> float:
        """Where the bar's number (or the marker's probability) is written."""
        if self.kind in ("start", "end"):
            return self.x + 9
        return self.x + self.width + 6 if self.delta >= 0 else self.x - 6

    @property
    def text_y(self) -> float:
        return self.bar_y + BAR_H / 2 + (5 if self.kind in ("start", "end") else 4)

    @property
    def connector_y(self) -> tuple[float, float]:
        return self.bar_y + BAR_H, self.top + ROW_H + 11

    @property
    def marker(self) -> tuple[float, float, float, float]:
        """(x, y, width, height) of a start or end marker."""
        return self.x - 2.5, self.bar_y - 3, 5.0, BAR_H + 6


@dataclass(frozen=True)
class Tick:
    x: float
    value: float  # log-odds
    probability: float  # sigmoid(value)
    zero: bool


@dataclass(frozen=True)
class Waterfall:
    width: float
    height: float
    x0: float
    x1: float
    axis_y: float
    rows: tuple[WaterfallRow, ...]
    ticks: tuple[Tick, ...]
    zebra: tuple[float, ...]  # y of the shaded rows
    n_shown: int
    n_rest: int  # factors summed into "other"
    p_base: float  # the typical customer's chance before calibration
    p_raw: float  # this customer's chance before calibration
    p_final: float  # calibrated

    row_h = ROW_H
    bar_h = BAR_H

    @property
    def top(self) -> float:
        return self.rows[0].top

    @property
    def label_x(self) -> float:
        """Right end of the axis captions."""
        return self.x0 - 10

    @property
    def tick_y(self) -> tuple[float, float]:
        """Baselines of the two lines of axis labels (log-odds, then probability)."""
        return self.axis_y + 16, self.axis_y + 30


def waterfall(explanation: Explanation, probability: float) -> Waterfall:
    """The `WATERFALL_BARS` strongest contributions as bars from the base value, the rest as
    one "other" bar closing the gap to the margin, between a start and an end marker."""
    factors = sorted(explanation.factors, key=lambda f: -abs(f.contribution))
    top, n_rest = factors[:WATERFALL_BARS], max(len(factors) - WATERFALL_BARS, 0)
    base, margin = explanation.base_value, explanation.margin
    # (kind, key, factor, start, end)
    steps: list[tuple[str, str, Factor | None, float, float]] = [
        ("start", "start", None, base, base)]
    running = base
    for f in top:
        steps.append(("bar", f.feature, f, running, running + f.contribution))
        running += f.contribution
    steps.append(("other", "other", None, running, margin))
    steps.append(("end", "end", None, margin, margin))

    points = [v for s in steps for v in s[3:]]
    lo, hi = min(points), max(points)
    span = max(hi - lo, 0.5)
    lo, hi = lo - span * 0.16, hi + span * 0.16
    width, x0, x1, first = 1000.0, 430.0, 980.0, 8.0
    axis_y = first + len(steps) * ROW_H + 6

    def x_of(v: float) -> float:
        return x0 + (v - lo) / (hi - lo) * (x1 - x0)

    rows = []
    for i, (kind, key, factor, start, end) in enumerate(steps):
        last = i == len(steps) - 1
        if kind in ("start", "end"):
            x, w, colour = x_of(start), 5.0, ""
        else:
            xa, xb = x_of(min(start, end)), x_of(max(start, end))
            x, w = xa, max(xb - xa, 2.0)
            colour = RAISES if end > start else LOWERS if end < start else NEUTRAL
        rows.append(WaterfallRow(kind, key, factor, first + i * ROW_H, start, end, x, w, colour,
                                 None if last else x_of(end)))
    step = nice_step(hi - lo, 7)
    ticks = tuple(Tick(x_of(t), round(t, 2), sigmoid(t), abs(t) < 1e-9)
                  for t in _steps(math.ceil(lo / step) * step, hi, step))
    return Waterfall(
        width=width, height=axis_y + 52, x0=x0, x1=x1, axis_y=axis_y, rows=tuple(rows),
        ticks=ticks, zebra=tuple(first + i * ROW_H for i in range(1, len(steps), 2)),
        n_shown=len(top), n_rest=n_rest, p_base=sigmoid(base), p_raw=sigmoid(margin),
        p_final=probability,
    )


# --------------------------------------------------------------------------------------------
# Why did risk change: one diverging bar per driver group
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeRow:
    group: str  # the driver group, or "" for the row summing the rest
    others: int  # groups summed in this row (0: a single group)
    contribution_from: float
    contribution_to: float
    change: float
    width: float  # % of the half bar: |change| / the largest |change|
    colour: str


def change_rows(groups: Sequence[GroupChange]) -> tuple[ChangeRow, ...]:
    """The `CHANGE_ROWS` largest changes, then one row summing the rest."""
    ordered = sorted(groups, key=lambda g: -abs(g.change))
    shown, rest = ordered[:CHANGE_ROWS], ordered[CHANGE_ROWS:]
    cells = [(g.group, 0, g.contribution_from, g.contribution_to, g.change) for g in shown]
    if rest:
        cells.append(("", len(rest), sum(g.contribution_from for g in rest),
                      sum(g.contribution_to for g in rest), sum(g.change for g in rest)))
    largest = max((abs(c[4]) for c in cells), default=0.0) or 1.0
    return tuple(
        ChangeRow(group, others, a, b, delta, abs(delta) / largest * 100,
                  UNCHANGED if abs(delta) < 0.005 else RAISES if delta > 0 else LOWERS)
        for group, others, a, b, delta in cells
    )


# --------------------------------------------------------------------------------------------
# Next products: horizontal bars scaled to the most likely family
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductBar:
    family: str
    propensity: float  # in [0, 1]
    width: float  # % of the track


def product_bars(products: Sequence[Product]) -> tuple[ProductBar, ...]:
    clipped = [(p.family, min(max(p.propensity, 0.0), 1.0)) for p in products]
    top = max((p for _, p in clipped), default=0.0) or 1.0
    return tuple(ProductBar(family, p, p / top * 100) for family, p in clipped)


# --------------------------------------------------------------------------------------------
# Small history charts: contacts per month (stacked bars), satisfaction over time (lines)
# --------------------------------------------------------------------------------------------

SMALL_W, SMALL_H, TOP_PAD, BOTTOM_PAD, LEFT_PAD = 520.0, 230.0, 14.0, 44.0, 34.0


@dataclass(frozen=True)
class GridLine:
    y: float
    value: float

    @property
    def label_y(self) -> float:
        return self.y + 4


@dataclass(frozen=True)
class Frame:
    """The plot area of a small chart and its horizontal grid."""

    left: float
    right: float  # x where the grid lines end
    grid: tuple[GridLine, ...]

    width = SMALL_W
    height = SMALL_H
    label_y = SMALL_H - BOTTOM_PAD + 16  # first line under the plot
    year_y = SMALL_H - BOTTOM_PAD + 30  # second line

    @property
    def tick_x(self) -> float:
        """Right end of the grid's value labels."""
        return self.left - 6


@dataclass(frozen=True)
class Segment:
    channel: str
    value: int
    x: float
    y: float
    width: float
    height: float
    colour: str


@dataclass(frozen=True)
class Column:
    month: date
    cx: float
    total: int
    total_y: float
    show_year: bool  # the first month of a year on the chart
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class StackedBars:
    frame: Frame
    columns: tuple[Column, ...]
    legend: tuple[tuple[str, str], ...]  # (channel, colour) of the channels with contacts
    total: int


def contacts_chart(months: Sequence[ContactMonth]) -> StackedBars | None:
    """Contacts per month stacked by channel; None when there is none."""
    months = sorted(months, key=lambda m: m.month)
    totals = [m.total for m in months]
    if not any(totals):
        return None
    channels = list(CHANNEL_COLOURS)
    for m in months:
        channels += [c for c in m.counts if c not in channels]
    colours = {c: CHANNEL_COLOURS.get(c) or EXTRA_COLOURS[i % len(EXTRA_COLOURS)]
               for i, c in enumerate(channels)}
    left, right = LEFT_PAD, SMALL_W - 8
    plot_w, plot_h = right - left, SMALL_H - TOP_PAD - BOTTOM_PAD
    step = max(nice_step(max(totals), 4), 1.0)
    y_max = math.ceil(max(totals) / step) * step
    band = plot_w / len(months)
    bar_w = min(band * 0.64, 34)
    bottom = TOP_PAD + plot_h
    columns, previous_year = [], None
    for i, m in enumerate(months):
        cx, y, segments = left + band * (i + 0.5), bottom, []
        for c in channels:
            value = max(m.counts.get(c, 0), 0)
            if value:
                h = value / y_max * plot_h
                y -= h
                segments.append(Segment(c, value, cx - bar_w / 2, y, bar_w, h, colours[c]))
        columns.append(Column(m.month, cx, m.total, y - 4, m.month.year != previous_year,
                              tuple(segments)))
        previous_year = m.month.year
    grid = tuple(GridLine(bottom - v / y_max * plot_h, v) for v in _steps(0.0, y_max, step))
    used = tuple((c, colours[c]) for c in channels if any(m.counts.get(c, 0) for m in months))
    return StackedBars(Frame(left, right, grid), tuple(columns), used, sum(totals))


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    day: date
    value: float


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    dashed: bool
    points: tuple[Point, ...]


@dataclass(frozen=True)
class LineChart:
    frame: Frame
    date_ticks: tuple[tuple[float, date], ...]
    with_day: bool  # tick labels name the day ("3 Mar") or only the month ("Mar")
    with_year: bool  # ... and the year, when the dates span more than one
    year_x: float | None  # where the single year is written under the ticks
    series: tuple[Series, ...]


def survey_chart(surveys: Sequence[Survey]) -> LineChart | None:
    """Satisfaction and NPS over time; None without a survey answer."""
    points = sorted(surveys, key=lambda s: s.day)
    values = [v for s in points for v in (s.satisfaction, s.nps) if v is not None]
    if not values:
        return None
    if min(values) >= 0 and max(values) <= 10:
        y_lo, y_hi, step = 0.0, 10.0, 2.0
    else:
        step = nice_step(max(values) - min(values) or 1.0, 5)
        y_lo, y_hi = math.floor(min(values) / step) * step, math.ceil(max(values) / step) * step
        y_hi = y_hi if y_hi > y_lo else y_lo + step
    d_lo, d_hi = points[0].day, points[-1].day
    days = (d_hi - d_lo).days
    left, right = LEFT_PAD, SMALL_W - 16
    plot_w, plot_h = right - left, SMALL_H - TOP_PAD - BOTTOM_PAD

    def x_of(d: date) -> float:
        return left + plot_w / 2 if days == 0 else left + 10 + (d - d_lo).days / days * (
            plot_w - 20)

    def y_of(v: float) -> float:
        return TOP_PAD + plot_h - (v - y_lo) / (y_hi - y_lo) * plot_h

    few = len(points) <= 6
    ticks = (sorted({s.day for s in points}) if few else
             sorted({d_lo + (d_hi - d_lo) * i / 4 for i in range(5)}))
    with_year = not (d_lo.year == d_hi.year and len(ticks) > 1)
    series = []
    for name, colour, dashed, attr in (("Satisfaction", SATISFACTION_COLOUR, False,
                                        "satisfaction"), ("NPS", NPS_COLOUR, True, "nps")):
        pts = tuple(Point(x_of(s.day), y_of(v), s.day, v) for s in points
                    if (v := getattr(s, attr)) is not None)
        if pts:
            series.append(Series(name, colour, dashed, pts))
    grid = tuple(GridLine(y_of(v), v) for v in _steps(y_lo, y_hi, step))
    return LineChart(Frame(left, right, grid), tuple((x_of(d), d) for d in ticks), few,
                     with_year, None if with_year else x_of(ticks[0]), tuple(series))
