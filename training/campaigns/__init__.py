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

from importlib import import_module

#: Where each name of the package lives: imported on first use (PEP 562), so the service, which
#: needs only `effects.outcome_success_rates`, loads neither matplotlib nor scikit-learn.
_HOME = {
    **dict.fromkeys(("MISSING_OFFER", "POOLING_METHOD", "CampaignEvaluation", "campaign_target",
                     "evaluate_campaigns", "outcome_success_rates", "success_rates"), "effects"),
    **dict.fromkeys(("forest_figure", "qini_figure"), "figures"),
    **dict.fromkeys(("mantel_haenszel", "newcombe_interval", "qini_coefficient", "qini_curve",
                     "risk_ratio_interval", "wilson_interval"), "stats"),
    "log_campaign_evaluation": "tracking",
    **dict.fromkeys(("LEAVE_ALONE", "PERSUADABLE", "NotEnoughControls", "UpliftModel",
                     "fit_uplift_model"), "uplift"),
}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


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
