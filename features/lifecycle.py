"""Lifecycle features per customer, as of a date, and their metadata.

Every feature block is a pure function of the CRM tables, the customers being scored and `as_of`:
no I/O, no global state. Training, batch scoring, the Dask engine and the service all call
`build_features`, so each feature has exactly one definition.

Point-in-time rule: a block reads only records dated strictly before `as_of` (see
`contract.py`); state columns of those records (`closed_at`, `delivered_date`, `end_date`,
`responded`) are only believed when they are themselves known before `as_of`. Tests change and
delete every record dated at or after `as_of` and require bit-identical features.

Performance: each event table is sorted by its event time and its customers are mapped to
integer positions once (`prepare`); a snapshot is then a few boolean masks and `np.bincount`s per
block, so stacking monthly snapshots costs little more than reading the files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn_risk.features.config import FeatureConfig
from churn_risk.features.contract import CHANNELS, TABLES
from churn_risk.features.validation import CrmData

DAY = np.timedelta64(1, "D")

#: Driver groups whose features an account manager can act on.
ACTIONABLE_GROUPS = frozenset(
    {"delivery", "service", "communication", "satisfaction", "price", "products"}
)


@dataclass(frozen=True)
class FeatureSpec:
    """What a feature is, in the words of the people reading its explanations."""

    name: str
    label: str  # what an account manager reads
    group: str  # driver group, one of contract.DRIVER_GROUPS
    kind: str = "numeric"  # "numeric" | "categorical"
    source: str = ""  # the table it reads
    #: +1 when, all else equal, a higher value can never lower churn risk (domain knowledge
    #: used as a monotone constraint), -1 for the reverse, 0 when unconstrained.
    monotone: int = 0
    #: The values the feature can take at all (a count is never negative, a share lies in
    #: [0, 1]): a what-if value outside them is refused; None on a side: unbounded.
    bounds: tuple[float | None, float | None] = (None, None)
    #: The period the feature counts over, in days before `as_of` (the `_90d` of its name);
    #: None for a state as of the moment (products held, days since the last contact).
    window_days: int | None = None
    #: The top of the answer scale of a survey score ("2 out of 10"); None: not a survey score.
    scale: float | None = None

    @property
    def actionable(self) -> bool:
        return self.group in ACTIONABLE_GROUPS

    @property
    def stem(self) -> str:
        """The name without its window: `late_deliveries` for `late_deliveries_90d` (what a
        feature measures, whatever period a configuration gives it)."""
        suffix = f"_{self.window_days}d"
        return self.name.removesuffix(suffix) if self.window_days else self.name

    @property
    def is_share(self) -> bool:
        """A share of something (0 to 1), read as a percentage."""
        return self.kind == "numeric" and tuple(self.bounds) == SHARE

    @property
    def is_money(self) -> bool:
        """An amount in the currency of transactions: the `value` driver group holds only
        those (spend, its trend, average purchase, recurring amount)."""
        return self.kind == "numeric" and self.group == "value"


@dataclass(frozen=True)
class PreparedData:
    """Validated CRM data arranged for fast as-of computation.

    Each event table is sorted (stably) by its event time and carries integer codes computed
    once: `_pos`, the row position of its customer in `customers`; `_family`, the index of the
    product's family in `families` (with a products table); `_category`, `_agent` and
    `_channel` for tickets and interactions (-1 where unknown). Built once per data set.
    """

    data: CrmData
    customers: pd.DataFrame  # the customers table, in the order `_pos` refers to
    events: dict[str, pd.DataFrame]
    families: tuple[str, ...]  # product families, sorted (empty without a products table)

    def has(self, name: str) -> bool:
        return name in self.events


def prepare(data: CrmData) -> PreparedData:
    customers = data["customers"].reset_index(drop=True)
    index = pd.Index(customers["customer_id"])
    families: tuple[str, ...] = ()
    family_of_product = None
    if data.has("products"):
        products = data["products"]
        families = tuple(sorted(products["family"].astype(str).unique()))
        family_of_product = (
            pd.Index(families).get_indexer(products["family"].astype(str)),
            pd.Index(products["product_id"]),
        )
    events: dict[str, pd.DataFrame] = {}
    for name, table in data.tables.items():
        spec = TABLES[name]
        if name in ("customers", "products", "labels") or spec.event_time is None:
            continue
        times = table[spec.event_time].to_numpy()
        order = np.argsort(times, kind="stable")
        frame = table.iloc[order].reset_index(drop=True)
        codes = {"_pos": index.get_indexer(frame["customer_id"])}
        if family_of_product is not None and "product_id" in frame:
            family_code, product_index = family_of_product
            product = product_index.get_indexer(frame["product_id"])
            codes["_family"] = np.where(product >= 0, family_code[product], -1)
        for column, code in (("category", "_category"), ("agent_id", "_agent")):
            if column in frame:
                codes[code] = pd.factorize(frame[column])[0]
        if "channel" in frame:
            codes["_channel"] = pd.Index(CHANNELS).get_indexer(frame["channel"])
        events[name] = frame.assign(**{k: v.astype(np.int64) for k, v in codes.items()})
    return PreparedData(data=data, customers=customers, events=events, families=families)


# --------------------------------------------------------------------------------------------
# Small vectorised aggregations over customer positions (`slot` = row of the output frame).


@dataclass(frozen=True)
class _Rows:
    """Rows of one event table that belong to the scored customers, with their output slot."""

    frame: pd.DataFrame
    slot: np.ndarray  # output row of each event row, -1 when the customer is not scored
    n: int  # number of scored customers

    def where(self, mask: np.ndarray) -> _Rows:
        return _Rows(self.frame.loc[mask], self.slot[mask], self.n)

    def count(self, mask: np.ndarray | None = None) -> np.ndarray:
        s = self.slot if mask is None else self.slot[mask]
        return np.bincount(s[s >= 0], minlength=self.n).astype(float)

    def total(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        s, v = (self.slot, values) if mask is None else (self.slot[mask], values[mask])
        keep = (s >= 0) & ~np.isnan(v)
        return np.bincount(s[keep], weights=v[keep], minlength=self.n)

    def mean(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        s, v = (self.slot, values) if mask is None else (self.slot[mask], values[mask])
        keep = (s >= 0) & ~np.isnan(v)
        counts = np.bincount(s[keep], minlength=self.n)
        sums = np.bincount(s[keep], weights=v[keep], minlength=self.n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def latest(self, values: np.ndarray) -> np.ndarray:
        """Value of each customer's most recent non-null row (rows are sorted by event time)."""
        keep = (self.slot >= 0) & ~np.isnan(values)
        s, v = self.slot[keep], values[keep]
        out = np.full(self.n, np.nan)
        if len(s):
            rev_slots = s[::-1]
            uniq, first_in_rev = np.unique(rev_slots, return_index=True)
            out[uniq] = v[::-1][first_in_rev]
        return out

    def distinct(self, keys: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Number of distinct non-negative integer `keys` per customer."""
        s, k = (self.slot, keys) if mask is None else (self.slot[mask], keys[mask])
        keep = (s >= 0) & (k >= 0)
        pairs = np.unique(s[keep].astype(np.int64) * (int(k.max(initial=0)) + 1) + k[keep])
        return np.bincount(pairs // (int(k.max(initial=0)) + 1), minlength=self.n).astype(float)


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _days(delta: np.ndarray) -> np.ndarray:
    return delta / DAY


def _as_float(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype="float64", na_value=np.nan)


def _flag(series: pd.Series) -> np.ndarray:
    """Boolean column as float: 1.0 / 0.0, NaN when unknown."""
    return _as_float(series.astype("boolean"))


def _times(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype="datetime64[ns]")


def _optional_times(frame: pd.DataFrame, column: str) -> np.ndarray:
    """An optional date column as datetime64, all NaT (unknown) when the column is absent."""
    if column in frame:
        return _times(frame[column])
    return np.full(len(frame), np.datetime64("NaT", "ns"))


def _rows(prep: PreparedData, table: str, time_col: str, slot_of: np.ndarray, n: int,
          as_of: np.datetime64) -> _Rows:
    """Rows of `table` dated strictly before `as_of`, for the scored customers."""
    frame = prep.events[table]
    times = _times(frame[time_col])
    end = int(np.searchsorted(times, as_of, side="left"))  # sorted: rows [0, end) are < as_of
    head = frame.iloc[:end]
    return _Rows(head, slot_of[head["_pos"].to_numpy()], n)


# --------------------------------------------------------------------------------------------
# Feature blocks. Each yields (FeatureSpec, values) pairs; values align with the scored customers.

#: Bounds of the values a feature can take (`FeatureSpec.bounds`).
COUNT = (0.0, None)
SHARE = (0.0, 1.0)
#: The answer scale of every survey score, satisfaction, NPS and the driver scores alike (the
#: data contract's `surveys`: 0 to 10).
SURVEY_SCALE = (0.0, 10.0)
DAYS = (0.0, None)

Block = Iterator[tuple[FeatureSpec, np.ndarray]]


def tenure_features(signup: np.ndarray, as_of: np.datetime64) -> Block:
    tenure = _days(as_of - signup)
    yield (FeatureSpec("tenure_days", "Days as a customer", "tenure", source="customers",
                       bounds=DAYS), tenure)
    stage = np.select(
        [tenure < 180, tenure < 730, tenure < 1825], ["new", "developing", "established"], "loyal"
    ).astype(object)
    yield (
        FeatureSpec("lifecycle_stage", "Lifecycle stage", "tenure", "categorical", "customers"),
        stage,
    )
    # Yearly contracts come up for renewal on the signup anniversary: a classic churn moment.
    yield (
        FeatureSpec("days_to_anniversary", "Days until the customer's yearly anniversary",
                    "tenure", source="customers", bounds=(0.0, 366.0)),
        365.25 - np.mod(tenure, 365.25),
    )


def attribute_features(customers: pd.DataFrame, attributes: dict[str, str]) -> Block:
    for name in ("segment", "region"):
        if name in customers:
            values = customers[name].astype(object).where(customers[name].notna(), None)
            label = _title(name)
            yield FeatureSpec(name, label, "profile", "categorical", "customers"), values.to_numpy()
    for name, kind in attributes.items():
        label = _title(name)
        if kind == "numeric":
            values = _as_float(customers[name])
            yield FeatureSpec(name, label, "profile", "numeric", "customers"), values
        else:
            values = customers[name].astype(object).where(customers[name].notna(), None)
            yield FeatureSpec(name, label, "profile", "categorical", "customers"), values.to_numpy()


def transaction_features(
    rows: _Rows, as_of: np.datetime64, cfg: FeatureConfig, families: tuple[str, ...]
) -> Block:
    f = rows.frame
    times = _times(f["timestamp"])
    age = _days(as_of - times)  # > 0 for every row: rows are strictly before as_of
    is_return = (
        _flag(f["is_return"]) == 1.0 if "is_return" in f else np.zeros(len(f), dtype=bool)
    )
    amount = _as_float(f["amount"])
    net = np.where(is_return, -amount, amount)
    purchase = ~is_return
    src = "transactions"

    last = np.full(rows.n, np.nan)
    p_slots = rows.slot[purchase]
    p_slots_ok = p_slots >= 0
    if p_slots_ok.any():
        latest_age = np.full(rows.n, np.inf)
        np.minimum.at(latest_age, p_slots[p_slots_ok], age[purchase][p_slots_ok])
        last = np.where(np.isinf(latest_age), np.nan, latest_age)
    yield (
        FeatureSpec("days_since_last_purchase", "Days since the last purchase", "engagement",
                    source=src, bounds=DAYS),
        last,
    )
    for w in cfg.windows:
        inside = age <= w
        yield (
            FeatureSpec(f"purchases_{w}d", f"Purchases in the last {w} days", "engagement",
                        source=src, bounds=COUNT, window_days=w),
            rows.count(inside & purchase),
        )
        yield (
            FeatureSpec(f"spend_{w}d", f"Net spend in the last {w} days", "value", source=src,
                        window_days=w),
            rows.total(net, inside),
        )
    r = cfg.recent_days
    recent = age <= r
    before = (age > r) & (age <= 2 * r)
    yield (
        FeatureSpec(f"purchases_trend_{r}d",
                    f"Change in purchases, last {r} days vs the {r} before", "engagement",
                    source=src, window_days=r),
        rows.count(recent & purchase) - rows.count(before & purchase),
    )
    yield (
        FeatureSpec(f"spend_trend_{r}d", f"Change in net spend, last {r} days vs the {r} before",
                    "value", source=src, window_days=r),
        rows.total(net, recent) - rows.total(net, before),
    )
    h = cfg.history_days
    history = age <= h
    yield (
        FeatureSpec(f"avg_order_value_{h}d", f"Average purchase amount over {h} days", "value",
                    source=src, bounds=(0.0, None), window_days=h),
        rows.mean(np.where(purchase, amount, np.nan), history),
    )
    if "is_return" in f:
        n_all = rows.count(history)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(n_all > 0, rows.count(history & is_return) / np.maximum(n_all, 1),
                             np.nan)
        yield (
            FeatureSpec(f"return_share_{h}d", f"Share of purchases returned over {h} days",
                        "satisfaction", source=src, monotone=0, bounds=SHARE, window_days=h),
            share,
        )
    if "_family" in f:
        codes = f["_family"].to_numpy()
        bought = history & purchase
        yield (
            FeatureSpec(f"families_bought_{h}d", f"Product families bought over {h} days",
                        "products", source=src, bounds=COUNT, window_days=h),
            rows.distinct(codes, bought),
        )
        for i, family in enumerate(families):
            yield (
                FeatureSpec(f"bought_{family}_{h}d", f"{_title(family)} purchases over {h} days",
                            "products", source=src, bounds=COUNT, window_days=h),
                rows.count(bought & (codes == i)),
            )


def subscription_features(
    rows: _Rows, as_of: np.datetime64, cfg: FeatureConfig, families: tuple[str, ...]
) -> Block:
    f = rows.frame
    src = "subscriptions"
    start_age = _days(as_of - _times(f["start_date"]))
    end = _optional_times(f, "end_date")
    ended = ~np.isnat(end) & (end < as_of)  # an end date at or after as_of is not known yet
    active = ~ended
    end_age = np.where(ended, _days(as_of - np.where(ended, end, as_of)), np.nan)
    r = cfg.recent_days
    yield (
        FeatureSpec("products_held", "Products held", "products", source=src, monotone=-1,
                    bounds=COUNT),
        rows.count(active),
    )
    if "_family" in f:
        codes = f["_family"].to_numpy()
        yield (
            FeatureSpec("families_held", "Product families held", "products", source=src,
                        bounds=COUNT),
            rows.distinct(codes, active),
        )
        for i, family in enumerate(families):
            yield (
                FeatureSpec(f"holds_{family}", f"{_title(family)} products held", "products",
                            source=src, bounds=COUNT),
                rows.count(active & (codes == i)),
            )
    yield (
        FeatureSpec(f"products_added_{r}d", f"Products added in the last {r} days", "products",
                    source=src, bounds=COUNT, window_days=r),
        rows.count(start_age <= r),
    )
    yield (
        FeatureSpec(f"products_dropped_{r}d", f"Products dropped in the last {r} days",
                    "products", source=src, bounds=COUNT, window_days=r),
        rows.count(end_age <= r),
    )
    if "recurring_amount" in f:
        yield (
            FeatureSpec("recurring_amount", "Recurring amount of the products held", "value",
                        source=src, bounds=(0.0, None)),
            rows.total(_as_float(f["recurring_amount"]), active),
        )


def ticket_features(rows: _Rows, as_of: np.datetime64, cfg: FeatureConfig) -> Block:
    f = rows.frame
    src = "tickets"
    opened = _times(f["opened_at"])
    age = _days(as_of - opened)
    closed_at = _optional_times(f, "closed_at")
    closed = ~np.isnat(closed_at) & (closed_at < as_of)
    r, h = cfg.recent_days, cfg.history_days
    yield (
        FeatureSpec(f"tickets_{r}d", f"Tickets opened in the last {r} days", "service",
                    source=src, monotone=1, bounds=COUNT, window_days=r),
        rows.count(age <= r),
    )
    yield (
        FeatureSpec("tickets_open", f"Open tickets (opened in the last {h} days)", "service",
                    source=src, monotone=1, bounds=COUNT),
        rows.count(~closed & (age <= h)),
    )
    if "resolved" in f:
        unresolved = closed & (_flag(f["resolved"]) == 0.0)
        yield (
            FeatureSpec(f"tickets_closed_unresolved_{r}d",
                        f"Tickets closed without a solution in the last {r} days", "service",
                        source=src, monotone=1, bounds=COUNT, window_days=r),
            rows.count(unresolved & (age <= r)),
        )
    resolution = np.where(closed, _days(np.where(closed, closed_at, opened) - opened), np.nan)
    yield (
        FeatureSpec(f"resolution_days_{h}d", f"Average days to close a ticket over {h} days",
                    "service", source=src, bounds=DAYS, window_days=h),
        rows.mean(resolution, age <= h),
    )
    if "_category" in f:
        codes = f["_category"].to_numpy()
        known = (age <= r) & (codes >= 0)
        yield (
            FeatureSpec(f"repeat_tickets_{r}d",
                        f"Repeated problems (same category again) in the last {r} days",
                        "service", source=src, monotone=1, bounds=COUNT, window_days=r),
            rows.count(known) - rows.distinct(codes, known),
        )


def delivery_lateness(deliveries: pd.DataFrame, as_of: np.datetime64
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(days late, arrived) of each delivery as known at `as_of`: a delivery arriving later had
    not arrived, and is late so far if its promised date has passed."""
    promised = _times(deliveries["promised_date"])
    delivered = _optional_times(deliveries, "delivered_date")
    arrived = ~np.isnat(delivered) & (delivered < as_of)  # a later delivery is not known yet
    arrived_or_now = np.where(arrived, delivered, as_of)
    return np.maximum(_days(arrived_or_now - promised), 0.0), arrived


def delivery_features(rows: _Rows, as_of: np.datetime64, cfg: FeatureConfig) -> Block:
    f = rows.frame
    src = "deliveries"
    age = _days(as_of - _times(f["promised_date"]))
    lateness, known = delivery_lateness(f, as_of)
    late = lateness > 0
    r = cfg.recent_days
    recent = age <= r
    n_recent = rows.count(recent)
    n_late = rows.count(recent & late)
    yield FeatureSpec(f"deliveries_{r}d", f"Deliveries due in the last {r} days", "delivery",
                      source=src, bounds=COUNT, window_days=r), n_recent
    yield FeatureSpec(f"late_deliveries_{r}d", f"Late deliveries in the last {r} days",
                      "delivery", source=src, monotone=1, bounds=COUNT, window_days=r), n_late
    with np.errstate(invalid="ignore", divide="ignore"):
        late_share = np.where(n_recent > 0, n_late / np.maximum(n_recent, 1), np.nan)
    yield FeatureSpec(f"late_share_{r}d", f"Share of deliveries late in the last {r} days",
                      "delivery", source=src, bounds=SHARE, window_days=r), late_share
    yield FeatureSpec(f"lateness_days_{r}d", f"Average days late in the last {r} days",
                      "delivery", source=src, bounds=DAYS, window_days=r), rows.mean(
                          lateness, recent)
    if "damaged" in f:
        damaged = known & (_flag(f["damaged"]) == 1.0)
        yield FeatureSpec(f"damaged_deliveries_{r}d",
                          f"Damaged deliveries in the last {r} days", "delivery", source=src,
                          monotone=1, bounds=COUNT, window_days=r), rows.count(recent & damaged)
    yield FeatureSpec("deliveries_overdue", "Deliveries overdue and not arrived", "delivery",
                      source=src, monotone=1, bounds=COUNT), rows.count(
                          ~known & (age <= cfg.history_days))


def interaction_features(rows: _Rows, as_of: np.datetime64, cfg: FeatureConfig) -> Block:
    f = rows.frame
    src = "interactions"
    age = _days(as_of - _times(f["timestamp"]))
    r = cfg.recent_days
    recent = age <= r
    n_recent = rows.count(recent)
    yield FeatureSpec(f"contacts_{r}d", f"Contacts in the last {r} days", "engagement",
                      source=src, bounds=COUNT, window_days=r), n_recent
    channel = f["_channel"].to_numpy()
    for code, ch in enumerate(CHANNELS):
        yield (
            FeatureSpec(f"contacts_{ch}_{r}d",
                        f"{ch.replace('_', ' ').capitalize()} contacts in the last {r} days",
                        "engagement", source=src, bounds=COUNT, window_days=r),
            rows.count(recent & (channel == code)),
        )
    latest_age = np.full(rows.n, np.inf)
    ok = rows.slot >= 0
    np.minimum.at(latest_age, rows.slot[ok], age[ok])
    yield FeatureSpec("days_since_last_contact", "Days since the last contact", "engagement",
                      source=src, bounds=DAYS), np.where(np.isinf(latest_age), np.nan, latest_age)
    if "_agent" in f:
        agents = f["_agent"].to_numpy()
        yield FeatureSpec(f"distinct_agents_{r}d",
                          f"Different agents the customer dealt with in the last {r} days",
                          "communication", source=src, monotone=1, bounds=COUNT,
                          window_days=r), rows.distinct(agents, recent)
    if "outsourced" in f:
        # Of the contacts a person handled (self-service has no agent and no outsourcing).
        handled = recent & f["agent_id"].notna().to_numpy() if "agent_id" in f else recent
        yield FeatureSpec(f"outsourced_share_{r}d",
                          f"Share of contacts handled by outsourced support, last {r} days",
                          "communication", source=src, bounds=SHARE, window_days=r), rows.mean(
                              _flag(f["outsourced"]), handled)


def survey_features(
    rows: _Rows, as_of: np.datetime64, cfg: FeatureConfig, drivers: tuple[str, ...]
) -> Block:
    f = rows.frame
    src = "surveys"
    age = _days(as_of - _times(f["timestamp"]))
    h = cfg.history_days
    in_history = age <= h
    recent_rows = rows.where(in_history)
    latest_age = np.full(rows.n, np.inf)
    ok = recent_rows.slot >= 0
    np.minimum.at(latest_age, recent_rows.slot[ok], age[in_history][ok])
    yield FeatureSpec("days_since_last_survey", "Days since the last survey answer",
                      "satisfaction", source=src, bounds=DAYS), np.where(
                          np.isinf(latest_age), np.nan, latest_age)
    for column, label in (("satisfaction", "Satisfaction"), ("nps", "Likelihood to recommend")):
        if column not in f:
            continue
        values = _as_float(f[column])[in_history]
        last = recent_rows.latest(values)
        yield FeatureSpec(f"{column}_last", f"{label} (latest answer)", "satisfaction",
                          source=src, bounds=SURVEY_SCALE, scale=SURVEY_SCALE[1]), last
        yield (
            FeatureSpec(f"{column}_trend_{h}d",
                        f"{label}: latest answer vs the average over {h} days", "satisfaction",
                        source=src, bounds=(-10.0, 10.0), window_days=h),
            last - recent_rows.mean(values),
        )
    for driver in drivers:
        group = "price" if "price" in driver.lower() else "satisfaction"
        values = _as_float(f[driver])[in_history]
        yield (
            FeatureSpec(f"survey_{driver}_last",
                        f"Survey score for {driver.replace('_', ' ')} (latest answer)", group,
                        source=src, scale=SURVEY_SCALE[1]),
            recent_rows.latest(values),
        )


def campaign_features(rows: _Rows, as_of: np.datetime64, cfg: FeatureConfig) -> Block:
    f = rows.frame
    src = "campaigns"
    age = _days(as_of - _times(f["timestamp"]))
    h = cfg.history_days
    in_history = age <= h
    yield FeatureSpec(f"campaigns_{h}d", f"Campaigns received over {h} days", "engagement",
                      source=src, bounds=COUNT, window_days=h), rows.count(in_history)
    if "group" in f:
        treated = (f["group"] == "treatment").fillna(False).to_numpy(dtype=bool)
        r = cfg.recent_days
        yield FeatureSpec(f"retention_offers_{r}d",
                          f"Retention offers received (treatment group) in the last {r} days",
                          "engagement", source=src, bounds=COUNT, window_days=r), rows.count(
                              treated & (age <= r))
    if "responded" in f:
        # A response is only known once the response window after the campaign has passed.
        settled = in_history & (age >= cfg.response_window_days)
        responded = _flag(f["responded"]) == 1.0
        yield FeatureSpec(f"campaign_responses_{h}d", f"Campaign responses over {h} days",
                          "engagement", source=src, bounds=COUNT, window_days=h), rows.count(
                              settled & responded)


# --------------------------------------------------------------------------------------------


def _blocks(
    prep: PreparedData, customers: pd.DataFrame, as_of: np.datetime64, cfg: FeatureConfig
) -> Block:
    n = len(customers)
    slot_of = np.full(len(prep.customers), -1, dtype=np.int64)
    slot_of[customers["_pos"].to_numpy()] = np.arange(n)
    signup = _times(customers["signup_date"])
    yield from tenure_features(signup, as_of)
    yield from attribute_features(customers, prep.data.attributes)

    def rows(table: str) -> _Rows:
        return _rows(prep, table, TABLES[table].event_time, slot_of, n, as_of)

    blocks: dict[str, Callable[[], Block]] = {
        "transactions": lambda: transaction_features(rows("transactions"), as_of, cfg,
                                                     prep.families),
        "subscriptions": lambda: subscription_features(rows("subscriptions"), as_of, cfg,
                                                       prep.families),
        "tickets": lambda: ticket_features(rows("tickets"), as_of, cfg),
        "deliveries": lambda: delivery_features(rows("deliveries"), as_of, cfg),
        "interactions": lambda: interaction_features(rows("interactions"), as_of, cfg),
        "surveys": lambda: survey_features(rows("surveys"), as_of, cfg,
                                           prep.data.survey_drivers),
        "campaigns": lambda: campaign_features(rows("campaigns"), as_of, cfg),
    }
    for table, block in blocks.items():
        if prep.has(table):  # an absent table removes its features: never fake zeros
            yield from block()


def to_timestamp(as_of: str | pd.Timestamp | np.datetime64) -> np.datetime64:
    ts = pd.Timestamp(as_of)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.to_datetime64(), "ns")


def build_features(
    prep: PreparedData,
    as_of: str | pd.Timestamp | np.datetime64,
    customers: pd.DataFrame | None = None,
    cfg: FeatureConfig = FeatureConfig(),
) -> pd.DataFrame:
    """Feature rows keyed on (customer_id, as_of) for `customers` (default: all signed up
    before `as_of`). `customers` are rows of `prep.customers` (they carry `_pos`)."""
    t = to_timestamp(as_of)
    if customers is None:
        customers = signed_up_before(prep, t)
    columns: dict[str, object] = {
        "customer_id": customers["customer_id"].to_numpy(),
        "as_of": np.full(len(customers), t),
    }
    for spec, values in _blocks(prep, customers, t, cfg):
        columns[spec.name] = values
    return pd.DataFrame(columns)


def feature_specs(prep: PreparedData, cfg: FeatureConfig = FeatureConfig()) -> list[FeatureSpec]:
    """The specs of the features `build_features` produces for this data set, in column order."""
    t = to_timestamp("1900-01-01")
    return [spec for spec, _ in _blocks(prep, signed_up_before(prep, t).iloc[:0], t, cfg)]


def signed_up_before(prep: PreparedData, as_of: np.datetime64) -> pd.DataFrame:
    customers = prep.customers.assign(_pos=np.arange(len(prep.customers)))
    return customers.loc[_times(customers["signup_date"]) < as_of]
