"""The CRM data contract: which tables exist, their columns, types and rules.

This module is the single description of the input data. Validation (`validation.py`), the
readers (`io.py`), the demo generator and the documentation all derive from it.

Point-in-time rule: every table names the column that dates a record (`event_time`). A feature
computed as of a date reads only records whose event time is strictly before that date; columns
that describe a *later* state of an earlier record (a ticket's `closed_at`, a delivery's
`delivered_date`, a subscription's `end_date`) are only believed when they are themselves before
the as-of date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["id", "datetime", "float", "int", "bool", "string"]

CHANNELS: tuple[str, ...] = ("sales", "contact_center", "web", "service", "campaign")
CAMPAIGN_GROUPS: tuple[str, ...] = ("treatment", "control")

#: Driver groups: the business vocabulary explanations are reported in.
DRIVER_GROUPS: tuple[str, ...] = (
    "delivery",
    "service",
    "communication",
    "satisfaction",
    "price",
    "engagement",
    "products",
    "tenure",
    "value",
    "profile",
)


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False
    nullable: bool = True
    min_value: float | None = None  # inclusive lower bound (e.g. no negative amounts)
    max_value: float | None = None
    allowed: tuple[str, ...] | None = None  # enumeration
    description: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    description: str
    key: tuple[str, ...] = ()  # unique key, when the table has one
    event_time: str | None = None  # the column that dates a record (point-in-time filter)
    references: tuple[tuple[str, str], ...] = ()  # (column, referenced table) foreign keys
    extra_columns: Literal["ignore", "attributes", "numeric_drivers"] = "ignore"
    # (column_a, column_b): rows where both are set must have a <= b
    ordered: tuple[tuple[str, str], ...] = field(default=())

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


def _id(name: str = "customer_id") -> Column:
    return Column(name, "id", required=True, nullable=False)


CUSTOMERS = Table(
    "customers",
    (
        _id(),
        Column("signup_date", "datetime", required=True, nullable=False),
        Column("segment", "string", description="customer segment, e.g. consumer / small_business"),
        Column("region", "string"),
        Column("name", "string", description="the customer's name, for the people who contact "
               "them (worklists, score exports); never a feature"),
    ),
    "Customer knowledge. Extra columns are declared attributes and become features "
    "(text columns categorical, numeric columns numeric).",
    key=("customer_id",),
    event_time="signup_date",
    extra_columns="attributes",
)

TRANSACTIONS = Table(
    "transactions",
    (
        _id(),
        Column("timestamp", "datetime", required=True, nullable=False),
        Column("amount", "float", required=True, nullable=False, min_value=0.0,
               description="gross amount, never negative; returns are flagged by is_return"),
        Column("transaction_id", "id"),
        Column("product_id", "id"),
        Column("quantity", "float", min_value=0.0),
        Column("is_return", "bool"),
    ),
    "Purchase history and value.",
    key=("transaction_id",),
    event_time="timestamp",
    references=(("customer_id", "customers"), ("product_id", "products")),
)

SUBSCRIPTIONS = Table(
    "subscriptions",
    (
        _id(),
        Column("product_id", "id", required=True, nullable=False),
        Column("start_date", "datetime", required=True, nullable=False),
        Column("end_date", "datetime", description="null while the subscription is active"),
        Column("recurring_amount", "float", min_value=0.0),
    ),
    "Products used (contracts, plans, recurring services).",
    event_time="start_date",
    references=(("customer_id", "customers"), ("product_id", "products")),
    ordered=(("start_date", "end_date"),),
)

PRODUCTS = Table(
    "products",
    (
        _id("product_id"),
        Column("family", "string", required=True, nullable=False),
        Column("price", "float", min_value=0.0),
    ),
    "Catalog and offer profile.",
    key=("product_id",),
)

INTERACTIONS = Table(
    "interactions",
    (
        _id(),
        Column("timestamp", "datetime", required=True, nullable=False),
        Column("channel", "string", required=True, nullable=False, allowed=CHANNELS),
        Column("kind", "string"),
        Column("agent_id", "id"),
        Column("outsourced", "bool"),
    ),
    "Contact points and consistency of communication.",
    event_time="timestamp",
    references=(("customer_id", "customers"),),
)

TICKETS = Table(
    "tickets",
    (
        _id(),
        Column("opened_at", "datetime", required=True, nullable=False),
        Column("closed_at", "datetime"),
        Column("category", "string"),
        Column("resolved", "bool"),
    ),
    "Problems met and solutions adopted.",
    event_time="opened_at",
    references=(("customer_id", "customers"),),
    ordered=(("opened_at", "closed_at"),),
)

DELIVERIES = Table(
    "deliveries",
    (
        _id(),
        Column("promised_date", "datetime", required=True, nullable=False),
        Column("delivered_date", "datetime"),
        Column("damaged", "bool"),
    ),
    "Delivery reliability.",
    event_time="promised_date",
    references=(("customer_id", "customers"),),
)

SURVEYS = Table(
    "surveys",
    (
        _id(),
        Column("timestamp", "datetime", required=True, nullable=False),
        Column("satisfaction", "float", min_value=0.0, max_value=10.0),
        Column("nps", "float", min_value=0.0, max_value=10.0),
    ),
    "Satisfaction and its drivers. Extra numeric columns are driver scores (benefits, problems, "
    "price, ...) on the same 0 to 10 scale and become features.",
    event_time="timestamp",
    references=(("customer_id", "customers"),),
    extra_columns="numeric_drivers",
)

CAMPAIGNS = Table(
    "campaigns",
    (
        _id(),
        Column("campaign_id", "id", required=True, nullable=False),
        Column("timestamp", "datetime", required=True, nullable=False),
        Column("group", "string", allowed=CAMPAIGN_GROUPS),
        Column("offer", "string"),
        Column("responded", "bool"),
    ),
    "Campaign management: exposures, treatment/control groups and responses.",
    event_time="timestamp",
    references=(("customer_id", "customers"),),
)

LABELS = Table(
    "labels",
    (
        _id(),
        Column("as_of", "datetime", required=True, nullable=False),
        Column("churned", "bool", required=True, nullable=False),
    ),
    "The company's own churn definition; when present it overrides the derived label.",
    key=("customer_id", "as_of"),
    references=(("customer_id", "customers"),),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        CUSTOMERS,
        TRANSACTIONS,
        SUBSCRIPTIONS,
        PRODUCTS,
        INTERACTIONS,
        TICKETS,
        DELIVERIES,
        SURVEYS,
        CAMPAIGNS,
        LABELS,
    )
}

#: Tables any one of which, besides `customers`, makes a usable data set.
ACTIVITY_TABLES: tuple[str, ...] = ("transactions", "subscriptions")
