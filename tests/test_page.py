"""The account manager's customer page: content, escaping, offline-ness, and a real browser."""

from __future__ import annotations

import copy
import http.server
import re
import struct
import threading
import time
from pathlib import Path

import pytest

from churn_risk.serving.page import CHANGE_ROWS, WATERFALL_BARS, render_customer_page

from . import browser

IDS = ("risk", "waterfall", "reasons", "history", "tickets", "deliveries", "contacts",
       "satisfaction", "next-products", "value", "quadrant", "recommended-action", "risk-change")
XSS = "<script>alert(1)</script>"
SVG_NS = "http://www.w3.org/2000/svg"

_FEATURES = [
    # feature, label, driver group, value, contribution, actionable
    ("tickets_open", "Open tickets (opened in the last 365 days)", "service", 2.0, 0.61, True),
    ("days_since_last_purchase", "Days since the last purchase", "engagement", 74.0, 0.48, False),
    ("late_deliveries_90d", "Late deliveries in the last 90 days", "delivery", 2.0, 0.39, True),
    ("satisfaction_trend", "Change in satisfaction, latest vs the one before", "satisfaction",
     -2.5, 0.33, True),
    ("products_held", "Products held", "products", 3.0, -0.29, True),
    ("tenure_days", "Days as a customer", "tenure", 812.0, -0.22, False),
    ("spend_365d", "Net spend in the last 365 days", "value", 1843.5, -0.18, False),
    ("late_share_90d", "Share of deliveries late in the last 90 days", "delivery", 0.5, 0.15,
     True),
    ("contacts_contact_center_90d", "Contact-center contacts in the last 90 days",
     "communication", 5.0, 0.11, True),
    ("nps_last", "Latest NPS answer", "satisfaction", 6.0, 0.07, True),
    ("purchases_90d", "Purchases in the last 90 days", "engagement", 1.0, -0.05, False),
    ("damaged_deliveries_365d", "Damaged deliveries in the last 365 days", "delivery", 1.0, 0.04,
     True),
    ("survey_price_last", "Survey score for price (latest answer)", "price", None, 0.02, True),
    ("region", "Region", "profile", "north", -0.01, False),
]


def sample_customer() -> dict:
    """A realistic record as the service builds it (base + contributions = margin)."""
    contributions = [
        {"feature": f, "label": label, "driver_group": group, "value": value,
         "contribution": contribution,
         "direction": "raises_risk" if contribution > 0 else "lowers_risk",
         "actionable": actionable}
        for f, label, group, value, contribution, actionable in _FEATURES
    ]
    base = -2.91
    margin = base + sum(x["contribution"] for x in contributions)
    top = [x for x in contributions if x["contribution"] > 0][:5]
    months = ["2024-12", "2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06",
              "2025-07", "2025-08", "2025-09", "2025-10", "2025-11"]
    contacts = [
        {"month": m, "sales": i % 3 == 0, "contact_center": (i * 7) % 4, "web": (i * 5) % 3,
         "service": 1 if i in (4, 9, 10) else 0, "campaign": 1 if i % 4 == 1 else 0}
        for i, m in enumerate(months)
    ]
    for row in contacts:
        row["sales"] = int(row["sales"])
    return {
        "customer_id": 100042,
        "features_as_of": "2025-12-01",
        "model": {"name": "churn-risk", "version": "3", "alias": "champion"},
        "churn_probability": 0.231,
        "risk_band": "high",
        "base_value": base,
        "margin": margin,
        "contributions": contributions,
        "top_reasons": top,
        "reason_sentences": [
            "Has 2 open tickets",
            "No purchase for 74 days",
            "2 late deliveries in the last 90 days",
            "Satisfaction dropped by 2.5 points at the last survey",
            "Half of the recent deliveries were late",
        ],
        "next_products": [{"family": "insurance", "propensity": 0.031},
                          {"family": "home_energy", "propensity": 0.024},
                          {"family": "mobile", "propensity": 0.012},
                          {"family": "broadband", "propensity": 0.004}],
        "profile": {"segment": "consumer", "region": "north", "tenure_days": 812.0,
                    "lifecycle_stage": "developing"},
        "history": {
            "tickets": [
                {"opened_at": "2025-10-02", "closed_at": None, "category": "billing",
                 "resolved": None},
                {"opened_at": "2025-11-14", "closed_at": None, "category": "delivery",
                 "resolved": None},
                {"opened_at": "2025-06-20", "closed_at": "2025-07-09", "category": "billing",
                 "resolved": False},
                {"opened_at": "2025-03-11", "closed_at": "2025-03-13", "category": "technical",
                 "resolved": True},
            ],
            "deliveries": [
                {"promised_date": "2025-09-01", "delivered_date": "2025-09-05", "damaged": False,
                 "days_late": 4.0},
                {"promised_date": "2025-10-12", "delivered_date": "2025-10-12", "damaged": True,
                 "days_late": 0.0},
                {"promised_date": "2025-11-03", "delivered_date": "2025-11-10", "damaged": False,
                 "days_late": 7.0},
                {"promised_date": "2025-05-20", "delivered_date": "2025-05-19", "damaged": False,
                 "days_late": -1.0},
                {"promised_date": "2025-11-28", "delivered_date": None, "damaged": False,
                 "days_late": None},
            ],
            "contacts_by_month": contacts,
            "satisfaction": [
                {"timestamp": "2025-03-03", "satisfaction": 8.5, "nps": 9.0},
                {"timestamp": "2025-06-15", "satisfaction": 7.5, "nps": 8.0},
                {"timestamp": "2025-09-02", "satisfaction": 7.0, "nps": None},
                {"timestamp": "2025-11-20", "satisfaction": 4.5, "nps": 6.0},
            ],
        },
        "horizon_margin": 412.7,
        "lifetime_value": 2718.3,
        "value_at_risk": 627.9,
        "horizon_days": 90,
        "quadrant": "protect_first",
        "quadrant_label": "Protect first",
        "recommended_action": {
            "action": "service_recovery", "label": "Service recovery call: close the open "
            "problems", "kind": "retention", "channel": "service", "cost": 35.0,
            "success_rate": 0.25, "success_source": "catalogue prior",
            "expected_profit": 121.98, "reason": "service",
        },
        "risk_change": sample_change(),
    }


_GROUP_CHANGES = [
    # group, contribution at from, at to
    ("service", -0.12, 0.73), ("delivery", 0.05, 0.58), ("engagement", 0.21, 0.37),
    ("satisfaction", 0.02, 0.40), ("products", -0.31, -0.29), ("tenure", -0.20, -0.22),
    ("value", -0.15, -0.18), ("communication", 0.04, 0.11), ("price", 0.0, 0.02),
    ("profile", -0.01, -0.01),
]


def sample_change() -> dict:
    """"Why did risk change" as `serving.change.explain_change` answers it."""
    groups = sorted(
        ({"driver_group": g, "contribution_from": a, "contribution_to": b, "change": b - a}
         for g, a, b in _GROUP_CHANGES), key=lambda g: -abs(g["change"]))
    base = -2.91
    margin_from = base + sum(a for _, a, _ in _GROUP_CHANGES)
    margin_to = base + sum(b for _, _, b in _GROUP_CHANGES)
    return {
        "customer_id": 100042, "from_date": "2025-09-01", "to_date": "2025-12-01",
        "base_value": base, "margin_from": margin_from, "margin_to": margin_to,
        "margin_change": margin_to - margin_from,
        "churn_probability_from": 0.062, "churn_probability_to": 0.231,
        "probability_change": 0.169, "risk_band_from": "medium", "risk_band_to": "high",
        "groups": groups,
        "features": [
            {"feature": "tickets_open", "label": "Open tickets (opened in the last 365 days)",
             "driver_group": "service", "value_from": 0.0, "value_to": 2.0,
             "contribution_from": -0.08, "contribution_to": 0.61, "change": 0.69},
            {"feature": "late_deliveries_90d", "label": "Late deliveries in the last 90 days",
             "driver_group": "delivery", "value_from": 0.0, "value_to": 2.0,
             "contribution_from": 0.0, "contribution_to": 0.39, "change": 0.39},
        ],
    }


def _bars(html: str) -> list[str]:
    svg = re.search(r'<svg id="waterfall".*?</svg>', html, re.S)
    assert svg, "no waterfall svg"
    return re.findall(r'data-bar="([^"]*)"', svg.group(0))


# --------------------------------------------------------------------------------------------
# Fast unit tests
# --------------------------------------------------------------------------------------------


def test_page_has_the_stable_ids_and_key_content():
    html = render_customer_page(sample_customer())
    assert html.startswith("<!DOCTYPE html>")
    for element_id in IDS:
        assert f'id="{element_id}"' in html, element_id
    assert re.search(r'<svg id="waterfall"', html)
    assert "100042" in html
    assert "23.1%" in html  # calibrated probability, not the sigmoid of the margin
    assert "band-high" in html and "High risk" in html
    assert "churn-risk" in html and "@champion" in html and "version 3" in html
    assert "1 Dec 2025" in html  # human-readable as-of date
    assert "Has 2 open tickets" in html
    assert "Insurance" in html and "3.1%" in html
    assert "2 years 2 months" in html  # 812 days of tenure
    assert "before calibration" in html
    value = re.search(r'id="value".*?</section>', html, re.S).group(0)
    assert "413" in value and "2,718" in value and "628" in value  # margin, lifetime, at risk
    assert "Margin over the next 90 days" in value and "Value at risk" in value
    assert "Protect first" in value and "q-protect_first" in value
    action = re.search(r'id="recommended-action".*?</section>', html, re.S).group(0)
    for text in ("Service recovery call", "122", "35", "25%", "catalogue prior",
                 "<strong>service</strong> problems", "Service</span>"):
        assert text in action, text


def test_waterfall_has_one_bar_per_top_contribution_plus_other():
    customer = sample_customer()
    n = len(customer["contributions"])
    assert n > WATERFALL_BARS
    bars = _bars(render_customer_page(customer))
    assert len(bars) == min(WATERFALL_BARS, n) + 1
    assert bars[:3] == ["tickets_open", "days_since_last_purchase", "late_deliveries_90d"]
    assert bars[-1] == "other"


@pytest.mark.parametrize("n", [0, 1, 3, 8, 9, 30])
def test_waterfall_bar_count_for_any_number_of_features(n):
    customer = sample_customer()
    contributions = [
        {"feature": f"f{i}", "label": f"Feature {i}", "value": i,
         "contribution": (-1) ** i / (i + 1)}
        for i in range(n)
    ]
    customer["contributions"] = contributions
    customer["margin"] = customer["base_value"] + sum(x["contribution"] for x in contributions)
    assert len(_bars(render_customer_page(customer))) == min(WATERFALL_BARS, n) + 1


def test_waterfall_bars_are_coloured_by_direction_and_end_at_the_margin():
    customer = sample_customer()
    html = render_customer_page(customer)
    svg = re.search(r'<svg id="waterfall".*?</svg>', html, re.S).group(0)
    rects = dict(re.findall(r'data-bar="([^"]*)"[^>]*fill="(#[0-9a-f]{6})"', svg))
    assert rects["tickets_open"] == "#dc2626"  # raises risk: red
    assert rects["products_held"] == "#2563eb"  # lowers risk: blue
    # "other" is the remainder, so base + shown bars + other == margin
    shown = [float(v) for v in re.findall(r'data-contribution="([^"]+)"', svg)]
    assert customer["base_value"] + sum(shown) == pytest.approx(customer["margin"], abs=1e-3)
    # start and end annotated with probabilities: typical customer p(base), the end calibrated
    assert "5.2%" in svg  # 1 / (1 + exp(2.91))
    assert "23.1%" in svg


def test_every_value_is_escaped():
    customer = sample_customer()
    customer["customer_id"] = XSS
    customer["features_as_of"] = XSS
    customer["risk_band"] = XSS
    customer["model"] = {"name": XSS, "version": XSS, "alias": XSS}
    customer["profile"] = {"segment": XSS, "region": XSS, "lifecycle_stage": XSS, "other": XSS}
    customer["reason_sentences"] = [XSS]
    customer["contributions"][0].update(feature=XSS, label=XSS, value=XSS, driver_group=XSS)
    customer["next_products"] = [{"family": XSS, "propensity": 0.5}]
    history = customer["history"]
    history["tickets"][0].update(category=XSS, opened_at=XSS)
    history["deliveries"][0].update(promised_date=XSS)
    history["contacts_by_month"][0].update(month=XSS)
    history["contacts_by_month"][1][XSS] = 3
    history["satisfaction"][0].update(timestamp=XSS)
    customer["recommended_action"] = {XSS: XSS, "action": XSS, "label": XSS, "channel": XSS,
                                      "success_source": XSS, "reason": XSS}
    customer["quadrant"] = XSS
    customer["quadrant_label"] = XSS
    customer["risk_change"]["groups"][0]["driver_group"] = XSS
    customer["risk_change"]["features"][0].update(label=XSS, value_to=XSS)
    customer["risk_change"]["from_date"] = XSS
    html = render_customer_page(customer)
    assert "<script" not in html.lower()
    customer["recommended_action"]["kind"] = "growth"
    customer["risk_change"] = {"from_date": XSS, "to_date": XSS, "unavailable": XSS}
    html = render_customer_page(customer)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    # also when reasons come from top_reasons rather than sentences
    customer["reason_sentences"] = []
    customer["top_reasons"] = [dict(customer["contributions"][0])]
    html = render_customer_page(customer)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: <strong>" in html


def test_quotes_cannot_break_out_of_attributes():
    customer = sample_customer()
    customer["contributions"][0]["feature"] = '" onmouseover="alert(1)'
    html = render_customer_page(customer)
    assert 'onmouseover="' not in html
    assert "&quot; onmouseover=&quot;alert(1)" in html


def test_empty_history_says_so():
    customer = sample_customer()
    customer["history"] = {"tickets": [], "deliveries": [], "contacts_by_month": [],
                           "satisfaction": []}
    html = render_customer_page(customer)
    for message in ("No tickets in the last 12 months", "No deliveries in the last 12 months",
                    "No contacts in the last 12 months", "No surveys in the last 12 months"):
        assert message in html
    for element_id in IDS:
        assert f'id="{element_id}"' in html, element_id
    # contacts that are all zero count as none
    customer["history"]["contacts_by_month"] = [
        {"month": "2025-01", "sales": 0, "contact_center": 0, "web": 0, "service": 0,
         "campaign": 0}]
    assert "No contacts in the last 12 months" in render_customer_page(customer)


def test_minimal_record_renders():
    html = render_customer_page({"customer_id": 7})
    for element_id in IDS:
        assert f'id="{element_id}"' in html, element_id
    assert "No tickets in the last 12 months" in html
    assert "No product suggestions" in html


def test_reasons_fall_back_to_label_and_value():
    customer = sample_customer()
    customer["reason_sentences"] = []
    html = render_customer_page(customer)
    assert "Open tickets (opened in the last 365 days): <strong>2</strong>" in html
    assert "Share of deliveries late in the last 90 days: <strong>50%</strong>" in html


def test_open_tickets_and_late_or_damaged_deliveries_are_highlighted():
    html = render_customer_page(sample_customer())
    tickets = re.search(r'id="tickets".*?</table>', html, re.S).group(0)
    assert tickets.count('<tr class="flag">') == 2  # the two open tickets
    assert "2 still open" in tickets
    assert "60 so far" in tickets  # opened 2 Oct, as of 1 Dec
    deliveries = re.search(r'id="deliveries".*?</table>', html, re.S).group(0)
    assert deliveries.count('<tr class="flag">') == 3  # 4 and 7 days late, one damaged
    assert "2 late" in deliveries and "1 damaged" in deliveries
    assert "Not delivered" in deliveries


def test_value_and_action_say_so_when_missing():
    customer = sample_customer()
    customer.update(recommended_action=None, horizon_margin=None, lifetime_value=None,
                    value_at_risk=None, quadrant=None, quadrant_label=None)
    html = render_customer_page(customer)
    assert "No action is expected to pay off" in html
    assert "Customer value is not available" in html
    assert "value × risk matrix not available" in html
    # a growth action names the next product; a partial action still renders
    customer["recommended_action"] = {"action": "next_product", "kind": "growth",
                                      "reason": "insurance", "expected_profit": 42.5,
                                      "success_source": "measured: spring_offer (31%, CI 20% "
                                                        "to 41%)"}
    html = render_customer_page(customer)
    action = re.search(r'id="recommended-action".*?</section>', html, re.S).group(0)
    assert "Likely next product: <strong>Insurance</strong>" in action
    assert "42.5" in action and "measured: spring_offer" in action


def _change_rows(html: str) -> list[tuple[str, float]]:
    section = re.search(r'id="risk-change".*?</section>', html, re.S).group(0)
    return [(group, float(change)) for group, change in re.findall(
        r'<tr data-group="([^"]*)">.*?data-change="([^"]+)"', section, re.S)]


def test_risk_change_lists_groups_by_size_and_adds_up():
    customer = sample_customer()
    html = render_customer_page(customer)
    section = re.search(r'id="risk-change".*?</section>', html, re.S).group(0)
    assert "Why did risk change" in section
    assert "1 Sep 2025" in section and "1 Dec 2025" in section
    assert "6.2%" in section and "23.1%" in section and "+16.9 points" in section
    rows = _change_rows(html)
    assert rows[0] == ("service", pytest.approx(0.85, abs=1e-4))
    assert len(rows) == CHANGE_ROWS + 1 and rows[-1][0] == "2 other groups"  # 10 groups
    shown = [abs(c) for _, c in rows[:-1]]
    assert shown == sorted(shown, reverse=True)
    change = customer["risk_change"]
    assert sum(c for _, c in rows) == pytest.approx(change["margin_change"], abs=1e-3)
    assert "Open tickets (opened in the last 365 days): 0 → <strong>2</strong>" in section
    colours = dict(re.findall(r'data-change="([^"]+)" style="width:[^;]+;background:(#\w+)',
                              section))
    assert colours[f"{rows[0][1]:.4f}"] == "#dc2626"  # raised risk: red


def test_risk_change_unavailable_says_why():
    customer = sample_customer()
    customer["risk_change"] = {"from_date": "2025-09-01", "to_date": "2025-12-01",
                               "unavailable": "customer 100042 had not signed up yet on "
                                              "2025-09-01"}
    html = render_customer_page(customer)
    section = re.search(r'id="risk-change".*?</section>', html, re.S).group(0)
    assert "No comparison: customer 100042 had not signed up yet" in section


def test_document_is_self_contained():
    html = render_customer_page(sample_customer())
    stripped = html.replace(SVG_NS, "")
    assert "http://" not in stripped and "https://" not in stripped
    assert "<script" not in html.lower()
    assert "<link" not in html.lower() and "@import" not in html and "url(" not in html
    assert not re.search(r"\b(src|href)=", html)


# --------------------------------------------------------------------------------------------
# Real browser (headless Chromium)
# --------------------------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_page_in_headless_chromium(tmp_path):
    page = tmp_path / "customer.html"
    page.write_text(render_customer_page(sample_customer()), encoding="utf-8")
    shot = browser.screenshot(page.as_uri(), tmp_path / "customer.png")
    assert shot.stat().st_size > 20_000
    assert _png_size(shot) == (1280, 2000)
    dom = browser.dump_dom(page.as_uri())
    for element_id in IDS:
        assert f'id="{element_id}"' in dom, element_id
    assert len(re.findall(r"data-bar=", dom)) == WATERFALL_BARS + 1


class _AuthHandler(http.server.BaseHTTPRequestHandler):
    """Serves the page only with `Authorization: Bearer test-key`, else 401."""

    page = b""
    seen: list[str | None] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        auth = self.headers.get("Authorization")
        type(self).seen.append(auth)
        ok = auth == "Bearer test-key" and self.path == "/customers/100042"
        body = self.page if ok else b"<!DOCTYPE html><p id='denied'>unauthorized</p>"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def auth_server():
    handler = type("Handler", (_AuthHandler,), {
        "page": render_customer_page(sample_customer()).encode(), "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.slow
def test_headers_reach_the_server_through_devtools(auth_server, tmp_path):
    base, handler = auth_server
    url = f"{base}/customers/100042"
    headers = {"Authorization": "Bearer test-key"}

    dom = browser.dump_dom(url, headers=headers)
    for element_id in IDS:
        assert f'id="{element_id}"' in dom, element_id
    assert "Bearer test-key" in handler.seen

    shot = browser.screenshot(url, tmp_path / "served.png", headers=headers)
    assert shot.stat().st_size > 20_000
    assert _png_size(shot) == (1280, 2000)

    # without the header (either path) the server refuses and the page is not there
    handler.seen.clear()
    assert 'id="denied"' in browser.dump_dom(url)
    assert 'id="denied"' in browser.dump_dom(url, headers={"Authorization": "Bearer wrong"})
    assert 'id="waterfall"' not in browser.dump_dom(url)
    assert "Bearer wrong" in handler.seen


@pytest.mark.slow
def test_unreachable_url_fails_loudly(tmp_path):
    closed = "http://127.0.0.1:9/customers/1"  # discard port: nothing listens
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="could not open"):
        browser.dump_dom(closed, headers={"Authorization": "Bearer x"}, timeout=30)
    assert time.monotonic() - started < 30


def test_sample_is_not_mutated_by_rendering():
    customer = sample_customer()
    before = copy.deepcopy(customer)
    render_customer_page(customer)
    assert customer == before
