"""What retention campaigns achieved, measured on their randomised treatment / control groups.

The `campaigns` table records, per campaign, who was targeted and whether they were in the
`treatment` group (received the offer) or the `control` group (held out at random). Comparing the
two groups' churn over the label horizon measures the campaign's causal effect; nothing here is a
model of who *would* have churned.

The package, by concern:

- `effects`: the outcomes per campaign, per segment and pooled per offer from the CRM data
  (`evaluate_campaigns`, `CampaignEvaluation`), and the success rates of the next-best actions
  (`success_rates`) and of the channels' reported outcomes (`outcome_success_rates`); its
  docstring describes the method;
- `stats`: the statistics of counts (Wilson, Newcombe and Katz intervals, Mantel-Haenszel pooling,
  Qini), from statsmodels / SciPy where they compute the same quantity;
- `uplift`: the cross-fitted T-learner uplift model and its Qini evaluation (`fit_uplift_model`);
- `figures`: the forest plot and the Qini figures;
- `tracking`: everything into the active MLflow run (`log_campaign_evaluation`).
"""

from churn_risk.training.campaigns.effects import (
    MISSING_OFFER,
    POOLING_METHOD,
    CampaignEvaluation,
    campaign_target,
    evaluate_campaigns,
    outcome_success_rates,
    success_rates,
)
from churn_risk.training.campaigns.figures import forest_figure, qini_figure
from churn_risk.training.campaigns.stats import (
    mantel_haenszel,
    newcombe_interval,
    qini_coefficient,
    qini_curve,
    risk_ratio_interval,
    wilson_interval,
)
from churn_risk.training.campaigns.tracking import log_campaign_evaluation
from churn_risk.training.campaigns.uplift import (
    LEAVE_ALONE,
    PERSUADABLE,
    NotEnoughControls,
    UpliftModel,
    fit_uplift_model,
)

__all__ = [
    "PERSUADABLE",
    "LEAVE_ALONE",
    "MISSING_OFFER",
    "POOLING_METHOD",
    "CampaignEvaluation",
    "NotEnoughControls",
    "UpliftModel",
    "campaign_target",
    "evaluate_campaigns",
    "fit_uplift_model",
    "forest_figure",
    "log_campaign_evaluation",
    "mantel_haenszel",
    "newcombe_interval",
    "outcome_success_rates",
    "qini_coefficient",
    "qini_curve",
    "qini_figure",
    "risk_ratio_interval",
    "success_rates",
    "wilson_interval",
]
