"""The files `churn score` and `churn worklist` write for a CRM to import, and their dictionary.

One table, two forms of its columns:

- `readable` (the default for .csv, what an import wizard maps and a person opens): headers in
  words ("Customer ID", "Chance of leaving", "Main reason 1"), reasons as the features' labels,
  actions by their catalogue labels, bands, quadrants and channels as the page names them.
- `codes` (the default for .parquet, what a pipeline or a warehouse load reads): the column
  names and values of the code (`churn_probability`, `survey_price_last`, `named_contact`).

Both forms carry the same rows, the customer's `name` when the customers table has one, and a
link to the customer's page (`page_url`). `FIELDS` is the one mapping from a code column to its
header, type and meaning: the readable headers, the dictionary (`docs/fields.md`, written by
`python -m churn_risk.serving.export`) and its test all read it, so none of them can drift.
A header says what a column is, never something about the model (not its horizon), so an import
mapping made once keeps working after a retrain; what the probability is a probability of, the
target and its horizon, travels on every row instead ("Chance of leaving means": "chance of
leaving within 90 days (no purchase in that time)").
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from churn_risk.errors import UsageError

if TYPE_CHECKING:  # the CLI imports this module for its options: it stays light
    import pandas as pd

    from churn_risk.models.bundle import ChurnBundle

PAGE_BASE_URL_ENV = "CHURN_PAGE_BASE_URL"
#: Where `churn serve` listens by default.
DEFAULT_PAGE_BASE_URL = "http://localhost:3000"
#: The field dictionary, from the repository's root (`dictionary_markdown`).
DICTIONARY = Path("docs/fields.md")


class Columns(StrEnum):
    """The form of an export's columns (`--columns`), see the module doc."""

    readable = "readable"
    codes = "codes"


@dataclass(frozen=True)
class Field:
    """One exported column. `code` and `header` may hold `{i}` (1, 2, 3), `{family}` (a product
    family) or `{group}` (a driver group): one field stands for each such column."""

    code: str
    header: str | None  # None: in the codes form only
    type: str
    meaning: str
    unit: str
    example: str
    #: How a value reads in the readable form (`_words`); None: as it is.
    words: str | None = None

    def matches(self, column: str) -> dict[str, str] | None:
        pattern = re.escape(self.code).replace(r"\{i\}", r"(?P<i>\d+)")
        pattern = re.sub(r"\\\{(family|group)\\\}", r"(?P<\1>.+)", pattern)
        found = re.fullmatch(pattern, column)
        return None if found is None else found.groupdict()


FIELDS: tuple[Field, ...] = (
    Field("rank", "Rank", "integer", "Worklists: the customer's place on the list, by expected "
          "profit", "1 = contact first", "1"),
    Field("customer_id", "Customer ID", "text", "The customer's id in your CRM, as written in "
          "the customers table", "", "100123"),
    Field("name", "Customer name", "text", "The customer's name, when the customers table has "
          "a `name` column", "", "Ada Lovelace"),
    Field("prediction_id", "Prediction ID", "text", "From a store only: this score's id in the "
          "prediction log; quote it to report an outcome (`POST /outcomes`)", "",
          "3f2a9c1e-..."),
    Field("segment", "Segment", "text", "The customer's segment, when the customers table has "
          "one", "", "small_business"),
    Field("features_as_of", "Data as of", "date or UTC moment", "The moment the customer's data "
          "were taken as of (nothing later counts)", "ISO 8601", "2025-12-01"),
    Field("scored_at", "Scored at (UTC)", "UTC moment", "When the score was computed",
          "ISO 8601", "2025-12-02T06:15:03.120000Z"),
    Field("data_watermark", "Data received up to (UTC)", "UTC moment", "From a store only: its "
          "newest write the features could see; empty for files", "ISO 8601",
          "2025-12-02T06:14:59.000000Z"),
    Field("model_name", "Model", "text", "The registered model that scored", "", "churn-risk"),
    Field("model_version", "Model version", "text", "Its version", "", "7"),
    Field("target", "Churn definition", "text", "What leaving means for this model: labels, "
          "subscription_end or no_purchase", "", "No purchase (codes: no_purchase)",
          words="human"),
    Field("horizon_days", "Horizon (days)", "integer", "The period the chance of leaving "
          "covers", "days", "90"),
    Field("target_description", "Chance of leaving means", "text", "What the probability is a "
          "probability of: the churn definition and its horizon", "",
          "chance of leaving within 90 days (no purchase in that time)"),
    Field("churn_probability", "Chance of leaving", "number", "Calibrated probability that the "
          "customer leaves within the horizon (see the previous column)", "0 to 1", "0.23"),
    Field("risk_band", "Risk band", "text", "The band of that probability", "",
          "High risk (codes: high)", words="band"),
    Field("horizon_margin", "Margin over the horizon", "number", "Expected gross margin of the "
          "customer over the horizon if they stay", "currency of transactions", "412.50"),
    Field("lifetime_value", "Lifetime value", "number", "Margin kept horizon after horizon for "
          "the lifetime years, at the portfolio's retention rate, discounted",
          "currency of transactions", "2830.10"),
    Field("value_at_risk", "Value at risk", "number", "Chance of leaving x lifetime value",
          "currency of transactions", "650.92"),
    Field("quadrant", "Value and risk", "text", "The customer's cell of the value x risk "
          "matrix: protect first, keep, grow or let go", "",
          "Protect first (codes: protect_first)", words="quadrant"),
    Field("propensity_{family}", "Chance of buying {family}", "number", "Probability of "
          "adopting a product of the family within the horizon", "0 to 1", "0.08"),
    Field("recommended_action", "Recommended action", "text", "The next-best action (the "
          "catalogue's label; codes: its name); no action when none pays", "",
          "Give the customer one named contact person (codes: named_contact)", words="action"),
    Field("action_channel", "Action channel", "text", "The channel that takes the action", "",
          "Contact center (codes: contact_center)", words="channel"),
    Field("action_cost", "Action cost", "number", "What the action costs for this customer",
          "currency of transactions", "20.00"),
    Field("action_success_rate", "Action success rate", "number", "Share of would-be leavers "
          "the action keeps (growth: of likely buyers it converts)", "0 to 1", "0.15"),
    Field("expected_profit", "Expected profit", "number", "Chance of leaving x lifetime value x "
          "success rate - cost (growth: the next product's expected gain - cost)",
          "currency of transactions", "78.40"),
    Field("action_reason", "Action answers", "text", "The driver group the action answers, or "
          "the product family it proposes", "",
          "Communication (codes: communication)", words="human"),
    Field("action_label", None, "text", "Worklists: the catalogue's label of the action (the "
          "readable form shows it as the recommended action)", "",
          "Give the customer one named contact person"),
    Field("reason_{i}_feature", "Main reason {i}", "text", "The feature raising the risk "
          "most, second most, ... (empty when fewer raise it)", "",
          "Different agents the customer dealt with in the last 90 days (codes: "
          "distinct_agents_90d)", words="feature"),
    Field("reason_{i}_group", "Main reason {i}: driver", "text", "That feature's driver group",
          "", "Communication (codes: communication)", words="human"),
    Field("reason_{i}_contribution", "Main reason {i}: weight", "number", "How much it raises "
          "the risk (SHAP contribution)", "log-odds", "0.41"),
    Field("next_product_{i}", "Next product {i}", "text", "The product families the customer "
          "is likeliest to adopt, best first", "",
          "Home energy (codes: home_energy)", words="human"),
    Field("next_product_{i}_propensity", "Next product {i}: chance of buying", "number",
          "Probability of adopting that family within the horizon", "0 to 1", "0.12"),
    Field("group_{group}", "Risk from {group}", "number", "The driver group's share of the "
          "risk (SHAP contributions of its features summed; > 0 raises it)", "log-odds",
          "0.55"),
    Field("page_url", "Customer page", "text", "The customer's page for account managers "
          f"(`GET /customers/{{id}}`), from `--page-base-url` or ${PAGE_BASE_URL_ENV}", "URL",
          f"{DEFAULT_PAGE_BASE_URL}/customers/100123"),
)


def field_of(column: str) -> tuple[Field, dict[str, str]]:
    """The field a column is, and the values of its placeholders; `KeyError` when none."""
    for field in FIELDS:
        found = field.matches(column)
        if found is not None:
            return field, found
    raise KeyError(f"no field describes the column {column!r}: add it to export.FIELDS")


@dataclass(frozen=True)
class ExportForm:
    """How an output table is written: its columns' form and the base URL of its page links."""

    columns: Columns
    page_base_url: str


def export_form(out: Path, columns: Columns | str | None = None,
                page_base_url: str | None = None) -> ExportForm:
    """The form asked for, checked before any work is done. `columns` None: readable for a CSV
    (imported by people and wizards), codes for Parquet (read by code). `page_base_url` None:
    $CHURN_PAGE_BASE_URL, else `DEFAULT_PAGE_BASE_URL`; not http(s): `UsageError` naming the
    option."""
    if columns is None:
        columns = Columns.codes if Path(out).suffix == ".parquet" else Columns.readable
    elif columns not in set(Columns):
        raise UsageError(f"--columns {columns!r}: use one of {', '.join(Columns)}")
    url = page_base_url or os.environ.get(PAGE_BASE_URL_ENV) or DEFAULT_PAGE_BASE_URL
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise UsageError(f"--page-base-url {url!r}: not an http(s) URL such as "
                         f"{DEFAULT_PAGE_BASE_URL} (set by the option or ${PAGE_BASE_URL_ENV})")
    return ExportForm(Columns(columns), url.rstrip("/"))


def export_table(table: pd.DataFrame, base_url: str,
                 customers: pd.DataFrame | None = None) -> pd.DataFrame:
    """An output table as exported, in the codes form: its columns, the customer's `name` after
    the id (when `customers`, the customers table, has one) and the link to their page,
    `page_url`, last (the id quoted as one path segment)."""
    table = table.reset_index(drop=True)
    if customers is not None and "name" in customers and "name" not in table:
        names = customers.set_index(customers["customer_id"].astype(str))["name"]
        ids = table["customer_id"].astype(str)
        table.insert(list(table.columns).index("customer_id") + 1, "name",
                     names.reindex(ids).to_numpy())
    table["page_url"] = [f"{base_url}/customers/{quote(str(c), safe='')}"
                         for c in table["customer_id"]]
    return table


def readable(table: pd.DataFrame, bundle: ChurnBundle) -> pd.DataFrame:
    """The readable form of a codes-form table: headers and values in words."""
    import pandas as pd

    words = _words(bundle)
    out = {}
    for column in table.columns:
        field, parts = field_of(column)
        if field.header is None:
            continue
        values = table[column]
        if field.words is not None:
            values = values.map(words[field.words], na_action="ignore")
        out[_header(field, parts)] = values
    return pd.DataFrame(out)


def _header(field: Field, parts: dict[str, str]) -> str:
    """The field's header for one column: "Main reason 2", "Chance of buying Home energy"."""
    from churn_risk.serving.wording import human

    return field.header.format(**{k: v if k == "i" else human(v) for k, v in parts.items()})


def _words(bundle: ChurnBundle) -> dict[str, Callable[[object], str]]:
    """How each kind of code value reads: the names the page and the catalogue use."""
    from churn_risk.models.portfolio import NO_ACTION, QUADRANT_LABELS
    from churn_risk.serving.wording import band_name, channel_name, human

    features = {s.name: s.label for s in bundle.specs}
    actions = {a.name: a.label for a in bundle.policy.actions} | {NO_ACTION: "No action"}
    return {
        "human": human,
        "band": band_name,
        "channel": channel_name,
        "quadrant": lambda q: QUADRANT_LABELS.get(q, human(q)),
        "action": lambda a: actions.get(a, human(a)),
        "feature": lambda f: features.get(f, human(f)),
    }


def write_export(table: pd.DataFrame, out: Path, bundle: ChurnBundle, form: ExportForm,
                 customers: pd.DataFrame | None = None) -> Path:
    """Write an output table for CRM import in `form` (atomically; the format follows the
    extension, .parquet or .csv). `customers`: the customers table, for their names."""
    from churn_risk.features.io import write_frame
    from churn_risk.serving.batch import check_output_path

    table = export_table(table, form.page_base_url, customers)
    write_frame(table if form.columns == Columns.codes else readable(table, bundle),
                check_output_path(out))
    return out


def dictionary_markdown() -> str:
    """docs/fields.md: every exported column, from `FIELDS`."""
    lines = [
        "# Fields of the score and worklist exports",
        "",
        "<!-- Written by `python -m churn_risk.serving.export` from `serving/export.py`; "
        "a test fails when it differs. -->",
        "",
        "`churn score` and `churn worklist` write one row per customer. `--columns readable` "
        "(the default for .csv) heads each column with its header and writes reasons, actions, "
        "bands, quadrants and channels in words; `--columns codes` (the default for .parquet) "
        "heads it with its code and writes the code's values. `{i}` is 1, 2, 3; `{family}` a "
        "product family; `{group}` a driver group (delivery, service, communication, "
        "satisfaction, price, products, ...). Columns a run cannot fill are absent (no store: "
        "no prediction ID; no `name` in customers: no customer name). A column that holds "
        "nothing for a row is empty.",
        "",
        "| header | code | type | meaning | unit / scale | example |",
        "|---|---|---|---|---|---|",
    ]
    for f in FIELDS:
        header = f.header if f.header is not None else "(codes only)"
        lines.append(f"| {header} | `{f.code}` | {f.type} | {f.meaning} | {f.unit or '-'} | "
                     f"{f.example} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(dictionary_markdown(), end="")
