"""models"""

if __name__ != "churn_risk.models":  # pragma: no cover - a second copy under another name
    raise ImportError(f"import churn_risk.models, not {__name__}: the repository's models/ "
                      "folder is the code of churn_risk.models (one import path per module)")
