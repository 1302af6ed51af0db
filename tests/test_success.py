"""Success rates that learn: the catalogue's prior updated by campaigns and reported outcomes
(`models.portfolio.with_measured_success`, `training.campaigns.outcome_success_rates`). The
convergence to the generator's true effect is in `test_campaigns.py` (it shares its demo)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn_risk.errors import UsageError
from churn_risk.models.portfolio import Action, load_catalogue, with_measured_success
from churn_risk.training.campaigns import outcome_success_rates

PRIOR = Action("call", "Call", "contact_center", cost=10.0, success_rate=0.20,
               driver_group="service")


def reports(n: int, churn_untreated: float, reduction: float, seed: int = 0) -> pd.DataFrame:
    """`n` matured reports, half took the action, with churn lowered by `reduction` for them."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.5, 1.5, n) * churn_untreated
    taken = np.arange(n) % 2 == 0
    churned = rng.random(n) < np.where(taken, p * (1 - reduction), p)
    return pd.DataFrame({"action": "call", "response": np.where(taken, "taken", "declined"),
                         "stayed": ~churned, "churn_probability": p})


def test_with_nothing_measured_the_prior_stands_with_its_interval():
    (action,) = with_measured_success((PRIOR,), {}, {})
    assert action.success_rate == pytest.approx(0.20)
    assert action.success_low < 0.20 < action.success_high
    assert action.success_source.startswith("our starting estimate 20%")


def test_a_handful_of_outcomes_barely_moves_the_rate_and_many_move_it_to_the_measurement():
    few = outcome_success_rates(reports(20, 0.4, 0.9))
    many = outcome_success_rates(reports(20_000, 0.4, 0.5))
    (after_few,) = with_measured_success((PRIOR,), {}, few)
    (after_many,) = with_measured_success((PRIOR,), {}, many)
    assert few["call"]["reports"] == 20 and many["call"]["reports"] == 20_000
    # 20 reports measure a large effect with a wide interval: the prior keeps most of its weight
    assert abs(after_few.success_rate - 0.20) < abs(few["call"]["rate"] - 0.20) / 2
    assert after_many.success_rate == pytest.approx(many["call"]["rate"], abs=0.01)
    assert after_many.success_low < 0.5 < after_many.success_high
    assert after_many.success_high - after_many.success_low < 0.1
    assert "20,000 reported outcomes" in after_many.success_source


def test_learning_again_starts_from_the_catalogue_prior_not_the_last_posterior():
    measured = outcome_success_rates(reports(2_000, 0.4, 0.5))
    once = with_measured_success((PRIOR,), {}, measured)
    twice = with_measured_success(once, {}, measured)
    assert twice == once and once[0].success_prior == 0.20


def test_campaigns_and_outcomes_are_both_evidence():
    campaign = {"rate": 0.3, "low": 0.2, "high": 0.4, "log_rr": float(np.log(0.7)),
                "log_rr_se": 0.05, "campaigns": ["RET-1"], "n_treatment": 900,
                "n_control": 300}
    offered = PRIOR.model_copy(update={"offer": "call_offer"})
    reported = outcome_success_rates(reports(4_000, 0.4, 0.5))
    (both,) = with_measured_success((offered,), {"call_offer": campaign}, reported)
    (campaign_only,) = with_measured_success((offered,), {"call_offer": campaign})
    assert "campaigns RET-1" in both.success_source and "reported outcomes" in both.success_source
    assert campaign_only.success_rate < both.success_rate < reported["call"]["rate"]
    assert both.success_high - both.success_low < (campaign_only.success_high
                                                   - campaign_only.success_low)


def test_outcomes_compare_within_bands_of_predicted_risk():
    """Risky customers take the action more often: a raw comparison would find it harmful; the
    stratified one finds no effect (there is none)."""
    rng = np.random.default_rng(3)
    p = rng.choice([0.05, 0.6], 40_000)
    taken = rng.random(p.size) < np.where(p > 0.5, 0.8, 0.2)
    churned = rng.random(p.size) < p
    frame = pd.DataFrame({"action": "call", "response": np.where(taken, "taken", "declined"),
                          "stayed": ~churned, "churn_probability": p})
    raw = 1 - churned[taken].mean() / churned[~taken].mean()
    measured = outcome_success_rates(frame)["call"]
    assert raw < -0.5
    assert abs(measured["log_rr"]) < 2 * measured["log_rr_se"]


def test_unmatured_and_one_sided_reports_measure_nothing():
    frame = reports(100, 0.4, 0.5)
    assert outcome_success_rates(frame.assign(stayed=None)) == {}
    assert outcome_success_rates(frame.assign(response="taken")) == {}


def test_the_catalogue_refuses_learned_fields_as_settings(tmp_path):
    bad = tmp_path / "actions.toml"
    bad.write_text('[[action]]\nname = "x"\nlabel = "X"\nchannel = "web"\ncost = 1\n'
                   'success_rate = 0.1\nsuccess_low = 0.05\n')
    with pytest.raises(UsageError, match=r"action\[0\]\.success_low: not a setting"):
        load_catalogue(bad)
