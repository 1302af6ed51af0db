"""The portfolio home and the customer lists: the same counts and lists from a store (SQLite,
PostgreSQL) as from the in-memory snapshot, each person limited to their portfolio, and in
Chromium a manager going from the home page to a matrix cell's customers, to a customer, and
back home."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from churn_risk.features.store import SCORE_SUMMARY, Store
from churn_risk.models.portfolio import QUADRANTS
from churn_risk.serving import home
from churn_risk.serving.people import (
    People,
    Portfolio,
    User,
    hash_password,
    save_people,
)
from tests.records import logged_prediction, utc_text
from tests.serve import bearer, request, running

from . import browser

KEY = "home-read-key-0123456789"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def state(fitted, prep):
    from churn_risk.features.labels import scoring_as_of
    from churn_risk.serving.scorer import ModelRef, ScoringState

    return ScoringState(fitted.bundle, ModelRef("churn-risk", "3", "champion"), prep,
                        scoring_as_of(prep))


def _manager(*segments: str):
    return User("m", "account_manager", "$argon2id$x",
                portfolio=Portfolio(frozenset(segments), frozenset())).principal()


def test_the_store_counts_and_lists_the_portfolio_as_the_snapshot_does(state, store_url):
    in_memory = home.FrameRows(state)
    with Store(store_url) as store:
        store.save_scores("churn-risk", "3", state.stored_rows())
        stored = home.StoreRows(store, "churn-risk", "3")
        for where in ({}, {"segment": {"consumer"}}, {"quadrant": {"keep"},
                                                     "risk_band": {"low", "medium"}}):
            for by in ("quadrant", "risk_band", "segment"):
                a = in_memory.counts(by, where).set_index(by).sort_index()
                b = stored.counts(by, where).set_index(by).sort_index()
                assert a["customers"].tolist() == b["customers"].tolist()
                assert a["value_at_risk"].to_numpy() == pytest.approx(
                    b["value_at_risk"].to_numpy())
            named = in_memory.frame["name"].dropna()
            assert len(named) == len(state.ids)  # the demo's customers have names
            fragment = named.iloc[0].split()[-1][1:4].upper()  # part of a family name
            for prefix, offset in ((None, 0), (None, 7), (str(state.ids[0])[:4], 0),
                                   (fragment, 0)):
                a, total_a = in_memory.listing(where, prefix, 20, offset)
                b, total_b = stored.listing(where, prefix, 20, offset)
                assert total_a == total_b
                assert a["customer_key"].tolist() == b["customer_key"].tolist()
        assert stored.has(str(state.ids[0])) and not stored.has("no-such-customer")
        found, total = stored.listing({}, fragment, 500, 0)
        assert total > 0 and found["name"].str.lower().str.contains(fragment.lower()).all()
        # the refresher's recount: the same counts, from a few hundred rows
        home.recount(store, "churn-risk", "3")
        assert len(store.portfolio_counts("churn-risk", "3")) < len(state.ids)
        for by in ("quadrant", "risk_band", "segment"):
            a = in_memory.counts(by, {"segment": {"consumer"}}).set_index(by).sort_index()
            b = stored.counts(by, {"segment": {"consumer"}}).set_index(by).sort_index()
            assert a["customers"].tolist() == b["customers"].tolist()
    # the counts are the snapshot's own
    quadrants = in_memory.counts("quadrant", {}).set_index("quadrant")["customers"]
    truth = pd.Series([p[3] for p in state.portfolio]).value_counts()
    assert quadrants.to_dict() == truth.to_dict()


def test_the_home_counts_only_a_managers_portfolio_and_lists_by_value_at_risk(state):
    rows = home.FrameRows(state)
    bands = tuple(name for name, _ in state.bundle.risk_bands)
    everyone = home.home(rows, None, bands, state.bundle.policy)
    consumers = home.home(rows, _manager("consumer"), bands, state.bundle.policy)
    segments = pd.DataFrame(state.summary_rows(), columns=list(SCORE_SUMMARY))["segment"]
    assert everyone.customers == len(state.ids)
    assert consumers.customers == int((segments == "consumer").sum()) < everyone.customers
    assert sum(c.customers for c in consumers.cells) == consumers.customers
    assert {c.quadrant for c in everyone.cells} == set(QUADRANTS)
    assert all(r.segment == "consumer" for r in consumers.top)
    values = [r.value_at_risk for r in everyone.top]
    assert values == sorted(values, reverse=True) and len(values) == home.TOP
    # a manager asking for another segment gets none of it
    other = home.listing(rows, _manager("consumer"), state.bundle.policy,
                         {"segment": "enterprise"})
    assert other.total == 0 and other.rows == ()
    page2 = home.listing(rows, None, state.bundle.policy, {}, page=2)
    assert page2.previous == "/customers" and page2.rows[0].value_at_risk <= values[-1]


def test_the_leavers_a_driver_accounts_for_add_up_over_chunks_and_match_one_by_hand(
        state, fitted, store_url):
    from scipy.special import expit

    from churn_risk.serving.scorer import ScoringState

    whole = home.driver_churn(state)
    half = len(state.frame) // 2
    parts = [ScoringState(fitted.bundle, state.model, None, state.as_of, quiet=True,
                          frame=state.frame.iloc[a:b], history=state.history)
             for a, b in ((0, half), (half, len(state.frame)))]
    summed = (pd.concat([home.driver_churn(p) for p in parts])
              .groupby(["segment", "region", "group"]).sum().reset_index())
    pd.testing.assert_frame_equal(whole, summed, check_exact=False, rtol=1e-9)
    # one customer, one group, by hand
    i, group = 0, "delivery"
    columns = [j for j, spec in enumerate(state.specs) if spec.group == group]
    margin = state.base_value + state.contributions[i].sum()
    by_hand = state.probability[i] * (1 - expit(margin - state.contributions[i, columns].sum())
                                      / expit(margin))
    one = ScoringState(fitted.bundle, state.model, None, state.as_of,
                       quiet=True, frame=state.frame.iloc[:1], history=state.history)
    got = home.driver_churn(one).set_index("group").loc[group, "churners"]
    assert got == pytest.approx(by_hand, rel=1e-5)  # float32 contributions
    # kept in the store as computed, on SQLite and PostgreSQL
    with Store(store_url) as store:
        assert store.portfolio_drivers("churn-risk", "3") is None
        store.save_portfolio_drivers("churn-risk", "3", whole)
        back = store.portfolio_drivers("churn-risk", "3")
    pd.testing.assert_frame_equal(
        whole.sort_values(["segment", "region", "group"]).reset_index(drop=True),
        back.sort_values(["segment", "region", "group"]).reset_index(drop=True)[whole.columns],
        check_dtype=False)
    # on the home page, by segment, the viewer's only
    bands = tuple(name for name, _ in state.bundle.risk_bands)
    everyone = home.home(home.FrameRows(state), None, bands, state.bundle.policy, whole)
    mine = home.home(home.FrameRows(state), _manager("consumer"), bands, state.bundle.policy,
                     whole)
    assert mine.drivers.segments == ("consumer",) and len(everyone.drivers.segments) > 1
    assert everyone.drivers.expected == pytest.approx(float(state.probability.sum()))
    total = {p.group: p.churners for p in everyone.drivers.processes}
    assert total[group] == pytest.approx(whole.loc[whole["group"] == group, "churners"].sum())


@pytest.fixture(scope="module")
def scored(state, fitted) -> pd.DataFrame:
    """The bundle's own batch scores of the snapshot (what `churn worklist` ranks)."""
    frame = fitted.bundle.score(state.frame).reset_index(drop=True)
    frame.insert(0, "customer_id", [str(i) for i in state.ids])
    return frame


def _stored_candidates(store, state) -> home.StoreRows:
    """The store's rows of model version 3, with the snapshot's worklist candidates kept."""
    from churn_risk.serving.worklist import channel_candidates, top_candidates

    store.save_worklist_candidates("churn-risk", "3", top_candidates([channel_candidates(state)]))
    return home.StoreRows(store, "churn-risk", "3")


def test_a_channels_worklist_on_the_page_is_the_one_churn_worklist_makes(state, fitted,
                                                                       scored, store_url):
    """The page fills from each customer's best action of the channel kept at scoring; the
    same list as `build_worklist` on the bundle's own batch scores (what `churn worklist
    --channel` runs), from the snapshot and from a store."""
    from churn_risk.serving.worklist import WorklistRules, build_worklist

    bundle = fitted.bundle
    channels = tuple(dict.fromkeys(a.channel for a in bundle.policy.actions))
    in_memory = home.FrameRows(state)
    with Store(store_url) as store:
        stored = _stored_candidates(store, state)
        compared = 0
        for channel in channels:
            for budget, capacity in ((500.0, 20), (5_000.0, 200)):
                expected = build_worklist(bundle, scored, WorklistRules(budget, channel,
                                                                        capacity))
                for rows in (in_memory, stored):  # contact pressure: the next test
                    page = home.worklist(rows, None, bundle, channel, budget, capacity,
                                         gap_days=0)
                    assert [i.customer_id for i in page.items] == \
                        expected.rows["customer_id"].astype(str).tolist()
                    assert page.spent == pytest.approx(expected.spent)
                    assert page.expected_profit == pytest.approx(expected.expected_profit)
                compared += len(expected.rows)
        assert compared > 0  # some channel had something to do
        assert home.StoreRows(store, "churn-risk", "4").candidates(channels[0], {}) is None


def test_a_worklist_leaves_out_customers_contacted_lately(state, fitted, scored, store_url):
    """On files, a campaign in the last `gap` days (as `churn worklist` without a ledger); on
    a store, also an action a channel reported taken or declined."""
    from churn_risk.serving.outcomes import checked_outcomes
    from churn_risk.serving.worklist import WorklistRules, build_worklist, recently_contacted

    bundle = fitted.bundle
    channel = bundle.policy.actions[0].channel
    rules = WorklistRules(100_000.0, channel, 5_000, contact_gap_days=365)
    contacted = recently_contacted(state.prep, None, pd.Timestamp(state.as_of), 365)
    expected = build_worklist(bundle, scored, rules, contacted)
    page = home.worklist(home.FrameRows(state), None, bundle, channel, 100_000.0, 5_000, 365)
    assert page.recently_contacted == expected.excluded_recent_contact > 0
    assert [i.customer_id for i in page.items] == expected.rows["customer_id"].astype(
        str).tolist()
    assert not {i.customer_id for i in page.items} & contacted

    with Store(store_url) as store:
        rows = _stored_candidates(store, state)
        before = home.worklist(rows, None, bundle, channel, 100_000.0, 5_000)
        assert before.recently_contacted == 0 and len(before.items) >= 3
        called = [i.customer_id for i in before.items[:2]]
        logged = [logged_prediction(c, bundle.policy.actions[0].name, channel=channel)
                  for c in called]
        store.log_predictions(logged)
        store.record_outcomes(checked_outcomes([
            {"prediction_id": p["prediction_id"], "response": r, "channel": channel,
             "occurred_at": utc_text(-5)}
            for p, r in zip(logged, ("taken", "declined"), strict=True)], store))
        after = home.worklist(rows, None, bundle, channel, 100_000.0, 5_000)
        again = home.worklist(rows, None, bundle, channel, 100_000.0, 5_000, gap_days=0)
    assert after.recently_contacted == 2
    listed = [i.customer_id for i in after.items]  # (their budget may admit others at the end)
    assert not set(called) & set(listed)
    assert listed[:len(before.items) - 2] == [
        i.customer_id for i in before.items if i.customer_id not in called][:len(listed)]
    assert [i.customer_id for i in again.items] == [i.customer_id for i in before.items]


# --------------------------------------------------------------------------------------------
# In a browser
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(demo_folder, champion_project, tmp_path_factory):
    folder = tmp_path_factory.mktemp("home")
    users = folder / "users.toml"
    save_people(users, People({"alice": User(
        "alice", "account_manager", hash_password(PASSWORD), "Alice Martin",
        Portfolio(frozenset({"consumer"}), frozenset()))}))
    with running(demo_folder, champion_project, KEY, CHURN_USERS_FILE=users,
                 CHURN_AUDIT_FILE=folder / "audit.jsonl") as base:
        yield base


def test_a_search_for_an_exact_id_opens_the_page_and_a_prefix_lists_the_matches(served):
    status, _, html = request(served, "/customers?q=1000", headers=bearer(KEY))
    assert status == 200
    ids = re.findall(r'data-customer-id="([^"]+)"', html)
    assert ids and all(i.startswith("1000") for i in ids)
    status, headers, html = request(served, f"/customers?q={ids[0]}", headers=bearer(KEY))
    assert status == 200 and f"<h1>{ids[0]}</h1>" in html  # followed to the page
    status, _, html = request(served, f"/search?q={ids[0]}", headers=bearer(KEY))
    assert status == 200 and f"<h1>{ids[0]}</h1>" in html  # the old address searches too


def test_a_manager_goes_from_home_to_a_cell_to_a_customer_and_back_in_chromium(served,
                                                                             tmp_path):
    with browser.page_session(f"{served}/") as tab:
        assert tab.evaluate("location.pathname") == "/login"
        tab.evaluate("document.querySelector('#user').value = 'alice';"
                     f"document.querySelector('#password').value = {PASSWORD!r};"
                     "document.querySelector('form').submit()", wait_for_load=True)
        assert tab.evaluate("location.pathname") == "/"
        shown = tab.evaluate("document.body.innerText")
        home_shot = tab.screenshot(tmp_path / "home.png")
        cells = tab.evaluate("[...document.querySelectorAll('.cell')].map(a => "
                             "[a.dataset.quadrant, a.querySelector('.cell-count').innerText])")
        quadrant, count = max(cells, key=lambda c: int(c[1].split()[0].replace(",", "")))
        tab.evaluate(f"document.querySelector('.cell[data-quadrant={quadrant}]').click()",
                     wait_for_load=True)
        assert tab.evaluate("location.pathname + location.search") == \
            f"/customers?quadrant={quadrant}"
        listed = tab.evaluate("document.querySelector('#list h2').innerText")
        segments = tab.evaluate("[...document.querySelectorAll('table.customers tbody tr')]"
                                ".map(r => r.children[2].innerText)")  # Segment
        list_shot = tab.screenshot(tmp_path / "list.png")
        first = tab.evaluate("document.querySelector('table.customers tbody a').innerText")
        tab.evaluate("document.querySelector('table.customers tbody a').click()",
                     wait_for_load=True)
        assert tab.evaluate("location.pathname") == f"/customers/{first}"
        tab.evaluate("document.querySelector('a.home-link').click()", wait_for_load=True)
        assert tab.evaluate("location.pathname") == "/"
    assert "Signed in as Alice Martin" in shown and "Risk matrix" in shown
    assert "Where churn comes from" in shown
    assert "segment consumer" in shown
    assert f"{count.split()[0]} customer" in listed
    assert segments and set(segments) == {"Consumer"}  # her portfolio only
    assert home_shot.is_file() and list_shot.is_file()  # kept with the test's files to look at
