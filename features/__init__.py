"""Point-in-time-correct customer lifecycle features from CRM tables."""

if __name__ != "churn_risk.features":  # pragma: no cover - a second copy under another name
    raise ImportError(f"import churn_risk.features, not {__name__}: the repository's features/ "
                      "folder is the code of churn_risk.features (one import path per module)")
