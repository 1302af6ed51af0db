"""Channel views speak to their channel: sentences an agent can read aloud, the web's offer by
name, and one recommended action that every view agrees with (issue 15, item 3)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from churn_risk.features.contract import CHANNELS, DRIVER_GROUPS
from churn_risk.features.labels import scoring_as_of
from churn_risk.serving import schemas, views, wording
from churn_risk.serving.scorer import ModelRef, ScoringState

VIEW_SCHEMAS = {"contact_center": schemas.ContactCenterView, "sales": schemas.SalesView,
                "service": schemas.ServiceView, "web": schemas.WebView,
                "campaign": schemas.CampaignView}


@pytest.fixture(scope="module")
def state(fitted, prep) -> ScoringState:
    return ScoringState(fitted.bundle, ModelRef("churn-risk", "3", "champion"), prep,
                        scoring_as_of(prep), quiet=True)


@pytest.fixture(scope="module")
def scored(state) -> dict[str, list[dict]]:
    """Every customer of the snapshot in every channel's view, with every reason listed."""
    every = len(state.bundle.feature_names)
    return {channel: state.score_ids(state.ids, top_k=every, channel=channel)[0]
            for channel in CHANNELS}


def test_views_match_their_published_schema(scored):
    for channel, results in scored.items():
        for result in results:
            VIEW_SCHEMAS[channel].model_validate(result["channel_view"])


def test_no_say_line_is_a_raw_label_or_feature_code(state, scored):
    codes = [s.name for s in state.bundle.specs if "_" in s.name]
    lines = [line for r in scored["contact_center"] for line in r["channel_view"]["say"]]
    assert len(lines) > 1000  # every reason raising the risk of every customer
    for line in lines:
        assert "this raises the risk" not in line and "(" not in line.split(" — ")[0], line
        assert not any(code in line for code in codes), line
        assert re.fullmatch(r"[A-Z€0-9].+ — [a-z].+\.", line), line


def said_of_every(state, scored, feature: str) -> list[tuple[dict, dict, str]]:
    """(result, reason, sentence) of `feature` for every customer, whether it raises their risk
    or not (a model may not lean on it: an agent still reads it right)."""
    out = []
    for result in scored["contact_center"]:
        reason = next(r for r in result["top_reasons"] if r["feature"] == feature)
        line, = views.sentences([reason], state, result["customer_id"],
                                result["recommended_action"])
        out.append((result, reason, line))
    return out


def test_late_deliveries_are_counted_in_words_over_their_period(state, scored):
    said = [(reason["value"], line)
            for _, reason, line in said_of_every(state, scored, "late_deliveries_90d")
            if reason["value"] is not None and 0 < reason["value"] <= 10]
    assert said, "no customer with late deliveries"
    for value, line in said:
        count = wording.NUMBER_WORDS[int(value)].capitalize()
        noun = "late delivery" if value == 1 else "late deliveries"
        assert line.startswith(f"{count} {noun} in the last three months — "), line


def test_open_tickets_say_how_old_the_oldest_is(state, scored):
    said = [(result, reason, line)
            for result, reason, line in said_of_every(state, scored, "tickets_open")
            if reason["value"] and result["channel_view"]["open_tickets"]]
    assert said, "no customer with open tickets"
    for result, reason, line in said:
        opened = [pd.Timestamp(t["opened_at"])
                  for t in result["channel_view"]["open_tickets"]]
        oldest = (state.as_of - min(opened)).days
        count = wording.spelled(reason["value"]).capitalize()
        assert line.startswith(f"{count} open ticket"), line
        assert f", the oldest {wording.plural(oldest, 'day')} old — " in line, line


def test_survey_scores_say_what_was_rated(state, scored):
    said = said_of_every(state, scored, "survey_price_last")
    assert any(reason["value"] is None for _, reason, _ in said)
    for _, reason, line in said:
        if reason["value"] is None:
            assert line == "No survey answer on record — explain the plan options.", line
        else:
            assert line.startswith(f"Price rated {wording.number(reason['value'])} in the "
                                   "last survey — "), line


def test_what_to_do_is_the_recommended_action_when_it_answers_the_reason(scored):
    answered = 0
    for result in scored["contact_center"]:
        action = result["recommended_action"]
        raising = [r for r in result["top_reasons"] if r["direction"] == "raises_risk"]
        for reason, line in zip(raising, result["channel_view"]["say"], strict=True):
            todo = line.removesuffix(".").split(" — ", 1)[1]
            if action and action["kind"] == "retention" and action["reason"] == reason[
                    "driver_group"]:
                answered += 1
                assert todo.lower().startswith(action["label"].lower()), line
                mine = action["channel"] == "contact_center"
                assert mine == ("team)" not in todo), line
            else:
                assert todo == views.SUGGESTIONS[reason["driver_group"]], line
    assert answered


def test_every_driver_group_has_a_suggestion():
    assert set(views.SUGGESTIONS) == set(DRIVER_GROUPS)


def test_the_web_names_the_retention_offer_of_the_recommended_action(scored):
    offers = 0
    for result in scored["web"]:
        view, action = result["channel_view"], result["recommended_action"]
        retention = action is not None and action["kind"] == "retention"
        assert view["retention_offer"] == (action if retention else None)
        assert view["show_retention_offer"] == retention
        if retention:
            offers += 1
            assert view["retention_offer"]["label"] == action["label"]
            assert view["retention_offer"]["channel"] in CHANNELS
    assert offers


def test_every_view_agrees_with_the_one_recommended_action(scored):
    owned_elsewhere = shown = 0
    for channel, results in scored.items():
        for result in results:
            view, action = result["channel_view"], result["recommended_action"]
            if action is None:
                assert view["recommended_action"] is None and view["action_owner"] is None
                continue
            assert view["action_owner"] == action["channel"]
            if action["channel"] == channel:
                assert view["recommended_action"] == action
                shown += 1
            else:
                assert view["recommended_action"] is None
                owned_elsewhere += 1
    assert shown and owned_elsewhere


@pytest.mark.parametrize("days, said", [(30, "month"), (90, "three months"),
                                        (180, "six months"), (365, "year"), (730, "two years"),
                                        (45, "45 days"), (7, "7 days")])
def test_periods_are_said_as_people_say_them(days, said):
    assert wording.period(days) == said


def test_small_counts_are_words_and_others_figures():
    assert wording.counted(2, "late delivery", "late deliveries") == "two late deliveries"
    assert wording.counted(1, "ticket") == "one ticket"
    assert wording.counted(0, "ticket") == "no tickets"
    assert wording.counted(12, "ticket") == "12 tickets"
    assert wording.spelled(2.5) == "2.5"
