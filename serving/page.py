"""The page an account manager reads for one customer.

One self-contained HTML document: inline CSS and inline SVG charts, no JavaScript and no external
resource of any kind (the product runs offline). Built with the standard library only. Every value
taken from the customer record goes through `_e` (html.escape) before it reaches the document,
whether as text or as an attribute; numbers computed here (coordinates, widths) are formatted by
this module and never come from the record as text.

The input is the dict the service builds (see `render_customer_page`); every optional part may be
missing, None or empty and the page then says so instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime
from html import escape

__all__ = ["render_customer_page", "WATERFALL_BARS", "CHANGE_ROWS"]

#: Contributions drawn as their own waterfall bar; the rest are summed into one "other" bar.
WATERFALL_BARS = 8
#: Rows shown in the tickets and deliveries tables (most recent first).
TABLE_ROWS = 20

RAISES = "#dc2626"  # raises risk
LOWERS = "#2563eb"  # lowers risk
BANDS = {
    "low": "Low risk",
    "medium": "Medium risk",
    "high": "High risk",
    "very_high": "Very high risk",
}
CHANNELS = {
    "sales": ("Sales", "#6366f1"),
    "contact_center": ("Contact center", "#f59e0b"),
    "web": ("Web", "#10b981"),
    "service": ("Service", "#0ea5e9"),
    "campaign": ("Campaign", "#ec4899"),
}
EXTRA_COLOURS = ("#84cc16", "#14b8a6", "#a855f7", "#f97316", "#64748b")
SATISFACTION_COLOUR = "#2563eb"
NPS_COLOUR = "#9333ea"


# --------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------


def _e(value: object) -> str:
    """Escaped text for HTML text and attribute values; None becomes the empty string."""
    return "" if value is None else escape(str(value), quote=True)


def _num(value: object) -> float | None:
    """A finite float, or None for anything missing or not a number."""
    if value is None or isinstance(value, str | bytes):
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return value != value  # NaN, pandas NaT
    except Exception:  # noqa: BLE001 - exotic objects: treat as present
        return False


def _flag(value: object) -> bool | None:
    """True/False for bools, numpy bools, 0/1 and "true"/"false"; None when missing or unclear."""
    if _is_missing(value):
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes"):
            return True
        return False if text in ("false", "0", "no") else None
    try:
        return bool(value)
    except Exception:  # noqa: BLE001
        return None


def _fmt_number(x: float) -> str:
    if abs(x) >= 100 or float(x).is_integer():
        text = f"{x:,.0f}"
    elif abs(x) >= 10:
        text = f"{x:.1f}"
    else:
        text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "-0.0", "") else text


def _fmt_value(value: object, feature: object = "") -> str:
    """A feature value as an account manager reads it."""
    if _is_missing(value):
        return "not available"
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    x = _num(value)
    if x is None:
        return str(value)
    if "share" in str(feature) and 0.0 <= x <= 1.0:
        return f"{x * 100:.0f}%"
    return _fmt_number(x)


def _fmt_pct(p: object, digits: int = 1) -> str:
    x = _num(p)
    if x is None:
        return "—"
    x = min(max(x, 0.0), 1.0) * 100
    if 0 < x < 10 ** -digits:
        return f"<{10 ** -digits:.{digits}f}%"
    return f"{x:.{digits}f}%"


def _sigmoid(x: float) -> float:
    x = min(max(x, -700.0), 700.0)
    return 1.0 / (1.0 + math.exp(-x))


def _parse_date(value: object) -> date | None:
    if _is_missing(value):
        return None
    if isinstance(value, datetime):
        try:
            return value.date()
        except Exception:  # noqa: BLE001 - e.g. pandas NaT
            return None
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for candidate in (text[:10], text[:7] + "-01"):
        try:
            return date.fromisoformat(candidate)
        except ValueError:
            continue
    return None


def _fmt_date(value: object) -> str:
    d = _parse_date(value)
    if d is not None:
        return f"{d.day} {d:%b %Y}"
    return "—" if _is_missing(value) else str(value)


def _fmt_tenure(days: object) -> str | None:
    d = _num(days)
    if d is None or d < 0:
        return None
    if d < 60:
        n = round(d)
        return f"{n} day{'' if n == 1 else 's'}"
    months = int(d / 30.4375)
    if months < 12:
        return f"{months} months"
    years, months = divmod(months, 12)
    text = f"{years} year{'' if years == 1 else 's'}"
    if months:
        text += f" {months} month{'' if months == 1 else 's'}"
    return text


def _human(name: object) -> str:
    text = str(name).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _dicts(items: object) -> list[dict]:
    if not isinstance(items, Iterable) or isinstance(items, str | bytes | dict):
        return []
    return [item for item in items if isinstance(item, dict)]


def _nice_step(span: float, max_ticks: int) -> float:
    raw = max(span, 1e-9) / max(max_ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def _f(x: float) -> str:
    """A coordinate for SVG."""
    return f"{x:.1f}"


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------


def render_customer_page(customer: dict) -> str:
    """The whole HTML document for one customer.

    `customer` holds customer_id, features_as_of, model {name, version, alias},
    churn_probability (calibrated), risk_band, base_value and margin (log-odds), contributions
    (every feature, sorted by |contribution|), top_reasons, reason_sentences, next_products,
    profile, history {tickets, deliveries, contacts_by_month, satisfaction}, the value
    (horizon_margin, lifetime_value, value_at_risk, horizon_days), quadrant and quadrant_label,
    recommended_action {action, label, kind, channel, cost, success_rate, success_source,
    expected_profit, reason} (None: no action pays) and risk_change (`serving.change`'s answer
    for the snapshot against 3 months earlier, or {from_date, to_date, unavailable}).
    """
    c = customer if isinstance(customer, dict) else {}
    customer_id = c.get("customer_id")
    title = f"Customer {_e(customer_id)} · churn risk"
    body = "\n".join(
        [
            _header(c),
            '<div class="grid">',
            _value(c),
            _action(c),
            "</div>",
            '<div class="grid">',
            _reasons(c),
            _next_products(c),
            "</div>",
            _why(c),
            _risk_change(c),
            _history(c),
            '<footer class="foot">Generated by the churn-risk service. '
            "Figures are estimates to guide the conversation, not certainties.</footer>",
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _band(c: dict) -> tuple[str, str]:
    """(css class suffix, readable text) of the risk band."""
    band = c.get("risk_band")
    key = str(band).strip().lower() if band is not None else ""
    if key in BANDS:
        return key, BANDS[key]
    if not key:
        return "unknown", "Risk band unknown"
    return "unknown", f"{_human(band)} risk"


def _header(c: dict) -> str:
    band_class, band_text = _band(c)
    profile = c.get("profile") if isinstance(c.get("profile"), dict) else {}
    facts: list[str] = []
    if profile.get("segment") not in (None, ""):
        facts.append(f"{_e(_human(profile['segment']))} segment")
    if profile.get("region") not in (None, ""):
        facts.append(f"{_e(_human(profile['region']))} region")
    tenure = _fmt_tenure(profile.get("tenure_days"))
    if tenure:
        facts.append(f"customer for {_e(tenure)}")
    if profile.get("lifecycle_stage") not in (None, ""):
        facts.append(f"lifecycle stage: {_e(str(profile['lifecycle_stage']).replace('_', ' '))}")
    known = {"segment", "region", "tenure_days", "lifecycle_stage"}
    for key, value in profile.items():
        if key not in known and not _is_missing(value) and value != "":
            facts.append(f"{_e(_human(key).lower())}: {_e(_fmt_value(value, key))}")
    profile_line = " · ".join(facts) if facts else "No profile information"

    model = c.get("model") if isinstance(c.get("model"), dict) else {}
    model_bits = [f"Model <strong>{_e(model.get('name') or 'unknown')}</strong>"]
    if model.get("version") not in (None, ""):
        model_bits.append(f"version {_e(model['version'])}")
    if model.get("alias") not in (None, ""):
        model_bits.append(f'<span class="tag">@{_e(model["alias"])}</span>')
    meta = (
        " ".join(model_bits)
        + f' <span class="sep">·</span> features as of <strong>'
        f"{_e(_fmt_date(c.get('features_as_of')))}</strong>"
    )
    return f"""<header class="card top">
  <div class="who">
    <div class="eyebrow">Customer</div>
    <h1>{_e(c.get("customer_id", "unknown"))}</h1>
    <p class="profile">{profile_line}</p>
    <p class="meta">{meta}</p>
  </div>
  <div id="risk" class="risk" title="{_e((c.get("target") or {}).get("description", ""))}">
    <div class="risk-label">{_e(_risk_label(c.get("target")))}</div>
    <div class="risk-value tone-{band_class}">{_e(_fmt_pct(c.get("churn_probability")))}</div>
    <span class="badge band-{band_class}">{_e(band_text)}</span>
  </div>
</header>"""


def _risk_label(target: dict | None) -> str:
    """"Chance of leaving within 90 days" (the target's period, in words)."""
    if not target:
        return "Chance of leaving"
    from churn_risk.features.target import Target

    period = Target.model_validate({k: target[k] for k in ("kind", "horizon_days")}).period
    return f"Chance of leaving within {period}"


QUADRANT_NOTES = {
    "protect_first": "High value and high risk: act on this customer first.",
    "keep": "High value and low risk: keep the relationship healthy.",
    "grow": "Lower value and low risk: room to grow with the next product.",
    "let_go": "Lower value and high risk: retention spending is unlikely to pay back.",
}
#: Driver groups listed in "why did risk change" (the largest changes; the rest are summed).
CHANGE_ROWS = 8
#: Feature-level changes listed under the groups.
CHANGE_FEATURES = 5


def _money(value: object) -> str:
    x = _num(value)
    return "not available" if x is None else _fmt_number(x)


def _signed(x: float, digits: int = 2) -> str:
    text = f"{abs(x):.{digits}f}"
    if float(text) == 0:
        return f"{0:.{digits}f}"
    return ("+" if x > 0 else "−") + text


def _stat(label: str, value: str, note: str) -> str:
    return (f'<div class="stat"><div class="stat-label">{label}</div>'
            f'<div class="stat-value">{_e(value)}</div><div class="stat-note">{note}</div></div>')


def _value(c: dict) -> str:
    """Value if retained, lifetime value, value at risk and the value × risk quadrant."""
    horizon = _num(c.get("horizon_days"))
    horizon_text = f"the next {horizon:.0f} days" if horizon else "the next period"
    stats = [
        _stat(f"Margin over {_e(horizon_text)}", _money(c.get("horizon_margin")),
              "if the customer stays"),
        _stat("Lifetime value", _money(c.get("lifetime_value")),
              "discounted margin over the coming years"),
        _stat("Value at risk", _money(c.get("value_at_risk")),
              "chance of leaving × lifetime value"),
    ]
    known = any(_num(c.get(k)) is not None
                for k in ("horizon_margin", "lifetime_value", "value_at_risk"))
    content = (f'<div class="stats">{"".join(stats)}</div>' if known else
               '<p class="empty">Customer value is not available: this model has no value '
               "model.</p>")
    quadrant = c.get("quadrant")
    if _is_missing(quadrant) or quadrant == "":
        quadrant_html = ('<div id="quadrant" class="quadrant"><p class="caption">Place in the '
                         "value × risk matrix not available.</p></div>")
    else:
        key = str(quadrant)
        label = c.get("quadrant_label")
        label = _human(key) if _is_missing(label) or label == "" else str(label)
        css = key if key in QUADRANT_NOTES else "unknown"
        note = QUADRANT_NOTES.get(key, "")
        quadrant_html = (
            f'<div id="quadrant" class="quadrant"><span class="qbadge q-{css}">{_e(label)}</span>'
            f'<span class="qnote">Value × risk matrix{": " + _e(note) if note else ""}</span>'
            "</div>"
        )
    return (f'<section class="card" id="value"><h2>Customer value</h2>{content}'
            f"{quadrant_html}</section>")


def _action(c: dict) -> str:
    """The next-best action with its expected profit, cost, success rate and source, and why."""
    action = c.get("recommended_action")
    if not isinstance(action, dict) or not action:
        content = ('<p class="empty">No action is expected to pay off for this customer right '
                   "now.</p>")
        return (f'<section class="card" id="recommended-action"><h2>Recommended action</h2>'
                f"{content}</section>")
    name = action.get("action")
    label = action.get("label")
    title = str(label) if not _is_missing(label) and label != "" else _human(name or "action")
    channel = action.get("channel")
    channel_text = CHANNELS.get(str(channel), (_human(channel), ""))[0] if channel else None
    tags = f'<span class="tag">{_e(channel_text)}</span>' if channel_text else ""
    rows = []
    profit = _num(action.get("expected_profit"))
    if profit is not None:
        rows.append(("Expected profit", f'<strong class="good-text">{_e(_fmt_number(profit))}'
                                        "</strong>"))
    cost = _num(action.get("cost"))
    if cost is not None:
        rows.append(("Cost", _e(_fmt_number(cost))))
    rate = _num(action.get("success_rate"))
    if rate is not None:
        rows.append(("Success rate", _e(_fmt_pct(rate, 0))))
    source = action.get("success_source")
    if not _is_missing(source) and source != "":
        rows.append(("Source of the rate", _e(source)))
    reason = action.get("reason")
    if action.get("kind") == "growth":
        why = (f"Likely next product: <strong>{_e(_human(reason))}</strong>"
               if not _is_missing(reason) else "A likely next product")
    elif not _is_missing(reason) and reason != "":
        why = (f"Answers the <strong>{_e(str(reason).replace('_', ' '))}</strong> problems that "
               "raise this customer's risk")
    else:
        why = "A general retention offer for a customer at risk"
    rows.append(("Why", why))
    if not _is_missing(name) and name != "":
        rows.append(("Catalogue name", f"<code>{_e(name)}</code>"))
    table = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (
        '<section class="card" id="recommended-action"><h2>Recommended action</h2>'
        f'<p class="action-title"><strong>{_e(title)}</strong> {tags}</p>'
        f'<dl class="kv">{table}</dl></section>'
    )


def _risk_change(c: dict) -> str:
    """Why did risk change: driver-group contributions at two dates and their change."""
    change = c.get("risk_change")
    head = '<section class="card" id="risk-change"><h2>Why did risk change'
    if not isinstance(change, dict):
        return (head + '</h2><p class="empty">No earlier score to compare with.</p></section>')
    dates = ""
    if change.get("from_date") or change.get("to_date"):
        dates = (f'<span class="h2-note">{_e(_fmt_date(change.get("from_date")))} → '
                 f'{_e(_fmt_date(change.get("to_date")))}</span>')
    head += f" {dates}</h2>"
    if change.get("unavailable"):
        return (head + f'<p class="empty">No comparison: {_e(change["unavailable"])}</p>'
                "</section>")
    groups = [g for g in _dicts(change.get("groups")) if _num(g.get("change")) is not None]
    p_from = _num(change.get("churn_probability_from"))
    p_to = _num(change.get("churn_probability_to"))
    summary = ""
    if p_from is not None and p_to is not None:
        points = (p_to - p_from) * 100
        verb = "rose" if points > 0.05 else "fell" if points < -0.05 else "stayed about the same"
        summary = (f'<p class="summary">Chance of leaving {verb}: {_e(_fmt_pct(p_from))} → '
                   f"<strong>{_e(_fmt_pct(p_to))}</strong> ({_e(_signed(points, 1))} points)."
                   "</p>")
    if not groups:
        return head + summary + '<p class="empty">No change to explain.</p></section>'
    groups.sort(key=lambda g: -abs(_num(g.get("change")) or 0.0))
    shown, rest = groups[:CHANGE_ROWS], groups[CHANGE_ROWS:]
    if rest:
        shown.append({
            "driver_group": f"{len(rest)} other group{'' if len(rest) == 1 else 's'}",
            "contribution_from": sum(_num(g.get("contribution_from")) or 0.0 for g in rest),
            "contribution_to": sum(_num(g.get("contribution_to")) or 0.0 for g in rest),
            "change": sum(_num(g.get("change")) or 0.0 for g in rest),
        })
    largest = max(abs(_num(g.get("change")) or 0.0) for g in shown) or 1.0
    rows = []
    for g in shown:
        delta = _num(g.get("change")) or 0.0
        width = abs(delta) / largest * 100
        colour = "#6b7280" if abs(delta) < 0.005 else RAISES if delta > 0 else LOWERS
        bar = ('<span class="dbar"><span class="dhalf neg">'
               + (f'<span data-change="{delta:.4f}" style="width:{width:.1f}%;'
                  f'background:{colour}"></span>' if delta < 0 else "")
               + '</span><span class="dhalf pos">'
               + (f'<span data-change="{delta:.4f}" style="width:{width:.1f}%;'
                  f'background:{colour}"></span>' if delta > 0 else "")
               + "</span></span>")
        rows.append(
            f'<tr data-group="{_e(g.get("driver_group"))}">'
            f'<td>{_e(_human(g.get("driver_group", "")))}</td>'
            f'<td class="num">{_e(_signed(_num(g.get("contribution_from")) or 0.0))}</td>'
            f'<td class="num">{_e(_signed(_num(g.get("contribution_to")) or 0.0))}</td>'
            f'<td class="num" style="color:{colour}"><strong>{_e(_signed(delta))}</strong></td>'
            f'<td class="wide">{bar}</td></tr>'
        )
    table = (
        '<div class="scroll"><table class="change"><thead><tr><th>Driver group</th>'
        f'<th class="num">{_e(_fmt_date(change.get("from_date")))}</th>'
        f'<th class="num">{_e(_fmt_date(change.get("to_date")))}</th>'
        '<th class="num">Change</th><th>lowers risk ← → raises risk</th></tr></thead><tbody>'
        + "".join(rows) + "</tbody></table></div>"
    )
    features = [f for f in _dicts(change.get("features")) if _num(f.get("change"))]
    details = ""
    if features:
        items = "".join(
            f"<li>{_e(_label(f))}: {_e(_fmt_value(f.get('value_from'), f.get('feature', '')))} → "
            f"<strong>{_e(_fmt_value(f.get('value_to'), f.get('feature', '')))}</strong> "
            f'<span style="color:{RAISES if (_num(f.get("change")) or 0) > 0 else LOWERS}">'
            f"({_e(_signed(_num(f.get('change')) or 0.0))})</span></li>"
            for f in features[:CHANGE_FEATURES]
        )
        details = f'<h3>What changed most</h3><ul class="changes">{items}</ul>'
    caption = (
        '<p class="caption">Each driver group\'s contribution to the model\'s score (log-odds) '
        "at both dates, and its change: red raised the risk, blue lowered it. The changes add up "
        "to the change of the score.</p>"
    )
    return head + summary + table + details + caption + "</section>"


# --------------------------------------------------------------------------------------------
# Reasons and next products
# --------------------------------------------------------------------------------------------


def _contribution(item: dict) -> float:
    return _num(item.get("contribution")) or 0.0


def _label(item: dict) -> str:
    label = item.get("label")
    if label in (None, ""):
        label = _human(item.get("feature", "unnamed factor"))
    return str(label)


def _reasons(c: dict) -> str:
    raw = c.get("reason_sentences")
    if isinstance(raw, str):
        raw = [raw]
    elif not isinstance(raw, list | tuple):
        raw = []
    sentences = [s for s in raw if not _is_missing(s) and s != ""]
    top = _dicts(c.get("top_reasons"))
    items = []
    if sentences:
        paired = top if len(top) == len(sentences) else [{}] * len(sentences)
        for sentence, reason in zip(sentences, paired, strict=True):
            items.append(f"<li>{_e(sentence)}{_reason_tags(reason)}</li>")
    else:
        for reason in top:
            value = _fmt_value(reason.get("value"), reason.get("feature", ""))
            items.append(
                f"<li>{_e(_label(reason))}: <strong>{_e(value)}</strong>"
                f"{_reason_tags(reason)}</li>"
            )
    if items:
        content = '<ol class="reasons">' + "".join(items) + "</ol>"
    else:
        content = '<p class="empty">No factor stands out as raising this customer\'s risk.</p>'

    lowering = [
        x for x in _dicts(c.get("contributions"))[: WATERFALL_BARS * 2] if _contribution(x) < 0
    ][:3]
    if lowering:
        content += '<h3>Working in their favour</h3><ul class="favour">' + "".join(
            f"<li>{_e(_label(x))}: <strong>"
            f"{_e(_fmt_value(x.get('value'), x.get('feature', '')))}</strong></li>"
            for x in lowering
        ) + "</ul>"
    return (
        '<section class="card" id="reasons"><h2>Main reasons for the risk</h2>'
        f"{content}</section>"
    )


def _reason_tags(reason: dict) -> str:
    tags = []
    if reason.get("driver_group") not in (None, ""):
        tags.append(f'<span class="tag">{_e(str(reason["driver_group"]).replace("_", " "))}</span>')
    if _flag(reason.get("actionable")) is True:
        tags.append('<span class="tag act">you can act on this</span>')
    return (' <span class="tags">' + "".join(tags) + "</span>") if tags else ""


def _next_products(c: dict) -> str:
    products = []
    for item in _dicts(c.get("next_products")):
        p = _num(item.get("propensity"))
        if p is not None:
            products.append((item.get("family", "unknown"), min(max(p, 0.0), 1.0)))
    if not products:
        content = '<p class="empty">No product suggestions for this customer.</p>'
    else:
        top = max(p for _, p in products) or 1.0
        rows = "".join(
            f'<li><span class="bar-label">{_e(_human(family))}</span>'
            f'<span class="bar-track"><span class="bar-fill" style="width:{p / top * 100:.1f}%">'
            f'</span></span><span class="bar-value">{_e(_fmt_pct(p))}</span></li>'
            for family, p in products
        )
        content = (
            f'<ul class="hbars">{rows}</ul><p class="caption">Chance that the customer takes up '
            "a product of this family soon. Bars are scaled to the most likely family.</p>"
        )
    return (
        '<section class="card" id="next-products"><h2>Likely next products</h2>'
        f"{content}</section>"
    )


# --------------------------------------------------------------------------------------------
# Waterfall
# --------------------------------------------------------------------------------------------


def _why(c: dict) -> str:
    svg, caption = _waterfall(c)
    legend = (
        '<div class="legend">'
        f'<span><i style="background:{RAISES}"></i>raises risk</span>'
        f'<span><i style="background:{LOWERS}"></i>lowers risk</span>'
        '<span><i class="marker"></i>score</span></div>'
    )
    return (
        '<section class="card" id="why"><div class="card-head"><h2>Why this risk</h2>'
        f'{legend}</div><div class="scroll">{svg}</div><p class="caption">{caption}</p></section>'
    )


def _waterfall(c: dict) -> tuple[str, str]:
    contributions = sorted(_dicts(c.get("contributions")), key=lambda x: -abs(_contribution(x)))
    top, rest = contributions[:WATERFALL_BARS], contributions[WATERFALL_BARS:]
    total = sum(_contribution(x) for x in contributions)
    base, margin = _num(c.get("base_value")), _num(c.get("margin"))
    if base is None and margin is None and not contributions:
        svg = (
            '<svg id="waterfall" class="chart wide" viewBox="0 0 1000 60" role="img" '
            'aria-label="No explanation available"><text x="500" y="35" text-anchor="middle" '
            'class="muted">No explanation is available for this score.</text></svg>'
        )
        return svg, "The model did not return an explanation for this customer."
    if base is None:
        base = (margin if margin is not None else 0.0) - total
    if margin is None:
        margin = base + total
    # "Other" closes the gap to the margin, so the chart always ends at the customer's score.
    other = margin - base - sum(_contribution(x) for x in top)

    rows: list[dict] = []
    running = base
    for item in top:
        delta = _contribution(item)
        value = _fmt_value(item.get("value"), item.get("feature", ""))
        group = item.get("driver_group")
        sub = f"value {value}" + (f" · {str(group).replace('_', ' ')}" if group else "")
        rows.append(
            {"kind": "bar", "key": item.get("feature", ""), "label": _label(item), "sub": sub,
             "start": running, "end": running + delta, "delta": delta}
        )
        running += delta
    n_rest = len(rest)
    rows.append(
        {"kind": "bar", "key": "other", "label": "Other factors",
         "sub": f"{n_rest} smaller factor{'' if n_rest == 1 else 's'} combined" if n_rest
         else "none left", "start": running, "end": margin, "delta": other}
    )
    p_base = _sigmoid(base)
    p_final = _num(c.get("churn_probability"))
    final_text = _fmt_pct(p_final) if p_final is not None else _fmt_pct(_sigmoid(margin))
    rows.insert(0, {"kind": "start", "label": "Typical customer",
                    "sub": f"average score · {_fmt_pct(p_base)} chance of leaving",
                    "start": base, "end": base, "marker": _fmt_pct(p_base)})
    rows.append({"kind": "end", "label": "This customer",
                 "sub": f"churn probability {final_text} (calibrated)",
                 "start": margin, "end": margin, "marker": final_text})

    points = [v for r in rows for v in (r["start"], r["end"])]
    lo, hi = min(points), max(points)
    span = max(hi - lo, 0.5)
    lo, hi = lo - span * 0.16, hi + span * 0.16

    width, x0, x1 = 1000, 430.0, 980.0
    row_h, top_y = 46, 8
    axis_y = top_y + len(rows) * row_h + 6
    height = axis_y + 52

    def x_of(v: float) -> float:
        return x0 + (v - lo) / (hi - lo) * (x1 - x0)

    out = [
        f'<svg id="waterfall" class="chart wide" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="waterfall-title" preserveAspectRatio="xMinYMin meet">',
        '<title id="waterfall-title">How each factor moves this customer\'s churn score from '
        "that of a typical customer</title>",
    ]
    # zebra rows
    for i in range(len(rows)):
        if i % 2 == 1:
            out.append(f'<rect x="0" y="{top_y + i * row_h}" width="{width}" height="{row_h}" '
                       'class="zebra"/>')
    # grid and axis
    step = _nice_step(hi - lo, 7)
    tick = math.ceil(lo / step) * step
    ticks = []
    while tick <= hi + 1e-9:
        ticks.append(tick)
        tick += step
    for t in ticks:
        x = _f(x_of(t))
        zero = abs(t) < 1e-9
        out.append(f'<line x1="{x}" y1="{top_y}" x2="{x}" y2="{axis_y}" '
                   f'class="{"grid-zero" if zero else "grid"}"/>')
        out.append(f'<text x="{x}" y="{axis_y + 16}" text-anchor="middle" class="tick">'
                   f"{_e(_fmt_number(round(t, 2)).replace('-', '−'))}</text>")
        out.append(f'<text x="{x}" y="{axis_y + 30}" text-anchor="middle" class="tick muted">'
                   f"{_e(_fmt_pct(_sigmoid(t), 0 if 0.01 <= _sigmoid(t) <= 0.99 else 1))}</text>")
    out.append(f'<line x1="{_f(x0)}" y1="{axis_y}" x2="{_f(x1)}" y2="{axis_y}" class="axis"/>')
    out.append(f'<text x="{_f(x0 - 10)}" y="{axis_y + 16}" text-anchor="end" class="tick muted">'
               "score (log-odds)</text>")
    out.append(f'<text x="{_f(x0 - 10)}" y="{axis_y + 30}" text-anchor="end" class="tick muted">'
               "≈ chance before calibration</text>")

    for i, row in enumerate(rows):
        y = top_y + i * row_h
        bar_y, bar_h = y + 11, row_h - 22
        label = _truncate(row["label"], 52)
        label_class = "row-label strong" if row["kind"] != "bar" else "row-label"
        out.append(f'<g class="row"><title>{_e(row["label"])} — {_e(row["sub"])}</title>')
        out.append(f'<text x="16" y="{y + 20}" class="{label_class}">{_e(label)}</text>')
        out.append(f'<text x="16" y="{y + 36}" class="row-sub">{_e(_truncate(row["sub"], 64))}'
                   "</text>")
        if row["kind"] == "bar":
            start, end, delta = row["start"], row["end"], row["delta"]
            xa, xb = x_of(min(start, end)), x_of(max(start, end))
            colour = RAISES if delta > 0 else LOWERS if delta < 0 else "#9ca3af"
            opacity = ' fill-opacity="0.6"' if row["key"] == "other" else ""
            out.append(
                f'<rect data-bar="{_e(row["key"])}" data-contribution="{delta:.4f}" '
                f'x="{_f(xa)}" y="{bar_y}" width="{_f(max(xb - xa, 2.0))}" height="{bar_h}" '
                f'rx="3" fill="{colour}"{opacity}/>'
            )
            sign = "+" if delta >= 0 else "−"
            text = f"{sign}{abs(delta):.2f}"
            if delta >= 0:
                out.append(f'<text x="{_f(max(xb, xa + 2) + 6)}" y="{bar_y + bar_h / 2 + 4:.1f}" '
                           f'class="delta" fill="{colour}">{text}</text>')
            else:
                out.append(f'<text x="{_f(xa - 6)}" y="{bar_y + bar_h / 2 + 4:.1f}" '
                           f'text-anchor="end" class="delta" fill="{colour}">{text}</text>')
        else:
            xm = x_of(row["start"])
            out.append(f'<rect data-total="{row["kind"]}" x="{_f(xm - 2.5)}" y="{bar_y - 3}" '
                       f'width="5" height="{bar_h + 6}" rx="2" class="marker"/>')
            out.append(f'<text x="{_f(xm + 9)}" y="{bar_y + bar_h / 2 + 5:.1f}" '
                       f'class="marker-text">{_e(row["marker"])}</text>')
        out.append("</g>")
        if i < len(rows) - 1:
            xc = _f(x_of(row["end"]))
            out.append(f'<line x1="{xc}" y1="{bar_y + bar_h}" x2="{xc}" '
                       f'y2="{y + row_h + 11}" class="connector"/>')
    out.append("</svg>")

    raw = _fmt_pct(_sigmoid(margin))
    caption = (
        "How to read this: the chart starts from the score of a typical customer "
        f"({_e(_fmt_pct(p_base))} chance of leaving) and shows how each of this customer's "
        "characteristics moves the score up (red, more risk) or down (blue, less risk); the "
        f"{len(top)} strongest are shown on their own, the rest together. The scale is the "
        "model's log-odds score before calibration: on its own the model would say "
        f"{_e(raw)}; after calibration the churn probability shown on this page is "
        f"<strong>{_e(final_text)}</strong>."
    )
    return "\n".join(out), caption


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------


def _history(c: dict) -> str:
    history = c.get("history") if isinstance(c.get("history"), dict) else {}
    as_of = _parse_date(c.get("features_as_of"))
    since = f" before {_e(_fmt_date(as_of))}" if as_of else ""
    return f"""<section class="card" id="history">
<h2>Relationship history <span class="h2-note">last 12 months{since}</span></h2>
<div class="grid">
{_tickets(_dicts(history.get("tickets")), as_of)}
{_deliveries(_dicts(history.get("deliveries")))}
{_contacts(_dicts(history.get("contacts_by_month")))}
{_satisfaction(_dicts(history.get("satisfaction")))}
</div>
</section>"""


def _panel(element_id: str, title: str, summary: str, content: str) -> str:
    summary_html = f'<p class="summary">{summary}</p>' if summary else ""
    return (f'<div class="panel" id="{element_id}"><h3>{title}</h3>{summary_html}'
            f"{content}</div>")


def _most_recent(rows: list[dict], key: str) -> list[dict]:
    return sorted(rows, key=lambda r: _parse_date(r.get(key)) or date.min, reverse=True)


def _tickets(tickets: list[dict], as_of: date | None) -> str:
    if not tickets:
        return _panel("tickets", "Tickets", "",
                      '<p class="empty">No tickets in the last 12 months.</p>')
    rows = []
    n_open = n_unresolved = 0
    for t in _most_recent(tickets, "opened_at"):
        opened, closed = _parse_date(t.get("opened_at")), _parse_date(t.get("closed_at"))
        is_open = _is_missing(t.get("closed_at"))
        resolved = _flag(t.get("resolved"))
        if is_open:
            n_open += 1
            status, cls = '<span class="pill bad">Open</span>', "flag"
            end = as_of
        elif resolved is False:
            n_unresolved += 1
            status, cls = '<span class="pill warn">Not solved</span>', "warn"
            end = closed
        else:
            status = ('<span class="pill ok">Solved</span>' if resolved is True
                      else '<span class="pill">Closed</span>')
            cls, end = "", closed
        days = f"{(end - opened).days:,}" if opened and end and end >= opened else "—"
        if is_open and days != "—":
            days += " so far"
        category = t.get("category")
        category_text = "—" if _is_missing(category) else _human(category)
        rows.append(
            f'<tr class="{cls}"><td>{_e(_fmt_date(t.get("opened_at")))}</td>'
            f'<td class="wrap">{_e(category_text)}</td>'
            f"<td>{status}</td><td>{_e(_fmt_date(t.get('closed_at')) if not is_open else '—')}"
            f'</td><td class="num">{_e(days)}</td></tr>'
        )
    n = len(tickets)
    summary = f"{n} ticket{'' if n == 1 else 's'}"
    if n_open:
        summary += f' · <strong class="bad-text">{n_open} still open</strong>'
    if n_unresolved:
        summary += f" · {n_unresolved} closed without a solution"
    table = (
        '<div class="scroll"><table><thead><tr><th>Opened</th><th>Category</th><th>Status</th>'
        "<th>Closed</th>"
        '<th class="num">Days</th></tr></thead><tbody>'
        + "".join(rows[:TABLE_ROWS]) + "</tbody></table></div>" + _more(n)
    )
    return _panel("tickets", "Tickets", summary, table)


def _more(n: int) -> str:
    if n <= TABLE_ROWS:
        return ""
    return f'<p class="caption">Showing the {TABLE_ROWS} most recent of {n}.</p>'


def _deliveries(deliveries: list[dict]) -> str:
    if not deliveries:
        return _panel("deliveries", "Deliveries", "",
                      '<p class="empty">No deliveries in the last 12 months.</p>')
    rows = []
    n_late = n_damaged = n_pending = 0
    for d in _most_recent(deliveries, "promised_date"):
        promised = _parse_date(d.get("promised_date"))
        delivered = _parse_date(d.get("delivered_date"))
        late = _num(d.get("days_late"))
        if late is None and promised and delivered:
            late = float((delivered - promised).days)
        damaged = _flag(d.get("damaged")) is True
        notes = []
        if delivered is None:
            n_pending += 1
            notes.append('<span class="pill warn">Not delivered</span>')
        if late is not None and late > 0:
            n_late += 1
            notes.append(f'<span class="pill bad">{_e(_fmt_number(late))} '
                         f"day{'' if late == 1 else 's'} late</span>")
        if damaged:
            n_damaged += 1
            notes.append('<span class="pill bad">Damaged</span>')
        if not notes:
            notes.append('<span class="pill ok">On time</span>')
        cls = "flag" if (damaged or (late or 0) > 0) else "warn" if delivered is None else ""
        rows.append(
            f'<tr class="{cls}"><td>{_e(_fmt_date(d.get("promised_date")))}</td>'
            f"<td>{_e(_fmt_date(d.get('delivered_date')))}</td>"
            f'<td class="wrap">{" ".join(notes)}</td></tr>'
        )
    n = len(deliveries)
    bits = [f"{n} deliver{'y' if n == 1 else 'ies'}"]
    if n_late:
        bits.append(f'<strong class="bad-text">{n_late} late</strong>')
    if n_damaged:
        bits.append(f'<strong class="bad-text">{n_damaged} damaged</strong>')
    if n_pending:
        bits.append(f"{n_pending} not delivered")
    table = (
        '<div class="scroll"><table><thead><tr><th>Promised</th><th>Delivered</th>'
        "<th>Outcome</th></tr></thead>"
        "<tbody>" + "".join(rows[:TABLE_ROWS]) + "</tbody></table></div>" + _more(n)
    )
    return _panel("deliveries", "Deliveries", " · ".join(bits), table)


def _contacts(months: list[dict]) -> str:
    empty = _panel("contacts", "Contacts per month", "",
                   '<p class="empty">No contacts in the last 12 months.</p>')
    if not months:
        return empty
    channels = list(CHANNELS)
    for m in months:
        for key, value in m.items():
            if key != "month" and key not in channels and _num(value) is not None:
                channels.append(key)
    colours = {
        ch: CHANNELS[ch][1] if ch in CHANNELS else EXTRA_COLOURS[i % len(EXTRA_COLOURS)]
        for i, ch in enumerate(channels)
    }
    names = {ch: CHANNELS[ch][0] if ch in CHANNELS else _human(ch) for ch in channels}
    data = sorted(months, key=lambda m: str(m.get("month", "")))
    counts = [{ch: max(_num(m.get(ch)) or 0.0, 0.0) for ch in channels} for m in data]
    totals = [sum(row.values()) for row in counts]
    if not any(totals):
        return empty
    used = [ch for ch in channels if any(row[ch] for row in counts)]

    width, height = 520, 230
    left, right, top, bottom = 34, 8, 14, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    step = _nice_step(max(totals), 4)
    step = max(step, 1.0)
    y_max = math.ceil(max(totals) / step) * step
    band = plot_w / len(data)
    bar_w = min(band * 0.64, 34)
    out = [f'<svg class="chart small" viewBox="0 0 {width} {height}" role="img" '
           'aria-label="Contacts per month by channel">']
    v = 0.0
    while v <= y_max + 1e-9:
        y = top + plot_h - v / y_max * plot_h
        out.append(f'<line x1="{left}" y1="{_f(y)}" x2="{width - right}" y2="{_f(y)}" '
                   'class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{_f(y + 4)}" text-anchor="end" class="tick">'
                   f"{_fmt_number(v)}</text>")
        v += step
    previous_year = None
    for i, (m, row, total) in enumerate(zip(data, counts, totals, strict=True)):
        cx = left + band * (i + 0.5)
        y = top + plot_h
        month_text = str(m.get("month", ""))
        d = _parse_date(month_text)
        for ch in channels:
            value = row[ch]
            if value <= 0:
                continue
            h = value / y_max * plot_h
            y -= h
            out.append(
                f'<rect x="{_f(cx - bar_w / 2)}" y="{_f(y)}" width="{_f(bar_w)}" '
                f'height="{_f(h)}" fill="{colours[ch]}"><title>{_e(month_text)} · '
                f"{_e(names[ch])}: {_e(_fmt_number(value))}</title></rect>"
            )
        if total:
            out.append(f'<text x="{_f(cx)}" y="{_f(y - 4)}" text-anchor="middle" '
                       f'class="tick">{_e(_fmt_number(total))}</text>')
        label = f"{d:%b}" if d else _truncate(month_text, 7)
        out.append(f'<text x="{_f(cx)}" y="{top + plot_h + 16}" text-anchor="middle" '
                   f'class="tick">{_e(label)}</text>')
        if d and d.year != previous_year:
            out.append(f'<text x="{_f(cx)}" y="{top + plot_h + 30}" text-anchor="middle" '
                       f'class="tick muted">{d.year}</text>')
            previous_year = d.year
    out.append("</svg>")
    legend = '<div class="legend">' + "".join(
        f'<span><i style="background:{colours[ch]}"></i>{_e(names[ch])}</span>' for ch in used
    ) + "</div>"
    n = sum(totals)
    months_text = f"{len(data)} month{'' if len(data) == 1 else 's'}"
    summary = f"{_fmt_number(n)} contact{'' if n == 1 else 's'} over {months_text}"
    return _panel("contacts", "Contacts per month", _e(summary), "\n".join(out) + legend)


def _satisfaction(surveys: list[dict]) -> str:
    points = []
    for s in surveys:
        d = _parse_date(s.get("timestamp"))
        if d is None:
            continue
        sat, nps = _num(s.get("satisfaction")), _num(s.get("nps"))
        if sat is not None or nps is not None:
            points.append((d, sat, nps))
    if not points:
        return _panel("satisfaction", "Satisfaction", "",
                      '<p class="empty">No surveys in the last 12 months.</p>')
    points.sort(key=lambda p: p[0])
    values = [v for _, sat, nps in points for v in (sat, nps) if v is not None]
    if min(values) >= 0 and max(values) <= 10:
        y_lo, y_hi, step = 0.0, 10.0, 2.0
    else:
        step = _nice_step(max(values) - min(values) or 1.0, 5)
        y_lo = math.floor(min(values) / step) * step
        y_hi = math.ceil(max(values) / step) * step
        if y_hi == y_lo:
            y_hi = y_lo + step
    d_lo, d_hi = points[0][0], points[-1][0]
    days = (d_hi - d_lo).days

    width, height = 520, 230
    left, right, top, bottom = 34, 16, 14, 44
    plot_w, plot_h = width - left - right, height - top - bottom

    def x_of(d: date) -> float:
        if days == 0:
            return left + plot_w / 2
        return left + 10 + (d - d_lo).days / days * (plot_w - 20)

    def y_of(v: float) -> float:
        return top + plot_h - (v - y_lo) / (y_hi - y_lo) * plot_h

    out = [f'<svg class="chart small" viewBox="0 0 {width} {height}" role="img" '
           'aria-label="Satisfaction and NPS over time">']
    v = y_lo
    while v <= y_hi + 1e-9:
        y = _f(y_of(v))
        out.append(f'<line x1="{left}" y1="{y}" x2="{width - right}" y2="{y}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{_f(y_of(v) + 4)}" text-anchor="end" '
                   f'class="tick">{_fmt_number(v)}</text>')
        v += step
    # date ticks: each point when few, else five evenly spaced dates
    if len(points) <= 6:
        tick_dates = sorted({d for d, _, _ in points})
    else:
        tick_dates = sorted({d_lo + (d_hi - d_lo) * i / 4 for i in range(5)})
    fmt = "%b" if d_lo.year == d_hi.year and len(tick_dates) > 1 else "%b %Y"
    for d in tick_dates:
        label = f"{d.day} {d:{fmt}}" if len(points) <= 6 else f"{d:{fmt}}"
        out.append(f'<text x="{_f(x_of(d))}" y="{top + plot_h + 16}" text-anchor="middle" '
                   f'class="tick">{_e(label)}</text>')
    if fmt == "%b":
        out.append(f'<text x="{_f(x_of(tick_dates[0]))}" y="{top + plot_h + 30}" '
                   f'text-anchor="middle" class="tick muted">{d_lo.year}</text>')
    series = []
    for index, name, colour, dash in ((1, "Satisfaction", SATISFACTION_COLOUR, ""),
                                      (2, "NPS", NPS_COLOUR, ' stroke-dasharray="6 4"')):
        pts = [(p[0], p[index]) for p in points if p[index] is not None]
        if not pts:
            continue
        series.append((name, colour))
        if len(pts) > 1:
            path = " ".join(f"{_f(x_of(d))},{_f(y_of(v))}" for d, v in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                       f'stroke-width="2.5" stroke-linejoin="round"{dash}/>')
        for d, v in pts:
            out.append(f'<circle cx="{_f(x_of(d))}" cy="{_f(y_of(v))}" r="4" fill="#fff" '
                       f'stroke="{colour}" stroke-width="2.5"><title>{_e(name)} '
                       f"{_e(_fmt_number(v))} on {_e(_fmt_date(d))}</title></circle>")
    out.append("</svg>")
    legend = '<div class="legend">' + "".join(
        f'<span><i style="background:{colour}"></i>{name}</span>' for name, colour in series
    ) + "</div>"
    last_d, last_sat, last_nps = points[-1]
    bits = []
    if last_sat is not None:
        bits.append(f"satisfaction {_fmt_number(last_sat)}")
    if last_nps is not None:
        bits.append(f"NPS {_fmt_number(last_nps)}")
    summary = f"Latest survey ({_fmt_date(last_d)}): " + ", ".join(bits)
    n = len(points)
    summary += f" · {n} survey{'' if n == 1 else 's'}"
    return _panel("satisfaction", "Satisfaction", _e(summary), "\n".join(out) + legend)


_CSS = """
:root{--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f3f4f6;--card:#fff;
--raise:#dc2626;--lower:#2563eb}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
"Liberation Sans","DejaVu Sans",sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 16px 40px}
.card{background:var(--card);border:1px solid var(--line);border-radius:14px;
padding:20px 24px;margin-bottom:16px;box-shadow:0 1px 3px rgba(15,23,42,.05)}
h1{font-size:30px;line-height:1.15;margin:0;letter-spacing:-.01em;word-break:break-word}
h2{font-size:18px;margin:0 0 12px}
h3{font-size:13px;margin:0 0 6px;color:var(--muted);text-transform:uppercase;
letter-spacing:.05em}
.h2-note{font-weight:400;color:var(--muted);font-size:14px;margin-left:6px}
.top{display:flex;justify-content:space-between;align-items:center;gap:24px;flex-wrap:wrap}
.who{flex:1 1 480px;min-width:0}
.eyebrow{font-size:12px;text-transform:uppercase;letter-spacing:.08em;color:var(--muted)}
.profile{margin:6px 0 2px;font-size:15px}
.meta{margin:0;color:var(--muted);font-size:13px}
.meta strong{color:var(--ink);font-weight:600}
.sep{margin:0 2px}
.risk{text-align:right;min-width:200px}
.risk-label{font-size:13px;color:var(--muted)}
.risk-value{font-size:52px;font-weight:750;line-height:1.05;letter-spacing:-.02em}
.badge{display:inline-block;margin-top:6px;padding:3px 12px;border-radius:999px;
font-size:13px;font-weight:650;color:#fff}
.band-low{background:#16a34a}.band-medium{background:#d97706}
.band-high{background:#ea580c}.band-very_high{background:#b91c1c}.band-unknown{background:#6b7280}
.tone-low{color:#15803d}.tone-medium{color:#b45309}.tone-high{color:#c2410c}
.tone-very_high{color:#b91c1c}.tone-unknown{color:var(--ink)}
.tag{display:inline-block;padding:0 8px;border-radius:999px;background:#eef2ff;color:#4338ca;
font-size:12px;font-weight:600;margin-left:4px;vertical-align:1px}
.tag.act{background:#ecfdf5;color:#047857}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px}
.grid>.card{margin-bottom:0}
main>.grid{margin-bottom:16px}
.panel{min-width:0}
.reasons{margin:0;padding-left:22px}
.reasons li{margin:0 0 8px;padding-left:2px}
.reasons li::marker{color:var(--raise);font-weight:700}
.favour{margin:0;padding-left:20px;color:#374151;font-size:14px}
.favour li::marker{color:var(--lower)}
#reasons h3{margin-top:14px}
.hbars{list-style:none;margin:0;padding:0}
.hbars li{display:grid;grid-template-columns:9.5em minmax(0,1fr) 4.2em;gap:10px;
align-items:center;margin:0 0 9px}
.bar-label{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar-track{height:14px;background:#f1f5f9;border-radius:7px;overflow:hidden}
.bar-fill{display:block;height:100%;background:linear-gradient(90deg,#0d9488,#14b8a6);
border-radius:7px;min-width:3px}
.bar-value{text-align:right;font-variant-numeric:tabular-nums;font-weight:600}
.card-head{display:flex;justify-content:space-between;align-items:baseline;gap:12px;
flex-wrap:wrap}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px;color:#374151;margin:4px 0}
.legend i{display:inline-block;width:11px;height:11px;border-radius:3px;margin-right:5px;
vertical-align:-1px}
.legend i.marker{background:#111827;width:4px}
.chart{display:block;width:100%;height:auto}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
.chart.wide{min-width:760px}
.chart text{font-family:inherit}
.chart .zebra{fill:#f9fafb}
.chart .grid{stroke:#e5e7eb;stroke-width:1}
.chart .grid-zero{stroke:#9ca3af;stroke-width:1;stroke-dasharray:4 3}
.chart .axis{stroke:#9ca3af;stroke-width:1}
.chart .tick{font-size:12px;fill:#4b5563}
.chart .muted,.chart .tick.muted{fill:#9ca3af}
.chart .row-label{font-size:14px;fill:#111827}
.chart .row-label.strong{font-weight:700}
.chart .row-sub{font-size:12px;fill:#6b7280}
.chart .delta{font-size:12.5px;font-weight:700}
.chart .marker{fill:#111827}
.chart .marker-text{font-size:14px;font-weight:700;fill:#111827}
.chart .connector{stroke:#9ca3af;stroke-width:1;stroke-dasharray:3 3}
.chart.small{margin-top:4px}
.caption{color:var(--muted);font-size:13px;margin:10px 0 0}
.summary{margin:0 0 8px;font-size:14px}
.bad-text{color:#b91c1c}
table{width:100%;border-collapse:collapse;font-size:13.5px}
th{text-align:left;color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;
letter-spacing:.03em;border-bottom:1px solid var(--line);padding:6px 8px}
td{padding:6px 8px;border-bottom:1px solid #f1f5f9;vertical-align:top;white-space:nowrap}
td.wrap{white-space:normal}
th{white-space:nowrap}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.flag td{background:#fef2f2}
tr.flag td:first-child{box-shadow:inset 3px 0 0 #dc2626}
tr.warn td{background:#fffbeb}
tr.warn td:first-child{box-shadow:inset 3px 0 0 #d97706}
.pill{display:inline-block;padding:0 8px;border-radius:999px;font-size:12px;font-weight:600;
background:#f3f4f6;color:#374151;white-space:nowrap;margin:1px 2px 1px 0}
.pill.bad{background:#fee2e2;color:#b91c1c}
.pill.warn{background:#fef3c7;color:#92400e}
.pill.ok{background:#dcfce7;color:#166534}
.empty{color:var(--muted);font-style:italic;margin:4px 0;padding:14px;background:#f9fafb;
border-radius:10px;text-align:center}
.stats{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:12px;margin-bottom:12px}
.stat-label{font-size:13px;color:var(--muted)}
.stat-value{font-size:26px;font-weight:700;font-variant-numeric:tabular-nums;line-height:1.2}
.stat-note{font-size:12px;color:var(--muted)}
.quadrant{display:flex;align-items:center;gap:10px;flex-wrap:wrap}
.qbadge{display:inline-block;padding:3px 12px;border-radius:999px;font-size:13px;
font-weight:650;color:#fff;background:#6b7280}
.q-protect_first{background:#b91c1c}.q-keep{background:#15803d}.q-grow{background:#0d9488}
.q-let_go{background:#6b7280}
.qnote{font-size:13.5px;color:#374151}
.action-title{margin:0 0 10px;font-size:16px}
.good-text{color:#15803d}
table.change td.wide{width:40%;min-width:160px}
.dbar{display:flex;width:100%;height:14px}
.dhalf{display:flex;flex:1 1 50%;height:100%}
.dhalf.neg{justify-content:flex-end;border-right:1px solid #9ca3af}
.dhalf>span{display:block;height:100%;border-radius:3px;min-width:2px}
.changes{margin:0;padding-left:20px;font-size:14px}
#risk-change h3{margin-top:14px}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
.kv dt{color:var(--muted)}.kv dd{margin:0}
.foot{color:var(--muted);font-size:12px;text-align:center;margin-top:8px}
#history .grid{row-gap:28px}
@media (max-width:820px){
.grid{grid-template-columns:minmax(0,1fr)}
.stats{grid-template-columns:minmax(0,1fr)}
.risk{text-align:left}
.card{padding:16px}
}
@media print{body{background:#fff}.card{box-shadow:none;break-inside:avoid}}
"""
