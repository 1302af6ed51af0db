"""The page an account manager reads for one customer, rendered from Jinja2 templates.

One self-contained HTML document (`templates/customer.html`): the CSS (`templates/page.css`) is
inlined and the charts are inline SVG drawn by template macros (`templates/charts.html`) from
coordinates computed in `charts.py`; no JavaScript and no external resource of any kind (the
product runs offline, and the page's Content-Security-Policy allows inline styles and data:
images only).

Escaping: the environment autoescapes every `.html` template, so every value of the page model
reaches the document escaped, as text or as an attribute, without any call to an escape
function here. Numbers, percentages, money, counts, periods and names are said in
`wording.py` (shared with the channel views, the exports and the figures), dates and chart
coordinates in the filters below; the templates use these filters only.
"""

from __future__ import annotations

from datetime import date, datetime

import jinja2

from churn_risk.features.lifecycle import SURVEY_SCALE
from churn_risk.models.portfolio import QUADRANT_LABELS
from churn_risk.serving import charts
from churn_risk.serving.charts import CHANGE_ROWS, WATERFALL_BARS
from churn_risk.serving.pagemodel import PAST_RECOMMENDATIONS, CustomerPage
from churn_risk.serving.wording import (
    BANDS,
    band_name,
    channel_name,
    counted,
    feature_value,
    human,
    money,
    number,
    pct,
    period,
    plural,
    signed,
    signed_count,
    spelled,
    tenure,
    thousands,
    words,
)

__all__ = ["render_customer_page", "render_login", "render_home", "render_listing",
           "render_worklist", "render_former", "environment",
           "WATERFALL_BARS", "CHANGE_ROWS"]

#: Rows shown in the tickets and deliveries tables (most recent first).
TABLE_ROWS = 20
#: "Working in their favour": factors lowering the risk among this many of the strongest.
FAVOUR_AMONG = WATERFALL_BARS * 2
#: Feature-level changes listed under "why did risk change".
CHANGE_FEATURES = 5

QUADRANT_NOTES = {
    "protect_first": "High value and high risk: act on this customer first.",
    "keep": "High value and low risk: keep the relationship healthy.",
    "grow": "Lower value and low risk: room to grow with the next product.",
    "let_go": "Lower value and high risk: retention spending is unlikely to pay back.",
}
#: The `let_go` note when an action does pay for this customer (the action is the one source of
#: truth: the note must not contradict the offer right below it).
LET_GO_WITH_ACTION = ("Lower value and high risk: most retention spending would not pay back, "
                      "but the action below is expected to.")


def quadrant_note(quadrant, action) -> str:
    """What the customer's place in the value x risk matrix means, given the action paid."""
    if quadrant == "let_go" and action is not None:
        return LET_GO_WITH_ACTION
    return QUADRANT_NOTES.get(quadrant, "")


# --------------------------------------------------------------------------------------------
# Filters: every number, percentage, amount and date on the page is formatted by these
# --------------------------------------------------------------------------------------------


def log_odds(x) -> str:
    return number(round(x, 2)).replace("-", "−")


def day(d: date | None, year: bool = True) -> str:
    """1 Dec 2025 (or 1 Dec); — when unknown."""
    if d is None:
        return "—"
    return f"{d.day} {d:%b %Y}" if year else f"{d.day} {d:%b}"


def moment(t: datetime | None) -> str:
    """2 Dec 2026 10:15 (UTC); — when unknown."""
    return "—" if t is None else f"{t.day} {t:%b %Y %H:%M}"


def month(d: date, year: bool = False) -> str:
    return f"{d:%b %Y}" if year else f"{d:%b}"


def clip(text, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fixed(x: float, digits: int = 4) -> str:
    """A number for a data- attribute (machine-read)."""
    return f"{x:.{digits}f}"


def xy(x: float) -> str:
    """An SVG coordinate or length."""
    return f"{x:.1f}"


FILTERS = {f.__name__: f for f in (
    number, thousands, signed_count, money, pct, signed, log_odds, day, moment, month, tenure,
    plural, counted, spelled, period, human, words,
    feature_value, clip, fixed, xy, band_name, channel_name,
)}


def environment() -> jinja2.Environment:
    """The templates of `churn_risk.serving`, autoescaped (every .html template)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("churn_risk.serving", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.globals.update(RAISES=charts.RAISES, LOWERS=charts.LOWERS, BANDS=BANDS,
                       QUADRANT_NOTES=QUADRANT_NOTES, TABLE_ROWS=TABLE_ROWS,
                       QUADRANT_LABELS=QUADRANT_LABELS,
                       PAST_RECOMMENDATIONS=PAST_RECOMMENDATIONS, SURVEY_SCALE=SURVEY_SCALE)
    return env


ENV = environment()


def render_customer_page(page: CustomerPage, viewer=None) -> str:
    """The whole HTML document for one customer (`CustomerPage.build(state, customer_id)`), for
    `viewer` (`people.Principal`: named, with a log-out button, when logged in)."""
    return ENV.get_template("customer.html").render(
        page=page,
        viewer=viewer,
        waterfall=charts.waterfall(page.explanation, page.risk.probability),
        reasons=page.explanation.raising(WATERFALL_BARS),
        favour=page.explanation.in_favour(FAVOUR_AMONG),
        quadrant_note=quadrant_note(page.value.quadrant, page.action),
        currency=page.currency,
        change_rows=charts.change_rows(page.risk_change.groups),
        changed_features=[f for f in page.risk_change.features if f.change][:CHANGE_FEATURES],
        products=charts.product_bars(page.next_products),
        contacts=charts.contacts_chart(page.history.contacts),
        surveys=charts.survey_chart(page.history.surveys),
    )


def render_login(next_path: str, error: str | None = None, user_name: str = "") -> str:
    """The login form (`POST /login`), going to `next_path` once logged in."""
    return ENV.get_template("login.html").render(next_path=next_path, error=error,
                                                 user_name=user_name)


def _portfolio_context(state) -> dict:
    """What every portfolio page says of the scores: model, period, target, currency."""
    bundle = state.bundle
    return {"model": state.model, "period": bundle.target.period,
            "target": bundle.target.description, "currency": bundle.policy.value.currency,
            "features_as_of": state.features_as_of,
            "channels": tuple(dict.fromkeys(a.channel for a in bundle.policy.actions))}


def render_home(home, viewer, state) -> str:
    """The portfolio home (`home.Home`)."""
    return ENV.get_template("home.html").render(home=home, viewer=viewer, query=None,
                                                **_portfolio_context(state))


def render_listing(listing, viewer, state) -> str:
    """A list of customers (`home.Listing`)."""
    return ENV.get_template("customers.html").render(listing=listing, viewer=viewer,
                                                     **_portfolio_context(state))


def render_worklist(page, viewer, state) -> str:
    """A channel's worklist (`home.WorklistPage`)."""
    return ENV.get_template("worklist.html").render(work=page, viewer=viewer,
                                                    **_portfolio_context(state))


def render_former(former, viewer, state) -> str:
    """The page of a former customer (`pagemodel.FormerCustomer`): their last known state."""
    return ENV.get_template("former.html").render(former=former, viewer=viewer,
                                                  **_portfolio_context(state))
