"""Worklists and the next-best-action policy: each rule on data where the answer is known, and the
bar: a budget spent by the worklist keeps more true value than by churn probability or at random."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from churn_risk.cli import main
from churn_risk.errors import UsageError
from churn_risk.features.target import Target, TargetKind
from churn_risk.models.bundle import Calibrator, ChurnBundle
from churn_risk.models.portfolio import (
    NO_ACTION,
    Action,
    PortfolioPolicy,
    load_catalogue,
    with_measured_success,
)
from churn_risk.serving.worklist import (
    WorklistRules,
    append_to_ledger,
    build_worklist,
    compare_targeting,
    read_ledger,
    recently_contacted,
)
from churn_risk.training.config import TrainConfig
from churn_risk.training.evaluate import true_churn_and_value
from churn_risk.training.train import build_training_data, fit_bundle

ACTIONS = (
    Action("fix_tickets", "Fix tickets", "service", cost=10.0, success_rate=0.5,
           driver_group="service"),
    Action("call", "Call", "contact_center", cost=5.0, success_rate=0.1,
           driver_group="communication"),
    Action("offer", "Offer", "campaign", cost=1.0, success_rate=0.05),
    Action("next", "Next product", "web", cost=1.0, success_rate=0.5, kind="growth", gain=100.0),
)


def policy_bundle(actions=ACTIONS, families=("add_on",)) -> ChurnBundle:
    policy = PortfolioPolicy(risk_threshold=0.2, value_threshold=1000.0, actions=actions)
    return ChurnBundle(specs=[], categories={}, churn=None, calibrator=Calibrator("none"),
                       target=Target(kind=TargetKind.subscription_end, horizon_days=90),
                       propensity=dict.fromkeys(families), policy=policy)


def scored_table(p, ltv, service, communication, add_on=None) -> pd.DataFrame:
    n = len(p)
    return pd.DataFrame({
        "customer_id": np.arange(1, n + 1),
        "churn_probability": p,
        "risk_band": "high",
        "horizon_margin": np.asarray(ltv, float) / 10,
        "lifetime_value": ltv,
        "value_at_risk": np.asarray(p) * np.asarray(ltv),
        "quadrant": "protect_first",
        "group_service": service,
        "group_communication": communication,
        "propensity_add_on": add_on if add_on is not None else np.zeros(n),
    })


def test_expected_profit_and_eligibility_follow_the_formula():
    bundle = policy_bundle()
    scored = scored_table(p=[0.5, 0.5, 0.5, 0.1, 0.01], ltv=[1000, 1000, 10, 1000, 1000],
                          service=[0.3, -0.3, 0.3, -1, -1], communication=[0.1, 0.2, -1, -1, -1],
                          add_on=[0, 0, 0, 0.4, 0.01])
    groups = scored[["group_service", "group_communication"]].set_axis(
        ["service", "communication"], axis=1)
    out = bundle.policy.recommend(scored["churn_probability"].to_numpy(),
                                  scored["lifetime_value"].to_numpy(),
                                  scored["horizon_margin"].to_numpy(), groups,
                                  scored[["propensity_add_on"]].set_axis(["add_on"], axis=1))
    # service raises risk: 0.5 * 1000 * 0.5 - 10 = 240 beats the call (45) and the offer (24)
    assert out.loc[0, "recommended_action"] == "fix_tickets"
    assert out.loc[0, "expected_profit"] == pytest.approx(240.0)
    assert out.loc[0, "action_reason"] == "service"
    # service lowers risk: not eligible; communication raises it: 0.5 * 1000 * 0.1 - 5 = 45
    assert out.loc[1, "recommended_action"] == "call"
    assert out.loc[1, "expected_profit"] == pytest.approx(45.0)
    # low value: 0.5 * 10 * 0.5 - 10 < 0, the offer 0.5 * 10 * 0.05 - 1 < 0: nothing pays
    assert out.loc[2, "recommended_action"] == NO_ACTION
    assert out.loc[2, "expected_profit"] == 0.0
    # low risk (below the 0.2 threshold), likely buyer: 0.4 * 100 * 0.5 - 1 = 19 beats the
    # offer (0.1 * 1000 * 0.05 - 1 = 4)
    assert out.loc[3, "recommended_action"] == "next"
    assert out.loc[3, "action_reason"] == "add_on"
    assert out.loc[3, "expected_profit"] == pytest.approx(19.0)
    # unlikely buyer, hardly at risk: 0.01 * 100 * 0.5 - 1 < 0 and 0.01 * 1000 * 0.05 - 1 < 0
    assert out.loc[4, "recommended_action"] == NO_ACTION


def test_measured_success_rates_update_the_prior_of_the_action_naming_the_offer():
    catalogue = load_catalogue()
    measured = {"loyalty_bonus": {"rate": 0.42, "low": 0.35, "high": 0.48,
                                  "log_rr": float(np.log(0.58)), "log_rr_se": 0.05,
                                  "campaigns": ["RET-2024-01"], "n_treatment": 3000,
                                  "n_control": 1000}}
    actions = {a.name: a for a in with_measured_success(catalogue, measured)}
    prior = {a.name: a for a in catalogue}
    assert prior["loyalty_bonus"].success_rate < actions["loyalty_bonus"].success_rate < 0.42
    assert "RET-2024-01" in actions["loyalty_bonus"].success_source
    assert actions["free_upgrade"].success_rate == prior["free_upgrade"].success_rate
    assert actions["free_upgrade"].success_source.startswith("our starting estimate")
    # a model trained before the log risk ratio was stored: its measured rate as it is
    legacy = {"loyalty_bonus": {k: measured["loyalty_bonus"][k]
                                for k in ("rate", "low", "high", "campaigns")}}
    assert {a.name: a for a in with_measured_success(catalogue, legacy)}[
        "loyalty_bonus"].success_rate == 0.42


def test_catalogue_errors_name_the_entry_and_the_rule(tmp_path):
    bad = tmp_path / "actions.toml"
    bad.write_text('[[action]]\nname = "x"\nlabel = "X"\nchannel = "fax"\ncost = 1\n'
                   'success_rate = 0.1\n')
    with pytest.raises(UsageError, match=r"action 'x': channel: Input should be 'sales', "
                       r"'contact_center', 'web', 'service' or 'campaign' \(got 'fax'\)"):
        load_catalogue(bad)
    bad.write_text('[[action]]\nname = "x"\nlabel = "X"\nchannel = "web"\ncost = 1\n'
                   'success_rate = 0.1\ncolour = "red"\n')
    with pytest.raises(UsageError, match=r"action 'x': colour: unknown setting \(known: name, "):
        load_catalogue(bad)


def rules_table(n=6):
    # every customer's best action is fix_tickets (cost 10); profit falls with the index
    p = np.linspace(0.6, 0.35, n)
    return scored_table(p=p, ltv=np.full(n, 1000.0), service=np.full(n, 0.5),
                        communication=np.full(n, 0.5))


def test_budget_is_spent_by_expected_profit_and_never_exceeded():
    bundle = policy_bundle()
    scored = rules_table()
    result = build_worklist(bundle, scored, WorklistRules(budget=35.0))
    assert list(result.rows["customer_id"]) == [1, 2, 3]  # 3 x 10 fit in 35, a 4th does not
    assert result.spent == pytest.approx(30.0)
    assert result.rows["expected_profit"].is_monotonic_decreasing
    assert list(result.rows["rank"]) == [1, 2, 3]
    assert result.rows["action_label"].eq("Fix tickets").all()


def test_a_cheaper_action_further_down_still_fits_the_budget_left():
    bundle = policy_bundle()
    scored = rules_table(3)
    scored.loc[2, "group_service"] = -1.0  # customer 3: only the call (cost 5) is eligible
    result = build_worklist(bundle, scored, WorklistRules(budget=25.0))
    assert list(result.rows["customer_id"]) == [1, 2, 3]
    assert list(result.rows["recommended_action"]) == ["fix_tickets", "fix_tickets", "call"]
    assert result.spent == pytest.approx(25.0)


def test_capacity_limits_each_channel():
    bundle = policy_bundle()
    result = build_worklist(bundle, rules_table(), WorklistRules(budget=1e6, capacity=2))
    assert result.rows["action_channel"].value_counts().to_dict() == {"service": 2}


def test_a_channel_gets_each_customer_s_best_action_among_its_own():
    bundle = policy_bundle()
    result = build_worklist(bundle, rules_table(), WorklistRules(budget=1e6,
                                                                 channel="contact_center"))
    assert len(result.rows) == 6
    assert result.rows["recommended_action"].eq("call").all()
    assert result.rows["action_channel"].eq("contact_center").all()


def test_contact_pressure_keeps_recently_contacted_customers_off_every_channel(tmp_path, prep):
    bundle = policy_bundle()
    scored = rules_table()
    as_of = pd.Timestamp("2024-06-01")
    ledger_path = tmp_path / "ledger.parquet"
    first = build_worklist(bundle, scored, WorklistRules(budget=20.0))  # customers 1, 2
    append_to_ledger(ledger_path, first, as_of - pd.Timedelta(days=10))
    ledger = read_ledger(ledger_path)
    contacted = recently_contacted(prep, ledger, as_of, gap_days=30)
    assert {"1", "2"} <= contacted
    second = build_worklist(bundle, scored, WorklistRules(budget=20.0, channel="contact_center"),
                            contacted)
    assert set(second.rows["customer_id"]).isdisjoint({1, 2})
    assert second.excluded_recent_contact == 2
    # ten days later than the gap allows, they may be contacted again
    later = recently_contacted(prep, ledger, as_of + pd.Timedelta(days=21), gap_days=30)
    assert not {"1", "2"} & later
    # the ledger keeps every earlier row when appended to
    append_to_ledger(ledger_path, second, as_of)
    assert len(read_ledger(ledger_path)) == len(first.rows) + len(second.rows)


def test_campaign_contacts_count_as_contact_pressure(prep):
    campaigns = prep.events["campaigns"]
    sent = pd.Timestamp(campaigns["timestamp"].iloc[0])
    sent_to = set(campaigns.loc[campaigns["timestamp"] == campaigns["timestamp"].iloc[0],
                                "customer_id"].astype(str))
    as_of = sent.normalize() + pd.Timedelta(days=5)
    assert sent_to <= recently_contacted(prep, None, as_of, gap_days=30)
    assert not sent_to & recently_contacted(prep, None, as_of + pd.Timedelta(days=40), 30)


# ----------------------------------------------------------------------------------------------
# The bar, against the generator's ground truth


@pytest.fixture(scope="module")
def trained(mid_demo_folder):
    folder = mid_demo_folder
    cfg = TrainConfig()
    data = build_training_data(folder, cfg)
    bundle, split, _, _ = fit_bundle(data.frame, data.specs, cfg, data.target)
    return folder, bundle, split.test.reset_index(drop=True)


@pytest.mark.slow
def test_worklist_keeps_more_true_value_than_churn_probability_or_random(trained):
    folder, bundle, test = trained
    scored = pd.concat([test[["customer_id"]], bundle.score(test)], axis=1)
    p_true, ltv_true = true_churn_and_value(folder, bundle, test)
    assert np.corrcoef(ltv_true, scored["lifetime_value"])[0, 1] > 0.8  # value model is sound
    for budget in (500.0, 2000.0):
        result = compare_targeting(bundle, scored, p_true, ltv_true, budget).set_index("strategy")
        print(result)
        kept = result["value_retained"]
        assert (result["spent"] <= budget).all()
        assert kept["worklist (expected profit)"] > kept["highest churn probability"]
        assert kept["worklist (expected profit)"] > kept["random"]
        assert kept["highest churn probability"] > kept["random"]


def test_without_a_value_model_only_growth_actions_can_pay(trained):
    _, bundle, test = trained
    no_value = replace(bundle, value=None)
    scored = no_value.score(test.head(200))
    assert scored["lifetime_value"].isna().all()
    assert set(scored["recommended_action"]) <= {NO_ACTION, "next_product"}


@pytest.mark.slow
def test_worklist_command_writes_the_list_and_applies_contact_pressure(project, demo_folder,
                                                                       capsys):
    assert main(["train", "--data", str(demo_folder)]) == 0
    assert main(["promote", "--data", str(demo_folder)]) == 0
    as_of = "2024-10-01"
    out = project / "list.csv"
    assert main(["worklist", "--data", str(demo_folder), "--as-of", as_of, "--budget", "500",
                 "--out", str(out), "--columns", "codes"]) == 0
    first = pd.read_csv(out)
    assert len(first) > 0
    assert first["action_cost"].sum() <= 500
    assert {"customer_id", "recommended_action", "action_channel", "expected_profit",
            "action_label", "churn_probability", "lifetime_value"} <= set(first.columns)
    # the next day, the customers just listed are given to no channel
    out2 = project / "list2.parquet"
    assert main(["worklist", "--data", str(demo_folder), "--as-of", "2024-10-02",
                 "--budget", "500", "--channel", "contact_center", "--out", str(out2)]) == 0
    second = pd.read_parquet(out2)
    assert set(second["customer_id"]).isdisjoint(set(first["customer_id"]))
    assert (second["action_channel"] == "contact_center").all()
    # bad input: a clear error, not a traceback
    assert main(["worklist", "--data", str(demo_folder), "--as-of", as_of, "--budget", "5",
                 "--channel", "fax"]) != 0
    assert "--channel" in capsys.readouterr().err
