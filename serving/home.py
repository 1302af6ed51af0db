"""The portfolio home (`/`) and the customer lists (`/customers`): where an account manager or a
retention lead starts every morning, and how they find a customer without knowing an id.

Both read the served portfolio in aggregate and in lists, never every customer's payload:

- on a store, the summary columns of `served_scores` (`Store.served_counts`, `served_list`:
  one GROUP BY, one indexed page);
- on files, the same columns of the in-memory snapshot (`ScoringState.summary_rows`).

`Rows` is that one interface. What a person sees is limited to their portfolio (`people.
Principal.portfolio`: an account manager's segments and regions), in the counts as in the lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

import numpy as np
import pandas as pd

from churn_risk.features.store import SCORE_SUMMARY, search_terms
from churn_risk.models.portfolio import QUADRANT_LABELS, QUADRANTS
from churn_risk.serving.worklist import WorklistRules, channel_candidates, fill_worklist

#: Customers per page of a list, and on the home page's "most value at risk".
LIST_SIZE = 50
TOP = 10
#: The filters a list takes (query parameters), each a `SCORE_SUMMARY` column.
FILTERS = ("quadrant", "risk_band", "segment", "region", "recommended_action")


# --------------------------------------------------------------------------------------------
# The served portfolio, on a store or in memory
# --------------------------------------------------------------------------------------------


class Rows:
    """The served portfolio of one model version by its summary columns."""

    def counts(self, by: str, where: dict[str, set]) -> pd.DataFrame:
        """`by`, `customers`, `value_at_risk` per value of the column `by`."""
        raise NotImplementedError

    def listing(self, where: dict[str, set], query: str | None, limit: int,
                offset: int) -> tuple[pd.DataFrame, int]:
        """`customer_key` and the summary columns of the customers matching `query` (an id
        prefix or a part of a name: `store.search_terms`), the largest value at risk first;
        and how many match."""
        raise NotImplementedError

    def has(self, key: str) -> bool:
        """Whether this customer is served."""
        raise NotImplementedError

    def drivers(self) -> pd.DataFrame | None:
        """`driver_churn` of the portfolio (None: not known)."""
        raise NotImplementedError

    def candidates(self, channel: str, where: dict[str, set]) -> pd.DataFrame | None:
        """The channel's worklist candidates (`worklist.channel_candidates`), the most
        expected profit first (None: not known)."""
        raise NotImplementedError

    def contacted(self, customer_ids: list[str], days: int) -> set[str]:
        """Those of `customer_ids` contacted in the last `days` days (before today: the
        store's now, or the snapshot's day), by a campaign or, on a store, by an action a
        channel reported (`Store.contacted`): contact pressure for the worklists."""
        raise NotImplementedError


#: The columns the home page counts by: one GROUP BY over all of them answers every count.
CUBE = ("quadrant", "risk_band", "segment", "region")
#: How long a worker reuses a portfolio's counts it made itself (before the refresher's first).
COUNTS_SECONDS = 60.0
_cubes: dict[tuple, tuple[float, pd.DataFrame]] = {}


class StoreRows(Rows):
    def __init__(self, store, model_name: str, version: str):
        self.store, self.model_name, self.version = store, model_name, version

    def counts(self, by, where):
        if not set(where) <= set(CUBE):
            return self.store.served_counts(self.model_name, self.version, (by,), where)
        return _sums(self._cube(), by, where)

    def _cube(self) -> pd.DataFrame:
        """Customers and value at risk per combination of `CUBE`: as the service's refresher
        last recounted them (`recount`); before its first count, counted here (one scan of
        the index) and kept `COUNTS_SECONDS` per worker."""
        import time

        counted = self.store.portfolio_counts(self.model_name, self.version)
        if counted is not None:
            return counted
        key = (self.store.url, self.model_name, self.version)
        now = time.monotonic()
        kept = _cubes.get(key)
        if kept is None or now - kept[0] > COUNTS_SECONDS:
            kept = _cubes[key] = (now, self.store.served_counts(self.model_name, self.version,
                                                                CUBE))
        return kept[1]

    def contacted(self, customer_ids, days):
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        return self.store.contacted(customer_ids, now - pd.Timedelta(days=days), now)

    def listing(self, where, query, limit, offset):
        return self.store.served_list(self.model_name, self.version, where, query, limit,
                                      offset)

    def has(self, key):
        return bool(self.store.read_scores(self.model_name, self.version, [key]))

    def drivers(self):
        return self.store.portfolio_drivers(self.model_name, self.version)

    def candidates(self, channel, where):
        return self.store.worklist_candidates(self.model_name, self.version, channel, where)


def recount(store, model_name: str, version: str) -> None:
    """Count the served portfolio by `CUBE` into the store's `portfolio_counts` (the service's
    refresher, every `CHURN_GAUGE_SECONDS`): the home page reads a few hundred rows, never the
    whole portfolio."""
    store.save_portfolio_counts(model_name, version,
                                store.served_counts(model_name, version, CUBE))


class FrameRows(Rows):
    """The snapshot's customers (a server on files), as the store would list them."""

    def __init__(self, state):
        self.frame = pd.DataFrame(state.summary_rows(), columns=list(SCORE_SUMMARY))
        self.frame.insert(0, "customer_key", [str(c) for c in state.ids])
        self._keys = set(self.frame["customer_key"])
        self._drivers = driver_churn(state)
        self._state, self._candidates = state, None

    def drivers(self):
        return self._drivers

    def candidates(self, channel, where):
        from churn_risk.serving.worklist import top_candidates

        if self._candidates is None:  # on first use: a worklist is not every page's need
            self._candidates = top_candidates([channel_candidates(self._state)])
        rows = self._candidates[self._candidates["channel"] == channel]
        return _holding(rows, where).reset_index(drop=True)

    def has(self, key):
        return key in self._keys

    def contacted(self, customer_ids, days):
        from churn_risk.serving.worklist import recently_contacted

        state = self._state
        if state.prep is None:
            return set()
        return recently_contacted(state.prep, None, pd.Timestamp(state.as_of),
                                  days) & set(customer_ids)

    def _matching(self, where: dict[str, set], query: str | None = None) -> pd.DataFrame:
        rows = _holding(self.frame, where)
        if query:
            prefix, name = search_terms(query)
            found = rows["customer_key"].str.startswith(prefix)
            if name is not None:
                found |= rows["name"].fillna("").str.lower().str.contains(name, regex=False)
            rows = rows[found]
        return rows

    def counts(self, by, where):
        rows = self._matching(where).assign(customers=1)
        return _sums(rows, by, {})

    def listing(self, where, query, limit, offset):
        rows = self._matching(where, query)
        ordered = rows.sort_values(["value_at_risk", "customer_key"], ascending=[False, True],
                                   na_position="last", kind="stable")
        return ordered.iloc[offset:offset + limit].reset_index(drop=True), len(rows)


def _holding(rows: pd.DataFrame, where: dict[str, set]) -> pd.DataFrame:
    """The rows whose columns hold one of `where`'s values (compared as text, as the store
    compares them)."""
    for column, values in where.items():
        rows = rows[rows[column].astype(str).isin({str(v) for v in values})]
    return rows


def _sums(rows: pd.DataFrame, by: str, where: dict[str, set]) -> pd.DataFrame:
    """`by`, `customers`, `value_at_risk` summed over `rows` (with `customers` counts) that
    hold `where`'s values."""
    grouped = _holding(rows, where).groupby(by, dropna=False)
    return grouped[["customers", "value_at_risk"]].sum(min_count=0).reset_index()


# --------------------------------------------------------------------------------------------
# Where churn comes from: the processes behind the drivers
# --------------------------------------------------------------------------------------------

#: Columns of `driver_churn`'s frame (and of the store's `portfolio_drivers`).
DRIVER_COLUMNS = ("segment", "region", "group", "customers", "expected", "churners")


def driver_churn(state) -> pd.DataFrame:
    """Per segment, region and driver group: customers, expected leavers over the horizon
    (the sum of their churn probabilities) and the leavers the group accounts for.

    A customer's share of the chance of leaving that a group accounts for is how much lower
    the model's (uncalibrated) chance would be without the group's SHAP contributions,
    `1 - sigmoid(margin - group) / sigmoid(margin)`, applied to the calibrated probability;
    negative when the group keeps the customer. Summed, it reads "delivery accounts for 120
    of the 1,050 expected leavers". Additive over customers, so chunks of a portfolio sum."""
    from scipy.special import expit

    specs = state.specs
    contributions = np.asarray(state.contributions, dtype=float)
    margin = float(state.base_value) + contributions.sum(axis=1)
    raw = expit(margin)
    p = np.asarray(state.probability, dtype=float)
    keys = pd.DataFrame({"segment": _column(state, "segment"), "region": _column(state,
                                                                                 "region")})
    frames = []
    for group in dict.fromkeys(spec.group for spec in specs):
        columns = [j for j, spec in enumerate(specs) if spec.group == group]
        without = expit(margin - contributions[:, columns].sum(axis=1))
        share = np.where(raw > 0, 1.0 - without / np.maximum(raw, 1e-300), 0.0)
        frames.append(keys.assign(group=group, customers=1, expected=p, churners=p * share))
    if not frames:
        return pd.DataFrame(columns=list(DRIVER_COLUMNS))
    long = pd.concat(frames, ignore_index=True)
    return (long.groupby(["segment", "region", "group"], dropna=False, sort=True)
            [["customers", "expected", "churners"]].sum().reset_index())


def _column(state, name: str) -> list:
    frame = state.frame
    if name not in frame:
        return ["(none)"] * len(frame)
    return ["(none)" if v is None or v != v else str(v) for v in frame[name].tolist()]


@dataclass(frozen=True)
class Process:
    """A driver group as a business process: the leavers it accounts for, per segment."""

    group: str
    actionable: bool
    churners: float
    by_segment: tuple[float, ...]


@dataclass(frozen=True)
class Drivers:
    segments: tuple[str, ...]
    expected: float
    expected_by_segment: tuple[float, ...]
    processes: tuple[Process, ...]  # the most leavers first


def drivers(frame: pd.DataFrame | None, viewer) -> Drivers | None:
    """`driver_churn`'s frame for the viewer's portfolio, as processes by segment; None when
    the portfolio has none (a store scored before they were kept)."""
    from churn_risk.features.lifecycle import ACTIONABLE_GROUPS

    if frame is None or not len(frame):
        return None
    frame = _holding(frame, scope(viewer))
    if not len(frame):
        return None
    per = frame.groupby(["group", "segment"])[["churners", "customers", "expected"]].sum()
    segments = tuple(sorted(frame["segment"].unique(), key=str))
    first = frame["group"].iloc[0]
    expected = frame[frame["group"] == first].groupby("segment")["expected"].sum()
    processes = []
    for group, rows in per.groupby(level="group"):
        by = rows.droplevel("group")["churners"]
        processes.append(Process(str(group), group in ACTIONABLE_GROUPS, float(by.sum()),
                                 tuple(float(by.get(s, 0.0)) for s in segments)))
    processes.sort(key=lambda p: -p.churners)
    return Drivers(segments, float(expected.sum()),
                   tuple(float(expected.get(s, 0.0)) for s in segments), tuple(processes))


# --------------------------------------------------------------------------------------------
# What the pages show
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A quadrant of the risk matrix: its customers and value at risk, and its list."""

    quadrant: str
    label: str
    customers: int
    value_at_risk: float
    link: str


@dataclass(frozen=True)
class BandCount:
    band: str
    customers: int
    share: float
    link: str


@dataclass(frozen=True)
class Listed:
    """A customer in a list."""

    customer_id: str
    name: str | None
    probability: float | None
    band: str | None
    value_at_risk: float | None
    quadrant: str | None
    action: str | None  # the recommended action's label; None: no action pays
    segment: str | None
    region: str | None


@dataclass(frozen=True)
class Home:
    customers: int
    value_at_risk: float
    cells: tuple[Cell, ...]
    bands: tuple[BandCount, ...]
    segments: tuple[tuple[str, int, str], ...]  # (segment, customers, link)
    top: tuple[Listed, ...]
    portfolio: str  # "every customer", or the viewer's segments and regions
    drivers: Drivers | None = None


@dataclass(frozen=True)
class Listing:
    title: str
    filters: dict[str, str]  # the list's filters in words
    rows: tuple[Listed, ...]
    total: int
    page: int
    pages: int
    previous: str | None
    next: str | None
    query: str  # the searched id prefix ("" for none)
    portfolio: str


def scope(viewer, wanted: dict[str, str] | None = None) -> dict[str, set]:
    """The `where` of a list or a count: `wanted` (column -> value) within the viewer's
    portfolio (an account manager's segments and regions; anyone else: every customer)."""
    where = {column: {value} for column, value in (wanted or {}).items() if value}
    portfolio = None if viewer is None or "admin" in viewer.permissions else viewer.portfolio
    if portfolio is not None:
        for column, allowed in (("segment", portfolio.segments),
                                ("region", portfolio.regions)):
            if allowed:
                where[column] = (where[column] & set(allowed) if column in where
                                 else set(allowed))
    return where


def list_link(**filters) -> str:
    """The list of the customers with these filters (`/customers?quadrant=keep`)."""
    given = {k: v for k, v in filters.items() if v not in (None, "", 1)}
    return "/customers" + (f"?{urlencode(given)}" if given else "")


def home(rows: Rows, viewer, bands: tuple[str, ...], policy,
         driver_frame: pd.DataFrame | None = None) -> Home:
    where = scope(viewer)
    quadrants = rows.counts("quadrant", where).set_index("quadrant")
    cells = tuple(
        Cell(q, QUADRANT_LABELS[q], _count(quadrants, q, "customers"),
             _count(quadrants, q, "value_at_risk"), list_link(quadrant=q))
        for q in QUADRANTS)
    by_band = rows.counts("risk_band", where).set_index("risk_band")
    total = int(by_band["customers"].sum()) if len(by_band) else 0
    band_counts = tuple(
        BandCount(b, _count(by_band, b, "customers"),
                  _count(by_band, b, "customers") / total if total else 0.0,
                  list_link(risk_band=b))
        for b in bands)
    by_segment = rows.counts("segment", where)
    segments = tuple((str(r.segment), int(r.customers), list_link(segment=r.segment))
                     for r in by_segment.sort_values("customers", ascending=False).itertuples()
                     if isinstance(r.segment, str))
    top, _ = rows.listing(where, None, TOP, 0)
    return Home(total, float(by_band["value_at_risk"].fillna(0).sum()) if len(by_band) else 0.0,
                cells, band_counts, segments, _listed(top, policy), _portfolio(viewer),
                drivers(driver_frame, viewer))


def listing(rows: Rows, viewer, policy, filters: dict[str, str], query: str = "",
            page: int = 1) -> Listing:
    where = scope(viewer, filters)
    page = max(page, 1)
    found, total = rows.listing(where, query.strip() or None, LIST_SIZE,
                                (page - 1) * LIST_SIZE)
    pages = max(1, -(-total // LIST_SIZE))
    here = {k: v for k, v in filters.items() if v}
    if query:
        here["q"] = query
    return Listing(
        title=_title(filters, query),
        filters={k: _filter_words(k, v) for k, v in filters.items() if v},
        rows=_listed(found, policy), total=total, page=page, pages=pages,
        previous=list_link(**here, page=page - 1) if page > 1 else None,
        next=list_link(**here, page=page + 1) if page < pages else None,
        query=query, portfolio=_portfolio(viewer))


def _count(frame: pd.DataFrame, key: str, column: str) -> float:
    """`frame`'s `column` at `key` as a plain number (0 when absent or unknown)."""
    if key not in frame.index:
        return 0
    value = frame.loc[key, column]
    if value is None or value != value:
        return 0
    return int(value) if column == "customers" else float(value)


def _listed(frame: pd.DataFrame, policy) -> tuple[Listed, ...]:
    def text(v):
        return None if v is None or (isinstance(v, float) and v != v) else str(v)

    return tuple(
        Listed(str(r.customer_key), text(getattr(r, "name", None)), _number(r.churn_probability),
               text(r.risk_band),
               _number(r.value_at_risk), text(r.quadrant),
               None if text(r.recommended_action) in (None, "none")
               else policy.action_label(r.recommended_action),
               text(r.segment), text(r.region))
        for r in frame.itertuples())


def _portfolio(viewer) -> str:
    if viewer is None or "admin" in viewer.permissions or viewer.portfolio.everyone:
        return "every customer"
    return viewer.portfolio.describe()


def _filter_words(column: str, value: str) -> str:
    from churn_risk.serving.wording import band_name, human

    if column == "quadrant":
        return QUADRANT_LABELS.get(value, human(value))
    if column == "risk_band":
        return band_name(value)
    return f"{human(column)} {human(value)}" if column != "recommended_action" else human(value)


def _title(filters: dict[str, str], query: str) -> str:
    words = [_filter_words(k, v) for k, v in filters.items() if v]
    if query:
        words.append(f"“{query}”")
    return "Customers" + (f": {', '.join(words)}" if words else "")


# --------------------------------------------------------------------------------------------
# Today's worklist of a channel
# --------------------------------------------------------------------------------------------

#: What a worklist page starts with (a retention lead changes them in the form).
DEFAULT_BUDGET = 5_000.0
DEFAULT_CAPACITY = 50
#: Customers contacted this many days ago or less are left out (as `churn worklist`'s default).
DEFAULT_GAP_DAYS = 30


@dataclass(frozen=True)
class WorkItem:
    rank: int
    customer_id: str
    probability: float | None
    band: str | None
    value_at_risk: float | None
    action: str  # the action's label
    cost: float
    expected_profit: float


@dataclass(frozen=True)
class WorklistPage:
    channel: str
    channels: tuple[str, ...]  # the channels with actions in the catalogue
    budget: float
    capacity: int
    items: tuple[WorkItem, ...]
    candidates: int  # customers the channel could contact with an action that pays
    spent: float
    expected_profit: float
    known: bool  # False: this portfolio's candidates were not kept (scored before they were)
    gap_days: int = DEFAULT_GAP_DAYS  # customers contacted this recently are left out
    recently_contacted: int = 0  # candidates left out so


def worklist(rows: Rows, viewer, bundle, channel: str | None, budget: float,
             capacity: int, gap_days: int = DEFAULT_GAP_DAYS) -> WorklistPage:
    """The channel's worklist of today: the portfolio's candidates (the channel's best
    action that pays per customer) filled by the same engine as `churn worklist`
    (`worklist.fill_worklist`): the most expected profit first, within the budget and the
    capacity, none contacted in the last `gap_days` days (`Rows.contacted`)."""
    channels = tuple(dict.fromkeys(a.channel for a in bundle.policy.actions))
    channel = channel if channel in channels else channels[0]
    found = rows.candidates(channel, scope(viewer))
    if found is None:
        return WorklistPage(channel, channels, budget, capacity, (), 0, 0.0, 0.0, False,
                            gap_days)
    rules = WorklistRules(budget=budget, channel=channel, capacity=capacity,
                          contact_gap_days=gap_days)
    contacted = (rows.contacted(found["customer_id"].astype(str).tolist(), gap_days)
                 if gap_days > 0 and len(found) else set())
    filled = fill_worklist(bundle, found, rules, contacted)
    items = tuple(
        WorkItem(int(r.rank), str(r.customer_id), _number(r.churn_probability),
                 None if r.risk_band is None else str(r.risk_band), _number(r.value_at_risk),
                 str(r.action_label), float(r.action_cost), float(r.expected_profit))
        for r in filled.rows.itertuples())
    return WorklistPage(channel, channels, budget, capacity, items, filled.candidates,
                        filled.spent, filled.expected_profit, True, gap_days,
                        filled.excluded_recent_contact)


def _number(v) -> float | None:
    return None if v is None or v != v else float(v)
